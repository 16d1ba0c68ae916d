"""From an observed image (FITS + WCS) to π-DOC's input map: calibration, sky, seeing, resampling.

π-DOC (Chardin & Bianchini 2021, MNRAS 504, 5656; hereafter CB21) reads a 160×160 map of 0.25″
pixels centred on the cluster, each pixel holding log10 of the V-band flux F = L_V / (4π D²) in
L☉ kpc⁻² (D in kpc), seen through a 2.5″ Gaussian seeing. This module turns a real image into such
a map, in the order an observer would do it by hand (docs/observations.md gives every formula and
its source):

1. Read: the first 2-D image HDU (or the one asked for), its WCS with SIP distortion
   (`WCS(header, hdulist)`), the units from BUNIT / EXPTIME.
2. Calibrate: data → V magnitude per pixel through a Vega V zero point (given by the user, or from
   HST's PHOTFLAM/PHOTPLAM plus a documented V transformation), or directly from a V surface
   brightness in mag arcsec⁻²; extinction A_V = 3.1 E(B−V); then
   log10 F = log10(F_sun at 10 pc) − 0.4 (m − A_V − M_V,☉).
3. Sky: `pidoc.sky.estimate_sky` on the calibrated image: the user's value or sky region, a header
   keyword that proves it subtracted, or a cluster profile plus a constant fitted to the radial
   profile; never "the pixels far from the centre", which on a detector the cluster fills are
   cluster light. Where nothing decides, the image is refused with what to give.
4. Centre: given (RA, Dec), or the light-weighted centre of the image.
5. Seeing: convolve with a Gaussian of FWHM √(2.5² − FWHM_obs²); a broader PSF is refused, and a
   map whose matched seeing an error of `PSF_FWHM_RELATIVE_ERROR` in FWHM_obs would move by more
   than `SEEING_TOLERANCE_ARCSEC` is flagged (the image's PSF is then too close to 2.5″).
   Noise: the image's pixel scatter where it is faintest, carried through that smoothing to a
   0.25″ pixel of the map (`map_pixel_noise`); a map noisier than the tolerance measured for its
   kind of noise (`noise_tolerance_for`) is flagged (π-DOC was trained on noise-free maps).
6. Resample: flux-conserving onto a TAN frame of 160×160 pixels of 0.25″ on the centre
   (`reproject_adaptive(..., conserve_flux=True)`); report the fraction of the frame the image
   covers, refuse below `MINIMUM_COVERED_FRACTION`, fill smaller gaps by point reflection about the
   centre and flag the map.
7. Several images (chips, exposures, pointings, or HDUs of one file): each calibrated on its own
   (zero point, units, exposure, sky), matched to the broadest PSF, resampled flux-conserving onto one
   pixel grid and averaged where they overlap, then convolved and resampled as one image
   (`images_to_pidoc_map`).

Every check runs before anything is written. Errors are ValueError (FileNotFoundError for a missing
file) and their messages name the file and the problem.
"""
import math
import re
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS, FITSFixedWarning
from scipy import signal

from pidoc.frame import MAP_HALF_WIDTH_ARCSEC, MAP_PIXELS, PIXEL_SCALE_ARCSEC
from pidoc.io import replace_atomically, save_array
from pidoc.mocks import clusters as mock_clusters
from pidoc.sky import SkyUndeterminedError, estimate_pixel_noise, estimate_sky

# --- π-DOC's frame (CB21 §2; 160 pixels of 0.25″, pidoc.frame) ------------------------------------
TARGET_SEEING_FWHM_ARCSEC = 2.5                      # the Gaussian seeing of every training map
FRAME_HALF_DIAGONAL_ARCSEC = math.sqrt(2.0) * MAP_HALF_WIDTH_ARCSEC
# Pixels with no light (or light cancelled by noise after sky subtraction) get the same floor as the
# mock clusters' empty pixels, so the network sees what it saw in training (pidoc/mocks/clusters.py).
FLUX_FLOOR_LSUN_PER_KPC2 = mock_clusters.FLUX_FLOOR_LSUN_PER_KPC2
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# How far a map's seeing may lie from 2.5″ before π-DOC's intervals stop holding: measured on the
# reproduction's seeing family left out of the calibration, per bin of |seeing − 2.5″| (2026-12-07,
# docs/uncertainty.md, "Observing conditions"): within 0.02″ every quantity holds (68 % coverage
# 68–82 %, 95 % 95–100 %), at 0.02–0.05″ the total mass in the field falls to 35 % / 79 %. The
# general fast model, with its wider intervals, holds to about 0.05″, so the figure is conservative
# for it. And how well an observer knows the FWHM of an image's PSF: stars fitted across one chip
# vary by a few percent (focus and position), the default error assumed when the user gives none.
SEEING_TOLERANCE_ARCSEC = 0.02
PSF_FWHM_RELATIVE_ERROR = 0.05
# How faint the noise of a map must be for π-DOC's intervals to hold, as the 1σ of one 0.25″ pixel
# of the map in mag arcsec⁻² (V). Measured by scripts/noise_tolerance.py on the reproduction, with
# noise added to 150 nominal clusters that its calibration was not fitted on (2026-12-07, eighth
# session; docs/noise_tolerance_cb21.txt and _fine.txt): noise smoothed by the 2.5″ seeing, as the
# image path leaves the noise of an image with a sharp PSF, keeps every quantity within ±4 / ±2
# points of nominal at 28.75 mag arcsec⁻² (68 % coverage 65–70 %, 95 % 93–97 %), and the total
# mass falls to 91 % at 95 % by 28.5 (57 % / 85 % at 28); white noise, as an image taken at ~2.5″
# and barely smoothed carries, holds at 31 and fails at 30 (total mass 56 % / 83 %).
# The image path uses the correlated figure where its kernel is at least
# `NOISE_CORRELATED_KERNEL_FWHM_ARCSEC` wide (an image PSF up to 1.5″), the white one otherwise.
CORRELATED_NOISE_TOLERANCE_MAG_ARCSEC2 = 28.75
WHITE_NOISE_TOLERANCE_MAG_ARCSEC2 = 31.0
NOISE_CORRELATED_KERNEL_FWHM_ARCSEC = 2.0

# --- Photometry -------------------------------------------------------------------------------------
# Absolute V magnitude of the Sun, Willmer (2018, ApJS 236, 47, Table 3; Vega system).
SOLAR_ABSOLUTE_MAGNITUDE_V = 4.81
# F = L / (4π D²) with D in kpc: the Sun (1 L☉) at 10 pc = 0.01 kpc gives 1 / (4π 10⁻⁴) L☉ kpc⁻²
# = 795.8 L☉ kpc⁻², and it has m_V = M_V,☉. So log10 F = log10(795.8) − 0.4 (m_V − A_V − M_V,☉).
SUN_AT_10_PARSEC_FLUX_LSUN_PER_KPC2 = 1.0 / (4.0 * math.pi * 0.01**2)
# Extinction A_V = R_V E(B−V) with the diffuse-ISM R_V = 3.1 (Cardelli, Clayton & Mathis 1989).
EXTINCTION_RATIO_V = 3.1
# HST synthetic-photometry zero points from the header (STScI ACS and WFC3 zero-point pages; WFC3
# Data Handbook §9.1): STmag = −2.5 log10 PHOTFLAM − 21.10 and
# ABmag = −2.5 log10 PHOTFLAM − 5 log10 PHOTPLAM − 2.408, for one count (or electron) per second.
ST_MAGNITUDE_OFFSET = 21.10
AB_MAGNITUDE_OFFSET = 2.408
# VEGAmag − ABmag of a filter, a property of its bandpass and of Vega's spectrum. From the ACS/WFC
# zero points of 2016-04-01 listed by STScI's ACS Zeropoint Calculator (as printed in the acstools
# `acszpt` documentation): F555W 25.713 − 25.713, F606W 26.405 − 26.498, F550M 24.825 − 24.856.
# WFPC2 and WFC3 filters of the same name are used with the ACS value (F555W of WFPC2 has its pivot
# 80 Å redder than ACS's; the offset is ≈ 0 for any bandpass near V).
VEGA_MINUS_AB_MAGNITUDE = {"F555W": 0.000, "F606W": -0.093, "F550M": -0.031}
# Johnson V − filter (Vega), for an old globular-cluster population with V − I ≈ 0.9, from the
# ACS → UBVRI transformations of Sirianni et al. (2005, PASP 117, 1049, §8 and Table 22), evaluated at
# that colour: ≈ −0.07 for F555W; +0.14 (observed) to +0.21 (synthetic) for F606W, of which we take
# the middle, +0.17 ± 0.04. A cluster's integrated colour varies by ±0.1 mag in V − I, which moves
# these terms by ≲ 0.02 mag for F555W and ≲ 0.03 for F606W. Filters far from V are not in the table:
# π-DOC was trained on V light, so for them the user must supply a V zero point.
V_MINUS_FILTER_MAGNITUDE = {"F555W": -0.07, "F606W": 0.17}
ASSUMED_CLUSTER_COLOUR_V_MINUS_I = 0.9

# --- PSF --------------------------------------------------------------------------------------------
# Default FWHM of the image PSF, per (TELESCOP, INSTRUME), in arcsec, used when the user gives none.
# Approximate optical-band values from the instrument handbooks (ACS/WFC and WFPC2/PC ≈ 0.1″, WFC3/UVIS
# ≈ 0.08″). They hardly matter: the kernel FWHM √(2.5² − 0.1²) differs from 2.5″ by 0.08 %.
# Ground-based images have no default: their seeing must be given.
DEFAULT_PSF_FWHM_ARCSEC = {("HST", "ACS"): 0.10, ("HST", "WFPC2"): 0.10, ("HST", "WFC3"): 0.08}

# --- Sky --------------------------------------------------------------------------------------------
# The sky is `pidoc.sky.estimate_sky`'s (user value, user region, header keyword, or a cluster profile
# plus a constant fitted to the radial profile). A globular cluster's half-light radius is as large as
# many detectors (NGC 1261: 41″, Harris 1996, 2010 edition; a WFPC2/PC chip is 36″ wide), so "the
# pixels beyond 20″ of the centre" are cluster light there, and are sky only where the user says so
# (`background_outside_arcsec`).
# Light-weighted centre: centroid of the sky-subtracted light, then re-centred on the light within
# this radius until it moves by less than a hundredth of a 0.25″ pixel.
CENTRE_RADIUS_ARCSEC = 20.0
CENTRE_ITERATIONS = 20

# --- Coverage ---------------------------------------------------------------------------------------
# A frame pixel is covered when at least half of it lies on valid image pixels. Point reflection about
# the centre can only complete a frame whose covered half is the reflection of the gap: below 50 %
# some of the gap has no covered mirror pixel at all, so the map is refused.
MINIMUM_COVERED_FRACTION = 0.5
# At or above this covered fraction (at most 25 of 25,600 pixels missing) the map is treated as
# complete; below it the gap is filled and the map is flagged `outside` π-DOC's domain.
COMPLETE_COVERED_FRACTION = 0.999
PIXEL_COVERED_THRESHOLD = 0.5
# reproject_adaptive's anti-aliasing kernel. Its default Gaussian adds a blur that widens the 2.5″
# seeing by about 1 % and moved π-DOC's distance of a 60 kpc test map by 1.5 kpc; the Hann kernel
# halves the blur (median map change 0.0008 dex instead of 0.003, measured here on test maps).
RESAMPLING_KERNEL = "hann"

