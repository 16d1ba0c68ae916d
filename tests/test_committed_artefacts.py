"""The committed trained networks, standardisation constants and test maps: intact, and working."""
import csv
import hashlib
import shutil

import numpy as np
import pytest

import functions
import piDOC_predictions
from conftest import PROJECT_ROOT
from pidoc import io as pidoc_io

INPUT_DIRECTORY = PROJECT_ROOT / "input_files"
TRAINED_DIRECTORY = PROJECT_ROOT / "trained_piDOC"
# Four committed test maps, one at each of CB21's distances, taken from one held-out snapshot
# sequence each (rows of input_files/testset_metadata.csv).
FOUR_MAPS = slice(0, 4)


def test_manifest_matches_every_committed_artefact():
    lines = (PROJECT_ROOT / "MANIFEST.sha256").read_text().split("\n")
    entries = [line.split("  ") for line in lines if line]
    assert {path for _, path in entries} >= {
        "trained_piDOC/CED.json", "trained_piDOC/CED.weights.h5", "trained_piDOC/CNN.json",
        "trained_piDOC/CNN.weights.h5", "input_files/luminosity_V_testset.npy", "input_files/mass_testset.npy",
        "input_files/distance_age_testset.npy", "input_files/standardization_files/meanluminosityVtrain.npy",
    }
    for digest, path in entries:
        assert hashlib.sha256((PROJECT_ROOT / path).read_bytes()).hexdigest() == digest, f"{path} changed"


def test_committed_test_set_has_the_original_layout():
    log_flux = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")
    log_mass = np.load(INPUT_DIRECTORY / "mass_testset.npy")
    distance_age = np.load(INPUT_DIRECTORY / "distance_age_testset.npy")
    assert log_flux.shape == log_mass.shape == (100, 160, 160, 1)
    assert distance_age.shape == (100, 2)
    assert sorted(np.unique(distance_age[:, 0]).tolist()) == [15.0, 30.0, 60.0, 80.0]
    assert 0.0 <= distance_age[:, 1].min() and distance_age[:, 1].max() <= 14.0


@pytest.fixture(scope="module")
def four_map_predictions(tmp_path_factory):
    """make_predictions on four committed maps, with the committed networks."""
    log_flux = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")[FOUR_MAPS]
    output = tmp_path_factory.mktemp("direct")
    predicted_log_mass, predicted_distance_age = functions.make_predictions(
        TRAINED_DIRECTORY, INPUT_DIRECTORY, output, log_flux)
    return predicted_log_mass, predicted_distance_age


def test_committed_ced_beats_a_constant_mass_to_light_ratio(four_map_predictions):
    """The trivial baseline: light per pixel (F·4πD², true D) times the single best constant M/L_V.

    The constant is fitted to these very maps (mean log M - log L), so the baseline is as good as one
    number can be; the CED must still have a smaller per-pixel log-mass scatter. Broken weights fail.
    """
    predicted_log_mass, _ = four_map_predictions
    log_flux = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")[FOUR_MAPS].astype(np.float64)
    true_log_mass = np.load(INPUT_DIRECTORY / "mass_testset.npy")[FOUR_MAPS].astype(np.float64)
    distance_kpc = np.load(INPUT_DIRECTORY / "distance_age_testset.npy")[FOUR_MAPS, 0].astype(np.float64)
    log_light = log_flux + np.log10(4 * np.pi * distance_kpc**2)[:, None, None, None]
    best_constant = np.mean(true_log_mass - log_light)
    baseline_rms_dex = np.sqrt(np.mean((log_light + best_constant - true_log_mass) ** 2))
    network_rms_dex = np.sqrt(np.mean((predicted_log_mass - true_log_mass) ** 2))
    assert network_rms_dex < 0.5 * baseline_rms_dex
    assert network_rms_dex < 0.15


def test_committed_cnn_recovers_distance_and_age_of_four_maps(four_map_predictions):
    _, predicted_distance_age = four_map_predictions
    true_distance_age = np.load(INPUT_DIRECTORY / "distance_age_testset.npy")[FOUR_MAPS]
    # The constant baseline (the training mean of [distance, age]) misses by tens of kpc.
    relative_distance_error = np.abs(predicted_distance_age[:, 0] / true_distance_age[:, 0] - 1)
    assert np.all(relative_distance_error < 0.35)
    assert np.all(np.abs(predicted_distance_age[:, 1] - true_distance_age[:, 1]) < 4.0)


