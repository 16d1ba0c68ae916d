"""The statistics of functions.py against cases worked out by hand.

CB21's statistics (paper-CB21.md §9) put each value in a bin of the predicted quantity and measure
the error against the bin centre, then average over bins. So a prediction that is perfect gives zero
only when the values sit on bin centres; the cases below use that, and one test shows the small
floor the bin width leaves when they do not.
"""
import math

import numpy as np
import pytest

import functions
from pidoc import quantities
from pidoc import io as pidoc_io

PIXEL_EDGES = functions.PIXEL_MASS_BIN_EDGES_LOG_MSUN
PIXEL_CENTRES = functions.bin_centres(PIXEL_EDGES)
PIXEL_BIN_WIDTH_DEX = 3.0 / 49.0
MAP_SHAPE = (160, 160, 1)


def maps_of_values(values, number_of_maps=2):
    """(number_of_maps, 160, 160, 1) maps whose pixels cycle through `values`."""
    pixels = np.resize(np.asarray(values, dtype=np.float64), number_of_maps * 160 * 160)
    return pixels.reshape((number_of_maps,) + MAP_SHAPE)


# --- Binning ----------------------------------------------------------------------------------------
def test_bins_are_half_open_like_the_authors_code():
    edges = np.array([0.0, 1.0, 2.0])
    values = [-0.1, 0.0, 0.5, 1.0, 1.999, 2.0, np.nan]
    assert quantities.assign_bins(values, edges).tolist() == [-1, 0, 0, 1, 1, -1, -1]
    assert functions.bin_centres(edges).tolist() == [0.5, 1.5]


def test_the_papers_bins():
    assert len(PIXEL_EDGES) == 50 and PIXEL_EDGES[0] == -2.0 and PIXEL_EDGES[-1] == 1.0
    assert len(functions.TOTAL_MASS_BIN_EDGES_LOG_MSUN) == 20
    assert np.allclose(np.diff(functions.AGE_BIN_EDGES_GYR), 14.0 / 19.0)


def test_mean_and_std_per_bin_by_hand():
    # Bin 0 holds 1 and 3 (mean 2, std 1), bin 1 holds 10, bin 2 is empty; index −1 is ignored.
    mean, std, count = functions.mean_and_std_per_bin([0, 0, 1, -1], [1.0, 3.0, 10.0, 99.0], 3)
    assert mean[:2].tolist() == [2.0, 10.0] and std[:2].tolist() == [1.0, 0.0] and count.tolist() == [2, 1, 0]
    assert np.isnan(mean[2]) and np.isnan(std[2])


def test_summaries_of_empty_input_are_nan_without_warnings():
    with np.errstate(all="raise"):
        assert math.isnan(functions.summarize_bins([np.nan, np.nan])["mean"])
        assert math.isnan(functions.residual_summary([])["median"])


def test_residual_summary_by_hand():
    summary = functions.residual_summary(np.arange(101.0))
    assert (summary["median"], summary["percentile_16"], summary["percentile_84"], summary["count"]) == (50.0, 16.0, 84.0, 101)


# --- A perfect prediction gives zero for every metric ---------------------------------------------
def test_perfect_pixel_mass_on_bin_centres_gives_zero():
    true_maps = maps_of_values(PIXEL_CENTRES)
    statistics = functions.pixel_mass_statistics(true_maps, true_maps.copy())
    assert statistics["paper"] == {"mean": 0.0, "minimum": 0.0, "maximum": 0.0}
    assert statistics["paper_without_faint_bins"]["mean"] == 0.0
    assert np.allclose(statistics["xi"]["mean"], 0.0, atol=1e-12) and np.allclose(statistics["mu"]["std"], 0.0, atol=1e-12)
    assert statistics["residual_dex"]["median"] == 0.0 and statistics["residual_dex"]["percentile_84"] == 0.0
    assert statistics["number_of_maps"] == 2 and statistics["residual_dex"]["count"] == 2 * 160 * 160


def test_perfect_total_mass_on_bin_centres_gives_zero():
    # A uniform map of pixel value v holds log10(25600 · 10^v) = v + log10(25600) in total.
    total_centres = functions.bin_centres(functions.TOTAL_MASS_BIN_EDGES_LOG_MSUN)[[2, 9, 15]]
    true_maps = np.stack([np.full(MAP_SHAPE, centre - np.log10(160 * 160)) for centre in total_centres])
    assert np.allclose(quantities.total_log_mass(true_maps), total_centres, atol=1e-12)
    statistics = functions.total_mass_statistics(true_maps, true_maps.copy())
    assert statistics["paper"]["mean"] == pytest.approx(0.0, abs=1e-9)
    assert statistics["residual_dex"]["median"] == 0.0