# --- Units ------------------------------------------------------------------------------------------
# BUNIT spellings, after `normalized_unit` (lower case, no spaces, "sec" → "s", no "**" or "^").
COUNT_UNITS = {"counts", "count", "dn", "adu", "electrons", "electron", "e-", "e"}
COUNT_RATE_UNITS = {"counts/s", "count/s", "cps", "dn/s", "adu/s", "electrons/s", "electron/s", "e-/s", "e/s",
                    "countss-1", "electronss-1", "ct/s", "cts/s"}
SURFACE_BRIGHTNESS_UNITS = {"mag/arcsec2", "magarcsec-2", "mag/sq.arcsec", "mag/arcs2", "vmag/arcsec2"}
UNIT_CHOICES = ("counts", "counts/s", "mag/arcsec2")


class ObservationError(ValueError):
    """A bad image or setting, with a message naming the file and the problem."""


# ==================================================================================================
# 1. Reading
# ==================================================================================================
def normalized_unit(unit_text):
    """BUNIT in a canonical spelling: lower case, no spaces, 'sec' → 's', no '**' or '^'."""
    text = str(unit_text).strip().lower().replace(" ", "").replace("**", "").replace("^", "")
    return re.sub(r"sec(?![a-z])", "s", text)


def header_value(headers, key, default=None):
    """First value of `key` in `headers` (the image HDU's header first, then the primary's)."""
    for header in headers:
        if header is not None and key in header and header[key] not in (None, ""):
            return header[key]
    return default


def is_two_dimensional_image(hdu):
    """True for an image HDU (primary, image or tile-compressed) holding a 2-D array."""
    return hdu.is_image and hdu.header.get("NAXIS", 0) == 2 and hdu.data is not None


