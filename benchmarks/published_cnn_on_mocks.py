"""Calibration check: the authors' published CNN (π-DOC v0.1) on our mock test clusters.

If our mock observations (flux convention, seeing, cluster priors) resemble the authors' N-body
mocks, their trained CNN should recover our clusters' distances and ages. The script prints, for a
test split: the mean predicted distance and MAE at each true distance, the distance error by the
paper's definition (mean of the per-distance MAEs; paper-CB21.md §9), the age MAE, and the pooled
mean/std of our log flux and log mass against the authors' training constants.

Usage:  python3 benchmarks/published_cnn_on_mocks.py [SPLIT_DIRECTORY] [--reference DIR]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from tabulate import tabulate

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from pidoc import networks  # noqa: E402
from pidoc import standardization  # noqa: E402

SPLIT_DIRECTORY = PROJECT_ROOT / "data" / "test"
REFERENCE_DIRECTORY = PROJECT_ROOT.parent / "shared" / "reference" / "piDOC_v0.1"


def published_cnn_predictions(log_flux, reference_directory, batch_size=50):
    """[distance kpc, age Gyr] from the authors' CNN, standardised with the authors' constants."""
    model = networks.load_trained_network(reference_directory / "trained_piDOC", "CNN")
    constants = standardization.read_standardization(reference_directory / "input_files" / "standardization_files")
    outputs = []
    for first in range(0, len(log_flux), batch_size):
        batch = standardization.standardize(log_flux[first:first + batch_size],
                                            constants["luminosity_mean"], constants["luminosity_std"])
        outputs.append(np.asarray(model(batch, training=False)))
    return standardization.destandardize(np.concatenate(outputs), constants["distance_age_mean"], constants["distance_age_std"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("split_directory", nargs="?", default=str(SPLIT_DIRECTORY))
    parser.add_argument("--reference", default=str(REFERENCE_DIRECTORY))
    arguments = parser.parse_args(argv)
    split_directory, reference_directory = Path(arguments.split_directory), Path(arguments.reference)
    if not (reference_directory / "trained_piDOC" / "CNN_100.h5").is_file():
        raise SystemExit(f"the authors' CNN is not at {reference_directory}/trained_piDOC; pass --reference")

    log_flux = np.load(split_directory / "luminosity_V.npy", mmap_mode="r")
    log_mass = np.load(split_directory / "mass.npy", mmap_mode="r")
    true = np.load(split_directory / "distance_age.npy")
    predicted = published_cnn_predictions(np.asarray(log_flux), reference_directory)

    rows = []
    for distance_kpc in np.unique(true[:, 0]):
        at_distance = true[:, 0] == distance_kpc
        error = predicted[at_distance, 0] - distance_kpc
        rows.append([distance_kpc, at_distance.sum(), predicted[at_distance, 0].mean(), predicted[at_distance, 0].std(),
                     np.abs(error).mean()])
    print(f"Authors' CNN on {len(true)} mock maps from {split_directory}")
    print(tabulate(rows, headers=["true D (kpc)", "maps", "mean predicted D", "std", "MAE (kpc)"], floatfmt=".2f"))
    print(f"distance error, paper's definition (mean of per-distance MAEs): {np.mean([row[-1] for row in rows]):.2f} kpc")
    print(f"age MAE: {np.abs(predicted[:, 1] - true[:, 1]).mean():.2f} Gyr; "
          f"age bias (pred - true): {np.mean(predicted[:, 1] - true[:, 1]):+.2f} Gyr")

    constants = standardization.read_standardization(reference_directory / "input_files" / "standardization_files")
    statistics = [["log10 flux", np.mean(log_flux), np.std(log_flux), constants["luminosity_mean"], constants["luminosity_std"]],
                  ["log10 mass", np.mean(log_mass), np.std(log_mass), constants["mass_mean"], constants["mass_std"]]]
    print(tabulate(statistics, headers=["pooled pixels", "ours: mean", "ours: std", "authors: mean", "authors: std"],
                   floatfmt=".3f"))


if __name__ == "__main__":
    main()