def test_perfect_age_and_distance_give_zero():
    ages = functions.bin_centres(functions.AGE_BIN_EDGES_GYR)
    age = functions.age_statistics(ages, ages.copy())
    assert age["paper"] == {"mean": 0.0, "minimum": 0.0, "maximum": 0.0} and age["residual_gyr"]["median"] == 0.0
    distances = np.array([15.0, 30.0, 60.0, 80.0, 15.0])
    distance = functions.distance_statistics(distances, distances.copy())
    assert distance["paper_mean_absolute_error_kpc"] == 0.0 and distance["paper_mean_std_kpc"] == 0.0


def test_perfect_mass_to_light_gives_zero():
    log_flux = np.full((2,) + MAP_SHAPE, -6.0)
    log_mass = np.full((2,) + MAP_SHAPE, -2.0)
    distances = np.array([10.0, 60.0])
    statistics = functions.mass_to_light_statistics(log_flux, log_mass, log_mass.copy(), distances, distances.copy())
    for choice in ("true_distance", "predicted_distance"):
        assert statistics[choice]["mean_percent_error"] == pytest.approx(0.0, abs=1e-10)


# --- Known errors -------------------------------------------------------------------------------------
def test_uniform_offset_of_a_tenth_of_a_dex():
    # Predictions on bin centres c_i, truths 0.1 dex lower: in every predicted bin CB21's error is
    # 100 |10^t − 10^c| / 10^t = 100 |1 − 10^0.1| = 25.8925...%, so the bin average is the same.
    predicted = maps_of_values(PIXEL_CENTRES[5:45])
    statistics = functions.pixel_mass_statistics(predicted - 0.1, predicted)
    expected_percent = 100.0 * (10.0**0.1 - 1.0)
    assert expected_percent == pytest.approx(25.892541179416725, rel=1e-12)
    assert statistics["paper"]["mean"] == pytest.approx(expected_percent, rel=1e-9)
    assert statistics["paper"]["minimum"] == pytest.approx(expected_percent, rel=1e-9)
    assert statistics["paper"]["maximum"] == pytest.approx(expected_percent, rel=1e-9)
    # μ: in each predicted bin the truth lies 0.1 dex below the centre, with no scatter.
    filled = statistics["mu"]["count"] > 0
    assert np.allclose(statistics["mu"]["mean"][filled], -0.1) and np.allclose(statistics["mu"]["std"][filled], 0.0, atol=1e-12)
    assert statistics["residual_dex"]["median"] == pytest.approx(0.1)


def test_an_offset_below_the_truth_weighs_differently():
    # Predictions 0.1 dex below the truth: 100 |1 − 10^−0.1| = 20.5671...%, not 25.89 %: the error is
    # relative to the true mass.
    predicted = maps_of_values(PIXEL_CENTRES[5:45])
    statistics = functions.pixel_mass_statistics(predicted + 0.1, predicted)
    assert statistics["paper"]["mean"] == pytest.approx(100.0 * (1.0 - 10.0**-0.1), rel=1e-9)
    assert statistics["paper"]["mean"] == pytest.approx(20.567176527571, rel=1e-9)


def test_perfect_prediction_off_the_bin_centres_leaves_the_bin_width_floor():
    # Perfect predictions a quarter bin either side of the centre, δ = w/4 with w = 3/49 dex: the bin
    # holds errors 100 |1 − 10^−δ| and 100 |1 − 10^δ|, whose mean is 50 (10^δ − 10^−δ) = 100 sinh(δ ln 10) = 3.5251...%.
    quarter_bin = PIXEL_BIN_WIDTH_DEX / 4.0
    values = np.concatenate([PIXEL_CENTRES[8:40] - quarter_bin, PIXEL_CENTRES[8:40] + quarter_bin])  # 64 values, 800 pixels each
    true_maps = maps_of_values(values)
    statistics = functions.pixel_mass_statistics(true_maps, true_maps.copy())
    expected_percent = 50.0 * (10.0**quarter_bin - 10.0**-quarter_bin)
    assert expected_percent == pytest.approx(3.5251, abs=1e-4)
    assert statistics["paper"]["mean"] == pytest.approx(expected_percent, rel=1e-9)
    assert statistics["residual_dex"]["median"] == 0.0


