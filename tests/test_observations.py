"""pidoc/observations.py and piDOC_observation.py: hand cases, round trip through synthetic FITS images,
refusal of bad input, the real HST image (where ../shared has it) and the shipped example."""
import math
import re
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from pidoc import observations
from pidoc.frame import MAP_PIXELS
from pidoc.model import open_model
import piDOC_observation
from pidoc import io as pidoc_io

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEST_MAPS = PROJECT_ROOT / "input_files" / "luminosity_V_testset.npy"
NGC1261_IMAGE = PROJECT_ROOT.parent / "shared" / "fits" / "ngc1261_wfpc2_pc1_f555w" / "ubai2502m_c0m_aligned.fits"
# NGC 1261's centre, Harris (2010): 03:12:16.21 −55:12:58.4.
NGC1261_CENTRE_DEG = (48.0675417, -55.2162222)
CENTRE = SkyCoord(150.0, -55.0, unit="deg")
# Test maps of the round trip, fixed: 15 and 30 kpc, 6–11 Gyr. π-DOC's CNN responds to a 0.2 % change
# of the core (one extra box blur of resampling) by ~1 % in distance, so at 60–80 kpc the 0.5 kpc
# tolerance is at the level of that response; this is why coarse images are interpolated, not binned
# (observations.resample_to_frame).
ROUND_TRIP_MAPS = (48, 9, 53, 29)


# --- Hand cases -----------------------------------------------------------------------------------
def test_sun_at_ten_parsecs_and_surface_brightness_constants():
    assert 10.0 ** observations.log_flux_from_magnitude(observations.SOLAR_ABSOLUTE_MAGNITUDE_V) == pytest.approx(795.77, abs=0.01)
    assert observations.log_flux_from_magnitude(0.0) == pytest.approx(2.9008 + 0.4 * 4.81, abs=1e-4)
    # Per 0.25″ pixel: log10 F = 2.9008 + log10(0.0625) − 0.4 (μ − A_V − 4.81) = 1.6967 − …; μ = 22.8 gives about −5.5.
    assert observations.log_flux_per_pixel_from_surface_brightness(4.81, 0.0625) == pytest.approx(1.6967, abs=1e-4)
    assert observations.log_flux_per_pixel_from_surface_brightness(22.8, 0.0625) == pytest.approx(-5.499, abs=2e-3)
    # Extinction brightens: A_V = 0.31 mag raises log F by 0.124.
    assert (observations.log_flux_from_magnitude(15.0, 0.31) - observations.log_flux_from_magnitude(15.0)) == pytest.approx(0.124)


@pytest.mark.parametrize("band, photflam, photplam, st, ab, vega", [
    # ACS/WFC, 2016-04-01 (STScI ACS Zeropoint Calculator, printed in acstools' acszpt documentation).
    ("F555W", 1.963e-19, 5360.9, 25.667, 25.713, 25.713),
    ("F606W", 7.811e-20, 5922.0, 26.668, 26.498, 26.405),
    ("F814W", 7.046e-20, 8045.0, 26.780, 25.944, None),
])
def test_zero_points_from_photflam_match_published_acs_values(band, photflam, photplam, st, ab, vega):
    st_zeropoint, ab_zeropoint = observations.zero_points_from_photflam(photflam, photplam)
    assert st_zeropoint == pytest.approx(st, abs=0.01)
    assert ab_zeropoint == pytest.approx(ab, abs=0.01)
    if vega is not None:
        assert ab_zeropoint + observations.VEGA_MINUS_AB_MAGNITUDE[band] == pytest.approx(vega, abs=0.01)


def test_seeing_kernel_takes_a_point_source_to_a_gaussian_of_two_and_a_half_arcsec():
    pixel_scale_arcsec = 0.05
    image = np.zeros((301, 301))
    image[150, 150] = 7.0
    kernel_fwhm = observations.seeing_kernel_fwhm_arcsec(0.0)
    smoothed = observations.convolve_to_seeing(image, kernel_fwhm, (pixel_scale_arcsec, pixel_scale_arcsec))
    assert smoothed.sum() == pytest.approx(7.0, rel=1e-6)
    rows, columns = np.indices(smoothed.shape)
    sigma_arcsec = math.sqrt((smoothed * (columns - 150.0) ** 2).sum() / smoothed.sum()) * pixel_scale_arcsec
    assert sigma_arcsec * observations.FWHM_PER_SIGMA == pytest.approx(2.5, rel=0.01)
    assert observations.seeing_kernel_fwhm_arcsec(1.5) == pytest.approx(2.0)


