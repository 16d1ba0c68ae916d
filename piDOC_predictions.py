"""π-DOC v0.1 demonstration: predict mass maps, distances and ages of test clusters, and plot the results.

π-DOC (Chardin & Bianchini 2021, MNRAS 504, 5656; hereafter CB21) predicts the dynamical mass map,
the distance and the age of a globular cluster from its V-band flux map. This script applies it to
the committed test maps (a subsample of the test set, CB21 §2.3) and reproduces the paper's
figures and statistics on them:

1. `make_predictions`: mass maps with the encoder-decoder (CED), [distance, age] with the CNN.
2. `display_mosaic_prediction`: four maps chosen at random (seeded) with their predictions (Fig. 4).
3. `display_predicted_vs_true_mass`: pixel-by-pixel predicted vs true mass (Fig. 5).
4. `display_predicted_vs_true_total_mass`: total mass in the field (Fig. 6).
5. `display_predicted_vs_true_age`: age (Fig. 8).
6. `pdf_distances`: distributions of the predicted distances per true distance (Fig. 9).
7. `display_mass_to_light_profiles`: M/L_V profiles and global M/L_V (beyond the public code).

Beyond the original, every prediction gets calibrated 68 % and 95 % intervals and a domain verdict
(`pidoc/calibration/uncertainty.py`, calibrated by `calibrate_piDOC.py`): `predictions_summary.csv` / `.txt` (one row
per map), `predictionM_intervals.npy` (per-pixel bounds), one warning line per map outside the
domain, error bars in the Fig. 8 and 9 equivalents, "D = 27 ± 3 kpc" labels in the mosaic, and the
coverage of the intervals on these maps (`Interval_coverage.png`, `interval_coverage.txt`). The
original outputs keep their meaning; `--no-intervals` leaves the new ones out.

Maps outside π-DOC's domain are when every output matters most, so any finite prediction runs to
the end: a prediction outside its interval (an age beyond the 0–14 Gyr the intervals are cut to), a
distance ≤ 0 (no luminosity, no distance interval) or a missing calibration is drawn and named in
the figures, and written with its reason in the tables, never as "nan".

Inputs, in `input_files/`:
    luminosity_V_testset.npy   (N, 160, 160, 1) log10(F / (L☉ kpc⁻²)) per 0.25″ pixel, F = L_V / (4π D²)
    mass_testset.npy           (N, 160, 160, 1) log10(M / M☉) per pixel, the true mass maps
    distance_age_testset.npy   (N, 2) true [distance kpc, age Gyr]
    standardization_files/     the six training-set constants
Trained networks in `trained_piDOC/`. Everything is written to `predictions/`: `predictionM.npy`,
`predictiondistance_age.npy`, the figures and the statistics tables.

Run `python piDOC_predictions.py` from any folder; the paths below are relative to this file, and
each is also a flag (`--help`).
"""
import argparse
from pathlib import Path

import numpy as np

import functions
from pidoc.calibration import coverage, uncertainty
from pidoc.io import read_cluster_ids
from pidoc.model import open_model

PROJECT_DIRECTORY = Path(__file__).resolve().parent
pathtrained = PROJECT_DIRECTORY / "trained_piDOC"   # the trained CED and CNN (and their calibration.json)
pathinput = PROJECT_DIRECTORY / "input_files"       # test maps and standardisation constants
pathprediction = PROJECT_DIRECTORY / "predictions"  # predictions, figures and tables
INTERVALS = True                                    # calibrated intervals and domain verdicts beside the original outputs
TEST_METADATA_FILE = "testset_metadata.csv"         # the cluster of each test map, to count coverage by cluster