def test_total_mass_offset():
    # Every map's predicted total is the bin centre; the true total is 10 % lower: error 100 |1 − 1.1|.
    total_centres = functions.bin_centres(functions.TOTAL_MASS_BIN_EDGES_LOG_MSUN)[[3, 8, 12, 16]]
    predicted_maps = np.stack([np.full(MAP_SHAPE, centre - np.log10(160 * 160)) for centre in total_centres])
    true_maps = predicted_maps - np.log10(1.1)
    statistics = functions.total_mass_statistics(true_maps, predicted_maps)
    assert statistics["paper"]["mean"] == pytest.approx(10.0, rel=1e-9)
    assert statistics["residual_dex"]["median"] == pytest.approx(np.log10(1.1))


def test_age_error_is_averaged_over_predicted_bins_not_maps():
    centres = functions.bin_centres(functions.AGE_BIN_EDGES_GYR)
    # Two maps predicted at centre 3 with true ages 1 Gyr below and 3 Gyr above (bin error 2 Gyr),
    # one map predicted at centre 10 with a true age 0.5 Gyr above (bin error 0.5 Gyr).
    predicted = np.array([centres[3], centres[3], centres[10]])
    true = np.array([centres[3] - 1.0, centres[3] + 3.0, centres[10] + 0.5])
    statistics = functions.age_statistics(true, predicted)
    assert statistics["absolute_error_per_bin_gyr"][3] == pytest.approx(2.0)
    assert statistics["absolute_error_per_bin_gyr"][10] == pytest.approx(0.5)
    assert statistics["paper"]["mean"] == pytest.approx(1.25)       # the map average would be 1.5
    assert statistics["paper"]["minimum"] == pytest.approx(0.5) and statistics["paper"]["maximum"] == pytest.approx(2.0)
    assert statistics["residual_gyr"]["median"] == pytest.approx(-0.5)


def test_uniform_age_offset():
    centres = functions.bin_centres(functions.AGE_BIN_EDGES_GYR)[2:]
    statistics = functions.age_statistics(centres - 1.0, centres)
    assert statistics["paper"]["mean"] == pytest.approx(1.0)
    filled = statistics["mu"]["count"] > 0
    assert np.allclose(statistics["mu"]["mean"][filled], -1.0)


def test_distance_statistics_by_hand():
    true = np.array([15.0, 15.0, 30.0, 30.0, 30.0])
    predicted = np.array([14.0, 18.0, 30.0, 36.0, 27.0])
    statistics = functions.distance_statistics(true, predicted)
    at_15, at_30 = statistics["per_distance"]
    # 15 kpc: predictions 14 and 18: mean 16, std 2, mean |error| (1 + 3) / 2 = 2.
    assert (at_15["number_of_maps"], at_15["mean_predicted_kpc"], at_15["std_predicted_kpc"], at_15["mean_absolute_error_kpc"]) == (2, 16.0, 2.0, 2.0)
    # 30 kpc: predictions 30, 36, 27: mean 31, std sqrt((1 + 25 + 16) / 3) = sqrt(14), mean |error| 3.
    assert at_30["mean_predicted_kpc"] == pytest.approx(31.0)
    assert at_30["std_predicted_kpc"] == pytest.approx(math.sqrt(14.0))
    assert at_30["mean_absolute_error_kpc"] == pytest.approx(3.0)
    # CB21 averages over the distances: (2 + 3) / 2 = 2.5; the map average would be 13 / 5 = 2.6.
    assert statistics["paper_mean_absolute_error_kpc"] == pytest.approx(2.5)
    assert statistics["paper_mean_std_kpc"] == pytest.approx((2.0 + math.sqrt(14.0)) / 2.0)
    # Residuals −1, 3, 0, 6, −3: median 0.
    assert statistics["residual_kpc"]["median"] == 0.0 and at_15["residual_kpc"]["median"] == pytest.approx(1.0)


# --- Mass-to-light ratio ------------------------------------------------------------------------------
def test_luminosity_and_global_mass_to_light_by_hand():
    # Each pixel: F = 10^−6 L☉/kpc² at D = 10 kpc is L = 10^−6 · 4π · 10² L☉; its mass is 10^−2 M☉.
    # So M/L_V = 10^−2 / (4π · 10^−4) = 100 / (4π) = 7.9577 everywhere.
    log_flux = np.full((1,) + MAP_SHAPE, -6.0)
    luminosity = quantities.luminosity_maps_lsun(log_flux, [10.0])
    assert luminosity[0, 0, 0, 0] == pytest.approx(4.0 * np.pi * 1e-4)
    assert quantities.global_mass_to_light(np.full((1,) + MAP_SHAPE, -2.0), luminosity)[0] == pytest.approx(100.0 / (4.0 * np.pi))