def test_point_reflection_restores_a_symmetric_map():
    rows, columns = np.indices((160, 160))
    symmetric = np.exp(-((rows - 79.5) ** 2 + (columns - 79.5) ** 2) / 400.0)
    covered = columns < 100            # 62.5 % covered; every gap pixel has a covered mirror
    filled, counts = observations.fill_gaps_by_point_reflection(np.where(covered, symmetric, 0.0), covered)
    np.testing.assert_allclose(filled, symmetric, rtol=1e-12)
    assert counts == {"reflected": int((~covered).sum()), "annulus_mean": 0, "floor": 0}


# --- Round trip: test maps → synthetic FITS → pipeline -------------------------------------------
@pytest.fixture(scope="module")
def piDOC():
    trained = piDOC_observation.default_trained_directory()
    return open_model(trained, PROJECT_ROOT / "input_files" / "standardization_files")


@pytest.mark.parametrize("map_index, pixel_scale_arcsec, units, rotation_deg, noise", [
    (ROUND_TRIP_MAPS[0], 0.04, "counts", 33.0, False),
    # With Poisson noise the map still matches to 0.01 dex, but π-DOC (trained on noise-free maps) moves
    # by up to 3 kpc on some maps (docs/observations.md, round-trip table); map 9 is one it reads stably.
    (ROUND_TRIP_MAPS[1], 0.1, "counts/s", -61.0, True),
    (ROUND_TRIP_MAPS[2], 0.25, "mag/arcsec2", 17.0, False),
    (ROUND_TRIP_MAPS[3], 0.5, "counts", 120.0, False),
])
def test_round_trip_recovers_the_map_its_flux_and_piDOC_answers(tmp_path, piDOC, map_index, pixel_scale_arcsec, units,
                                                                rotation_deg, noise):
    original = np.load(TEST_MAPS, mmap_mode="r")[map_index, ..., 0].astype(np.float64)
    path = tmp_path / "synthetic.fits"
    observations.synthetic_image_from_map(original, CENTRE, pixel_scale_arcsec, rotation_deg, 70.0, units,
                                          poisson_noise=noise, rng=np.random.default_rng(8)).writeto(path)
    zeropoint = fits.getheader(path).get("ZPVEGA")
    # The synthetic images hold only sky beyond the 40″ frame; the sky is taken beyond 20″ as when the
    # round-trip table of docs/observations.md was measured (3σ clipping removes the frame's corners).
    result = observations.image_to_pidoc_map(path, ra_deg=CENTRE.ra.deg, dec_deg=CENTRE.dec.deg, zeropoint_vega=zeropoint,
                                             psf_fwhm_arcsec=2.5, background_outside_arcsec=20.0, verbose=False,
                                             psf_fwhm_relative_error=0.0)   # the synthetic PSF is known exactly
    assert result["covered_fraction"] == 1.0
    # The Poisson noise of a 500 s exposure, unsmoothed at a 2.5″ PSF, is brighter than the noise
    # within which the intervals hold (scripts/noise_tolerance.py): the map says so, and only that.
    if noise:
        assert len(result["domain_reasons"]) == 1 and result["domain_reasons"][0].startswith("map noise")
    else:
        assert result["domain_reasons"] == []
    bright = original > -6.0
    offset_dex = np.median(np.abs(result["log_flux_map"][bright] - original[bright]))
    flux_ratio = (10.0 ** result["log_flux_map"].astype(np.float64)).sum() / (10.0 ** original).sum()
    assert offset_dex < 0.02
    assert flux_ratio == pytest.approx(1.0, abs=0.01)
    maps = pidoc_io.check_flux_maps(np.stack([original, result["log_flux_map"]]))
    _, distance_age, _ = piDOC.predict(maps)
    print(f"map {map_index} at {pixel_scale_arcsec}″ in {units}: {offset_dex:.4f} dex, flux ratio {flux_ratio:.4f}, "
          f"ΔD {distance_age[1, 0] - distance_age[0, 0]:+.2f} kpc, Δage {distance_age[1, 1] - distance_age[0, 1]:+.3f} Gyr")
    assert abs(distance_age[1, 0] - distance_age[0, 0]) < 0.5
    assert abs(distance_age[1, 1] - distance_age[0, 1]) < 0.2


