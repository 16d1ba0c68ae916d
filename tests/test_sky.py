"""pidoc.sky: the sky of an image that a globular cluster fills, never taken from the cluster's light.

Synthetic images are smooth limepy clusters (Gieles & Zocchi 2015) with a constant sky and seeded Poisson
noise; the real case is the NGC 1261 WFPC2/PC1 chip in ../shared (skipped where absent).
"""
from pathlib import Path

import numpy as np
import pytest

from pidoc.sky import SkyUndeterminedError, estimate_pixel_noise, estimate_sky, radial_profile

NGC1261_IMAGE = Path(__file__).parents[2] / "shared" / "fits" / "ngc1261_wfpc2_pc1_f555w" / "ubai2502m_c0m_aligned.fits"
PIXEL_SCALE_ARCSEC = 0.1
# A deep exposure: 1.6e5 counts at the centre and a sky of 320 counts per pixel, Poisson noise.
CENTRAL_COUNTS, SKY_COUNTS = 1.6e5, 320.0


def synthetic_cluster(concentration_w0, truncation_g, half_width_in_half_light_radii, half_light_radius_pixels=30.0,
                      seed=1):
    """(image, centre, cluster counts at the frame's edge) for a limepy cluster centred on a square frame.

    The profile is limepy's projection on a fine radius grid (max_step = 0.1), not the estimator's nodes.
    The frame's edge is its half-width, at `half_width_in_half_light_radii` projected half-light radii.
    """
    import limepy

    model = limepy.limepy(concentration_w0, truncation_g, M=1.0, rh=1.0, project=True, max_step=0.1)
    size = int(2 * half_width_in_half_light_radii * half_light_radius_pixels) + 1
    centre = (size - 1) / 2

    def counts(radius_pixels):
        radius_model = np.asarray(radius_pixels) / half_light_radius_pixels * model.rhp
        return CENTRAL_COUNTS * np.interp(radius_model, model.R, model.Sigma / model.Sigma[0], right=0.0)

    rows, columns = np.indices((size, size))
    expected = counts(np.hypot(columns - centre, rows - centre)) + SKY_COUNTS
    image = np.random.default_rng(seed).poisson(expected).astype(float)
    return image, (centre, centre), float(counts(centre))


@pytest.fixture(scope="module")
def core_frame():
    """A 61×61 frame inside a W0 = 7 cluster's core: its edge at 0.1 half-light radii, nearly flat."""
    image, centre, _ = synthetic_cluster(7.0, 1.5, 0.1, half_light_radius_pixels=300.0, seed=3)
    return image, centre


@pytest.mark.parametrize("concentration_w0, truncation_g, half_width_in_half_light_radii", [
    (7.0, 1.5, 3.0),  # π-DOC's truncation g = 1.5, frame edge at 3 r_h.
    (6.3, 1.2, 2.5),  # Harder: closer in, with W0 and g between the estimator's limepy nodes.
])
def test_profile_fit_recovers_the_sky_of_a_frame_filling_cluster(concentration_w0, truncation_g,
                                                                 half_width_in_half_light_radii):
    image, centre, edge_counts = synthetic_cluster(concentration_w0, truncation_g, half_width_in_half_light_radii)
    estimate = estimate_sky(image, centre, PIXEL_SCALE_ARCSEC)
    error_fraction_of_edge_light = (estimate.value - SKY_COUNTS) / edge_counts
    print(f"W0 = {concentration_w0}, g = {truncation_g}, edge at {half_width_in_half_light_radii} r_h: sky error "
          f"{error_fraction_of_edge_light:+.2%} of the edge light, 1σ {estimate.uncertainty / edge_counts:.2%}")
    assert estimate.method == "profile fit"
    assert abs(error_fraction_of_edge_light) < 0.02
    assert abs(estimate.value - SKY_COUNTS) < 3 * estimate.uncertainty
    assert "edge" in estimate.detail


def test_frame_inside_the_core_is_refused(core_frame):
    image, centre = core_frame
    with pytest.raises(SkyUndeterminedError, match="--background VALUE") as refusal:
        estimate_sky(image, centre, PIXEL_SCALE_ARCSEC, source_name="core.fits")
    assert "--background-region x0 x1 y0 y1" in str(refusal.value) and str(refusal.value).startswith("core.fits:")


def test_an_unsubtracted_header_estimate_is_not_taken_for_sky(core_frame):
    # In an FLT (no drizzle keywords) MDRIZSKY is AstroDrizzle's estimate from the image: not used, but quoted.
    image, centre = core_frame
    with pytest.raises(SkyUndeterminedError, match="MDRIZSKY = 9000 is an estimate"):
        estimate_sky(image, centre, PIXEL_SCALE_ARCSEC, header={"MDRIZSKY": 9000.0})


