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

Inputs, in `input_files/`:
    luminosity_V_testset.npy   (N, 160, 160, 1) log10(F / (L☉ kpc⁻²)) per 0.25″ pixel, F = L_V / (4π D²)
    mass_testset.npy           (N, 160, 160, 1) log10(M / M☉) per pixel, the true mass maps
    distance_age_testset.npy   (N, 2) true [distance kpc, age Gyr]
    standardization_files/     the six training-set constants
Trained networks in `trained_piDOC/`. Everything is written to `predictions/`: `predictionM.npy`,
`predictiondistance_age.npy`, the figures and the statistics tables.

Run `python piDOC_predictions.py` from any folder; the paths below are relative to this file.
"""
from pathlib import Path

import numpy as np

import functions

PROJECT_DIRECTORY = Path(__file__).resolve().parent
pathtrained = PROJECT_DIRECTORY / "trained_piDOC"   # the trained CED and CNN
pathinput = PROJECT_DIRECTORY / "input_files"       # test maps and standardisation constants
pathprediction = PROJECT_DIRECTORY / "predictions"  # predictions, figures and tables


def main(pathtrained=pathtrained, pathinput=pathinput, pathprediction=pathprediction, random_seed=functions.MOSAIC_RANDOM_SEED):
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

    # Part 1: apply π-DOC and show four clusters (CB21 Fig. 4).
    prediction_M, prediction_distanceage = functions.make_predictions(pathtrained, pathinput, pathprediction, L_testset)
    functions.display_mosaic_prediction(pathprediction, L_testset, M_testset, distanceage_testset, prediction_M,
                                        prediction_distanceage, random_seed=random_seed)

    # Part 2: performance on the whole sample (CB21 Figs 5, 6, 8, 9 and the M/L_V of the abstract).
    functions.display_predicted_vs_true_mass(pathprediction, M_testset, prediction_M)
    functions.display_predicted_vs_true_total_mass(pathprediction, M_testset, prediction_M)
    functions.display_predicted_vs_true_age(pathprediction, distanceage_testset, prediction_distanceage)
    functions.pdf_distances(pathprediction, distanceage_testset, prediction_distanceage)
    functions.display_mass_to_light_profiles(pathprediction, L_testset, M_testset, distanceage_testset, prediction_M,
                                             prediction_distanceage, random_seed=random_seed)
    return prediction_M, prediction_distanceage


if __name__ == "__main__":
    main()