def test_a_psf_too_close_to_the_target_seeing_flags_the_map(tmp_path):
    # The matched seeing is √(2.5² + f²((1 ± ε)² − 1)): for an HST PSF an error hardly matters, for a
    # 2.4″ PSF a 5 % error moves it by 0.115″, past the tolerance.
    assert observations.matched_seeing_error_arcsec(0.1, 0.05) < 1e-3
    assert observations.matched_seeing_error_arcsec(2.4, 0.05) == pytest.approx(math.sqrt(6.25 + 5.76 * 0.1025) - 2.5)
    assert observations.matched_seeing_error_arcsec(2.4, 0.0) == 0.0
    original = np.load(TEST_MAPS, mmap_mode="r")[ROUND_TRIP_MAPS[0], ..., 0].astype(np.float64)
    path = tmp_path / "synthetic.fits"
    observations.synthetic_image_from_map(original, CENTRE, 0.25, 0.0, 70.0, "counts/s").writeto(path)
    settings = dict(ra_deg=CENTRE.ra.deg, dec_deg=CENTRE.dec.deg, zeropoint_vega=fits.getheader(path).get("ZPVEGA"),
                    background_outside_arcsec=20.0, verbose=False)
    close = observations.image_to_pidoc_map(path, psf_fwhm_arcsec=2.4, **settings)
    assert any("too close to π-DOC's 2.5″" in reason and "0.12″" in reason for reason in close["domain_reasons"])
    known = observations.image_to_pidoc_map(path, psf_fwhm_arcsec=2.4, psf_fwhm_relative_error=0.002, **settings)
    assert known["domain_reasons"] == []
    with pytest.raises(ValueError, match="relative error of the PSF FWHM"):
        observations.image_to_pidoc_map(path, psf_fwhm_arcsec=2.4, psf_fwhm_relative_error=1.5, **settings)


@pytest.mark.parametrize("pixel_scale_arcsec, psf_fwhm_arcsec", [(0.05, 0.1), (0.4, 1.0)])
def test_the_noise_the_map_is_said_to_carry_is_the_noise_it_carries(tmp_path, pixel_scale_arcsec, psf_fwhm_arcsec):
    # A flat field of light with white noise of 1σ = 2 units per pixel: an HST-like image (0.05″
    # pixels, 0.1″ PSF) and a ground-based one (0.4″ pixels, 1″ seeing). The pixel scatter is read
    # back, and the 1σ of the map's pixels is what map_pixel_noise says it is.
    rng = np.random.default_rng(11)
    pixels = int(round(70.0 / pixel_scale_arcsec))
    noise_sigma, level = 2.0, 100.0
    data = level + rng.normal(0.0, noise_sigma, (pixels, pixels))
    assert observations.estimate_pixel_noise(data) == pytest.approx(noise_sigma, rel=0.03)
    path = small_image(tmp_path / "flat.fits", data=data, pixel_scale_arcsec=pixel_scale_arcsec, header_cards={"ZPVEGA": 25.0})
    result = observations.image_to_pidoc_map(path, ra_deg=CENTRE.ra.deg, dec_deg=CENTRE.dec.deg, zeropoint_vega=25.0,
                                             background=0.0, psf_fwhm_arcsec=psf_fwhm_arcsec, verbose=False)
    flux_map = 10.0 ** result["log_flux_map"].astype(np.float64)
    # Data units per map unit, for the sum of a 0.25″ pixel's image pixels.
    data_per_flux = level * (0.25 / pixel_scale_arcsec) ** 2 / float(np.median(flux_map))
    predicted = observations.map_pixel_noise(noise_sigma, pixel_scale_arcsec, psf_fwhm_arcsec)
    assert float(np.std(flux_map)) * data_per_flux == pytest.approx(predicted, rel=0.08)
    predicted_mag = observations.surface_brightness_from_flux_per_pixel(predicted / data_per_flux, 0.0625)
    assert result["noise_surface_brightness_mag_arcsec2"] == pytest.approx(float(predicted_mag), abs=0.05)
    # Noisier than the tolerance, so the map is flagged with the figure.
    assert result["noise_surface_brightness_mag_arcsec2"] < observations.noise_tolerance_for(psf_fwhm_arcsec)
    assert any(reason.startswith("map noise") for reason in result["domain_reasons"])


