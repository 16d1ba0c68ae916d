"""Make the shipped example image: a held-out mock cluster observed as by HST/ACS in F555W.

The cluster is one of the committed test set's (cluster 2000054: [Fe/H] = −2, 10.0 Gyr, at 15 kpc;
`input_files/testset_metadata.csv`), rebuilt star by star with `mock_clusters` (same initial
conditions and age; its stars are a new draw from the same seeded chain, so this is the same cluster
but not the test map's exact realisation). It is projected with the test map's rotation, and observed
like an ACS/WFC image:

- 1,400×1,400 pixels of 0.05″ (70″ × 70″), a WCS rotated by 25° (TAN), the cluster 1.1″ off the
  image centre;
- a 0.1″ Gaussian PSF (ACS/WFC at V is ≈ 0.1″ FWHM; a Gaussian stands in for the real PSF);
- counts (electrons) in 500 s, with PHOTFLAM/PHOTPLAM of ACS/WFC F555W (2016-04-01 zero points), so
  the V zero point the pipeline derives is 25.713 − 0.07 = 25.643 mag;
- a sky of μ_V = 22.5 mag arcsec⁻² (HST's zodiacal sky in V is 22–23) plus Poisson noise drawn
  from a seeded generator;
- stored as a RICE tile-compressed integer image (about 1 MB).

The header holds the truth (SYN_DKPC, SYN_AGE, SYN_LV, SYN_MASS). Running it again gives the same
bytes of data. Run: `python3 scripts/make_synthetic_observation.py` (a few seconds).
"""
import csv
import sys
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage
from scipy.spatial.transform import Rotation

PROJECT_DIRECTORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIRECTORY))

from pidoc.mocks import clusters as mock_clusters  # noqa: E402
from pidoc import observations  # noqa: E402
from pidoc.mocks import stellar_evolution  # noqa: E402
from pidoc import io as pidoc_io  # noqa: E402

# --- Settings ---------------------------------------------------------------------------------------
OUTPUT_PATH = PROJECT_DIRECTORY / "examples" / "synthetic_hst_cluster.fits"
METADATA_PATH = PROJECT_DIRECTORY / "input_files" / "testset_metadata.csv"
CLUSTER_ID = 2000054
DISTANCE_KPC = 15.0
IMAGE_PIXELS = 1400
PIXEL_SCALE_ARCSEC = 0.05
ROTATION_DEG = 25.0                        # position angle of the image's y axis, east of north
CLUSTER_CENTRE_ICRS_DEG = (201.0, -47.5)   # a made-up position on the sky
CLUSTER_OFFSET_FROM_IMAGE_CENTRE_ARCSEC = (1.0, -0.5)   # (east, north)
PSF_FWHM_ARCSEC = 0.1
EXPOSURE_TIME_S = 500.0
SKY_SURFACE_BRIGHTNESS_V = 22.5
# ACS/WFC F555W on 2016-04-01 (STScI ACS Zeropoint Calculator, as printed in acstools' acszpt docs).
PHOTFLAM = 1.963e-19
PHOTPLAM = 5360.9
RANDOM_SEED = 20210505


def cluster_row(metadata_path, cluster_id, distance_kpc):
    """The test-set metadata row of `cluster_id` seen at `distance_kpc`."""
    with open(metadata_path, newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["cluster_id"]) == cluster_id and float(row["distance_kpc"]) == distance_kpc:
                return row
    raise ValueError(f"cluster {cluster_id} at {distance_kpc} kpc is not in {metadata_path}")


