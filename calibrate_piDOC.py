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

Several calibration splits, one per nuisance family (`make_mock_clusters.py --nuisance FAMILY`, each
with its boundary split beside it), calibrate on their union: `python3 calibrate_piDOC.py
data/nuisance/cb21/*/calibration`. Each folder's cluster ids are kept apart (`pidoc.calibration.mixture`).

Usage:
    python3 calibrate_piDOC.py SPLIT_DIRECTORY [SPLIT_DIRECTORY ...] [--trained-directory trained_piDOC]
        [--boundary-directory SPLIT_DIRECTORY/../boundary ...]
        [--standardization-directory input_files/standardization_files]
"""
import argparse
from pathlib import Path

import numpy as np

from pidoc.calibration import mixture, uncertainty
from pidoc.model import STANDARDIZATION_SUBDIRECTORY, open_model
from pidoc.splits import load_cluster_ids

# --- Settings (each is also a command-line flag) --------------------------------------------------
PROJECT_DIRECTORY = Path(__file__).resolve().parent
TRAINED_DIRECTORY = PROJECT_DIRECTORY / "trained_piDOC"
STANDARDIZATION_DIRECTORY = PROJECT_DIRECTORY / "input_files" / STANDARDIZATION_SUBDIRECTORY
# Calibration splits are of the same clusters as the test design: fewer than this many clusters
# leave each half too small for 95 % intervals (the binomial error of coverage with n clusters is
# about √(0.05 · 0.95 / n); 150 clusters per half give ±1.8 points).
MINIMUM_CLUSTERS = 20
# The present-day masses the model claims; None calibrates on every map of the splits (the
# reproduction's cb21 clusters, 3–12×10³ M☉). The general model is calibrated for 10⁴–10⁶ M☉ (issue
# 13) with `--present-mass-range-msun 1e4 1e6` (scripts/make_general_model.sh).
PRESENT_MASS_RANGE_MSUN = None


def parse_arguments(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split_directory", type=Path, nargs="+", help="calibration split(s): luminosity_V.npy, mass.npy, "
                        "distance_age.npy, metadata.csv; several (one per nuisance family) calibrate on their union")
    parser.add_argument("--trained-directory", type=Path, default=TRAINED_DIRECTORY)
    parser.add_argument("--boundary-directory", type=Path, nargs="+", default=None,
                        help="boundary split(s), one per calibration split: clusters seen nearer and farther "
                             "(default: 'boundary' beside each split)")
    parser.add_argument("--standardization-directory", type=Path, default=STANDARDIZATION_DIRECTORY)
    parser.add_argument("--minimum-clusters", type=int, default=MINIMUM_CLUSTERS)
    parser.add_argument("--present-mass-range-msun", type=float, nargs=2, default=PRESENT_MASS_RANGE_MSUN, metavar=("LOW", "HIGH"),
                        help="calibrate only on clusters of this present-day mass (e.g. 1e4 1e6 for the general model; default all)")
    return parser.parse_args(arguments)


def main(arguments=None):
    """Calibrate and write `calibration.json`; returns the calibration dict."""
    options = parse_arguments(arguments)
    split_directories = list(options.split_directory)
    boundary_directories = options.boundary_directory or [directory.parent / "boundary" for directory in split_directories]
    if len(boundary_directories) != len(split_directories):
        raise ValueError(f"--boundary-directory names {len(boundary_directories)} folders for {len(split_directories)} "
                         f"calibration splits; give one per split or none")
    # The cluster count is checked before the networks run (minutes on a CPU).
    number_of_clusters = sum(len(np.unique(load_cluster_ids(directory))) for directory in split_directories)
    if number_of_clusters < options.minimum_clusters:
        raise ValueError(f"{', '.join(map(str, split_directories))} hold {number_of_clusters} clusters; calibration needs "
                         f"at least {options.minimum_clusters} (--minimum-clusters)")
    # The folder's old calibration, if any, is not read: after more training it belongs to other
    # weights, and this run replaces it.
    model = open_model(options.trained_directory, options.standardization_directory, read_calibration=False)
    families = [mixture.load_family(split_directory, model, boundary_directory,
                                    present_mass_range_msun=options.present_mass_range_msun)
                for split_directory, boundary_directory in zip(split_directories, boundary_directories)]
    seeds = [family["seed"] for family in families if family["seed"] is not None]
    if len(set(seeds)) != len(seeds):
        print("warning: some calibration splits were made with the same --seed and share their clusters' initial conditions")
    number_of_maps = sum(len(family["log_flux_maps"]) for family in families)
    for family in families:
        print(f"{family['split_directory']} ({family['name']}): {len(family['log_flux_maps'])} maps of "
              f"{len(np.unique(family['cluster_ids']))} clusters; distance edges from {family['boundary_directory']}: "
              f"{len(family['boundary']['log_flux_maps'])} maps")
    print(f"calibrating {options.trained_directory} on {number_of_maps} maps of {number_of_clusters} clusters")
    calibration = mixture.calibrate(families)
    if len(families) == 1:
        provenance = {"split_directory": str(split_directories[0]), "boundary_directory": str(boundary_directories[0]),
                      "command": "calibrate_piDOC.py"}
    else:
        provenance = {"split_directories": [str(directory) for directory in split_directories],
                      "boundary_directories": [str(directory) for directory in boundary_directories],
                      "families": [family["name"] for family in families], "command": "calibrate_piDOC.py"}
    if options.present_mass_range_msun is not None:
        provenance["present_mass_range_msun"] = list(options.present_mass_range_msun)
    path = uncertainty.save_calibration(model, calibration, provenance)
    print(f"written: {path}")
    return calibration


if __name__ == "__main__":
    main()