# --- Bad input: a clear error naming the file, and nothing in the output folder touched -----------
def small_image(path, data=None, header_cards=None, wcs=True, pixel_scale_arcsec=0.25, pixels=200):
    """A small count-rate image with a TAN WCS centred on CENTRE, written to `path`."""
    if data is None:
        rows, columns = np.indices((pixels, pixels))
        data = 1.0 + 50.0 * np.exp(-((rows - 100.0) ** 2 + (columns - 100.0) ** 2) / 200.0)
    header = fits.Header()
    if wcs:
        image_wcs = WCS(naxis=2)
        image_wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        image_wcs.wcs.crval = [CENTRE.ra.deg, CENTRE.dec.deg]
        image_wcs.wcs.crpix = [0.5 * data.shape[1] + 0.5, 0.5 * data.shape[0] + 0.5]
        image_wcs.wcs.cdelt = [-pixel_scale_arcsec / 3600.0, pixel_scale_arcsec / 3600.0]
        header.update(image_wcs.to_header())
    header["BUNIT"] = "ELECTRONS/S"
    for key, value in (header_cards or {}).items():
        if value is None:
            header.remove(key, ignore_missing=True)
        else:
            header[key] = value
    fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=header).writeto(path)
    return path


def bad_cases(tmp_path):
    text_file = tmp_path / "notes.fits"
    text_file.write_text("this is not FITS\n")
    table_only = tmp_path / "table_only.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.zeros(3))])]).writeto(table_only)
    all_nan = small_image(tmp_path / "all_nan.fits", data=np.full((50, 50), np.nan))
    good = small_image(tmp_path / "good.fits")
    corner = SkyCoord(CENTRE.ra + 0.0068 * u.deg / math.cos(math.radians(55.0)), CENTRE.dec + 0.0068 * u.deg)   # ~24.5″ off in each axis
    return [
        ([str(text_file)], "not a readable FITS file"),
        ([str(table_only)], "no HDU holds a 2-D image"),
        ([str(small_image(tmp_path / "no_wcs.fits", wcs=False))], "no celestial WCS"),
        ([str(good), "--ra", "151.0", "--dec", "-55.0", "--zeropoint-vega", "25", "--psf-fwhm-arcsec", "0.5"], "falls outside the image"),
        ([str(good), "--ra", f"{corner.ra.deg}", "--dec", f"{corner.dec.deg}", "--zeropoint-vega", "25", "--psf-fwhm-arcsec", "0.5",
          "--background", "1"], "covers only"),
        ([str(all_nan)], "no finite pixel"),
        ([str(small_image(tmp_path / "no_units.fits", header_cards={"BUNIT": None}))], "unknown units"),
        ([str(good)], "unknown flux scale"),
        ([str(good), "--zeropoint-vega", "25", "--psf-fwhm-arcsec", "3.0"], "broader than"),
        ([str(good), "--zeropoint-vega", "25", "--ebv", "-0.1"], "E\\(B−V\\) must be a non-negative"),
    ]


def test_bad_input_is_refused_with_the_file_named_and_the_output_folder_untouched(tmp_path):
    output_directory = tmp_path / "outputs"
    output_directory.mkdir()
    (output_directory / "predictionM.npy").write_bytes(b"earlier result")
    for arguments, message in bad_cases(tmp_path):
        with pytest.raises(ValueError, match=message) as raised:
            piDOC_observation.main(arguments + ["--output-directory", str(output_directory)])
        assert Path(arguments[0]).name in str(raised.value)
        assert sorted(path.name for path in output_directory.iterdir()) == ["predictionM.npy"]
        assert (output_directory / "predictionM.npy").read_bytes() == b"earlier result"


# --- End to end: the real HST image, and the shipped example ---------------------------------------
# The zodiacal sky in V seen by HST is 22–23 mag arcsec⁻² (scripts/make_synthetic_observation.py); at
# μ_V = 22.5 a 0.0455″ PC pixel collects 10^(−0.4 (22.5 + 6.71 − 21.74)) DN/s × 70 s = 0.07 DN, with
# the chip's V zero point of 21.74 for 1 DN/s. An outside value, as an observer would give it.
NGC1261_SKY_DN = 0.07
NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)


def text_outputs(directory):
    """Every text file a run wrote, by name."""
    return {path.name: path.read_text(encoding="utf-8") for path in Path(directory).iterdir() if path.suffix in (".txt", ".csv")}