def cluster_stars(row):
    """Positions (pc), masses (M☉) and V luminosities (L☉) of the cluster's objects at its age."""
    parameters = mock_clusters.ClusterParameters(
        cluster_id=int(row["cluster_id"]), seed=int(row["seed"]), initial_stars=int(row["initial_stars"]),
        initial_half_mass_radius_pc=float(row["initial_half_mass_radius_pc"]),
        galactocentric_radius_kpc=float(row["galactocentric_radius_kpc"]),
        metallicity_feh=float(row["metallicity_feh"]), concentration_w0=float(row["concentration_w0"]))
    # The same seeded chain as make_cluster_maps (seed, stream 1), for the one snapshot we need.
    rng = np.random.default_rng([parameters.seed, 1])
    stellar_table = stellar_evolution.load_stellar_table(parameters.metallicity_feh)
    initial_masses_msun = mock_clusters.kroupa_initial_masses(parameters.initial_stars, rng)
    track = mock_clusters.cluster_evolution_track(parameters)
    age_gyr = float(row["age_gyr"])
    population = mock_clusters.evolve_population(initial_masses_msun, age_gyr, track, stellar_table, rng)
    delta = float(mock_clusters.mass_segregation_delta(mock_clusters.track_at(track, "relaxation_times_elapsed", age_gyr)))
    half_mass_radius_pc = mock_clusters.track_at(track, "half_mass_radius_pc", age_gyr)
    positions_pc, _ = mock_clusters.sample_positions(population, parameters.concentration_w0, delta, half_mass_radius_pc, rng)
    return positions_pc, population["mass_msun"], population["luminosity_v_lsun"], age_gyr