def read_image(path, hdu=None):
    """Read a FITS image, its WCS (with SIP) and the headers that describe it.

    Parameters
    ----------
    path : str or Path
    hdu : int or str, optional
        Index or EXTNAME of the image HDU; default the first HDU holding a 2-D image.

    Returns
    -------
    dict
        "path", "hdu_label", "data" (float64, NaN where not finite), "wcs" (celestial, SIP applied),
        "headers" (image header, primary header), "pixel_scale_arcsec" (mean of the two axes at the
        reference pixel).

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    ObservationError
        Not a FITS file, no 2-D image HDU (or not the asked one), no celestial WCS, all-NaN data.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        hdulist = fits.open(path, memmap=False)
        hdulist.verify("silentfix")
    except Exception as error:  # astropy raises OSError, ValueError or TypeError for non-FITS bytes
        raise ObservationError(f"{path}: not a readable FITS file ({error})") from error
    with hdulist:
        if hdu is None:
            images = [index for index, candidate in enumerate(hdulist) if is_two_dimensional_image(candidate)]
            if not images:
                described = ", ".join(f"{index}: {type(candidate).__name__} NAXIS={candidate.header.get('NAXIS', 0)}"
                                      for index, candidate in enumerate(hdulist))
                raise ObservationError(f"{path}: no HDU holds a 2-D image ({described})")
            selected = images[0]
        else:
            key = int(hdu) if str(hdu).lstrip("-").isdigit() else str(hdu)
            try:
                image_hdu = hdulist[key]
            except (KeyError, IndexError) as error:
                raise ObservationError(f"{path}: no HDU {hdu!r} (it has {len(hdulist)} HDUs)") from error
            if not is_two_dimensional_image(image_hdu):
                raise ObservationError(f"{path}: HDU {hdu!r} is not a 2-D image (NAXIS={image_hdu.header.get('NAXIS', 0)})")
            selected = hdulist.index_of(key)
        image_hdu = hdulist[selected]
        header = image_hdu.header.copy()
        primary_header = hdulist[0].header.copy() if selected != 0 else None
        data = np.array(image_hdu.data, dtype=np.float64)
        with warnings.catch_warnings():
            # Old HST headers trigger harmless "fixed" notices (e.g. DATE-OBS formats).
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                wcs = WCS(header, hdulist)
            except Exception as error:
                raise ObservationError(f"{path}: cannot read the WCS of HDU {selected} ({error})") from error
    if not wcs.has_celestial or wcs.naxis != 2:
        raise ObservationError(f"{path}: HDU {selected} has no celestial WCS (CTYPE {list(wcs.wcs.ctype)}); "
                               "π-DOC needs to know where the cluster is on the sky and the pixel scale")
    wcs = wcs.celestial
    data[~np.isfinite(data)] = np.nan
    if np.isnan(data).all():
        raise ObservationError(f"{path}: HDU {selected} holds no finite pixel (all NaN or inf)")
    pixel_scales_arcsec = (wcs.proj_plane_pixel_scales()[0].to_value(u.arcsec), wcs.proj_plane_pixel_scales()[1].to_value(u.arcsec))
    return {
        "path": path,
        "hdu_label": f"{selected}" + (f" ({header['EXTNAME']})" if "EXTNAME" in header else ""),
        "data": data,
        "wcs": wcs,
        "headers": (header, primary_header),
        "pixel_scales_arcsec": pixel_scales_arcsec,
        "pixel_scale_arcsec": float(np.sqrt(pixel_scales_arcsec[0] * pixel_scales_arcsec[1])),
        "pixel_area_arcsec2": float(pixel_scales_arcsec[0] * pixel_scales_arcsec[1]),
    }


# ==================================================================================================
# 2. Photometric calibration
# ==================================================================================================
def log_flux_from_magnitude(magnitude_v, extinction_v=0.0):
    """log10 F (L☉ kpc⁻²) of a source of apparent V magnitude `magnitude_v`, after extinction.

    log10 F = log10(795.8) − 0.4 (m − A_V − M_V,☉): the Sun at 10 pc gives 795.8 L☉ kpc⁻².
    """
    return math.log10(SUN_AT_10_PARSEC_FLUX_LSUN_PER_KPC2) - 0.4 * (np.asarray(magnitude_v, dtype=np.float64)
                                                                      - extinction_v - SOLAR_ABSOLUTE_MAGNITUDE_V)


def log_flux_per_pixel_from_surface_brightness(surface_brightness_v, pixel_area_arcsec2, extinction_v=0.0):
    """log10 F per pixel of `pixel_area_arcsec2` from μ_V in mag arcsec⁻² (log10 F = 1.6967 − 0.4 (μ − A_V − 4.81) for 0.25″)."""
    return log_flux_from_magnitude(surface_brightness_v, extinction_v) + math.log10(pixel_area_arcsec2)


def surface_brightness_from_flux_per_pixel(flux_lsun_per_kpc2, pixel_area_arcsec2):
    """μ_V in mag arcsec⁻² of a flux per pixel of `pixel_area_arcsec2` (the inverse of the function above)."""
    return SOLAR_ABSOLUTE_MAGNITUDE_V - 2.5 * (np.log10(np.asarray(flux_lsun_per_kpc2, dtype=np.float64))
                                               - math.log10(SUN_AT_10_PARSEC_FLUX_LSUN_PER_KPC2 * pixel_area_arcsec2))


def zero_points_from_photflam(photflam, photplam):
    """STmag and ABmag of one count per second, from PHOTFLAM (erg cm⁻² s⁻¹ Å⁻¹ per count/s) and PHOTPLAM (Å)."""
    photflam = float(photflam)
    photplam = float(photplam)
    if not (np.isfinite(photflam) and photflam > 0 and np.isfinite(photplam) and photplam > 0):
        raise ValueError(f"PHOTFLAM and PHOTPLAM must be positive, got {photflam} and {photplam}")
    st_magnitude = -2.5 * math.log10(photflam) - ST_MAGNITUDE_OFFSET
    ab_magnitude = -2.5 * math.log10(photflam) - 5.0 * math.log10(photplam) - AB_MAGNITUDE_OFFSET
    return st_magnitude, ab_magnitude


def filter_name(headers):
    """The HST filter in use (e.g. 'F555W'), from FILTER, FILTNAM1/2 or FILTER1/2; None if there is none."""
    for key in ("FILTER", "FILTNAM1", "FILTNAM2", "FILTER1", "FILTER2", "PHOTMODE"):
        value = header_value(headers, key)
        if value is None:
            continue
        match = re.search(r"F\d{3,4}(W|LP|M|N|X)\b", str(value).upper())
        if match:
            return match.group(0)
    return None


def image_units(headers, units=None):
    """'counts', 'counts/s' or 'mag/arcsec2': from `units` if given, else from BUNIT; None if unknown."""
    if units is not None:
        if units not in UNIT_CHOICES:
            raise ValueError(f"units must be one of {UNIT_CHOICES}, got {units!r}")
        return units
    bunit = header_value(headers, "BUNIT")
    if bunit is None:
        return None
    unit = normalized_unit(bunit)
    if unit in COUNT_UNITS:
        return "counts"
    if unit in COUNT_RATE_UNITS:
        return "counts/s"
    if unit in SURFACE_BRIGHTNESS_UNITS:
        return "mag/arcsec2"
    return None


def photometric_calibration(image, zeropoint_vega=None, ebv=0.0, units=None):
    """How the image's pixel values become V flux: units, exposure time, V zero point, extinction.

    Parameters
    ----------
    image : dict
        From `read_image`.
    zeropoint_vega : float, optional
        Johnson V (Vega) magnitude of a source giving one data unit per second (after dividing
        counts by EXPTIME). Takes precedence over PHOTFLAM.
    ebv : float
        E(B−V) in mag, ≥ 0; A_V = 3.1 E(B−V).
    units : str, optional
        Overrides BUNIT: one of `UNIT_CHOICES`.

    Returns
    -------
    dict
        "units", "exposure_time_s" (counts only), "zeropoint_v_mag" (None for surface brightness),
        "zeropoint_source" (a sentence), "st_zeropoint_mag", "ab_zeropoint_mag", "filter",
        "extinction_v_mag", "ebv_mag".
    """
    path = image["path"]
    headers = image["headers"]
    if ebv is None:
        ebv = 0.0
    if not np.isfinite(ebv) or ebv < 0:
        raise ObservationError(f"{path}: E(B−V) must be a non-negative number of magnitudes, got {ebv}")
    unit = image_units(headers, units)
    if unit is None:
        bunit = header_value(headers, "BUNIT")
        raise ObservationError(
            f"{path}: unknown units (BUNIT = {bunit!r}); pass --units {'|'.join(UNIT_CHOICES)} "
            "(counts are divided by EXPTIME)")
    calibration = {"units": unit, "exposure_time_s": None, "zeropoint_v_mag": None, "zeropoint_source": "",
                   "st_zeropoint_mag": None, "ab_zeropoint_mag": None, "filter": filter_name(headers),
                   "extinction_v_mag": EXTINCTION_RATIO_V * float(ebv), "ebv_mag": float(ebv)}
    if unit == "mag/arcsec2":
        calibration["zeropoint_source"] = "none needed: the image is a V surface brightness in mag arcsec⁻²"
        return calibration
    if unit == "counts":
        exposure_time_s = header_value(headers, "EXPTIME")
        if exposure_time_s is None or not float(exposure_time_s) > 0:
            raise ObservationError(f"{path}: the image is in counts but has no positive EXPTIME (got {exposure_time_s!r})")
        calibration["exposure_time_s"] = float(exposure_time_s)
    photflam = header_value(headers, "PHOTFLAM")
    photplam = header_value(headers, "PHOTPLAM")
    if photflam is not None and photplam is not None and float(photflam) > 0:
        calibration["st_zeropoint_mag"], calibration["ab_zeropoint_mag"] = zero_points_from_photflam(photflam, photplam)
    if zeropoint_vega is not None:
        if not np.isfinite(zeropoint_vega):
            raise ObservationError(f"{path}: the V zero point must be finite, got {zeropoint_vega}")
        calibration["zeropoint_v_mag"] = float(zeropoint_vega)
        calibration["zeropoint_source"] = "given by the user (--zeropoint-vega)"
        return calibration
    band = calibration["filter"]
    if calibration["ab_zeropoint_mag"] is None:
        raise ObservationError(
            f"{path}: unknown flux scale: no PHOTFLAM/PHOTPLAM in the header and no V zero point given "
            "(--zeropoint-vega MAG: the V magnitude of one data unit per second)")
    if band not in V_MINUS_FILTER_MAGNITUDE:
        raise ObservationError(
            f"{path}: PHOTFLAM is present but the filter {band!r} has no documented transformation to Johnson V "
            f"(known: {sorted(V_MINUS_FILTER_MAGNITUDE)}); π-DOC reads V light: give --zeropoint-vega MAG")
    vega_band_zeropoint = calibration["ab_zeropoint_mag"] + VEGA_MINUS_AB_MAGNITUDE[band]
    calibration["vega_band_zeropoint_mag"] = vega_band_zeropoint
    calibration["zeropoint_v_mag"] = vega_band_zeropoint + V_MINUS_FILTER_MAGNITUDE[band]
    calibration["zeropoint_source"] = (
        f"PHOTFLAM/PHOTPLAM: ST {calibration['st_zeropoint_mag']:.3f}, AB {calibration['ab_zeropoint_mag']:.3f}, "
        f"{band} Vega {vega_band_zeropoint:.3f} (Vega−AB {VEGA_MINUS_AB_MAGNITUDE[band]:+.3f}, ACS zero points), "
        f"V−{band} {V_MINUS_FILTER_MAGNITUDE[band]:+.2f} at V−I = {ASSUMED_CLUSTER_COLOUR_V_MINUS_I} (Sirianni et al. 2005)")
    return calibration


def flux_per_pixel(data, calibration, pixel_area_arcsec2):
    """Linear V flux per image pixel, F in L☉ kpc⁻², extinction-corrected; NaN stays NaN.

    Counts are divided by the exposure time; a count rate c gives m = ZP_V − 2.5 log10 c, so
    F = c · 10^(log10 F(m = ZP_V)). A surface brightness μ_V becomes flux per pixel of the given area.
    """
    data = np.asarray(data, dtype=np.float64)
    extinction_v = calibration["extinction_v_mag"]
    if calibration["units"] == "mag/arcsec2":
        with np.errstate(over="ignore", invalid="ignore"):
            return 10.0 ** log_flux_per_pixel_from_surface_brightness(data, pixel_area_arcsec2, extinction_v)
    rate = data / calibration["exposure_time_s"] if calibration["units"] == "counts" else data
    return rate * 10.0 ** log_flux_from_magnitude(calibration["zeropoint_v_mag"], extinction_v)


def data_from_flux_per_pixel(flux_lsun_per_kpc2, calibration, pixel_area_arcsec2):
    """Inverse of `flux_per_pixel`: the pixel values an image with `calibration` would hold."""
    flux_lsun_per_kpc2 = np.asarray(flux_lsun_per_kpc2, dtype=np.float64)
    extinction_v = calibration["extinction_v_mag"]
    if calibration["units"] == "mag/arcsec2":
        log_flux_at_zero_magnitude = log_flux_per_pixel_from_surface_brightness(0.0, pixel_area_arcsec2, extinction_v)
        with np.errstate(divide="ignore", invalid="ignore"):
            return -2.5 * (np.log10(flux_lsun_per_kpc2) - log_flux_at_zero_magnitude)
    rate = flux_lsun_per_kpc2 / 10.0 ** log_flux_from_magnitude(calibration["zeropoint_v_mag"], extinction_v)
    return rate * calibration["exposure_time_s"] if calibration["units"] == "counts" else rate


# ==================================================================================================
# 3. Sky and centre
# ==================================================================================================
def radius_from_pixel_arcsec(shape, centre_pixel, pixel_scale_arcsec):
    """Distance of every pixel from `centre_pixel` (x, y), in arcsec (local pixel scale, no distortion)."""
    rows, columns = np.indices(shape)
    return np.hypot(columns - centre_pixel[0], rows - centre_pixel[1]) * pixel_scale_arcsec


def light_weighted_centre_pixel(flux, pixel_scale_arcsec, start_pixel=None):
    """Light-weighted centre (x, y) of a sky-subtracted image, re-centred within `CENTRE_RADIUS_ARCSEC`."""
    weights = np.where(np.isfinite(flux), flux, 0.0)
    rows, columns = np.indices(flux.shape)
    if start_pixel is None:
        total = weights.sum()
        if not total > 0:
            raise ValueError("the image holds no positive light after sky subtraction")
        start_pixel = (float((weights * columns).sum() / total), float((weights * rows).sum() / total))
    centre = np.asarray(start_pixel, dtype=np.float64)
    for _ in range(CENTRE_ITERATIONS):
        inside = radius_from_pixel_arcsec(flux.shape, centre, pixel_scale_arcsec) < CENTRE_RADIUS_ARCSEC
        total = weights[inside].sum()
        if not total > 0:
            break
        new_centre = np.array([(weights[inside] * columns[inside]).sum(), (weights[inside] * rows[inside]).sum()]) / total
        moved_arcsec = np.hypot(*(new_centre - centre)) * pixel_scale_arcsec
        centre = new_centre
        if moved_arcsec < 0.01 * PIXEL_SCALE_ARCSEC:
            break
    return float(centre[0]), float(centre[1])


def saturation_flux_per_pixel(headers, calibration, pixel_area_arcsec2):
    """The header's SATURATE (data units) as flux per pixel, for `pidoc.sky.estimate_sky`; inf where none.

    The sky is estimated on the calibrated flux image, so a saturation level in data units must be
    converted with the same calibration (a surface-brightness image has no such level).
    """
    saturation = header_value(headers, "SATURATE")
    if saturation is None or calibration["units"] == "mag/arcsec2":
        return math.inf
    return float(flux_per_pixel(np.float64(saturation), calibration, pixel_area_arcsec2))


def sky_in_data_units(value_flux, uncertainty_flux, calibration, pixel_area_arcsec2):
    """A sky level and its 1σ uncertainty, from flux per pixel back to the image's units (text).

    Linear units scale; a surface brightness in mag arcsec⁻² has σ_μ = (2.5 / ln 10) σ_F / F, and a
    sky that is not positive has no magnitude (said in words, never as `nan`).
    """
    if calibration["units"] != "mag/arcsec2":
        value = float(data_from_flux_per_pixel(value_flux, calibration, pixel_area_arcsec2))
        uncertainty = float(data_from_flux_per_pixel(uncertainty_flux, calibration, pixel_area_arcsec2))
        return f"{value:.6g}", f"{uncertainty:.2g}", "data units per pixel"
    if not value_flux > 0:
        return f"{value_flux:.4g} L☉ kpc⁻² per pixel (no surface brightness: not positive)", \
            f"{uncertainty_flux:.2g} L☉ kpc⁻²", "per pixel"
    value = float(data_from_flux_per_pixel(value_flux, calibration, pixel_area_arcsec2))
    return f"{value:.6g}", f"{2.5 / math.log(10.0) * uncertainty_flux / value_flux:.2g}", "mag arcsec⁻²"


def determine_sky(image, flux, calibration, centre_pixel, background=None, background_region=None,
                  background_outside_arcsec=None):
    """Sky level of one image, never taken from cluster light: `pidoc.sky.estimate_sky` on its flux.

    The estimate runs on the calibrated flux per pixel (L☉ kpc⁻², linear for every unit, also for a
    surface-brightness image), so a user's value in data units is converted first and the result is
    converted back for the report. In order of priority: the user's value (`background`, data units);
    a region the user says is sky (`background_region`, a box (x0, x1, y0, y1) of 0-based pixel
    bounds, x1 and y1 excluded, or `background_outside_arcsec`: the pixels farther than that from the
    centre); a header keyword that proves the sky was subtracted; a fit of a projected limepy profile
    plus a constant to the radial profile, accepted only when it pins the constant down.

    Parameters
    ----------
    image : dict
        From `read_image`.
    flux : numpy.ndarray
        The image calibrated by `flux_per_pixel`, before sky subtraction.
    calibration : dict
        From `photometric_calibration`.
    centre_pixel : (float, float)
        Cluster centre in this image's 0-based pixels (x, y); it may lie off the image only when the
        user gives the sky (the profile fit needs the centre on the image).
    background, background_region, background_outside_arcsec : optional
        At most one of them.

    Returns
    -------
    dict
        "flux_per_pixel" (the sky subtracted from `flux`), "uncertainty_flux_per_pixel" (1σ),
        "method" and "detail" (`SkyEstimate`'s words), "value_text" and "uncertainty_text" (in the
        image's units), "units_text", "text" (the report's sentence).

    Raises
    ------
    pidoc.sky.SkyUndeterminedError
        When nothing decides the sky; the message names the file and says what to give.
    ObservationError
        For conflicting or invalid settings.
    """
    path = image["path"]
    given = [name for name, value in (("--background", background), ("--background-region", background_region),
                                      ("--background-outside-arcsec", background_outside_arcsec)) if value is not None]
    if len(given) > 1:
        raise ObservationError(f"{path}: give one of {', '.join(given)} for the sky, not several")
    pixel_area_arcsec2 = image["pixel_area_arcsec2"]
    pixel_scale_arcsec = image["pixel_scale_arcsec"]
    rows, columns = flux.shape
    on_image = -0.5 <= centre_pixel[0] <= columns - 0.5 and -0.5 <= centre_pixel[1] <= rows - 0.5
    if not on_image and not given:
        raise SkyUndeterminedError(
            f"{path}: the cluster's centre lies off this image (at pixel ({centre_pixel[0]:.0f}, {centre_pixel[1]:.0f}) of "
            f"a {columns}×{rows} image), so its sky cannot be fitted as a cluster profile plus a constant; give its sky "
            "with --background VALUE (in the image's units per pixel, 0 if already subtracted; one value per image) or "
            "a sky-only box with --background-region x0 x1 y0 y1")
    # The centre is only used by the profile fit; a user's value or region does not need it on the image,
    # but estimate_sky checks it, so the nearest point of the image stands in for it there.
    fit_centre = (min(max(centre_pixel[0], -0.5), columns - 0.5), min(max(centre_pixel[1], -0.5), rows - 0.5))
    region = background_region
    if background_outside_arcsec is not None:
        if not (np.isfinite(background_outside_arcsec) and background_outside_arcsec >= 0):
            raise ObservationError(f"{path}: --background-outside-arcsec must be a non-negative number of arcsec, "
                                   f"got {background_outside_arcsec}")
        region = radius_from_pixel_arcsec(flux.shape, centre_pixel, pixel_scale_arcsec) > background_outside_arcsec
    background_flux = None
    if background is not None:
        if not np.isfinite(background):
            raise ObservationError(f"{path}: --background must be a finite number, got {background}")
        background_flux = float(flux_per_pixel(np.float64(background), calibration, pixel_area_arcsec2))
    try:
        estimate = estimate_sky(flux, fit_centre, pixel_scale_arcsec, header=list(image["headers"]),
                                background=background_flux, background_region=region,
                                saturation_level=saturation_flux_per_pixel(image["headers"], calibration, pixel_area_arcsec2),
                                source_name=str(path), reference_radius_arcsec=MAP_HALF_WIDTH_ARCSEC)
    except SkyUndeterminedError as error:
        # The fit ran on π-DOC's flux; say how its levels read in the image's units, which --background takes.
        if calibration["units"] == "mag/arcsec2":
            scale = "(the levels quoted are π-DOC's flux per pixel, L☉ kpc⁻²)"
        else:
            data_per_flux = float(data_from_flux_per_pixel(1.0, calibration, pixel_area_arcsec2))
            scale = (f"(the levels quoted are π-DOC's flux per pixel, L☉ kpc⁻²; multiply them by {data_per_flux:.6g} "
                     "for this image's data units)")
        raise SkyUndeterminedError(f"{error} {scale}; or, where the image reaches beyond the cluster, "
                                   "--background-outside-arcsec R to take the pixels beyond R″ of the centre as sky") from error
    except ValueError as error:
        # A bad region or value: name the file (estimate_sky names it only where it decides nothing).
        message = str(error)
        raise ObservationError(message if message.startswith(str(path)) else f"{path}: {message}") from error
    value_text, uncertainty_text, units_text = sky_in_data_units(estimate.value, estimate.uncertainty, calibration,
                                                                 pixel_area_arcsec2)
    if estimate.method == "user value":
        value_text = f"{background:.6g}"
        sureness = "as given (its uncertainty is the user's)"
    elif estimate.uncertainty == 0.0:
        sureness = "uncertainty not assessed (as recorded)"
    else:
        sureness = f"± {uncertainty_text} (1σ)"
    if background_outside_arcsec is not None:
        detail = f"the user's statement that the pixels beyond {background_outside_arcsec:g}″ of the centre are sky; {estimate.detail}"
    else:
        detail = estimate.detail
    return {
        "flux_per_pixel": float(estimate.value),
        "uncertainty_flux_per_pixel": float(estimate.uncertainty),
        "method": estimate.method,
        "detail": detail,
        "value_text": value_text,
        "uncertainty_text": uncertainty_text,
        "units_text": units_text,
        "text": f"{estimate.method}: {value_text} {units_text}, {sureness}; {detail}",
    }


# ==================================================================================================
# 4. Seeing and resampling
# ==================================================================================================
def seeing_kernel_fwhm_arcsec(psf_fwhm_arcsec, path=""):
    """FWHM of the Gaussian that takes a PSF of `psf_fwhm_arcsec` to π-DOC's 2.5″: √(2.5² − FWHM²).

    Raises ObservationError for a PSF broader than 2.5″: it cannot be sharpened without deconvolution,
    and π-DOC has never seen a blurrier map, so its answer would carry no meaning.
    """
    if not np.isfinite(psf_fwhm_arcsec) or psf_fwhm_arcsec < 0:
        raise ObservationError(f"{path}: the PSF FWHM must be a non-negative number of arcsec, got {psf_fwhm_arcsec}")
    if psf_fwhm_arcsec > TARGET_SEEING_FWHM_ARCSEC + 1e-9:
        raise ObservationError(
            f"{path}: the image PSF (FWHM {psf_fwhm_arcsec:.3g}″) is broader than π-DOC's {TARGET_SEEING_FWHM_ARCSEC}″ "
            "seeing; it cannot be matched without deconvolution and such a map lies outside π-DOC's training domain")
    return math.sqrt(max(TARGET_SEEING_FWHM_ARCSEC**2 - psf_fwhm_arcsec**2, 0.0))


def matched_seeing_error_arcsec(psf_fwhm_arcsec, relative_error=PSF_FWHM_RELATIVE_ERROR):
    """How far the seeing of a map matched to 2.5″ moves when the image's PSF FWHM is off by `relative_error`.

    The kernel √(2.5² − f²) is computed from the stated FWHM f while the image's true FWHM is
    f (1 ± ε), so the map's seeing is √(2.5² + f² ((1 ± ε)² − 1)); returned is the larger of the two
    departures from 2.5″, about f² ε / 2.5: 0.0002″ for an HST PSF of 0.1″ at ε = 5 %, 0.12″ for
    a ground-based PSF of 2.4″.
    """
    if not np.isfinite(relative_error) or not 0.0 <= relative_error < 1.0:
        raise ObservationError(f"the relative error of the PSF FWHM must lie in [0, 1), got {relative_error}")
    departures = []
    for sign in (-1.0, 1.0):
        squared = TARGET_SEEING_FWHM_ARCSEC**2 + psf_fwhm_arcsec**2 * ((1.0 + sign * relative_error) ** 2 - 1.0)
        departures.append(abs(math.sqrt(max(squared, 0.0)) - TARGET_SEEING_FWHM_ARCSEC))
    return max(departures)


def map_pixel_noise(pixel_noise, pixel_scale_arcsec, psf_fwhm_arcsec):
    """1σ noise of one pixel of π-DOC's map, from the 1σ noise of one pixel of the image it is made from.

    The image's noise, independent from pixel to pixel, is smoothed by the kernel that takes its PSF
    to 2.5″ and summed into 0.25″ pixels. The variance of a sum of white noise over an area falls
    as the inverse of the area it is spread over: a 0.25″ pixel (q²), an image pixel (p²) and a
    Gaussian kernel of standard deviation σ (4πσ² for the sum of its squared weights) add their
    areas, so Var = (σ_pix² / p²) q⁴ / (q² + p² + 4πσ²). The three limits are exact (no kernel and
    fine pixels: q²/p² image pixels summed; coarse pixels: each map pixel a fraction q²/p² of one;
    a broad kernel: ∑K² = 1 / (4πσ²)); tests/test_observations.py checks it against the pipeline.

    Parameters
    ----------
    pixel_noise : float
        1σ per image pixel (any flux unit; the result is in the same unit per 0.25″ pixel).
    pixel_scale_arcsec, psf_fwhm_arcsec : float
        The image's pixel scale and PSF FWHM.
    """
    kernel_sigma_arcsec = seeing_kernel_fwhm_arcsec(psf_fwhm_arcsec) / FWHM_PER_SIGMA
    area_arcsec2 = PIXEL_SCALE_ARCSEC**2 + pixel_scale_arcsec**2 + 4.0 * math.pi * kernel_sigma_arcsec**2
    return float(pixel_noise / pixel_scale_arcsec * PIXEL_SCALE_ARCSEC**2 / math.sqrt(area_arcsec2))


def noise_tolerance_for(psf_fwhm_arcsec):
    """The noise tolerance (mag arcsec⁻² per 0.25″ pixel) of a map made from an image of this PSF.

    A kernel of 2″ or more (PSF ≤ 1.5″) smooths the noise nearly as the 2.5″ seeing would, and the
    correlated figure applies; a narrower kernel leaves the noise nearly white, and the stricter
    white figure applies.
    """
    kernel_fwhm_arcsec = seeing_kernel_fwhm_arcsec(psf_fwhm_arcsec)
    return (CORRELATED_NOISE_TOLERANCE_MAG_ARCSEC2 if kernel_fwhm_arcsec >= NOISE_CORRELATED_KERNEL_FWHM_ARCSEC
            else WHITE_NOISE_TOLERANCE_MAG_ARCSEC2)


def default_psf_fwhm_arcsec(headers):
    """The per-instrument default of `DEFAULT_PSF_FWHM_ARCSEC`, or None."""
    telescope = str(header_value(headers, "TELESCOP", "")).strip().upper()
    instrument = str(header_value(headers, "INSTRUME", "")).strip().upper()
    return DEFAULT_PSF_FWHM_ARCSEC.get((telescope, instrument))


def gaussian_kernel(sigma_pixels_x, sigma_pixels_y):
    """A normalised 2-D Gaussian kernel, truncated at 4σ, shape (rows, columns)."""
    half_x = max(int(math.ceil(4.0 * sigma_pixels_x)), 1)
    half_y = max(int(math.ceil(4.0 * sigma_pixels_y)), 1)
    x = np.arange(-half_x, half_x + 1)
    y = np.arange(-half_y, half_y + 1)
    kernel = np.exp(-0.5 * (y[:, None] / sigma_pixels_y) ** 2) * np.exp(-0.5 * (x[None, :] / sigma_pixels_x) ** 2)
    return kernel / kernel.sum()


def convolve_to_seeing(flux, kernel_fwhm_arcsec, pixel_scales_arcsec):
    """Convolve with a Gaussian of `kernel_fwhm_arcsec`, normalised by the valid-pixel weight.

    Where every pixel under the kernel is valid this is the plain convolution (flux conserved). Bad
    (NaN) pixels are replaced by the kernel-weighted mean of their valid neighbours, and so are valid
    pixels near an edge of the data; bad pixels with less than half of the kernel's weight on valid
    data stay NaN (outside the image).
    """
    valid = np.isfinite(flux)
    if kernel_fwhm_arcsec <= 0:
        return np.where(valid, flux, np.nan)
    sigma_x = kernel_fwhm_arcsec / FWHM_PER_SIGMA / pixel_scales_arcsec[0]
    sigma_y = kernel_fwhm_arcsec / FWHM_PER_SIGMA / pixel_scales_arcsec[1]
    kernel = gaussian_kernel(sigma_x, sigma_y)
    smoothed_flux = signal.fftconvolve(np.where(valid, flux, 0.0), kernel, mode="same")
    valid_weight = signal.fftconvolve(valid.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = smoothed_flux / np.where(valid_weight > 1e-12, valid_weight, np.nan)
    # Inside the data the weight is 1 to rounding: keep the exact convolution there. A bad pixel with
    # less than half of the kernel's weight on valid data stays NaN (it is outside the image).
    normalised = np.where(valid | (valid_weight > 0.5), normalised, np.nan)
    return np.where(np.abs(valid_weight - 1.0) < 1e-6, smoothed_flux, normalised)


def frame_wcs(centre):
    """π-DOC's frame: TAN, 160×160 pixels of 0.25″, north up, east left, centred on `centre` (SkyCoord)."""
    centre = centre.icrs
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [centre.ra.deg, centre.dec.deg]
    # The cluster centre at the corner shared by the four central pixels, 1-based pixel 80.5.
    wcs.wcs.crpix = [0.5 * MAP_PIXELS + 0.5, 0.5 * MAP_PIXELS + 0.5]
    wcs.wcs.cdelt = [-PIXEL_SCALE_ARCSEC / 3600.0, PIXEL_SCALE_ARCSEC / 3600.0]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.array_shape = (MAP_PIXELS, MAP_PIXELS)
    return wcs


