"""Calibrated intervals (pidoc/calibration/uncertainty.py), their coverage (pidoc/calibration/coverage.py) and the domain verdict (pidoc/calibration/domain.py), at tiny sizes.

The conformal machinery is checked on synthetic residuals whose distribution is known; the domain
verdict on maps from the project's own generators; the committed calibration file against the
committed networks and test maps.
"""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pidoc.calibration import coverage
from pidoc.calibration import domain
import functions
from pidoc.mocks import out_of_domain
from pidoc.mocks import stellar_evolution
from pidoc.calibration import uncertainty
from pidoc.model import open_model

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINED_DIRECTORY = PROJECT_ROOT / "trained_piDOC"
INPUT_DIRECTORY = PROJECT_ROOT / "input_files"


def heteroscedastic_gaussian(number, seed):
    """Features [1, x] with x uniform in [0, 1] and residuals N(0, σ(x)²), σ = exp(−1 + 1.5 x)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, number)
    features = np.column_stack([np.ones(number), x])
    return features, rng.normal(0.0, np.exp(-1.0 + 1.5 * x))


def test_a_gaussian_model_covers_68_and_95_percent():
    probabilities = uncertainty.quantile_probabilities()
    fit = heteroscedastic_gaussian(3000, 1)
    conformal = heteroscedastic_gaussian(3000, 2)
    calibrated = uncertainty.calibrate_quantity(*fit, *conformal, probabilities)
    # The σ model recovers the slope of log σ (the intercept absorbs E log|ε|, irrelevant here).
    assert calibrated["scale_coefficients"][1] == pytest.approx(1.5, abs=0.15)
    features, residuals = heteroscedastic_gaussian(40_000, 3)
    for level, tolerance in ((0.68, 2.0), (0.95, 1.0)):
        sigma = uncertainty.scale(calibrated["scale_coefficients"], features)
        lower, upper = uncertainty.interval(calibrated, np.zeros(len(residuals)), sigma, level)
        coverage = 100.0 * np.mean((lower <= residuals) & (residuals <= upper))
        assert coverage == pytest.approx(100.0 * level, abs=tolerance)
        # Adaptive: the width follows σ(x), so it is 1.5 e-folds wider at x = 1 than at x = 0.
        width = upper - lower
        assert np.log(width[features[:, 1] > 0.9].mean() / width[features[:, 1] < 0.1].mean()) == pytest.approx(1.35, abs=0.15)


def test_conformal_ranks_are_the_finite_sample_ones():
    scores = np.arange(1.0, 20.0)           # 19 scores: (n + 1) p = 20 p
    lower, middle, upper = uncertainty.conformal_quantiles(scores, [0.16, 0.5, 0.84])
    assert (lower, middle, upper) == (3.0, 10.0, 17.0)   # ⌊3.2⌋, ⌈10⌉, ⌈16.8⌉


def test_an_interval_contains_the_point_prediction_even_under_bias():
    probabilities = uncertainty.quantile_probabilities()
    features = np.ones((500, 1))
    # Truth always above the prediction by 1 to 2: both quantiles are positive.
    residuals = np.random.default_rng(5).uniform(1.0, 2.0, 500)
    calibrated = uncertainty.calibrate_quantity(features, residuals, features, residuals, probabilities)
    points = np.linspace(-3.0, 3.0, 7)
    for level in uncertainty.INTERVAL_LEVELS:
        sigma = uncertainty.scale(calibrated["scale_coefficients"], np.ones((7, 1)))
        lower, upper = uncertainty.interval(calibrated, points, sigma, level)
        assert np.all(lower <= points) and np.all(points <= upper)
        assert np.all(upper > points + 1.0)


def test_cluster_averaged_coverage_counts_clusters_not_maps():
    # Cluster 0 has 9 covered maps, cluster 1 one uncovered map: 50 %, not 90 %.
    covered = np.array([1.0] * 9 + [0.0])
    fraction, _, clusters = coverage.cluster_mean(covered, np.array([0] * 9 + [1]))
    assert (fraction, clusters) == (0.5, 2)


def test_impossible_outputs_are_flagged():
    maps = np.zeros((4, 160, 160, 1), np.float32)
    distance_age = np.array([[-23.6, 5.0], [20.0, 20.7], [np.nan, 3.0], [30.0, 7.0]])
    reasons = domain.physical_reasons(maps, distance_age)
    assert "distance -23.6 kpc ≤ 0" in reasons[0]
    assert "age 20.7 Gyr outside 0–14 Gyr" in reasons[1]
    assert "non-finite" in reasons[2]
    assert reasons[3] == ""


def test_distance_edges_flag_maps_beyond_the_calibrated_distances():
    # Nine synthetic features: calibration maps around the origin; boundary maps "nearer" (feature 5,
    # the log distance, 3 units low) and "farther" (3 units high). The thresholds are set on the
    # half not fitted, so about 0.25 % of new calibration-like maps fall beyond each edge.
    rng = np.random.default_rng(5)
    number_of_features = len(domain.EDGE_FEATURES)
    calibration_features = rng.normal(0.0, 1.0, (4000, number_of_features))
    fitting_half = np.arange(4000) < 2000
    shift = np.zeros(number_of_features)
    shift[5] = 3.0
    boundary_features = np.vstack([rng.normal(0.0, 1.0, (300, number_of_features)) - shift,
                                   rng.normal(0.0, 1.0, (300, number_of_features)) + shift])
    boundary_distance_kpc = np.r_[np.full(300, 8.0), np.full(300, 120.0)]
    edges = domain.fit_distance_edges(calibration_features, fitting_half, boundary_features, boundary_distance_kpc, (15.0, 80.0))

    new_calibration_like = rng.normal(0.0, 1.0, (20000, number_of_features))
    scores = domain.edge_scores(edges, new_calibration_like)
    for side in domain.EDGE_SIDES:
        assert np.mean(scores[side] > edges["sides"][side]["threshold"]) < 0.01
    nearer = domain.edge_scores(edges, rng.normal(0.0, 1.0, (500, number_of_features)) - 1.5 * shift)["nearer"]
    assert np.mean(nearer > edges["sides"]["nearer"]["threshold"]) > 0.95
    uncertainty.check_distance_edges(json.loads(json.dumps(edges)))
    with pytest.raises(ValueError, match="no usable maps|at least 2"):
        domain.fit_distance_edges(calibration_features, fitting_half, boundary_features[:300], boundary_distance_kpc[:300],
                                  (15.0, 80.0))


def opened(directory):
    """The model folder `directory`, opened as every driver opens it."""
    return open_model(directory, INPUT_DIRECTORY / functions.STANDARDIZATION_SUBDIRECTORY)


@pytest.fixture(scope="module")
def committed_calibration():
    return open_model(TRAINED_DIRECTORY, INPUT_DIRECTORY / functions.STANDARDIZATION_SUBDIRECTORY).require_calibration()


@pytest.fixture(scope="module")
def committed_predictions():
    """The committed networks' predictions of the 100 committed test maps (about 10 s on a CPU)."""
    model = open_model(TRAINED_DIRECTORY, INPUT_DIRECTORY / functions.STANDARDIZATION_SUBDIRECTORY)
    predicted_log_mass, predicted_distance_age, _ = model.predict(np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy"))
    return predicted_log_mass, predicted_distance_age


def plausible_predictions(number_of_maps):
    """Predictions inside physical limits, so only the input maps decide the verdict."""
    return np.full((number_of_maps, 160, 160, 1), -1.0, np.float32), np.tile([30.0, 8.0], (number_of_maps, 1))


def test_committed_test_maps_are_inside(committed_calibration, committed_predictions):
    # With π-DOC's own readings of them, since the distance edges judge the reading with the map.
    log_flux = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")
    verdicts = domain.verdicts(committed_calibration, log_flux, *committed_predictions)
    assert sum(verdict == "outside" for verdict, _ in verdicts) <= 3


@pytest.mark.parametrize("family, expected_words", [("smooth", "too smooth"), ("flat", "same value")])
def test_starless_and_flat_maps_are_outside(committed_calibration, family, expected_words):
    log_flux, _, _ = out_of_domain.make_family(family, 2, seed=3)
    verdicts = domain.verdicts(committed_calibration, log_flux, *plausible_predictions(len(log_flux)))
    assert all(verdict == "outside" for verdict, _ in verdicts)
    assert all(expected_words in reason for _, reason in verdicts), verdicts


def test_out_of_domain_cache_gives_the_same_maps_and_grows_without_remaking(tmp_path):
    # Smooth models need no stellar tables, so the test is quick; the cache is the same for every family.
    fresh, fresh_clusters, fresh_labels = out_of_domain.make_family("smooth", 3, seed=5)
    cached, cached_clusters, cached_labels = out_of_domain.make_family("smooth", 2, seed=5, cache_directory=tmp_path)
    files = sorted((tmp_path / "seed5" / "smooth").glob("*.npz"))
    assert len(files) == 2 and not list(tmp_path.rglob("*.tmp*"))
    first_written = [path.stat().st_mtime_ns for path in files]
    grown, grown_clusters, grown_labels = out_of_domain.make_family("smooth", 3, seed=5, cache_directory=tmp_path)
    assert [path.stat().st_mtime_ns for path in files] == first_written      # read back, not remade
    assert np.array_equal(grown, fresh) and np.array_equal(cached, fresh[:len(cached)])
    assert np.array_equal(grown_clusters, fresh_clusters) and np.array_equal(grown_labels, fresh_labels, equal_nan=True)
    with pytest.raises(ValueError, match="default stellar tables"):
        out_of_domain.make_family("extended", 1, seed=5, initial_stars=1000, cache_directory=tmp_path)


def test_evaluate_scores_only_the_families_asked_for_and_refuses_an_unknown_one(tmp_path):
    import evaluate_piDOC
    model = open_model(TRAINED_DIRECTORY, INPUT_DIRECTORY / functions.STANDARDIZATION_SUBDIRECTORY)
    results = evaluate_piDOC.evaluate_out_of_domain(model, 2, seed=3, cache_directory=tmp_path, families=["flat"])
    assert set(results) == {"thresholds", "flat"}
    assert results["flat"]["number_of_clusters"] == 2 and results["flat"]["percent_outside"] == 100.0
    assert len(list((tmp_path / "seed3" / "flat").glob("*.npz"))) == 2
    with pytest.raises(ValueError, match="unknown out-of-domain family 'dwarf'"):
        evaluate_piDOC.evaluate_out_of_domain(model, 1, seed=3, cache_directory=tmp_path, families=["dwarf"])


def test_a_tiny_extended_cluster_at_15_kpc_is_outside(committed_calibration):
    def coarse_tables(metallicity_feh):
        return stellar_evolution.load_stellar_table(metallicity_feh, **stellar_evolution.COARSE_GRID)

    log_flux, _, _ = out_of_domain.make_family("extended", 1, seed=4, stellar_table_loader=coarse_tables,
                                            initial_stars=20_000, age_range_gyr=(0.05, 0.3))
    verdicts = domain.verdicts(committed_calibration, log_flux, *plausible_predictions(len(log_flux)))
    assert verdicts[0][0] == "outside", verdicts


def copy_of_trained_directory(tmp_path):
    directory = tmp_path / "trained"
    shutil.copytree(TRAINED_DIRECTORY, directory)
    return directory


def test_committed_summary_is_what_the_code_makes_now(committed_predictions):
    # The committed predictions_summary.csv of piDOC_predictions.py, recomputed with the committed
    # networks and calibration: every verdict and its reason, and the distance bounds, must match.
    log_flux = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")
    rows, _ = uncertainty.summarize(opened(TRAINED_DIRECTORY), log_flux, *committed_predictions)
    with open(PROJECT_ROOT / "predictions" / uncertainty.SUMMARY_CSV_FILE, newline="") as summary:
        committed = list(csv.DictReader(summary))
    assert [row["domain"] for row in committed] == [row["domain"] for row in rows]
    assert [row["domain_reason"] for row in committed] == [row["domain_reason"] for row in rows]
    for column in ("distance_kpc_lo95", "distance_kpc_hi95", "age_gyr_lo68", "age_gyr_hi68"):
        np.testing.assert_allclose([float(row[column]) for row in committed], [row[column] for row in rows], rtol=1e-3, atol=1e-3)


def test_pixel_intervals_use_the_fitted_scale_model(committed_calibration, committed_predictions):
    # pixel_intervals computes log σ per map and per pixel separately; it must equal σ = exp(X β)
    # of the full design matrix that the scale model was fitted with.
    log_flux = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")[:3]
    predicted_log_mass, predicted_distance_age = (prediction[:3] for prediction in committed_predictions)
    calibrated = committed_calibration["pixels"]
    map_features = uncertainty.map_difficulty_features(log_flux, predicted_distance_age)
    point = predicted_log_mass.astype(np.float64).ravel()
    sigma = uncertainty.scale(calibrated["scale_coefficients"],
                              uncertainty.pixel_difficulty_features(point, np.repeat(map_features, 160 * 160, axis=0)))
    groups = uncertainty.pixel_groups(point, np.repeat(uncertainty.distance_groups(predicted_distance_age[:, 0]), 160 * 160))
    expected_upper = np.maximum(uncertainty.bound(calibrated, point, sigma, groups, 0.975), point)
    intervals = uncertainty.pixel_intervals(committed_calibration, log_flux, predicted_log_mass, predicted_distance_age)
    np.testing.assert_allclose(intervals[0.95][1].ravel(), expected_upper, rtol=1e-5, atol=1e-5)


def test_pixel_coverage_selects_pixels_by_truth_or_by_prediction(committed_calibration, committed_predictions):
    # Truth = prediction everywhere (inside every interval, which holds its point), except the pixels
    # predicted below the limit, whose truth is put 3 dex higher: above the limit, far outside their
    # interval. Selected by truth they count and lower the coverage by exactly their share; selected
    # by prediction they do not count, and the coverage is 100 %.
    log_flux = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")[:2]
    predicted_log_mass, predicted_distance_age = (prediction[:2] for prediction in committed_predictions)
    limit = -1.0
    moved = (predicted_log_mass < limit) & (predicted_log_mass + 3.0 > limit)
    truth = np.where(moved, predicted_log_mass + 3.0, predicted_log_mass)
    result = coverage.pixel_coverage(committed_calibration, log_flux, truth, predicted_log_mass,
                                     predicted_distance_age, limit, (0.95,))
    by_truth, by_prediction = result["truth"][0][0.95], result["prediction"][0][0.95]
    kept = (predicted_log_mass > limit).reshape(2, -1).sum(axis=1)
    share_moved = moved.reshape(2, -1).sum(axis=1) / (kept + moved.reshape(2, -1).sum(axis=1))
    assert moved.sum() > 1000
    np.testing.assert_allclose(by_prediction, 1.0)
    np.testing.assert_allclose(by_truth, 1.0 - share_moved)
    with pytest.raises(ValueError, match="pixel selection 'observed'"):
        coverage.pixel_coverage(committed_calibration, log_flux, truth, predicted_log_mass, predicted_distance_age,
                                limit, (0.95,), selections=("observed",))


def plummer_log_flux(offset_arcsec, scale_radius_arcsec=8.0):
    """log10 of a smooth Plummer surface brightness centred `offset_arcsec` (row, column) from the
    frame's centre, with a floor where the light is 10⁶ times fainter than the centre."""
    pixels = (np.arange(160) - 79.5) * 0.25
    rows, columns = np.meshgrid(pixels - offset_arcsec[0], pixels - offset_arcsec[1], indexing="ij")
    surface_brightness = (1.0 + (rows**2 + columns**2) / scale_radius_arcsec**2) ** -2
    return np.log10(np.maximum(surface_brightness, 1e-6))[None, :, :, None].astype(np.float32) + 3.0


def test_the_aperture_centroid_sees_an_offset_that_the_frame_cuts_off():
    # An extended cluster 6″ off-centre loses more light beyond the far edge of the frame, which pulls
    # the whole frame's centroid towards the centre (measured 3.3″, inside the χ² rule); the aperture
    # centroid is barely pulled (5.7″), and the map is flagged by it.
    centred = plummer_log_flux((0.0, 0.0), scale_radius_arcsec=20.0)
    off_centre = plummer_log_flux((0.0, 6.0), scale_radius_arcsec=20.0)
    frame_offsets_arcsec, _ = domain.light_centre_offsets(off_centre)
    aperture_offsets_arcsec = domain.aperture_centre_offsets(off_centre)
    assert frame_offsets_arcsec[0, 1] < 4.0
    assert aperture_offsets_arcsec[0, 1] == pytest.approx(6.0, abs=0.4)
    assert abs(aperture_offsets_arcsec[0, 0]) < 0.1
    np.testing.assert_allclose(domain.aperture_centre_offsets(centred), 0.0, atol=0.05)
    reasons = domain.centre_reasons(np.concatenate([centred, off_centre]))
    assert reasons[0] == ""
    assert reasons[1].startswith("frame off-centre: the light within 8″ of its centre is centred 5.7″"), reasons


def test_the_flux_scale_reference_sees_a_rescaling_and_not_the_clusters():
    # The 100 committed maps, half their clusters as the reference and the other half scored (and
    # the other way round inside the fit): a rescaling moves the offset by exactly its size, because
    # the nine statistics that choose the neighbours do not move; unchanged maps stay within 4 σ.
    maps = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")
    with open(INPUT_DIRECTORY / "testset_metadata.csv", newline="") as handle:
        cluster_ids = np.array([int(row["cluster_id"]) for row in csv.DictReader(handle)])
    reference = domain.fit_flux_scale_reference(maps, uncertainty.split_clusters_in_halves(cluster_ids))
    uncertainty.check_flux_scale_reference(reference)
    assert reference["features"] == list(domain.FLUX_INVARIANT_FEATURES)
    # Measured 0.66 dex on these maps (0.49 dex on the general model's 1,500 calibration maps).
    assert 0.3 < reference["sigma_dex"] < 1.0
    calibrated = {"flux_scale_reference": reference}
    offsets_dex, z_scores = domain.flux_scale_offsets(calibrated, maps)
    assert np.all(np.abs(z_scores) < domain.FLUX_SCALE_Z_THRESHOLD)
    for shift_dex in (-3.0, 3.0):
        shifted_offsets_dex, shifted_z_scores = domain.flux_scale_offsets(calibrated, maps + np.float32(shift_dex))
        np.testing.assert_allclose(shifted_offsets_dex - offsets_dex, shift_dex, atol=1e-4)
        # Measured 78 % (fainter) and 71 % (brighter) beyond 4 σ with only 50 reference maps.
        assert np.mean(np.abs(shifted_z_scores) > domain.FLUX_SCALE_Z_THRESHOLD) > 0.6
    broken = dict(reference, sigma_dex=0.0)
    with pytest.raises(ValueError, match="flux-scale spread 0.0 dex"):
        uncertainty.check_flux_scale_reference(broken)
    with pytest.raises(ValueError, match="malformed"):
        uncertainty.check_flux_scale_reference(dict(reference, flux_scale_dex=reference["flux_scale_dex"][:-1]))


def test_a_corrupt_or_foreign_calibration_file_is_refused(tmp_path):
    directory = copy_of_trained_directory(tmp_path)
    path = directory / uncertainty.CALIBRATION_FILE
    record = json.loads(path.read_text())

    path.write_text("{ not json")
    with pytest.raises(ValueError, match="calibration file .*calibration.json is corrupt"):
        opened(directory).require_calibration()
    path.write_text(json.dumps({key: value for key, value in record.items() if key != "domain"}))
    with pytest.raises(ValueError, match="corrupt"):
        opened(directory).require_calibration()
    broken_edges = json.loads(json.dumps(record))
    broken_edges["domain"]["distance_edges"]["sides"]["nearer"]["coefficients"] = [0.0, 1.0]
    path.write_text(json.dumps(broken_edges))
    with pytest.raises(ValueError, match="distance edge 'nearer' malformed"):
        opened(directory).require_calibration()
    path.write_text(json.dumps(dict(record, format="piDOC-calibration-1")))
    with pytest.raises(ValueError, match="recalibrate"):
        opened(directory).require_calibration()
    path.write_text(json.dumps(dict(record, weights_sha256={"CED.weights.h5": "0" * 64})))
    with pytest.raises(ValueError, match="other weights"):
        opened(directory).require_calibration()
    # calibrate_piDOC.py opens the folder without its stale calibration, which it then replaces.
    assert open_model(directory, INPUT_DIRECTORY / functions.STANDARDIZATION_SUBDIRECTORY,
                      read_calibration=False).calibration is None
    path.unlink()
    with pytest.raises(FileNotFoundError, match="calibration file missing"):
        opened(directory).require_calibration()
    assert opened(directory).calibration is None


def test_summary_without_calibration_checks_physics_only(tmp_path):
    directory = copy_of_trained_directory(tmp_path)
    (directory / uncertainty.CALIBRATION_FILE).unlink()
    log_flux = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")[:2]
    predicted_maps, _ = plausible_predictions(2)
    rows, pixel_bounds = uncertainty.summarize(opened(directory), log_flux, predicted_maps, np.array([[30.0, 8.0], [-5.0, 8.0]]))
    assert pixel_bounds is None
    assert np.isnan(rows[0]["distance_kpc_lo68"])
    assert rows[0]["domain"] == "unchecked"
    assert rows[1]["domain"] == "outside" and "≤ 0" in rows[1]["domain_reason"]


def test_summary_writes_atomically_and_keeps_old_files_on_bad_rows(tmp_path):
    log_flux = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")[:3]
    predicted_maps, distance_age = plausible_predictions(3)
    rows, pixel_bounds = uncertainty.summarize(opened(TRAINED_DIRECTORY), log_flux, predicted_maps, distance_age,
                                               map_names=["a", "b", "c"])
    assert pixel_bounds.shape == (3, 160, 160, 5)
    # Bounds are ordered lo95 ≤ lo68 ≤ median-or-point ≤ hi68 ≤ hi95 around the prediction.
    assert np.all(np.diff(pixel_bounds[..., [0, 1]], axis=-1) >= 0) and np.all(np.diff(pixel_bounds[..., [3, 4]], axis=-1) >= 0)
    assert np.all(pixel_bounds[..., 1] <= predicted_maps[..., 0]) and np.all(predicted_maps[..., 0] <= pixel_bounds[..., 3])
    for row in rows:
        for column in uncertainty.SUMMARY_COLUMNS.values():
            assert row[f"{column}_lo95"] <= row[f"{column}_lo68"] <= row[column] <= row[f"{column}_hi68"] <= row[f"{column}_hi95"]

    uncertainty.write_prediction_summary(tmp_path, rows, pixel_bounds)
    written = (tmp_path / uncertainty.SUMMARY_CSV_FILE).read_text()
    assert written.splitlines()[0].startswith("map,distance_kpc,distance_kpc_median,distance_kpc_lo68")
    assert not list(tmp_path.glob("*.tmp*"))
    broken = [dict(row) for row in rows]
    del broken[1]["age_gyr_lo68"]
    with pytest.raises(KeyError):
        uncertainty.write_prediction_summary(tmp_path, broken)
    assert (tmp_path / uncertainty.SUMMARY_CSV_FILE).read_text() == written


def test_the_novelty_check_flags_a_map_in_an_empty_corner_and_few_drawn_like_the_calibration_maps():
    """Calibration 'features' on a ring (one hidden parameter, as a cluster's statistics follow its mass
    and distance), which a Gaussian describes badly: the ring's centre lies at the centre of the
    Mahalanobis ellipse but far from every calibration map."""
    generator = np.random.default_rng(17)
    number_of_features = len(domain.EDGE_FEATURES) + len(domain.FLUX_SHAPE_PERCENTILES)
    phases = np.linspace(0.0, np.pi, number_of_features)

    def draw(count):
        angle = generator.uniform(0.0, 2.0 * np.pi, (count, 1))
        return np.cos(angle + phases) + generator.normal(0.0, 0.05, (count, number_of_features))

    calibration_features = draw(1200)
    first_half = np.arange(1200) % 2 == 0
    reference = domain.fit_novelty_reference(calibration_features, first_half)
    uncertainty.check_novelty_reference(reference)
    fresh = domain.novelty_scores(reference, draw(2000))
    assert np.mean(fresh > 1.0) < 0.02
    hole = np.zeros((1, number_of_features))        # the centre of the ring: no calibration map there
    assert domain.novelty_scores(reference, hole)[0] > 1.5
    with_nan = hole.copy()
    with_nan[0, 3] = np.nan
    assert np.isinf(domain.novelty_scores(reference, with_nan)[0])
    broken = dict(reference, threshold=0.0)
    with pytest.raises(ValueError, match="novelty threshold"):
        uncertainty.check_novelty_reference(broken)
    with pytest.raises(ValueError, match="novelty reference malformed"):
        uncertainty.check_novelty_reference(dict(reference, halves=[reference["halves"][0]]))