def image_wcs(image_centre):
    """TAN WCS of the synthetic image: 0.05″ pixels, y axis at position angle `ROTATION_DEG`."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [image_centre.ra.deg, image_centre.dec.deg]
    wcs.wcs.crpix = [0.5 * IMAGE_PIXELS + 0.5, 0.5 * IMAGE_PIXELS + 0.5]
    angle = np.deg2rad(ROTATION_DEG)
    scale_deg = PIXEL_SCALE_ARCSEC / 3600.0
    # East to the left at zero angle (CD1_1 < 0), rotated by the position angle.
    wcs.wcs.cd = scale_deg * np.array([[-np.cos(angle), np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    wcs.wcs.radesys = "ICRS"
    return wcs


def main():
    row = cluster_row(METADATA_PATH, CLUSTER_ID, DISTANCE_KPC)
    positions_pc, mass_msun, luminosity_v_lsun, age_gyr = cluster_stars(row)
    rotation = Rotation.from_rotvec([float(row[f"rotation_vector_{axis}"]) for axis in "xyz"])
    projected_pc = rotation.apply(positions_pc)[:, :2]
    arcsec_per_pc = mock_clusters.ARCSEC_PER_RADIAN / (DISTANCE_KPC * 1e3)
    # Map x grows to the west and y to the north, so a north-up east-left image shows x to the right,
    # as in π-DOC's frame (observations.frame_wcs).
    east_arcsec = -projected_pc[:, 0] * arcsec_per_pc
    north_arcsec = projected_pc[:, 1] * arcsec_per_pc
    centre = SkyCoord(*CLUSTER_CENTRE_ICRS_DEG, unit="deg", frame="icrs")
    stars = centre.spherical_offsets_by(east_arcsec * u.arcsec, north_arcsec * u.arcsec)
    image_centre = centre.spherical_offsets_by(-CLUSTER_OFFSET_FROM_IMAGE_CENTRE_ARCSEC[0] * u.arcsec,
                                               -CLUSTER_OFFSET_FROM_IMAGE_CENTRE_ARCSEC[1] * u.arcsec)
    wcs = image_wcs(image_centre)
    x_pixel, y_pixel = wcs.world_to_pixel(stars)
    column = np.round(x_pixel).astype(np.int64)
    row_index = np.round(y_pixel).astype(np.int64)
    inside = (column >= 0) & (column < IMAGE_PIXELS) & (row_index >= 0) & (row_index < IMAGE_PIXELS)

    calibration = {"units": "counts", "exposure_time_s": EXPOSURE_TIME_S, "extinction_v_mag": 0.0,
                   "zeropoint_v_mag": observations.zero_points_from_photflam(PHOTFLAM, PHOTPLAM)[1]
                   + observations.VEGA_MINUS_AB_MAGNITUDE["F555W"] + observations.V_MINUS_FILTER_MAGNITUDE["F555W"]}
    flux_per_star = luminosity_v_lsun / (4.0 * np.pi * DISTANCE_KPC**2)   # L☉ kpc⁻², CB21's F
    flux_image = np.bincount(row_index[inside] * IMAGE_PIXELS + column[inside], weights=flux_per_star[inside],
                             minlength=IMAGE_PIXELS**2).reshape(IMAGE_PIXELS, IMAGE_PIXELS)
    psf_sigma_pixels = PSF_FWHM_ARCSEC / observations.FWHM_PER_SIGMA / PIXEL_SCALE_ARCSEC
    flux_image = ndimage.gaussian_filter(flux_image, psf_sigma_pixels, mode="constant", truncate=5.0)
    pixel_area_arcsec2 = PIXEL_SCALE_ARCSEC**2
    sky_flux = 10.0 ** observations.log_flux_per_pixel_from_surface_brightness(SKY_SURFACE_BRIGHTNESS_V, pixel_area_arcsec2)
    expected_counts = observations.data_from_flux_per_pixel(flux_image + sky_flux, calibration, pixel_area_arcsec2)
    rng = np.random.default_rng(RANDOM_SEED)
    counts = rng.poisson(expected_counts).astype(np.int32)

    header = wcs.to_header()
    header["BUNIT"] = ("ELECTRONS", "total electrons in EXPTIME")
    cards = [("TELESCOP", "HST", "synthetic: HST-like"), ("INSTRUME", "ACS", "synthetic: ACS-like"), ("DETECTOR", "WFC", ""),
             ("FILTER1", "F555W", ""), ("FILTER2", "CLEAR2L", ""), ("EXPTIME", EXPOSURE_TIME_S, "s"),
             ("PHOTFLAM", PHOTFLAM, "erg/cm2/s/A per electron/s (ACS/WFC F555W 2016)"), ("PHOTPLAM", PHOTPLAM, "Angstrom"),
             ("PHOTZPT", -21.1, "ST magnitude zero point"), ("OBJECT", f"mock cluster {CLUSTER_ID}", "pi-DOC test set"),
             ("SYN_DKPC", DISTANCE_KPC, "true distance, kpc"), ("SYN_AGE", round(age_gyr, 4), "true age, Gyr"),
             ("SYN_FEH", float(row["metallicity_feh"]), "[Fe/H]"),
             ("SYN_LV", round(float(luminosity_v_lsun.sum()), 2), "total V luminosity, Lsun"),
             ("SYN_MASS", round(float(mass_msun.sum()), 2), "total mass incl. remnants, Msun"),
             ("SYN_RA", centre.ra.deg, "true cluster centre RA, deg"), ("SYN_DEC", centre.dec.deg, "true centre Dec, deg"),
             ("SYN_PSF", PSF_FWHM_ARCSEC, "Gaussian PSF FWHM, arcsec"), ("SYN_SKYV", SKY_SURFACE_BRIGHTNESS_V, "sky, V mag/arcsec2"),
             ("SYN_SEED", RANDOM_SEED, "seed of the Poisson noise")]
    for key, value, comment in cards:
        header[key] = (value, comment)
    header.add_comment("Synthetic image made by scripts/make_synthetic_observation.py from a held-out pi-DOC mock cluster.")
    primary = fits.PrimaryHDU()
    primary.header["COMMENT"] = "Synthetic HST-like observation of a pi-DOC mock cluster; image in extension SCI."
    image = fits.CompImageHDU(counts, header=header, name="SCI", compression_type="RICE_1")
    OUTPUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    pidoc_io.replace_atomically(OUTPUT_PATH, lambda temporary_path: fits.HDUList([primary, image]).writeto(temporary_path))
    print(f"{OUTPUT_PATH}: {IMAGE_PIXELS}×{IMAGE_PIXELS} px of {PIXEL_SCALE_ARCSEC}″, {inside.sum()} of {inside.size} objects "
          f"in the image, L_V = {luminosity_v_lsun.sum():.0f} L☉, M = {mass_msun.sum():.0f} M☉, age {age_gyr:.2f} Gyr, "
          f"{OUTPUT_PATH.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