def resample_to_frame(flux, wcs, target_wcs, pixel_area_arcsec2):
    """Flux-conserving resampling onto `target_wcs` (160×160); NaN input counts as no flux.

    `reproject` conserves surface brightness by default, which would return (0.25/s)² times too
    little or too much flux. Images with pixels finer than 0.25″ are binned down with
    `reproject_adaptive(conserve_flux=True)`, which scales each output pixel by the Jacobian of the
    mapping, SIP distortion included. Images with pixels of 0.25″ or coarser are interpolated:
    their anti-aliasing kernel would add a blur of about one input pixel (a 0.5″ image then moved
    π-DOC's distance by +1.0 kpc at 15 and 30 kpc), while bicubic interpolation of the surface
    brightness, times the 0.0625 arcsec² pixel, of a map already smoothed to 2.5″ keeps the flux to
    0.1–0.5 % and π-DOC's answers to 0.01 kpc (measured here; docs/observations.md).
    """
    from reproject import reproject_adaptive, reproject_interp

    clean = np.where(np.isfinite(flux), flux, 0.0)
    if pixel_area_arcsec2 >= PIXEL_SCALE_ARCSEC**2:
        surface_brightness, _ = reproject_interp((clean / pixel_area_arcsec2, wcs), target_wcs,
                                                 shape_out=(MAP_PIXELS, MAP_PIXELS), order="bicubic")
        resampled = surface_brightness * PIXEL_SCALE_ARCSEC**2
    else:
        resampled, _ = reproject_adaptive((clean, wcs), target_wcs, shape_out=(MAP_PIXELS, MAP_PIXELS),
                                          conserve_flux=True, kernel=RESAMPLING_KERNEL, boundary_mode="strict")
    return np.where(np.isfinite(resampled), resampled, 0.0)