def test_real_wfpc2_image_of_ngc1261_takes_no_cluster_light_for_sky(tmp_path, capsys):
    """The PC chip (36″) lies inside NGC 1261's half-light radius (41″): every pixel is cluster light.

    Without a sky from the user the run either refuses, saying what to give, or takes a sky well below
    the light beyond 20″ (what the pipeline once subtracted as sky, leaving 456 pixels at the floor).
    With an outside sky value it answers with intervals and a verdict, and writes no `nan`.
    """
    if not NGC1261_IMAGE.is_file():
        pytest.skip(f"real HST image not found at {NGC1261_IMAGE} (../shared is absent)")
    centre = ["--ra", str(NGC1261_CENTRE_DEG[0]), "--dec", str(NGC1261_CENTRE_DEG[1]), "--ebv", "0.01"]
    default_directory = tmp_path / "default"
    try:
        outcome = piDOC_observation.main([str(NGC1261_IMAGE)] + centre + ["--output-directory", str(default_directory)])
    except ValueError as error:
        message = str(error)
        print(f"NGC 1261 without a sky: refused: {message}")
        assert NGC1261_IMAGE.name in message and "--background" in message
        assert not default_directory.exists()
    else:
        sky = outcome["result"]["sky"][0]
        image = observations.read_image(NGC1261_IMAGE)
        calibration = outcome["result"]["calibration"]
        flux = observations.flux_per_pixel(image["data"], calibration, image["pixel_area_arcsec2"])
        centre_pixel = image["wcs"].world_to_pixel(outcome["result"]["centre"])
        beyond = observations.radius_from_pixel_arcsec(flux.shape, centre_pixel, image["pixel_scale_arcsec"]) > 20.0
        print(f"NGC 1261 without a sky: {sky['text']}")
        assert sky["flux_per_pixel"] < 0.5 * np.nanmean(flux[beyond])
    capsys.readouterr()

    answered_directory = tmp_path / "answered"
    outcome = piDOC_observation.main([str(NGC1261_IMAGE)] + centre + ["--background", str(NGC1261_SKY_DN),
                                                                      "--output-directory", str(answered_directory)])
    printed = capsys.readouterr().out
    result, row = outcome["result"], outcome["rows"][0]
    print(f"NGC 1261 with a {NGC1261_SKY_DN} DN sky: coverage {100 * result['covered_fraction']:.1f} %, D {row['distance_kpc']:.1f} "
          f"[{row['distance_kpc_lo68']:.1f}, {row['distance_kpc_hi68']:.1f}] kpc, age {row['age_gyr']:.1f} Gyr, "
          f"verdict {row['domain']} ({row['domain_reason']})")
    assert 0.6 < result["covered_fraction"] < 0.7
    assert result["calibration"]["st_zeropoint_mag"] == pytest.approx(21.80, abs=0.01)
    assert row["domain"] == "outside" and "covered" in row["domain_reason"]
    assert all(np.isfinite(row[f"{column}_{bound}"]) or column in ("distance_kpc", "mass_to_light_v")
               for column in ("distance_kpc", "age_gyr", "log_total_mass_msun", "mass_to_light_v") for bound in ("lo68", "hi68"))
    report = (answered_directory / "observation_report.txt").read_text(encoding="utf-8")
    assert "user value: 0.07 data units per pixel" in report
    assert "pixels at the floor  0 " in report
    for name in ("piDOC_input_map.npy", "piDOC_input_map.fits", "predictionM.npy", "predictiondistance_age.npy",
                 "predictions_summary.csv", "predictions_summary.txt", "observation_report.txt", "observation_summary.png"):
        assert (answered_directory / name).is_file(), name
    for name, content in text_outputs(answered_directory).items():
        assert not NAN_WORD.search(content), name
    assert not NAN_WORD.search(printed) and "sky: user value" in printed