def test_driver_on_four_committed_maps_reproduces_make_predictions(four_map_predictions, tmp_path):
    inputs = tmp_path / "input_files"
    shutil.copytree(INPUT_DIRECTORY / "standardization_files", inputs / "standardization_files")
    for name in ("luminosity_V_testset.npy", "mass_testset.npy", "distance_age_testset.npy"):
        np.save(inputs / name, np.load(INPUT_DIRECTORY / name)[FOUR_MAPS])
    driver_log_mass, driver_distance_age = piDOC_predictions.main(TRAINED_DIRECTORY, inputs, tmp_path / "predictions")
    np.testing.assert_array_equal(driver_log_mass, four_map_predictions[0])
    np.testing.assert_array_equal(driver_distance_age, four_map_predictions[1])
    np.testing.assert_array_equal(np.load(tmp_path / "predictions" / "predictionM.npy"), four_map_predictions[0])

    # Beside the original outputs: the calibrated summary, one row per map, every map inside the
    # domain, and intervals ordered around π-DOC's own prediction.
    with open(tmp_path / "predictions" / "predictions_summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and all(row["domain"] == "inside" for row in rows)
    for row, (distance_kpc, age_gyr) in zip(rows, four_map_predictions[1]):
        assert float(row["distance_kpc"]) == pytest.approx(distance_kpc, rel=1e-5)
        for column in ("distance_kpc", "age_gyr", "log_total_mass_msun", "mass_to_light_v"):
            bounds = [float(row[f"{column}_{tag}"]) for tag in ("lo95", "lo68")] + [float(row[column])] + \
                     [float(row[f"{column}_{tag}"]) for tag in ("hi68", "hi95")]
            assert bounds == sorted(bounds), (column, bounds)
    pixel_bounds = np.load(tmp_path / "predictions" / "predictionM_intervals.npy")
    assert pixel_bounds.shape == (4, 160, 160, 5)


def test_evaluate_piDOC_reports_coverage_and_domain_flags_by_cluster(tmp_path):
    """evaluate_piDOC.py on the committed maps as a split: it prints the intervals' coverage and widths,
    counted over the clusters named in the metadata, the width-error correlation and the domain flags."""
    import evaluate_piDOC

    split = tmp_path / "split"
    split.mkdir()
    for source, target in (("luminosity_V_testset.npy", "luminosity_V.npy"), ("mass_testset.npy", "mass.npy"),
                           ("distance_age_testset.npy", "distance_age.npy")):
        shutil.copy(INPUT_DIRECTORY / source, split / target)
    shutil.copy(INPUT_DIRECTORY / "testset_metadata.csv", split / "metadata.csv")
    statistics = evaluate_piDOC.main([str(split), "--output-directory", str(tmp_path / "evaluation")])
    report = statistics["coverage"]
    clusters = len(set(pidoc_io.read_cluster_ids(split / "metadata.csv").tolist()))
    assert report["number_of_clusters"] == clusters and report["number_of_maps"] == 100
    for quantity in ("distance", "age", "total_mass", "mass_to_light", "pixel_mass"):
        # 23 clusters: each coverage is known to within about ±10 points, so these bounds are loose.
        assert 40.0 < report["pooled"][quantity][0.68]["coverage_percent"] < 95.0, quantity
        assert 75.0 < report["pooled"][quantity][0.95]["coverage_percent"] <= 100.0, quantity
    assert statistics["domain"]["percent_outside"] <= 5.0
    # The flag rate per decade of present-day mass: its "all maps" group is the pooled rate.
    groups = {group["label"]: group for group in statistics["domain"]["by_mass_decade"]}
    assert groups["all maps"]["number_of_maps"] == 100
    assert groups["all maps"]["percent_outside"] == pytest.approx(statistics["domain"]["percent_outside"])
    text = (tmp_path / "evaluation" / "evaluation.txt").read_text(encoding="utf-8")
    assert "Interval coverage on" in text and "Spearman" in text
    assert (tmp_path / "evaluation" / "Interval_coverage.png").stat().st_size > 0