def covered_fraction_per_pixel(valid, wcs, target_wcs):
    """Fraction of each frame pixel that falls on valid image pixels (0 outside the image)."""
    from reproject import reproject_adaptive

    fraction, _ = reproject_adaptive((valid.astype(np.float64), wcs), target_wcs, shape_out=(MAP_PIXELS, MAP_PIXELS),
                                     conserve_flux=False, boundary_mode="strict")
    return np.clip(np.where(np.isfinite(fraction), fraction, 0.0), 0.0, 1.0)


def fill_gaps_by_point_reflection(flux_map, covered):
    """Fill uncovered frame pixels: by point reflection about the centre, else by the annulus mean.

    The frame centre is the corner shared by pixels 79 and 80, so pixel (i, j) reflects onto
    (159 − i, 159 − j). A cluster is, to first order, symmetric under this reflection (any projected
    ellipsoid is). Pixels whose mirror is uncovered too take the mean of the covered pixels at the same
    radius (1-pixel annuli); with none, the empty-pixel floor.

    Returns
    -------
    filled : numpy.ndarray (160, 160)
    counts : dict
        "reflected", "annulus_mean", "floor": how many pixels each rule filled.
    """
    filled = np.array(flux_map, dtype=np.float64)
    mirror_covered = covered[::-1, ::-1]
    reflected = ~covered & mirror_covered
    filled[reflected] = flux_map[::-1, ::-1][reflected]
    still_missing = ~covered & ~mirror_covered
    centre = 0.5 * MAP_PIXELS - 0.5
    rows, columns = np.indices(flux_map.shape)
    annulus = np.floor(np.hypot(rows - centre, columns - centre)).astype(int)
    annulus_sum = np.bincount(annulus[covered], weights=flux_map[covered], minlength=annulus.max() + 1)
    annulus_count = np.bincount(annulus[covered], minlength=annulus.max() + 1)
    annulus_mean = np.where(annulus_count > 0, annulus_sum / np.maximum(annulus_count, 1), np.nan)
    fill_values = annulus_mean[annulus[still_missing]]
    no_annulus = ~np.isfinite(fill_values)
    fill_values[no_annulus] = FLUX_FLOOR_LSUN_PER_KPC2
    filled[still_missing] = fill_values
    return filled, {"reflected": int(reflected.sum()), "annulus_mean": int((~no_annulus).sum()), "floor": int(no_annulus.sum())}


# ==================================================================================================
# 5. The whole chain: one image, or several combined onto π-DOC's frame
# ==================================================================================================
def calibrated_image(path, hdu=None, zeropoint_vega=None, ebv=0.0, units=None, psf_fwhm_arcsec=None):
    """Read one image and calibrate it on its own: units, exposure, zero point, extinction, PSF.

    Returns
    -------
    dict
        "image" (`read_image`), "calibration" (`photometric_calibration`), "flux" (linear V flux per
        image pixel, L☉ kpc⁻², extinction-corrected, sky not subtracted), "psf_fwhm_arcsec",
        "psf_source".

    Raises
    ------
    FileNotFoundError, ObservationError
        With the file named: unreadable, no WCS, unknown units or flux scale, no PSF, a PSF > 2.5″.
    """
    image = read_image(path, hdu)
    path = image["path"]
    headers = image["headers"]
    calibration = photometric_calibration(image, zeropoint_vega=zeropoint_vega, ebv=ebv, units=units)
    if psf_fwhm_arcsec is None:
        psf_fwhm_arcsec = default_psf_fwhm_arcsec(headers)
        psf_source = "instrument default"
        if psf_fwhm_arcsec is None:
            raise ObservationError(
                f"{path}: no default PSF for TELESCOP={header_value(headers, 'TELESCOP')!r}, "
                f"INSTRUME={header_value(headers, 'INSTRUME')!r}; give --psf-fwhm-arcsec (the seeing FWHM)")
    else:
        psf_source = "given"
    seeing_kernel_fwhm_arcsec(float(psf_fwhm_arcsec), path)   # refuses a PSF broader than 2.5″
    flux = flux_per_pixel(image["data"], calibration, image["pixel_area_arcsec2"])
    if not np.isfinite(flux).any():
        raise ObservationError(f"{path}: no pixel gives a finite flux after calibration")
    return {"image": image, "calibration": calibration, "flux": flux, "psf_fwhm_arcsec": float(psf_fwhm_arcsec),
            "psf_source": psf_source}


def per_image_settings(value, name, number_of_images, is_single_setting=None):
    """One setting per image: a single value for all, or a list of exactly one value per image."""
    is_single_setting = is_single_setting or (lambda item: not isinstance(item, (list, tuple)))
    if value is None or is_single_setting(value):
        return [value] * number_of_images
    values = list(value)
    if len(values) == 1:
        return values * number_of_images
    if len(values) != number_of_images:
        raise ObservationError(f"{name}: {len(values)} values for {number_of_images} images; give one for all, or one per image")
    return values


def is_single_region(region):
    """True for None, a boolean mask or one (x0, x1, y0, y1) box; False for a list of per-image regions."""
    if region is None or isinstance(region, np.ndarray):
        return True
    return len(region) == 4 and all(np.isscalar(bound) for bound in region)


def footprint_distance_arcsec(image, centre):
    """How far the centre lies outside the image's pixel rectangle, in arcsec (0 when on it)."""
    centre_x, centre_y = (float(value) for value in image["wcs"].world_to_pixel(centre))
    rows, columns = image["data"].shape
    outside_x = max(-0.5 - centre_x, centre_x - (columns - 0.5), 0.0)
    outside_y = max(-0.5 - centre_y, centre_y - (rows - 0.5), 0.0)
    return math.hypot(outside_x, outside_y) * image["pixel_scale_arcsec"]


def resample_onto_grid(flux, wcs, grid_wcs, grid_shape, pixel_area_arcsec2, grid_pixel_area_arcsec2):
    """Flux-conserving resampling of one image onto another pixel grid, with its valid-pixel mask.

    `reproject` conserves surface brightness, not flux (astropy/reproject #42, #68, #237): images
    finer than the grid are binned with `reproject_adaptive(conserve_flux=True)`; others are
    interpolated in surface brightness and multiplied by the grid's pixel area (as
    `resample_to_frame`). Either way the valid-pixel mask is resampled alike and the flux divided by
    the covered fraction of each grid pixel, so a pixel half on the image keeps its full flux
    density instead of half of it; grid pixels less than half covered are invalid.

    Returns
    -------
    flux_on_grid : numpy.ndarray
        Flux per grid pixel (L☉ kpc⁻²), NaN where invalid.
    valid : numpy.ndarray of bool
    """
    from reproject import reproject_adaptive, reproject_interp

    valid_input = np.isfinite(flux)
    clean = np.where(valid_input, flux, 0.0)
    if pixel_area_arcsec2 >= grid_pixel_area_arcsec2:
        surface_brightness, _ = reproject_interp((clean / pixel_area_arcsec2, wcs), grid_wcs, shape_out=grid_shape, order="bicubic")
        fraction, _ = reproject_interp((valid_input.astype(np.float64), wcs), grid_wcs, shape_out=grid_shape, order="bicubic")
        resampled = surface_brightness * grid_pixel_area_arcsec2
    else:
        resampled, _ = reproject_adaptive((clean, wcs), grid_wcs, shape_out=grid_shape, conserve_flux=True,
                                          kernel=RESAMPLING_KERNEL, boundary_mode="strict")
        fraction, _ = reproject_adaptive((valid_input.astype(np.float64), wcs), grid_wcs, shape_out=grid_shape,
                                         conserve_flux=False, kernel=RESAMPLING_KERNEL, boundary_mode="strict")
    fraction = np.where(np.isfinite(fraction), fraction, 0.0)
    valid = fraction >= PIXEL_COVERED_THRESHOLD
    with np.errstate(invalid="ignore", divide="ignore"):
        flux_on_grid = np.where(valid & np.isfinite(resampled), resampled / np.where(valid, fraction, 1.0), np.nan)
    return flux_on_grid, valid & np.isfinite(flux_on_grid)


def check_same_band(records):
    """Refuse images of different filters: π-DOC reads V light, and one map must be of one band."""
    bands = {str(record["image"]["path"]) + f" (HDU {record['image']['hdu_label']})": record["calibration"]["filter"]
             for record in records if record["calibration"]["filter"] is not None}
    if len(set(bands.values())) > 1:
        listed = "; ".join(f"{name}: {band}" for name, band in bands.items())
        raise ObservationError(f"the images are of different bands ({listed}); combine images of one band only "
                               "(each is converted to V with its own colour term, which differ by up to 0.2 mag)")