def test_shipped_example_runs_through_the_driver(tmp_path, capsys):
    outcome = piDOC_observation.main(["--output-directory", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "light-weighted centre" in printed and "coverage" in printed
    # The example's sky: the pixels beyond 20″ (its known construction), with the method and its 1σ said.
    assert "sky: user region, 22.7109 ± 0.004 (1σ) data units per pixel" in printed
    input_map = np.load(tmp_path / "piDOC_input_map.npy")
    assert input_map.shape == (1, 160, 160, 1)
    # The committed example's input map is unchanged, byte for byte.
    committed = PROJECT_ROOT / "predictions" / "observation_example" / "piDOC_input_map.npy"
    assert (tmp_path / "piDOC_input_map.npy").read_bytes() == committed.read_bytes()
    with fits.open(tmp_path / "piDOC_input_map.fits") as hdulist:
        assert WCS(hdulist[0].header).has_celestial
        np.testing.assert_array_equal(hdulist[0].data, input_map[0, ..., 0])
    assert np.load(tmp_path / "predictionM.npy").shape == (1, 160, 160, 1)
    truth = fits.getheader(piDOC_observation.IMAGE_PATH, 1)
    row = outcome["rows"][0]
    assert outcome["result"]["covered_fraction"] == 1.0
    # π-DOC's own accuracy on a single map is a few kpc and ~1 Gyr (README); this checks the chain, not the network.
    assert abs(row["distance_kpc"] - truth["SYN_DKPC"]) < 10.0 and abs(row["age_gyr"] - truth["SYN_AGE"]) < 3.0
    assert (tmp_path / "predictions_summary.csv").read_text().startswith("map,")


# --- Several images of one cluster -----------------------------------------------------------------
MOSAIC_MAP = 48   # a 15 kpc test map: the brightest core, where a seam would show most


@pytest.fixture(scope="module")
def split_cluster(tmp_path_factory):
    """One synthetic image of a test map (0.1″, rotated by 33°, 60″), its known sky, and the unsplit map."""
    directory = tmp_path_factory.mktemp("mosaic")
    original = np.load(TEST_MAPS, mmap_mode="r")[MOSAIC_MAP, ..., 0].astype(np.float64)
    hdulist = observations.synthetic_image_from_map(original, CENTRE, 0.1, 33.0, 60.0, "counts/s")
    path = directory / "whole.fits"
    hdulist.writeto(path)
    settings = {"ra_deg": CENTRE.ra.deg, "dec_deg": CENTRE.dec.deg, "zeropoint_vega": hdulist[0].header["ZPVEGA"],
                # The maps already hold the 2.5″ seeing; a declared 0.1″ PSF makes the pipeline convolve
                # again, so that a seam in the convolution would show.
                "psf_fwhm_arcsec": 0.1, "verbose": False}
    whole = observations.image_to_pidoc_map(path, background=known_sky(hdulist[0].header, 0.1), **settings)
    return {"directory": directory, "original": original, "hdulist": hdulist, "settings": settings, "whole": whole}


def known_sky(header, pixel_scale_arcsec):
    """The sky the synthetic image was made with (μ_V = 22.5), in its data units per pixel."""
    calibration = {"units": "counts/s", "zeropoint_v_mag": header["ZPVEGA"], "extinction_v_mag": 0.0, "exposure_time_s": header["EXPTIME"]}
    pixel_area_arcsec2 = pixel_scale_arcsec**2
    sky_flux = 10.0 ** observations.log_flux_per_pixel_from_surface_brightness(22.5, pixel_area_arcsec2)
    return float(observations.data_from_flux_per_pixel(sky_flux, calibration, pixel_area_arcsec2))


def write_part(path, data, wcs, header):
    """A FITS image of `data` with `wcs` and the photometric cards of `header`."""
    part_header = header.copy()
    part_header.update(wcs.to_header())
    fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=part_header).writeto(path)
    return path


def compare_with_whole(whole, combined, original):
    """Largest |Δ log F| where only one image covers the frame pixel and where several do; total flux ratio."""
    bright = original > -6.0
    difference = np.abs(combined["log_flux_map"].astype(np.float64) - whole["log_flux_map"])
    once = combined["images_per_pixel"] == 1
    flux_ratio = (10.0 ** combined["log_flux_map"].astype(np.float64)).sum() / (10.0 ** whole["log_flux_map"].astype(np.float64)).sum()
    overlap = difference[bright & ~once].max() if (bright & ~once).any() else 0.0
    return difference[bright & once].max(), overlap, flux_ratio


@pytest.mark.parametrize("overlap_pixels", [0, 40])
def test_two_chips_that_split_a_cluster_give_the_unsplit_map(split_cluster, overlap_pixels):
    hdulist, directory = split_cluster["hdulist"], split_cluster["directory"]
    data, header, wcs = hdulist[0].data, hdulist[0].header, WCS(hdulist[0].header)
    cut = 280   # through the core: the cluster's centre is at column 300
    paths = [write_part(directory / f"left_{overlap_pixels}.fits", data[:, :cut + overlap_pixels], wcs[:, :cut + overlap_pixels], header),
             write_part(directory / f"right_{overlap_pixels}.fits", data[:, cut - overlap_pixels:], wcs[:, cut - overlap_pixels:], header)]
    combined = observations.images_to_pidoc_map(paths, background=known_sky(header, 0.1), **split_cluster["settings"])
    single_difference, overlap_difference, flux_ratio = compare_with_whole(split_cluster["whole"], combined, split_cluster["original"])
    print(f"split with {overlap_pixels} px overlap: max |Δ log F| {single_difference:.2g} dex (one chip), "
          f"{overlap_difference:.2g} (overlap); flux ratio {flux_ratio:.6f}; coverage {combined['coverage_by_image_count']}")
    assert combined["covered_fraction"] == 1.0
    assert single_difference < 0.01 and overlap_difference < 0.01
    assert flux_ratio == pytest.approx(1.0, abs=0.01)
    assert (2 in combined["coverage_by_image_count"]) == (overlap_pixels > 0)


def test_two_exposures_of_other_scales_and_orientations_combine_to_the_unsplit_map(split_cluster):
    """Half of the image, and the other half of a second exposure at 0.05″ rotated by −20° (its own sky)."""
    hdulist, directory = split_cluster["hdulist"], split_cluster["directory"]
    data, header, wcs = hdulist[0].data, hdulist[0].header, WCS(hdulist[0].header)
    second = observations.synthetic_image_from_map(split_cluster["original"], CENTRE, 0.05, -20.0, 60.0, "counts/s")
    second_data, second_header = second[0].data, second[0].header
    rows, columns = np.indices(second_data.shape)
    first_columns, _ = wcs.world_to_pixel(WCS(second_header).pixel_to_world(columns, rows))
    # The second exposure keeps what lies right of column 280 of the first: a 4″ overlap.
    second_part = np.where(first_columns >= 280.0, second_data, np.nan)
    paths = [write_part(directory / "first_half.fits", data[:, :320], wcs[:, :320], header),
             write_part(directory / "second_half.fits", second_part, WCS(second_header), second_header)]
    combined = observations.images_to_pidoc_map(paths, background=[known_sky(header, 0.1), known_sky(second_header, 0.05)],
                                                **split_cluster["settings"])
    # Each synthetic exposure cuts the cluster at the frame's edge on its own grid: the outer 4 pixels
    # of the frame differ between them (0.03 dex) whether or not they are combined, so they are left out.
    interior = np.zeros((MAP_PIXELS, MAP_PIXELS), dtype=bool)
    interior[4:-4, 4:-4] = True
    combined_interior = dict(combined, images_per_pixel=np.where(interior, combined["images_per_pixel"], -1))
    single_difference, overlap_difference, flux_ratio = compare_with_whole(
        split_cluster["whole"], combined_interior, np.where(interior, split_cluster["original"], -99.0))
    print(f"two exposures: max |Δ log F| {single_difference:.2g} dex (one image), {overlap_difference:.2g} (overlap); "
          f"flux ratio {flux_ratio:.6f}; coverage {combined['coverage_by_image_count']}")
    assert combined["covered_fraction"] == 1.0
    assert single_difference < 0.01 and overlap_difference < 0.01
    assert flux_ratio == pytest.approx(1.0, abs=0.01)


def test_several_hdus_of_one_file_combine_like_several_files(split_cluster, tmp_path):
    hdulist = split_cluster["hdulist"]
    data, header, wcs = hdulist[0].data, hdulist[0].header, WCS(hdulist[0].header)
    chips = []
    for name, columns in (("LEFT", slice(None, 300)), ("RIGHT", slice(260, None))):
        chip_header = header.copy()
        chip_header.update(wcs[:, columns].to_header())
        chips.append(fits.ImageHDU(data[:, columns].astype(np.float32), header=chip_header, name=name))
    path = tmp_path / "two_chips.fits"
    fits.HDUList([fits.PrimaryHDU()] + chips).writeto(path)
    settings = dict(split_cluster["settings"], background=known_sky(header, 0.1))
    by_index = observations.images_to_pidoc_map(observations.expand_sources([path], [1, 2]), **settings)
    every_hdu = observations.images_to_pidoc_map(observations.expand_sources([path], all_hdus=True), **settings)
    np.testing.assert_array_equal(by_index["log_flux_map"], every_hdu["log_flux_map"])
    single_difference, overlap_difference, _ = compare_with_whole(split_cluster["whole"], by_index, split_cluster["original"])
    assert single_difference < 0.01 and overlap_difference < 0.01
    assert [source["hdu_label"] for source in by_index["sources"]] == ["1 (LEFT)", "2 (RIGHT)"]


def test_bad_sets_of_images_are_refused_with_the_file_named_and_nothing_lost(split_cluster, tmp_path, capsys):
    hdulist = split_cluster["hdulist"]
    data, header, wcs = hdulist[0].data, hdulist[0].header, WCS(hdulist[0].header)
    left = write_part(tmp_path / "left.fits", data[:, :300], wcs[:, :300], header)
    right = write_part(tmp_path / "right.fits", data[:, 260:], wcs[:, 260:], header)
    no_wcs = tmp_path / "right_without_wcs.fits"
    fits.PrimaryHDU(data[:, 260:].astype(np.float32), header=fits.Header({"BUNIT": "ELECTRONS/S"})).writeto(no_wcs)
    elsewhere = tmp_path / "another_cluster.fits"
    observations.synthetic_image_from_map(split_cluster["original"], SkyCoord(150.1, -55.0, unit="deg"), 0.1, 0.0, 60.0,
                                          "counts/s").writeto(elsewhere)
    f555w, f606w = (write_part(tmp_path / f"{band}.fits", data, wcs, header) for band in ("f555w", "f606w"))
    for path, band in ((f555w, "F555W"), (f606w, "F606W")):
        fits.setval(path, "FILTER", value=band)
    settings = ["--ra", str(CENTRE.ra.deg), "--dec", str(CENTRE.dec.deg), "--zeropoint-vega", str(header["ZPVEGA"]),
                "--psf-fwhm-arcsec", "2.5", "--background", str(known_sky(header, 0.1))]
    output_directory = tmp_path / "outputs"
    output_directory.mkdir()
    (output_directory / "predictionM.npy").write_bytes(b"earlier result")
    for images, named, message in (
        ([left, no_wcs], no_wcs, "no celestial WCS"),
        ([left, elsewhere], elsewhere, "another field or cluster"),
        ([f555w, f606w], f606w, "different bands"),
        ([left, left], left, "given twice"),
    ):
        with pytest.raises(ValueError, match=message) as raised:
            piDOC_observation.main([str(path) for path in images] + settings + ["--output-directory", str(output_directory)])
        assert named.name in str(raised.value)
        assert sorted(path.name for path in output_directory.iterdir()) == ["predictionM.npy"]
        assert (output_directory / "predictionM.npy").read_bytes() == b"earlier result"
    with pytest.raises(ValueError, match="one box .* per image"):
        observations.images_to_pidoc_map([left, right], background_region=(0, 10, 0, 10), **split_cluster["settings"])
    capsys.readouterr()


# --- Outputs a person can read --------------------------------------------------------------------
def test_a_distance_not_positive_is_explained_in_the_printed_summary_and_the_figure(tmp_path):
    """A negative distance (π-DOC's CNN is unconstrained) leaves M/L_V undefined: said in words."""
    trained = piDOC_observation.default_trained_directory()
    model = open_model(trained, PROJECT_ROOT / "input_files" / "standardization_files")
    log_flux_maps = pidoc_io.check_flux_maps(np.load(TEST_MAPS, mmap_mode="r")[:1])
    mass_maps = np.full((1, 160, 160, 1), -2.0, dtype=np.float32)
    rows, pixel_bounds = piDOC_observation.summarize_predictions(model, tmp_path, log_flux_maps, mass_maps,
                                                                 np.array([[-12.0, 10.0]]), ["negative"], [None])
    source = {"path": Path("x.fits"), "hdu_label": "0",
              "sky": {"method": "user value", "value_text": "0", "uncertainty_flux_per_pixel": 0.0, "units_text": "data units per pixel"}}
    result = {"sources": [source], "covered_fraction": 1.0, "coverage_by_image_count": {1: 1.0}}
    lines = piDOC_observation.summary_lines("x.fits", rows[0], result)
    print("\n".join(lines))
    assert "M/L_V undefined: the predicted distance is ≤ 0" in lines[0]
    assert not any(NAN_WORD.search(line) for line in lines)
    figure_result = {"cutout": {"flux": np.ones((40, 40)), "wcs": observations.frame_wcs(CENTRE)[::4, ::4]},
                     "frame_wcs": observations.frame_wcs(CENTRE), "covered_fraction": 1.0, "source_path": Path("x.fits"),
                     "sources": [source]}
    path = piDOC_observation.plot_observation(tmp_path / "figure.png", figure_result, log_flux_maps[0, ..., 0], mass_maps[0, ..., 0],
                                              -12.0, None if pixel_bounds is None else pixel_bounds[0])
    assert Path(path).stat().st_size > 0


def test_coverage_table_says_why_a_number_is_undefined_instead_of_nan(tmp_path):
    """One cluster has no standard error; maps at D ≤ 0 have no distance width: words, no warnings."""
    import warnings

    from pidoc.calibration import coverage

    cluster_ids = np.array([7, 7, 7])
    covered = {0.68: np.array([True, False, True]), 0.95: np.array([True, True, True])}
    widths = {0.68: np.full(3, np.nan), 0.95: np.full(3, np.nan)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = coverage.coverage_table(covered, widths, cluster_ids)
    report = {"pooled": {"distance": table}, "per_distance": {}}
    rows = coverage.coverage_rows(report)
    assert rows == [["distance", "pooled", "66.7 ± undefined (one cluster)", "undefined (D ≤ 0 for every map)",
                     "100.0 ± undefined (one cluster)", "undefined (D ≤ 0 for every map)"]]
