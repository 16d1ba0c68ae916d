"""Calibrate π-DOC's intervals and domain verdict on a calibration split of mock clusters.

Run `python3 calibrate_piDOC.py data/calibration` after `make_mock_clusters.py` has written the
calibration split (clusters seen neither in training nor in the test split, observed like the test
split). The networks of `--trained-directory` predict every map; `pidoc.calibration.uncertainty.fit_calibration`
fits the difficulty models on one half of the clusters and takes conformal quantiles on the other,
and measures the calibration maps' statistics for the domain verdict. The boundary split (the same
kind of clusters seen nearer and farther than the calibrated distances, `make_mock_clusters.py
--splits boundary`, by default the folder `boundary` beside the calibration split) teaches the
verdict where the calibrated distances end (`pidoc.calibration.domain.fit_distance_edges`). The result is written,
atomically, to `<trained directory>/calibration.json`, tied to the SHA-256 of the weights there, so
a second set of weights (e.g. `trained_piDOC/general/`) is calibrated the same way by the same
command. Method and guarantees: docs/uncertainty.md.

Usage:
    python3 calibrate_piDOC.py SPLIT_DIRECTORY [--trained-directory trained_piDOC]
        [--boundary-directory SPLIT_DIRECTORY/../boundary]
        [--standardization-directory input_files/standardization_files]
"""
import argparse
from pathlib import Path

from pidoc.calibration import uncertainty
from pidoc.model import STANDARDIZATION_SUBDIRECTORY, open_model
from pidoc.splits import load_cluster_ids, load_split, predict_split

# --- Settings (each is also a command-line flag) --------------------------------------------------
PROJECT_DIRECTORY = Path(__file__).resolve().parent
TRAINED_DIRECTORY = PROJECT_DIRECTORY / "trained_piDOC"
STANDARDIZATION_DIRECTORY = PROJECT_DIRECTORY / "input_files" / STANDARDIZATION_SUBDIRECTORY
# Calibration splits are of the same clusters as the test design: fewer than this many clusters
# leave each half too small for 95 % intervals (the binomial error of coverage with n clusters is
# about √(0.05 · 0.95 / n); 150 clusters per half give ±1.8 points).
MINIMUM_CLUSTERS = 20


def parse_arguments(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split_directory", type=Path, help="calibration split: luminosity_V.npy, mass.npy, "
                        "distance_age.npy, metadata.csv")
    parser.add_argument("--trained-directory", type=Path, default=TRAINED_DIRECTORY)
    parser.add_argument("--boundary-directory", type=Path, default=None,
                        help="boundary split: clusters seen nearer and farther (default: 'boundary' beside the split)")
    parser.add_argument("--standardization-directory", type=Path, default=STANDARDIZATION_DIRECTORY)
    parser.add_argument("--minimum-clusters", type=int, default=MINIMUM_CLUSTERS)
    return parser.parse_args(arguments)


def main(arguments=None):
    """Calibrate and write `calibration.json`; returns the calibration dict."""
    options = parse_arguments(arguments)
    log_flux_maps, true_log_mass_maps, true_distance_age = load_split(options.split_directory)
    cluster_ids = load_cluster_ids(options.split_directory)
    if len(cluster_ids) != len(log_flux_maps):
        raise ValueError(f"{options.split_directory / 'metadata.csv'} has {len(cluster_ids)} rows for {len(log_flux_maps)} maps")
    number_of_clusters = len(set(cluster_ids.tolist()))
    if number_of_clusters < options.minimum_clusters:
        raise ValueError(f"{options.split_directory} holds {number_of_clusters} clusters; calibration needs at least "
                         f"{options.minimum_clusters} (--minimum-clusters)")
    print(f"calibrating {options.trained_directory} on {options.split_directory}: {len(log_flux_maps)} maps "
          f"of {number_of_clusters} clusters")
    model = open_model(options.trained_directory, options.standardization_directory)
    predicted_log_mass_maps, predicted_distance_age, _ = predict_split(options.split_directory, model)
    boundary_directory = options.boundary_directory or options.split_directory.parent / "boundary"
    boundary_log_flux_maps, _, boundary_true_distance_age = load_split(boundary_directory)
    print(f"distance edges from {boundary_directory}: {len(boundary_log_flux_maps)} maps")
    boundary_predicted_log_mass_maps, boundary_predicted_distance_age, _ = predict_split(boundary_directory, model)
    boundary = {"log_flux_maps": boundary_log_flux_maps, "predicted_log_mass_maps": boundary_predicted_log_mass_maps,
                "predicted_distance_age": boundary_predicted_distance_age, "true_distance_kpc": boundary_true_distance_age[:, 0]}
    calibration = uncertainty.fit_calibration(log_flux_maps, true_log_mass_maps, true_distance_age, predicted_log_mass_maps,
                                              predicted_distance_age, cluster_ids, boundary=boundary)
    provenance = {"split_directory": str(options.split_directory), "boundary_directory": str(boundary_directory),
                  "command": "calibrate_piDOC.py"}
    path = uncertainty.save_calibration(model, calibration, provenance)
    print(f"written: {path}")
    return calibration


if __name__ == "__main__":
    main()