def images_to_pidoc_map(sources, ra_deg=None, dec_deg=None, ebv=0.0, zeropoint_vega=None, psf_fwhm_arcsec=None,
                        background=None, background_region=None, background_outside_arcsec=None, units=None,
                        verbose=True, psf_fwhm_relative_error=PSF_FWHM_RELATIVE_ERROR):
    """Turn one or several FITS images of one cluster into π-DOC's input map; nothing is written.

    Each image (a chip, an exposure, a pointing; several HDUs of one file count as several images) is
    calibrated on its own: its units, exposure time, zero point and sky. With several images they are
    first matched to the broadest of their PSFs, then resampled flux-conserving onto the pixel grid of
    the image that holds the centre (the first such), where overlaps are averaged (mean of the
    covering images' flux per pixel); the mosaic is then convolved to π-DOC's 2.5″ seeing and
    resampled onto the frame as one image is. Convolving after mosaicking keeps the seams between
    chips invisible (a chip convolved alone would miss the light beyond its edge).

    Parameters
    ----------
    sources : list of str, Path or (path, hdu)
        The images; `hdu` (index or EXTNAME) selects an HDU, default the first 2-D image.
    ra_deg, dec_deg : float, optional
        Cluster centre (ICRS, degrees); both or neither. Default: the light-weighted centre of the
        first image.
    ebv : float
        E(B−V) in mag (A_V = 3.1 E(B−V)), the same for all images; default 0.
    zeropoint_vega, psf_fwhm_arcsec, background, units : value or list, optional
        One for all images, or one per image (see `image_to_pidoc_map` for each).
    background_region : (x0, x1, y0, y1), boolean mask, or a list of them (or None) per image, optional
        Pixels of the image that hold only sky (0-based bounds, x1 and y1 excluded).
    background_outside_arcsec : float, optional
        The user's statement that the pixels farther than this from the centre are sky (every image).
    psf_fwhm_relative_error : float
        How well the PSF FWHM is known (default `PSF_FWHM_RELATIVE_ERROR`): a map whose matched seeing
        this error would move by more than `SEEING_TOLERANCE_ARCSEC` gets a domain reason.

    Returns
    -------
    dict
        As `image_to_pidoc_map`, and "sources" (per image: path, HDU, sky dict), "images_per_pixel"
        (160, 160) number of images covering each frame pixel, "coverage_by_image_count" (number of
        images → fraction of the frame).

    Raises
    ------
    FileNotFoundError, ObservationError, pidoc.sky.SkyUndeterminedError
        All ValueError but the first; each message names the file. Several images are refused when
        one has no WCS, the bands differ, an image lies farther from the centre than π-DOC's frame
        reaches (an image of another field or cluster), or the same image is given twice.
    """
    sources = [source if isinstance(source, tuple) else (source, None) for source in sources]
    number_of_images = len(sources)
    if number_of_images == 0:
        raise ObservationError("no image given")
    matched_seeing_error_arcsec(0.0, psf_fwhm_relative_error)           # refuses an impossible error at once
    zeropoints = per_image_settings(zeropoint_vega, "--zeropoint-vega", number_of_images)
    psfs = per_image_settings(psf_fwhm_arcsec, "--psf-fwhm-arcsec", number_of_images)
    backgrounds = per_image_settings(background, "--background", number_of_images)
    unit_list = per_image_settings(units, "--units", number_of_images)
    if number_of_images > 1 and background_region is not None and is_single_region(background_region):
        raise ObservationError(f"--background-region: one box for {number_of_images} images; a box is in one image's "
                               "pixels, so give one box (x0 x1 y0 y1) per image")
    regions = per_image_settings(background_region, "--background-region", number_of_images, is_single_region)

    # Calibration before anything else, so that bad units fail fast.
    records = []
    for (path, hdu), zeropoint, psf, unit in zip(sources, zeropoints, psfs, unit_list):
        records.append(calibrated_image(path, hdu, zeropoint_vega=zeropoint, ebv=ebv, units=unit, psf_fwhm_arcsec=psf))
        record = records[-1]
        if (ra_deg is None) != (dec_deg is None):
            raise ObservationError(f"{record['image']['path']}: give both --ra and --dec, or neither")
    seen = {}
    for record in records:
        key = (record["image"]["path"].resolve(), record["image"]["hdu_label"])
        if key in seen:
            raise ObservationError(f"{record['image']['path']}: HDU {record['image']['hdu_label']} is given twice")
        seen[key] = True
    if number_of_images > 1:
        check_same_band(records)

    # Centre: given, or a first light-weighted guess on the first image (sky taken as the median),
    # refined once its sky is subtracted.
    first = records[0]
    first_image = first["image"]
    if ra_deg is not None:
        centre = SkyCoord(float(ra_deg) * u.deg, float(dec_deg) * u.deg, frame="icrs")
        centre_pixel = tuple(float(value) for value in first_image["wcs"].world_to_pixel(centre))
        centre_source = "given (--ra/--dec)"
    else:
        median_flux = float(np.nanmedian(first["flux"]))
        try:
            centre_pixel = light_weighted_centre_pixel(first["flux"] - median_flux, first_image["pixel_scale_arcsec"])
        except ValueError as error:
            raise ObservationError(f"{first_image['path']}: cannot find a light-weighted centre ({error}); give --ra/--dec") from error
        centre = first_image["wcs"].pixel_to_world(*centre_pixel).icrs
    rows, columns = first["flux"].shape
    on_first_image = -0.5 <= centre_pixel[0] <= columns - 0.5 and -0.5 <= centre_pixel[1] <= rows - 0.5
    if number_of_images == 1 and not on_first_image:
        where = f"RA {ra_deg:.5f}°, Dec {dec_deg:.5f}°" if ra_deg is not None else "light-weighted"
        raise ObservationError(
            f"{first_image['path']}: the centre ({where}) falls outside the image, at pixel "
            f"({centre_pixel[0]:.0f}, {centre_pixel[1]:.0f}) of a {columns}×{rows} image")
    if number_of_images > 1:
        # An image whose nearest pixel lies beyond the frame's corners cannot add to the frame: it is of
        # another field (or cluster), or the centre is wrong.
        for record in records:
            distance_arcsec = footprint_distance_arcsec(record["image"], centre)
            if distance_arcsec > FRAME_HALF_DIAGONAL_ARCSEC:
                raise ObservationError(
                    f"{record['image']['path']}: the image lies {distance_arcsec:.0f}″ from the cluster centre "
                    f"(RA {centre.ra.deg:.5f}°, Dec {centre.dec.deg:.5f}°, {centre_source if ra_deg is not None else 'light-weighted centre of the first image'}), "
                    f"beyond π-DOC's 40″×40″ frame about it: an image of another field or cluster? Give images of one "
                    "cluster, or its --ra/--dec")

    # Sky of every image, in its own units, then subtracted; the light-weighted centre is refined on
    # the first image once its sky is gone.
    skies = [None] * number_of_images
    skies[0] = determine_sky(first_image, first["flux"], first["calibration"], centre_pixel, backgrounds[0], regions[0],
                             background_outside_arcsec)
    first["flux"] = first["flux"] - skies[0]["flux_per_pixel"]
    if ra_deg is None:
        centre_pixel = light_weighted_centre_pixel(first["flux"], first_image["pixel_scale_arcsec"], start_pixel=centre_pixel)
        centre = first_image["wcs"].pixel_to_world(*centre_pixel).icrs
        centre_source = ("light-weighted centre of the image (no --ra/--dec given)" if number_of_images == 1
                         else "light-weighted centre of the first image (no --ra/--dec given)")
    for index in range(1, number_of_images):
        record = records[index]
        pixel = tuple(float(value) for value in record["image"]["wcs"].world_to_pixel(centre))
        skies[index] = determine_sky(record["image"], record["flux"], record["calibration"], pixel, backgrounds[index],
                                     regions[index], background_outside_arcsec)
        record["flux"] = record["flux"] - skies[index]["flux_per_pixel"]

    # Noise: each image's pixel scatter where it is faintest, carried to a 0.25″ pixel of the map
    # through its whole smoothing to 2.5″ (map_pixel_noise). Where images overlap their mean is less
    # noisy; the noisiest image is what the map is taken to carry, so the figure is an upper bound.
    map_noises = []
    for record in records:
        try:
            image_noise = estimate_pixel_noise(record["flux"])
        except ValueError:
            continue
        map_noises.append(map_pixel_noise(image_noise, record["image"]["pixel_scale_arcsec"], record["psf_fwhm_arcsec"]))
    noise_mag_arcsec2 = None                                   # no image had enough pixels to tell
    if map_noises:
        # A map without noise is infinitely faint in it (log10 0 would warn).
        noise_mag_arcsec2 = (float(surface_brightness_from_flux_per_pixel(max(map_noises), PIXEL_SCALE_ARCSEC**2))
                             if max(map_noises) > 0 else math.inf)

    # Seeing: every image to the broadest PSF among them first (several images only), then the
    # mosaic to π-DOC's 2.5″.
    broadest_psf_arcsec = max(record["psf_fwhm_arcsec"] for record in records)
    kernel_fwhm_arcsec = seeing_kernel_fwhm_arcsec(broadest_psf_arcsec, first_image["path"])
    noise_tolerance_mag_arcsec2 = noise_tolerance_for(broadest_psf_arcsec)
    kernel_sigma_arcsec = kernel_fwhm_arcsec / FWHM_PER_SIGMA
    cutout_size_arcsec = 2.0 * (FRAME_HALF_DIAGONAL_ARCSEC + 4.0 * kernel_sigma_arcsec + 2.0)
    target_wcs = frame_wcs(centre)
    if number_of_images == 1:
        # Work on a cutout that holds the frame plus the kernel's reach; outside the image it is NaN.
        reference_index = 0
        cutout = Cutout2D(first["flux"], centre, cutout_size_arcsec * u.arcsec, wcs=first_image["wcs"], mode="partial",
                          fill_value=np.nan, copy=True)
        grid_flux, grid_wcs = cutout.data, cutout.wcs
        valid = np.isfinite(grid_flux)
        images_valid_on_grid = [valid]
    else:
        on_image = [footprint_distance_arcsec(record["image"], centre) == 0.0 for record in records]
        reference_index = on_image.index(True) if any(on_image) else 0
        reference = records[reference_index]["image"]
        grid = Cutout2D(np.zeros(records[reference_index]["flux"].shape, dtype=np.float32), centre,
                        cutout_size_arcsec * u.arcsec, wcs=reference["wcs"], mode="partial", fill_value=0.0, copy=True)
        grid_wcs, grid_shape = grid.wcs, grid.data.shape
        grid_pixel_area_arcsec2 = reference["pixel_area_arcsec2"]
        flux_sum = np.zeros(grid_shape)
        image_count = np.zeros(grid_shape, dtype=np.int64)
        images_valid_on_grid = []
        for index, record in enumerate(records):
            matching_fwhm_arcsec = math.sqrt(max(broadest_psf_arcsec**2 - record["psf_fwhm_arcsec"]**2, 0.0))
            flux = (convolve_to_seeing(record["flux"], matching_fwhm_arcsec, record["image"]["pixel_scales_arcsec"])
                    if matching_fwhm_arcsec > 0 else record["flux"])
            if index == reference_index:
                on_grid = Cutout2D(flux, centre, cutout_size_arcsec * u.arcsec, wcs=reference["wcs"], mode="partial",
                                   fill_value=np.nan, copy=True).data
                image_valid = np.isfinite(on_grid)
            else:
                on_grid, image_valid = resample_onto_grid(flux, record["image"]["wcs"], grid_wcs, grid_shape,
                                                          record["image"]["pixel_area_arcsec2"], grid_pixel_area_arcsec2)
            flux_sum[image_valid] += on_grid[image_valid]
            image_count[image_valid] += 1
            images_valid_on_grid.append(image_valid)
        valid = image_count > 0
        # Overlaps: the mean of the covering images' flux per pixel.
        grid_flux = np.where(valid, flux_sum / np.maximum(image_count, 1), np.nan)
    grid_pixel_scales_arcsec = records[reference_index]["image"]["pixel_scales_arcsec"]
    grid_pixel_area_arcsec2 = records[reference_index]["image"]["pixel_area_arcsec2"]
    smoothed = convolve_to_seeing(grid_flux, kernel_fwhm_arcsec, grid_pixel_scales_arcsec)

    covered_fraction_map = covered_fraction_per_pixel(valid, grid_wcs, target_wcs)
    covered = covered_fraction_map >= PIXEL_COVERED_THRESHOLD
    covered_fraction = float(covered.mean())
    if number_of_images == 1:
        images_per_pixel = covered.astype(np.int64)
    else:
        images_per_pixel = np.zeros((MAP_PIXELS, MAP_PIXELS), dtype=np.int64)
        for record, image_valid in zip(records, images_valid_on_grid):
            image_covers = covered_fraction_per_pixel(image_valid, grid_wcs, target_wcs) >= PIXEL_COVERED_THRESHOLD
            if not image_covers.any():
                raise ObservationError(f"{record['image']['path']}: the image adds no pixel to π-DOC's 40″×40″ frame about "
                                       f"the centre (RA {centre.ra.deg:.5f}°, Dec {centre.dec.deg:.5f}°); leave it out, or "
                                       "check the centre")
            images_per_pixel += image_covers
    coverage_by_image_count = {int(count): float((images_per_pixel == count).mean())
                               for count in range(1, int(images_per_pixel.max()) + 1) if (images_per_pixel == count).any()}
    if covered_fraction < MINIMUM_COVERED_FRACTION:
        names = ", ".join(str(record["image"]["path"]) for record in records)
        raise ObservationError(
            f"{names}: the image{'s cover' if number_of_images > 1 else ' covers'} only {100 * covered_fraction:.1f} % of "
            f"π-DOC's 40″×40″ frame about the centre (minimum {100 * MINIMUM_COVERED_FRACTION:.0f} %); point reflection "
            "cannot complete it")
    flux_map = resample_to_frame(smoothed, grid_wcs, target_wcs, grid_pixel_area_arcsec2)
    fill_counts = {"reflected": 0, "annulus_mean": 0, "floor": 0}
    if covered_fraction < 1.0:
        flux_map, fill_counts = fill_gaps_by_point_reflection(flux_map, covered)
    domain_reasons = []
    seeing_error_arcsec = matched_seeing_error_arcsec(broadest_psf_arcsec, psf_fwhm_relative_error)
    if seeing_error_arcsec > SEEING_TOLERANCE_ARCSEC:
        domain_reasons.append(
            f"image PSF FWHM {broadest_psf_arcsec:.3g}″ too close to π-DOC's {TARGET_SEEING_FWHM_ARCSEC}″: a "
            f"{100 * psf_fwhm_relative_error:.0f} % error in it moves the matched seeing by {seeing_error_arcsec:.2f}″, "
            f"beyond the ±{SEEING_TOLERANCE_ARCSEC}″ within which the intervals were measured to hold")
    if noise_mag_arcsec2 is not None and noise_mag_arcsec2 < noise_tolerance_mag_arcsec2:
        domain_reasons.append(
            f"map noise {noise_mag_arcsec2:.1f} mag/arcsec² (1σ per 0.25″ pixel) brighter than the "
            f"{noise_tolerance_mag_arcsec2:g} mag/arcsec² within which the intervals were measured to hold")
    if covered_fraction < COMPLETE_COVERED_FRACTION:
        domain_reasons.append(
            f"frame {100 * covered_fraction:.0f} % covered by the image{'s' if number_of_images > 1 else ''}; "
            "gap filled by point reflection about the centre")
    non_positive = int((flux_map <= FLUX_FLOOR_LSUN_PER_KPC2).sum())
    log_flux_map = np.log10(np.maximum(flux_map, FLUX_FLOOR_LSUN_PER_KPC2)).astype(np.float32)

    total_flux = float(flux_map.sum())
    report = []
    for index, (record, sky) in enumerate(zip(records, skies)):
        image, calibration = record["image"], record["calibration"]
        tag = f" [{index + 1}]" if number_of_images > 1 else ""
        zeropoint_text = (f"V {calibration['zeropoint_v_mag']:.3f} mag for 1 unit/s; {calibration['zeropoint_source']}"
                          if calibration["zeropoint_v_mag"] is not None else calibration["zeropoint_source"])
        # How sure the sky is, in what it does to the map: 1σ of the sky per image pixel, over the frame's
        # 1,600 arcsec², against the light in the frame.
        frame_sky_uncertainty = sky["uncertainty_flux_per_pixel"] * (2.0 * MAP_HALF_WIDTH_ARCSEC) ** 2 / image["pixel_area_arcsec2"]
        sky_effect = (f"; 1σ of the sky over the frame is {100 * frame_sky_uncertainty / total_flux:.2g} % of the light in it"
                      if sky["uncertainty_flux_per_pixel"] > 0 and total_flux > 0 else "")
        report += [
            ("image" + tag, f"{image['path'].name}, HDU {image['hdu_label']}, {image['data'].shape[1]}×{image['data'].shape[0]} px "
                            f"of {image['pixel_scale_arcsec']:.4f}″"),
            ("units" + tag, calibration["units"] + (f" over EXPTIME {calibration['exposure_time_s']:g} s" if calibration["exposure_time_s"] else "")),
            ("filter" + tag, calibration["filter"] or "not given"),
            ("zero point" + tag, zeropoint_text),
        ]
        if number_of_images == 1:
            report.append(("extinction", f"E(B−V) = {calibration['ebv_mag']:.3f}, A_V = {calibration['extinction_v_mag']:.3f} mag"))
        report.append(("sky" + tag, sky["text"] + sky_effect))
        if number_of_images > 1:
            report.append(("PSF" + tag, f"image FWHM {record['psf_fwhm_arcsec']:.3f}″ ({record['psf_source']})"))
    calibration = first["calibration"]
    seeing_error_text = (f"; a {100 * psf_fwhm_relative_error:.0f} % error in the image FWHM moves the matched seeing "
                         f"by {seeing_error_arcsec:.3g}″ (tolerance ±{SEEING_TOLERANCE_ARCSEC}″)")
    if number_of_images > 1:
        report.append(("extinction", f"E(B−V) = {calibration['ebv_mag']:.3f}, A_V = {calibration['extinction_v_mag']:.3f} mag"))
    report.append(("centre", f"RA {centre.ra.deg:.6f}°, Dec {centre.dec.deg:.6f}° ({centre_source})"))
    if number_of_images == 1:
        report.append(("PSF", f"image FWHM {first['psf_fwhm_arcsec']:.3f}″ ({first['psf_source']}); kernel FWHM "
                              f"{kernel_fwhm_arcsec:.3f}″ to reach {TARGET_SEEING_FWHM_ARCSEC}″" + seeing_error_text))
        coverage_text = f"{100 * covered_fraction:.1f} % of the frame"
    else:
        reference = records[reference_index]["image"]
        report.append(("mosaic", f"{number_of_images} images on the pixel grid of image [{reference_index + 1}] "
                                 f"({reference['pixel_scale_arcsec']:.4f}″), each matched to the broadest PSF "
                                 f"({broadest_psf_arcsec:.3f}″) first; overlaps are the mean of the covering images' flux"))
        report.append(("PSF", f"kernel FWHM {kernel_fwhm_arcsec:.3f}″ from {broadest_psf_arcsec:.3f}″ to reach "
                              f"{TARGET_SEEING_FWHM_ARCSEC}″" + seeing_error_text))
        by_count = ", ".join(f"{100 * fraction:.1f} % by {count} image{'s' if count > 1 else ''}"
                             for count, fraction in coverage_by_image_count.items())
        coverage_text = f"{100 * covered_fraction:.1f} % of the frame by ≥ 1 image ({by_count})"
    if noise_mag_arcsec2 is None:
        noise_text = "not measured (too few pixels)"
    else:
        noise_text = (f"1σ per 0.25″ pixel of the map {noise_mag_arcsec2:.2f} mag/arcsec² (V), from the pixel scatter of the "
                      f"image{'s' if number_of_images > 1 else ''} where faintest, smoothed to {TARGET_SEEING_FWHM_ARCSEC}″"
                      f"{' (the noisiest image)' if number_of_images > 1 else ''}; the intervals hold for noise fainter than "
                      f"{noise_tolerance_mag_arcsec2:g}")
    report.append(("noise", noise_text))
    report += [
        ("coverage", coverage_text
                     + (f"; filled: {fill_counts['reflected']} px by reflection, {fill_counts['annulus_mean']} by annulus mean, "
                        f"{fill_counts['floor']} at the floor" if covered_fraction < 1.0 else "")),
        ("total flux in frame", f"{total_flux:.4g} L☉ kpc⁻² (V mag {-2.5 * math.log10(max(total_flux, 1e-300) / SUN_AT_10_PARSEC_FLUX_LSUN_PER_KPC2) + SOLAR_ABSOLUTE_MAGNITUDE_V:.2f}, extinction-corrected)"),
        ("pixels at the floor", f"{non_positive} (no light left after the sky)"),
    ]
    if verbose:
        for quantity, value in report:
            print(f"{quantity:>20}: {value}")
    return {
        "log_flux_map": log_flux_map,
        "frame_wcs": target_wcs,
        "centre": centre,
        "covered_fraction": covered_fraction,
        "covered_pixels": covered,
        "images_per_pixel": images_per_pixel,
        "coverage_by_image_count": coverage_by_image_count,
        "domain_reasons": domain_reasons,
        "noise_surface_brightness_mag_arcsec2": noise_mag_arcsec2,
        "report": report,
        "calibration": calibration,
        "psf_fwhm_arcsec": broadest_psf_arcsec,
        "kernel_fwhm_arcsec": kernel_fwhm_arcsec,
        "background_flux_per_pixel": skies[0]["flux_per_pixel"],
        "sky": skies,
        "sources": [{"path": record["image"]["path"], "hdu_label": record["image"]["hdu_label"], "sky": sky}
                    for record, sky in zip(records, skies)],
        "cutout": {"flux": grid_flux, "wcs": grid_wcs},
        "source_path": first_image["path"],
    }