def test_user_value_and_user_region_take_precedence():
    rng = np.random.default_rng(11)
    image = rng.normal(SKY_COUNTS, 15.0, (120, 160))
    image[:60, :60] += 5e3 * np.exp(-np.hypot(*np.indices((60, 60)) - 30.0) / 8.0)  # A cluster in one corner.
    drizzled = {"MDRIZSKY": 55.0, "NDRIZIM": 4}
    region = (100, 160, 60, 120)  # x0 x1 y0 y1: the far corner, sky only.

    by_value = estimate_sky(image, (30, 30), PIXEL_SCALE_ARCSEC, header=drizzled, background=12.5, background_region=region)
    assert (by_value.value, by_value.uncertainty, by_value.method) == (12.5, 0.0, "user value")

    by_region = estimate_sky(image, (30, 30), PIXEL_SCALE_ARCSEC, header=drizzled, background_region=region)
    assert by_region.method == "user region"
    assert abs(by_region.value - SKY_COUNTS) < 1.0 and by_region.uncertainty == pytest.approx(15.0 / 60.0, rel=0.1)

    mask = np.zeros(image.shape, bool)
    mask[60:, 100:] = True
    by_mask = estimate_sky(image, (30, 30), PIXEL_SCALE_ARCSEC, background_region=mask)
    assert by_mask.method == "user region" and by_mask.value == pytest.approx(by_region.value)


def test_header_keywords_that_prove_the_sky_was_subtracted():
    from astropy.io import fits

    image = np.full((50, 50), 3.0)
    drizzled = estimate_sky(image, (25, 25), PIXEL_SCALE_ARCSEC, header=[fits.Header({"NDRIZIM": 2}),
                                                                          fits.Header({"MDRIZSKY": 41.7})])
    assert (drizzled.value, drizzled.method) == (0.0, "header keyword MDRIZSKY") and "41.7" in drizzled.detail
    jwst = estimate_sky(image, (25, 25), PIXEL_SCALE_ARCSEC, header=fits.Header({"BKGSUB": True, "BKGLEVEL": 0.2}))
    assert (jwst.value, jwst.method) == (0.0, "header keyword BKGSUB")


def test_bad_input_is_refused_with_the_value_named():
    image = np.ones((40, 50))
    with pytest.raises(ValueError, match="no finite"):
        estimate_sky(np.full((40, 50), np.nan), (20, 20), PIXEL_SCALE_ARCSEC)
    with pytest.raises(ValueError, match=r"centre_xy_pixels = \(60.0, 20.0\) lies outside the 50×40 image"):
        estimate_sky(image, (60, 20), PIXEL_SCALE_ARCSEC)
    with pytest.raises(ValueError, match=r"background_region = \(10, 70, 0, 5\) lies outside"):
        estimate_sky(image, (20, 20), PIXEL_SCALE_ARCSEC, background_region=(10, 70, 0, 5))
    with pytest.raises(ValueError, match="pixel_scale_arcsec = -1"):
        estimate_sky(image, (20, 20), -1)
    with pytest.raises(ValueError, match="background = 'sky'"):
        estimate_sky(image, (20, 20), PIXEL_SCALE_ARCSEC, background="sky")
    with pytest.raises(ValueError, match="2-D image"):
        estimate_sky(np.ones(10), (5, 0), PIXEL_SCALE_ARCSEC)


def test_ngc1261_chip_light_is_not_subtracted_as_sky():
    """The PC chip (36″) lies inside NGC 1261's half-light radius (41″): there is no sky on it to measure."""
    if not NGC1261_IMAGE.is_file():
        pytest.skip(f"real HST image not found at {NGC1261_IMAGE} (../shared is absent)")
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(NGC1261_IMAGE) as hdulist:
        data, headers = hdulist[1].data.astype(float), [hdulist[1].header, hdulist[0].header]
        wcs = WCS(hdulist[1].header, hdulist)
    # Harris (1996, 2010 edition) centre of NGC 1261.
    centre = [float(value) for value in wcs.world_to_pixel(SkyCoord("03h12m16.21s", "-55d12m58.4s", frame="icrs"))]
    try:
        estimate = estimate_sky(data, centre, 0.0455, header=headers, source_name=NGC1261_IMAGE.name)
    except SkyUndeterminedError as refusal:
        assert str(refusal).startswith(NGC1261_IMAGE.name) and "--background VALUE" in str(refusal)
        assert "BACKGRND = 1.50032 is an estimate" in str(refusal)
        return
    _, levels, _ = radial_profile(data, np.isfinite(data) & (data < 4095), centre)
    assert estimate.method == "profile fit"
    assert estimate.value + 2 * estimate.uncertainty < 0.5 * np.median(levels[-5:])


def test_pixel_noise_is_read_through_a_cluster_and_cosmic_rays():
    # A bright cluster profile (its gradient must not count as noise), white noise of 1σ = 2, and 1 %
    # of the pixels hit by cosmic rays of 500: the estimate is within 5 % of 2.
    rng = np.random.default_rng(3)
    rows, columns = np.indices((400, 400))
    image = 1e3 * np.exp(-((rows - 200.0) ** 2 + (columns - 200.0) ** 2) / (2 * 80.0**2)) + rng.normal(0.0, 2.0, (400, 400))
    image[rng.random(image.shape) < 0.01] += 500.0
    image[:40, :40] = np.nan
    assert estimate_pixel_noise(image) == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError, match="2-D"):
        estimate_pixel_noise(image[0])