def main(pathtrained=pathtrained, pathinput=pathinput, pathprediction=pathprediction, random_seed=functions.MOSAIC_RANDOM_SEED,
         intervals=INTERVALS):
    """Run π-DOC on the test maps in `pathinput` and write predictions, figures and tables to `pathprediction`.

    Returns
    -------
    predicted_log_mass_maps, predicted_distance_age : numpy.ndarray
        As returned by `functions.make_predictions`.
    """
    pathinput = Path(pathinput)
    # The flux maps are π-DOC's input; the true mass maps, distances and ages are what it should
    # predict, used here only to measure its performance.
    L_testset = np.load(pathinput / "luminosity_V_testset.npy")
    M_testset = np.load(pathinput / "mass_testset.npy")
    distanceage_testset = np.load(pathinput / "distance_age_testset.npy")

    # Part 1: apply π-DOC. The model folder (networks, constants, calibration) is opened once.
    model = open_model(pathtrained, pathinput / functions.STANDARDIZATION_SUBDIRECTORY)
    prediction_M, prediction_distanceage = functions.make_predictions(model, pathinput, pathprediction, L_testset)

    # Part 1b: calibrated intervals and a domain verdict for every map (pidoc/calibration/uncertainty.py), beside the
    # original outputs; one warning line per map that π-DOC should not be trusted on.
    distance_intervals = age_intervals = None
    if intervals:
        summary_rows, pixel_bounds = uncertainty.summarize(model, L_testset, prediction_M, prediction_distanceage)
        for path in uncertainty.write_prediction_summary(pathprediction, summary_rows, pixel_bounds):
            print(f"file {path} saved")
        for line in uncertainty.warning_lines(summary_rows):
            print(line)
        if pixel_bounds is not None:      # the model folder is calibrated, so the rows hold intervals
            # The intervals themselves, not half widths, go to the figures: an age interval cut to
            # 0–14 Gyr need not hold its prediction (23.8 Gyr against [14, 14]), a distance ≤ 0 has
            # none, and the figures draw and name both rather than fail on a negative error bar.
            distance_intervals, age_intervals = (uncertainty.summary_bounds(summary_rows, column, 0.68)
                                                 for column in ("distance_kpc", "age_gyr"))

    # Part 2: four clusters (CB21 Fig. 4) and the performance on the whole sample (CB21 Figs 5, 6, 8,
    # 9 and the M/L_V of the abstract).
    functions.display_mosaic_prediction(pathprediction, L_testset, M_testset, distanceage_testset, prediction_M,
                                        prediction_distanceage, random_seed=random_seed,
                                        predicted_intervals=None if distance_intervals is None else (distance_intervals, age_intervals))
    functions.display_predicted_vs_true_mass(pathprediction, M_testset, prediction_M)
    functions.display_predicted_vs_true_total_mass(pathprediction, M_testset, prediction_M)
    functions.display_predicted_vs_true_age(pathprediction, distanceage_testset, prediction_distanceage, age_intervals)
    functions.pdf_distances(pathprediction, distanceage_testset, prediction_distanceage, distance_intervals)
    functions.display_mass_to_light_profiles(pathprediction, L_testset, M_testset, distanceage_testset, prediction_M,
                                             prediction_distanceage, random_seed=random_seed)

    # Part 3: how often the intervals hold the truth on these maps, counted by cluster.
    calibration = model.calibration if intervals else None
    if calibration is not None and (pathinput / TEST_METADATA_FILE).is_file():
        report = coverage.coverage_report(calibration, L_testset, M_testset, distanceage_testset, prediction_M,
                                             prediction_distanceage, read_cluster_ids(pathinput / TEST_METADATA_FILE))
        coverage.write_coverage_outputs(pathprediction, report)
        print(f"--> Interval coverage on {report['number_of_clusters']} clusters saved")
    return prediction_M, prediction_distanceage


def parse_arguments(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trained-directory", type=Path, default=pathtrained, help="model folder (CED, CNN, calibration.json)")
    parser.add_argument("--input-directory", type=Path, default=pathinput, help="test maps and standardisation constants")
    parser.add_argument("--prediction-directory", type=Path, default=pathprediction, help="where outputs are written")
    parser.add_argument("--seed", type=int, default=functions.MOSAIC_RANDOM_SEED, help="seed of the mosaic's choice of maps")
    parser.add_argument("--no-intervals", action="store_true", help="only the original outputs (no intervals, no verdicts)")
    return parser.parse_args(arguments)


if __name__ == "__main__":
    options = parse_arguments()
    main(options.trained_directory, options.input_directory, options.prediction_directory, options.seed,
         intervals=not options.no_intervals)