def image_to_pidoc_map(path, ra_deg=None, dec_deg=None, hdu=None, zeropoint_vega=None, ebv=0.0,
                       psf_fwhm_arcsec=None, background=None, units=None, verbose=True, background_region=None,
                       background_outside_arcsec=None, psf_fwhm_relative_error=PSF_FWHM_RELATIVE_ERROR):
    """Turn a FITS image into π-DOC's input map; nothing is written.

    Parameters
    ----------
    path : str or Path
        The FITS image.
    ra_deg, dec_deg : float, optional
        Cluster centre (ICRS, degrees); both or neither. Default: the light-weighted centre.
    hdu : int or str, optional
        Image HDU; default the first 2-D image.
    zeropoint_vega : float, optional
        V (Vega) magnitude of one data unit per second; default from PHOTFLAM/PHOTPLAM.
    ebv : float
        E(B−V) in mag (A_V = 3.1 E(B−V)); default 0.
    psf_fwhm_arcsec : float, optional
        FWHM of the image's PSF; default per instrument (`DEFAULT_PSF_FWHM_ARCSEC`).
    background : float, optional
        Sky level in the image's data units (a number in mag arcsec⁻² for a surface-brightness image).
    background_region : (x0, x1, y0, y1) or boolean mask, optional
        Pixels that hold only sky (0-based bounds, x1 and y1 excluded).
    background_outside_arcsec : float, optional
        The pixels farther than this from the centre hold only sky (the user's statement).
        Without any of the three: a header keyword that proves the sky subtracted, else a fit of a
        cluster profile plus a constant (`pidoc.sky.estimate_sky`); where that does not pin the sky
        down, `SkyUndeterminedError` says what to give.
    units : str, optional
        Overrides BUNIT ('counts', 'counts/s' or 'mag/arcsec2').
    psf_fwhm_relative_error : float
        How well `psf_fwhm_arcsec` is known (see `images_to_pidoc_map`).

    Returns
    -------
    dict
        "log_flux_map" (160, 160) float32, log10 F in L☉ kpc⁻²; "frame_wcs"; "centre" (SkyCoord);
        "covered_fraction"; "domain_reasons" (list of str, empty when none); "report" (an ordered list
        of (quantity, value) for the table); "calibration"; "sky" (one dict per image,
        `determine_sky`); "cutout" (sky-subtracted flux per image pixel around the centre, with its WCS,
        for the figure).
    """
    return images_to_pidoc_map([(path, hdu)], ra_deg=ra_deg, dec_deg=dec_deg, ebv=ebv, zeropoint_vega=zeropoint_vega,
                               psf_fwhm_arcsec=psf_fwhm_arcsec, background=background, background_region=background_region,
                               background_outside_arcsec=background_outside_arcsec, units=units, verbose=verbose,
                               psf_fwhm_relative_error=psf_fwhm_relative_error)