def test_mass_to_light_errors_with_true_and_predicted_distance():
    log_flux = np.full((1,) + MAP_SHAPE, -6.0)
    true_mass = np.full((1,) + MAP_SHAPE, -2.0)
    # 10 % more predicted mass, and a predicted distance of 11 kpc instead of 10.
    predicted_mass = true_mass + np.log10(1.1)
    statistics = functions.mass_to_light_statistics(log_flux, true_mass, predicted_mass, [10.0], [11.0])
    assert statistics["true"][0] == pytest.approx(100.0 / (4.0 * np.pi))
    assert statistics["true_distance"]["mean_percent_error"] == pytest.approx(10.0)
    # With 11 kpc the light is 1.21 times larger: M/L = 1.1 / 1.21 of the truth, 9.0909 % low.
    assert statistics["predicted_distance"]["mean_percent_error"] == pytest.approx(100.0 * (1.0 - 1.1 / 1.21))
    assert statistics["predicted_distance"]["log_ratio_dex"]["median"] == pytest.approx(np.log10(1.1 / 1.21))


def test_a_non_positive_predicted_distance_is_left_out():
    log_flux = np.full((2,) + MAP_SHAPE, -6.0)
    mass = np.full((2,) + MAP_SHAPE, -2.0)
    statistics = functions.mass_to_light_statistics(log_flux, mass, mass.copy(), [10.0, 10.0], [10.0, -0.3])
    assert statistics["predicted_distance"]["number_of_maps"] == 1
    assert statistics["predicted_distance"]["mean_percent_error"] == pytest.approx(0.0, abs=1e-10)
    assert statistics["true_distance"]["number_of_maps"] == 2


def test_mass_to_light_profile_by_hand():
    # Uniform light; ten times more mass per pixel within 5″ of the centre. Annuli [0, 2), [2, 4) have
    # M/L 10 × 100/(4π), annulus [6, 8) has 100/(4π); the light-weighted centre of a uniform map is
    # the middle of the grid, pixel (79.5, 79.5).
    log_flux = np.full(MAP_SHAPE, -6.0)
    centre = quantities.light_weighted_centre_pixels(log_flux)
    assert centre == pytest.approx((79.5, 79.5))
    radius = quantities.radius_map_arcsec(centre)
    log_mass = np.where(radius < 5.0, -1.0, -2.0)
    luminosity = quantities.luminosity_maps_lsun(log_flux[np.newaxis], [10.0])[0]
    profile = quantities.mass_to_light_profile(log_mass, luminosity, centre, [0.0, 2.0, 4.0, 6.0, 8.0])
    base = 100.0 / (4.0 * np.pi)
    assert profile[0] == pytest.approx(10.0 * base) and profile[1] == pytest.approx(10.0 * base)
    assert profile[3] == pytest.approx(base)
    assert base < profile[2] < 10.0 * base


def test_light_weighted_centre_of_an_offset_source():
    # All light in one pixel (row 100, column 40): the centre is that pixel.
    log_flux = np.full(MAP_SHAPE, -30.0)
    log_flux[100, 40, 0] = -3.0
    assert quantities.light_weighted_centre_pixels(log_flux) == pytest.approx((100.0, 40.0), abs=1e-9)


# --- Input checks (pure numpy, no network needed) -----------------------------------------------
def test_map_shapes_accepted_and_refused():
    single = np.full((160, 160), -5.0)
    assert pidoc_io.check_flux_maps(single).shape == (1, 160, 160, 1)
    assert pidoc_io.check_flux_maps(np.stack([single] * 3)).shape == (3, 160, 160, 1)
    for shape in [(160, 160, 2), (2, 100, 100), (2, 160, 160, 3), (0, 160, 160, 1), (160,)]:
        with pytest.raises(ValueError, match=re_escape_shape(shape)):
            pidoc_io.check_flux_maps(np.full(shape, -5.0))


def re_escape_shape(shape):
    """A regular expression matching the printed shape, e.g. '\\(2, 100, 100\\)'."""
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def test_linear_maps_are_refused_but_real_log_maps_pass():
    log_map = np.full((160, 160), -8.0)
    log_map[70:90, 70:90] = -2.0                      # a core brighter than any real cluster's
    pidoc_io.check_flux_maps(log_map)
    with pytest.raises(ValueError, match="linear"):
        pidoc_io.check_flux_maps(10.0**log_map)        # linear F in L☉/kpc²: tiny but positive
    with pytest.raises(ValueError, match="linear"):
        pidoc_io.check_flux_maps(np.full((160, 160), 350.0))   # linear, in some larger unit