def image_hdu_indices(path):
    """Indices of every HDU of a FITS file that holds a 2-D image (for `--all-hdus`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    try:
        with fits.open(path, memmap=False) as hdulist:
            indices = [index for index, candidate in enumerate(hdulist) if is_two_dimensional_image(candidate)]
    except OSError as error:
        raise ObservationError(f"{path}: not a readable FITS file ({error})") from error
    if not indices:
        raise ObservationError(f"{path}: no HDU holds a 2-D image")
    return indices


def expand_sources(paths, hdus=None, all_hdus=False):
    """The (path, hdu) images of a run: several files, several HDUs of one file, or both.

    Parameters
    ----------
    paths : list of str or Path
    hdus : list of (int or str), optional
        One HDU for every file, one per file, or (with one file) several HDUs of it.
    all_hdus : bool
        Every 2-D image HDU of every file (not with `hdus`).
    """
    paths = [Path(path) for path in paths]
    if all_hdus:
        if hdus:
            raise ObservationError("give --hdu or --all-hdus, not both")
        return [(path, index) for path in paths for index in image_hdu_indices(path)]
    if not hdus:
        return [(path, None) for path in paths]
    hdus = list(hdus)
    if len(hdus) == 1:
        return [(path, hdus[0]) for path in paths]
    if len(paths) == 1:
        return [(paths[0], hdu) for hdu in hdus]
    if len(hdus) == len(paths):
        return list(zip(paths, hdus))
    raise ObservationError(f"--hdu: {len(hdus)} HDUs for {len(paths)} files; give one HDU for all files, one per file, "
                           "or several HDUs of one file")


# The figure's view of the image is binned to at most this many pixels a side: it is for the eye, and
# it keeps what a catalogue's workers send back small (≤ 0.4 MB per cluster).
DISPLAY_MAXIMUM_PIXELS = 320


def display_cutout(result, maximum_pixels=DISPLAY_MAXIMUM_PIXELS):
    """The sky-subtracted image around the centre, block-averaged for display, and π-DOC's frame on it.

    Returns
    -------
    dict
        "flux" (float32, NaN where no image), "frame_outline_xy" (x, y) of the frame's corners in
        the display image's pixels, closed.
    """
    flux = np.asarray(result["cutout"]["flux"], dtype=np.float64)
    factor = max(1, int(math.ceil(max(flux.shape) / maximum_pixels)))
    rows, columns = (size // factor * factor for size in flux.shape)
    blocks = flux[:rows, :columns].reshape(rows // factor, factor, columns // factor, factor)
    finite = np.isfinite(blocks)
    counts = finite.sum(axis=(1, 3))
    sums = np.where(finite, blocks, 0.0).sum(axis=(1, 3))
    binned = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
    corners = np.array([[-0.5, -0.5], [MAP_PIXELS - 0.5, -0.5], [MAP_PIXELS - 0.5, MAP_PIXELS - 0.5],
                        [-0.5, MAP_PIXELS - 0.5], [-0.5, -0.5]])
    corner_x, corner_y = result["cutout"]["wcs"].world_to_pixel(result["frame_wcs"].pixel_to_world(corners[:, 0], corners[:, 1]))
    # A block of `factor` pixels starting at 0 has its centre at (factor − 1) / 2.
    return {"flux": binned, "frame_outline_xy": ((np.asarray(corner_x) + 0.5) / factor - 0.5,
                                                 (np.asarray(corner_y) + 0.5) / factor - 0.5)}


# ==================================================================================================
# 6. Writing the input map
# ==================================================================================================
ASCII_REPLACEMENTS = {"″": '"', "×": "x", "°": " deg", "☉": "sun", "⁻²": "^-2", "⁻¹": "^-1", "−": "-", "σ": "sigma",
                      "μ": "mu", "√": "sqrt", "²": "^2", "≥": ">=", "≤": "<=", "Δ": "d", "π": "pi", "—": "-", "–": "-"}


def ascii_text(text):
    """`text` with the few non-ASCII symbols of the report spelled in ASCII (FITS headers are ASCII)."""
    for symbol, replacement in ASCII_REPLACEMENTS.items():
        text = text.replace(symbol, replacement)
    return text.encode("ascii", "replace").decode("ascii")


def input_map_header(result):
    """FITS header of the input map: the frame's WCS and how the map was made."""
    header = result["frame_wcs"].to_header()
    header["BUNIT"] = ("log10(Lsun/kpc2)", "V flux per pixel, F = L_V/(4 pi D^2)")
    header["PIDOCSRC"] = (result["source_path"].name[:68], "image the map was made from")
    sources = result.get("sources", [])
    if len(sources) > 1:
        header["PIDOCNIM"] = (len(sources), "number of images combined")
        for index, source in enumerate(sources[1:100], 2):
            header[f"PIDOCS{index:02d}"] = (Path(source["path"]).name[:68], f"image {index} of the mosaic")
    header["PIDOCCOV"] = (round(result["covered_fraction"], 5), "fraction of the frame covered by the image")
    calibration = result["calibration"]
    if calibration["zeropoint_v_mag"] is not None:
        header["PIDOCZPV"] = (round(calibration["zeropoint_v_mag"], 4), "V (Vega) mag of 1 data unit per second")
    header["PIDOCAV"] = (round(calibration["extinction_v_mag"], 4), "A_V = 3.1 E(B-V) corrected, mag")
    header["PIDOCPSF"] = (round(result["psf_fwhm_arcsec"], 4), "image PSF FWHM, arcsec")
    header["PIDOCKER"] = (round(result["kernel_fwhm_arcsec"], 4), "Gaussian kernel FWHM applied, arcsec")
    header["SEEING"] = (TARGET_SEEING_FWHM_ARCSEC, "Gaussian FWHM of the map, arcsec")
    for quantity, value in result["report"]:
        header.add_history(ascii_text(f"{quantity}: {value}"))
    return header


def write_input_map(output_directory, result):
    """Write `piDOC_input_map.npy` (1, 160, 160, 1) and `piDOC_input_map.fits` (with WCS), atomically."""
    output_directory = Path(output_directory)
    output_directory.mkdir(parents=True, exist_ok=True)
    log_flux_map = result["log_flux_map"].reshape(1, MAP_PIXELS, MAP_PIXELS, 1).astype(np.float32)
    paths = [save_array(output_directory / "piDOC_input_map.npy", log_flux_map)]
    hdu = fits.PrimaryHDU(result["log_flux_map"].astype(np.float32), header=input_map_header(result))
    paths.append(replace_atomically(output_directory / "piDOC_input_map.fits",
                                              lambda temporary_path: hdu.writeto(temporary_path)))
    return paths


# ==================================================================================================
# 7. Synthetic images from π-DOC maps (round-trip tests and benchmarks)
# ==================================================================================================
def synthetic_image_from_map(log_flux_map, centre, pixel_scale_arcsec, rotation_deg, image_size_arcsec, units,
                             zeropoint_v_mag=25.643, exposure_time_s=500.0, sky_surface_brightness_v=22.5,
                             poisson_noise=False, rng=None):
    """An image, as a FITS HDUList, that shows a π-DOC map on a finer or coarser rotated grid.

    The map's surface brightness (flux per 0.0625 arcsec²) is interpolated (cubic spline) at every image
    pixel centre and multiplied by the image pixel area; outside the 40″ frame the cluster gives no
    light (the test maps hold nothing beyond it). A sky of `sky_surface_brightness_v` is added, then, for count images, optional Poisson noise
    from `rng` (a seeded numpy Generator). The map is already at 2.5″ seeing, so the image's PSF is
    2.5″ (pass psf_fwhm_arcsec=2.5 to the pipeline).

    Parameters
    ----------
    log_flux_map : array_like (160, 160)
    centre : SkyCoord
        Where the map's frame centre lies on the sky.
    pixel_scale_arcsec, rotation_deg, image_size_arcsec : float
    units : str
        'counts' (BUNIT COUNTS, EXPTIME), 'counts/s' (BUNIT ELECTRONS/S) or 'mag/arcsec2'.
    """
    from scipy import ndimage

    if units not in UNIT_CHOICES:
        raise ValueError(f"units must be one of {UNIT_CHOICES}, got {units!r}")
    pixels = int(round(image_size_arcsec / pixel_scale_arcsec))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [centre.icrs.ra.deg, centre.icrs.dec.deg]
    wcs.wcs.crpix = [0.5 * pixels + 0.5, 0.5 * pixels + 0.5]
    angle = math.radians(rotation_deg)
    wcs.wcs.cd = pixel_scale_arcsec / 3600.0 * np.array([[-math.cos(angle), math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    wcs.wcs.radesys = "ICRS"
    columns, rows = np.meshgrid(np.arange(pixels, dtype=np.float64), np.arange(pixels, dtype=np.float64))
    map_x, map_y = frame_wcs(centre).world_to_pixel(wcs.pixel_to_world(columns, rows))
    surface_flux = 10.0 ** np.asarray(log_flux_map, dtype=np.float64).reshape(MAP_PIXELS, MAP_PIXELS) / PIXEL_SCALE_ARCSEC**2
    # The map's pixels tile the frame up to its edges, so the spline is run on the map padded with its
    # edge values and cut exactly at the frame's border (a spline with zeros beyond would halve the
    # edge pixels, 1–2 % of the light of an extended cluster).
    padding = 3
    interpolated = ndimage.map_coordinates(np.pad(surface_flux, padding, mode="edge"),
                                           [map_y.ravel() + padding, map_x.ravel() + padding], order=3, mode="nearest")
    in_frame = (np.abs(map_x.ravel() - 0.5 * (MAP_PIXELS - 1)) <= 0.5 * MAP_PIXELS) & \
               (np.abs(map_y.ravel() - 0.5 * (MAP_PIXELS - 1)) <= 0.5 * MAP_PIXELS)
    interpolated = np.where(in_frame, interpolated, 0.0)
    pixel_area_arcsec2 = pixel_scale_arcsec**2
    flux = np.maximum(interpolated.reshape(pixels, pixels), 0.0) * pixel_area_arcsec2
    flux += 10.0 ** log_flux_per_pixel_from_surface_brightness(sky_surface_brightness_v, pixel_area_arcsec2)
    calibration = {"units": units, "exposure_time_s": exposure_time_s, "zeropoint_v_mag": zeropoint_v_mag, "extinction_v_mag": 0.0}
    data = data_from_flux_per_pixel(flux, calibration, pixel_area_arcsec2)
    if poisson_noise:
        if units == "mag/arcsec2" or rng is None:
            raise ValueError("Poisson noise needs a count image and a seeded generator `rng`")
        expected_counts = data if units == "counts" else data * exposure_time_s
        data = rng.poisson(expected_counts).astype(np.float64)
        data = data if units == "counts" else data / exposure_time_s
    header = wcs.to_header()
    header["BUNIT"] = {"counts": "COUNTS", "counts/s": "ELECTRONS/S", "mag/arcsec2": "mag/arcsec2"}[units]
    header["EXPTIME"] = exposure_time_s
    header["TELESCOP"] = "SYNTHETIC"
    if units != "mag/arcsec2":
        # A V zero point supplied as the user would: --zeropoint-vega.
        header["ZPVEGA"] = (zeropoint_v_mag, "V mag of 1 count/s (pass as --zeropoint-vega)")
    return fits.HDUList([fits.PrimaryHDU(data.astype(np.float32), header=header)])
