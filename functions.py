"""π-DOC predictions and the statistics and figures of Chardin & Bianchini (2021, hereafter CB21).

The paper's script-level API, with the names of the original π-DOC v0.1 (`make_predictions`,
`display_mosaic_prediction`, `display_predicted_vs_true_mass`, `display_predicted_vs_true_total_mass`,
`display_predicted_vs_true_age`, `pdf_distances`) and beyond it `display_mass_to_light_profiles`.
It follows the order of the paper's Sections 3 and 4:

1. Running π-DOC (`make_predictions`): open the model folder (`pidoc.model.open_model`), check the
   flux maps (`pidoc.io.check_flux_maps`), predict, and save. Every output is written to a
   temporary name first and then renamed, so a failed run never damages the prediction folder.
2. Statistics (pure numpy, no plotting): the bin-averaged statistics of CB21 §4 exactly as the
   authors' public code computes them (paper-CB21.md §9), and beside them plain statistics (median and
   68 % interval of the residuals). Beyond the original: global M/L_V and scores per mass decade.
3. Figures and tables: Fig. 4 (mosaic), Fig. 5 (pixel mass), Fig. 6 (total mass), Fig. 8 (age),
   Fig. 9 (distance PDFs), and an M/L_V figure; each routine also writes its statistics table.

The library behind it is the package `pidoc/`; this module uses it and is never used by it.
Units throughout: log10 flux per pixel in L☉ kpc⁻² with F = L_V / (4π D²) and D in kpc; log10 mass
per pixel in M☉; distance in kpc; age in Gyr; maps of 160×160 pixels of 0.25″.
"""
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import gridspec
from matplotlib.colors import LogNorm

from pidoc.calibration.domain import MAXIMUM_AGE_GYR
from pidoc.calibration.uncertainty import INTERVAL_TOLERANCE, OUTSIDE_MARK
from pidoc.frame import MAP_HALF_WIDTH_ARCSEC
from pidoc.io import as_map_stack, check_distance_age, check_flux_maps, check_matching_maps, save_array, save_figure, write_table
from pidoc.model import open_model
from pidoc.quantities import (assign_bins, global_mass_to_light, light_weighted_centre_pixels, luminosity_maps_lsun,
                              mass_to_light_profile, total_log_mass)

# --- Files of the original π-DOC -----------------------------------------------------------------
STANDARDIZATION_SUBDIRECTORY = "standardization_files"
PREDICTED_MASS_FILE = "predictionM.npy"
PREDICTED_DISTANCE_AGE_FILE = "predictiondistance_age.npy"

# --- Bins of the statistics, exactly those of the authors' code (paper-CB21.md §9) ----------------
PIXEL_MASS_BIN_EDGES_LOG_MSUN = np.linspace(-2.0, 1.0, 50)
TOTAL_MASS_BIN_EDGES_LOG_MSUN = np.linspace(3.0, 4.5, 20)
AGE_BIN_EDGES_GYR = np.linspace(0.0, 14.0, 20)
# The original also averages the pixel-mass % error over the predicted bins at and above the bin edge
# closest to log10 M = −1 (edge −1.0204), leaving out faint pixels; it is kept as an extra column.
FAINT_PIXEL_LIMIT_LOG_MSUN = -1.0

# --- Figures (paper-CB21.md §10b) ------------------------------------------------------------------
MOSAIC_MAPS = 4
MOSAIC_RANDOM_SEED = 2021
FLUX_COLOUR_RANGE_LOG = (-6.0, -3.0)
MASS_COLOUR_RANGE_LOG_MSUN = (-1.5, 0.75)
PIXEL_MASS_SIDE_PANEL_LIMIT_DEX = 0.5
TOTAL_MASS_SIDE_PANEL_LIMIT_DEX = 0.5
AGE_SIDE_PANEL_LIMIT_GYR = 5.0
DISTANCE_PDF_FRAME = (100.0, 0.2)          # the paper's Fig. 9 frame: 0–100 kpc, PDF 0–0.2
# Annuli of the M/L_V profiles, in arcsec from the light-weighted centre: 1″ wide out to 16″, so every
# annulus lies wholly inside the 40″ field as long as the centre is within 4″ of the field centre.
MASS_TO_LIGHT_RADIUS_EDGES_ARCSEC = np.arange(0.0, 16.0 + 0.5, 1.0)

FLUX_LABEL = r"$\log_{10}(F\,/\,\mathrm{L_\odot\,kpc^{-2}})$"
MASS_LABEL = r"$\log_{10}(M\,/\,\mathrm{M_\odot})$"
TOTAL_MASS_LABEL = r"$\log_{10}(M_\mathrm{tot}\,/\,\mathrm{M_\odot})$"


# ==================================================================================================
# 1. Running π-DOC (CB21 §3)
# ==================================================================================================
def make_predictions(pathtrained, pathinput, pathprediction, L_testset):
    """Predict mass maps, distances and ages of flux maps with π-DOC, and save them.

    The signature and output files are those of the original π-DOC v0.1.

    Parameters
    ----------
    pathtrained : str, Path or pidoc.model.TrainedModel
        The trained model folder (of either architecture; `pidoc.model.open_model`), or the
        folder already opened.
    pathinput : str or Path
        Folder whose `standardization_files/` holds the six training-set constants; constants stored
        beside the weights, in `<pathtrained>/standardization_files/`, take precedence.
    pathprediction : str or Path
        Output folder (created if needed): `predictionM.npy`, (N, 160, 160, 1) log10 M☉ per pixel,
        and `predictiondistance_age.npy`, (N, 2) [distance kpc, age Gyr].
    L_testset : array_like
        Flux maps, log10(F / (L☉ kpc⁻²)); shape (N, 160, 160, 1), (N, 160, 160) or (160, 160).

    Returns
    -------
    predicted_log_mass_maps, predicted_distance_age : numpy.ndarray
        What was saved.

    Raises
    ------
    ValueError, FileNotFoundError
        For bad maps or missing or corrupt network or standardisation files. Every check runs before
        anything is written, so the prediction folder is left as it was.
    """
    log_flux_maps = check_flux_maps(L_testset)
    model = open_model(pathtrained, Path(pathinput) / STANDARDIZATION_SUBDIRECTORY)
    number_of_maps = len(log_flux_maps)
    print("\n*******  π-DOC predictions  *******")
    print(f"total number of maps used as input: {number_of_maps}")

    predicted_log_mass_maps, predicted_distance_age, seconds_per_map = model.predict(log_flux_maps)
    print(f"--> Mass, distance and age predictions done for {number_of_maps} maps ({model.architecture})")
    for network_name, seconds in seconds_per_map.items():
        print(f"{network_name} prediction time per map: {seconds:.3f} s")

    pathprediction = Path(pathprediction)
    pathprediction.mkdir(parents=True, exist_ok=True)
    for file_name, array in ((PREDICTED_MASS_FILE, predicted_log_mass_maps), (PREDICTED_DISTANCE_AGE_FILE, predicted_distance_age)):
        print(f"file {save_array(pathprediction / file_name, array)} saved")
    return predicted_log_mass_maps, predicted_distance_age


# ==================================================================================================
# 2. Statistics (CB21 §4; the definitions of the authors' code, paper-CB21.md §9), numpy only
# ==================================================================================================
def bin_centres(bin_edges):
    """Centres of the bins between consecutive `bin_edges`."""
    bin_edges = np.asarray(bin_edges, dtype=np.float64)
    return 0.5 * (bin_edges[1:] + bin_edges[:-1])


def mean_and_std_per_bin(bin_index, quantity, number_of_bins):
    """Mean, standard deviation (ddof 0, as np.std) and count of `quantity` in each bin.

    Values with `bin_index` −1 are ignored. Empty bins get NaN mean and std.
    """
    bin_index = np.asarray(bin_index).ravel()
    quantity = np.asarray(quantity, dtype=np.float64).ravel()
    inside = bin_index >= 0
    bin_index, quantity = bin_index[inside], quantity[inside]
    count = np.bincount(bin_index, minlength=number_of_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(bin_index, weights=quantity, minlength=number_of_bins) / count
        deviation = quantity - mean[bin_index]
        std = np.sqrt(np.bincount(bin_index, weights=deviation**2, minlength=number_of_bins) / count)
    return mean, std, count


def offsets_per_bin(binning_values, other_values, bin_edges):
    """Mean ± std of (other value − bin centre) in each bin of `binning_values`.

    With the true values as `binning_values` this is CB21's ξ (bottom panels of Figs 5, 6, 8); with
    the predicted values it is μ (left panels). Returns a dict of "centres", "mean", "std", "count".
    """
    binning_values = np.asarray(binning_values, dtype=np.float64).ravel()
    other_values = np.asarray(other_values, dtype=np.float64).ravel()
    centres = bin_centres(bin_edges)
    bin_index = assign_bins(binning_values, bin_edges)
    offsets = other_values - centres[np.maximum(bin_index, 0)]
    mean, std, count = mean_and_std_per_bin(bin_index, offsets, len(centres))
    return {"centres": centres, "mean": mean, "std": std, "count": count}


def percent_mass_error_per_predicted_bin(true_log_mass, predicted_log_mass, bin_edges):
    """CB21's mass % error in each bin of predicted log10 mass.

    For predicted bin i with centre c_i, the mean over the values whose prediction falls in the bin of
    100 |10^true − 10^c_i| / 10^true = 100 |1 − 10^(c_i − true)|. The bin centre stands in for the
    prediction, as in the authors' code. Empty bins are NaN.
    """
    true_log_mass = np.asarray(true_log_mass, dtype=np.float64).ravel()
    centres = bin_centres(bin_edges)
    bin_index = assign_bins(np.asarray(predicted_log_mass).ravel(), bin_edges)
    percent_error = 100.0 * np.abs(1.0 - 10.0 ** (centres[np.maximum(bin_index, 0)] - true_log_mass))
    return mean_and_std_per_bin(bin_index, percent_error, len(centres))[0]


def absolute_error_per_predicted_bin(true_values, predicted_values, bin_edges):
    """CB21's age error: in each predicted bin i, the mean of |true − c_i|; NaN for empty bins."""
    true_values = np.asarray(true_values, dtype=np.float64).ravel()
    centres = bin_centres(bin_edges)
    bin_index = assign_bins(predicted_values, bin_edges)
    absolute_error = np.abs(true_values - centres[np.maximum(bin_index, 0)])
    return mean_and_std_per_bin(bin_index, absolute_error, len(centres))[0]


def summarize_bins(values_per_bin):
    """Unweighted mean, minimum and maximum over the non-empty bins (NaN if all are empty).

    CB21 quotes this bin average, not an average over pixels or maps (paper-CB21.md §9).
    """
    values_per_bin = np.asarray(values_per_bin, dtype=np.float64)
    filled = values_per_bin[np.isfinite(values_per_bin)]
    if filled.size == 0:
        return {"mean": math.nan, "minimum": math.nan, "maximum": math.nan}
    return {"mean": float(filled.mean()), "minimum": float(filled.min()), "maximum": float(filled.max())}


def residual_summary(residuals):
    """Plain statistics of residuals (prediction − truth): median, 16th and 84th percentiles, count.

    The 16th–84th percentile range is the central 68 % interval.
    """
    residuals = np.asarray(residuals, dtype=np.float64).ravel()
    if residuals.size == 0:
        return {"median": math.nan, "percentile_16": math.nan, "percentile_84": math.nan, "count": 0}
    percentile_16, median, percentile_84 = np.percentile(residuals, [16.0, 50.0, 84.0])
    return {"median": float(median), "percentile_16": float(percentile_16), "percentile_84": float(percentile_84), "count": int(residuals.size)}


def pixel_mass_statistics(true_log_mass_maps, predicted_log_mass_maps, bin_edges=PIXEL_MASS_BIN_EDGES_LOG_MSUN):
    """CB21 Fig. 5 statistics: pixel-by-pixel log10 mass, all pixels of all maps together.

    `bin_edges` are CB21's by default; the general model's evaluation widens them
    (`GENERAL_PIXEL_MASS_BIN_EDGES_LOG_MSUN`).

    Returns
    -------
    dict
        "percent_error_per_bin" (49 predicted bins of `PIXEL_MASS_BIN_EDGES_LOG_MSUN`), "paper" (its
        bin average, minimum, maximum), "paper_without_faint_bins" (bins from the edge closest to
        log10 M = −1 upward), "xi" and "mu" (`offsets_per_bin`), "residual_dex" (`residual_summary`
        of predicted − true per pixel), "number_of_maps".
    """
    true_pixels = np.asarray(true_log_mass_maps, dtype=np.float64).ravel()
    predicted_pixels = np.asarray(predicted_log_mass_maps, dtype=np.float64).ravel()
    percent_error_per_bin = percent_mass_error_per_predicted_bin(true_pixels, predicted_pixels, bin_edges)
    first_bright_bin = int(np.argmin(np.abs(bin_edges - FAINT_PIXEL_LIMIT_LOG_MSUN)))
    return {
        "percent_error_per_bin": percent_error_per_bin,
        "paper": summarize_bins(percent_error_per_bin),
        "paper_without_faint_bins": summarize_bins(percent_error_per_bin[first_bright_bin:]),
        "xi": offsets_per_bin(true_pixels, predicted_pixels, bin_edges),
        "mu": offsets_per_bin(predicted_pixels, true_pixels, bin_edges),
        "residual_dex": residual_summary(predicted_pixels - true_pixels),
        "number_of_maps": int(len(np.asarray(true_log_mass_maps))),
    }


def total_mass_statistics(true_log_mass_maps, predicted_log_mass_maps, bin_edges=TOTAL_MASS_BIN_EDGES_LOG_MSUN):
    """CB21 Fig. 6 statistics: the same as `pixel_mass_statistics` for log10 of each map's total mass
    (`bin_edges` CB21's by default, `GENERAL_TOTAL_MASS_BIN_EDGES_LOG_MSUN` for the general model)."""
    true_total = total_log_mass(true_log_mass_maps)
    predicted_total = total_log_mass(predicted_log_mass_maps)
    percent_error_per_bin = percent_mass_error_per_predicted_bin(true_total, predicted_total, bin_edges)
    return {
        "true_log_total_mass": true_total,
        "predicted_log_total_mass": predicted_total,
        "percent_error_per_bin": percent_error_per_bin,
        "paper": summarize_bins(percent_error_per_bin),
        "xi": offsets_per_bin(true_total, predicted_total, bin_edges),
        "mu": offsets_per_bin(predicted_total, true_total, bin_edges),
        "residual_dex": residual_summary(predicted_total - true_total),
        "number_of_maps": int(len(true_total)),
    }


def age_statistics(true_age_gyr, predicted_age_gyr):
    """CB21 Fig. 8 statistics: mean |true − bin centre| per predicted-age bin, its bin average, ξ, μ,
    and the plain residual summary of predicted − true age (Gyr)."""
    true_age_gyr = np.asarray(true_age_gyr, dtype=np.float64)
    predicted_age_gyr = np.asarray(predicted_age_gyr, dtype=np.float64)
    bin_edges = AGE_BIN_EDGES_GYR
    absolute_error_per_bin = absolute_error_per_predicted_bin(true_age_gyr, predicted_age_gyr, bin_edges)
    return {
        "absolute_error_per_bin_gyr": absolute_error_per_bin,
        "paper": summarize_bins(absolute_error_per_bin),
        "xi": offsets_per_bin(true_age_gyr, predicted_age_gyr, bin_edges),
        "mu": offsets_per_bin(predicted_age_gyr, true_age_gyr, bin_edges),
        "residual_gyr": residual_summary(predicted_age_gyr - true_age_gyr),
        "number_of_maps": int(len(true_age_gyr)),
    }


def distance_statistics(true_distance_kpc, predicted_distance_kpc):
    """CB21 Fig. 9 statistics, for each true distance present in the sample.

    For each distance: number of maps, mean and standard deviation (ddof 0) of the predictions, mean
    absolute error, and the plain residual summary. CB21's headline "distance error" is the
    unweighted mean of the per-distance mean absolute errors; the per-distance standard deviations
    are averaged the same way. Maps are grouped by exact equality of the true distance, as in the
    authors' code.
    """
    true_distance_kpc = np.asarray(true_distance_kpc, dtype=np.float64)
    predicted_distance_kpc = np.asarray(predicted_distance_kpc, dtype=np.float64)
    per_distance = []
    for distance_kpc in np.unique(true_distance_kpc):
        predicted = predicted_distance_kpc[true_distance_kpc == distance_kpc]
        per_distance.append({
            "true_distance_kpc": float(distance_kpc),
            "number_of_maps": int(predicted.size),
            "mean_predicted_kpc": float(predicted.mean()),
            "std_predicted_kpc": float(predicted.std()),
            "mean_absolute_error_kpc": float(np.mean(np.abs(predicted - distance_kpc))),
            "residual_kpc": residual_summary(predicted - distance_kpc),
        })
    return {
        "per_distance": per_distance,
        "paper_mean_absolute_error_kpc": float(np.mean([row["mean_absolute_error_kpc"] for row in per_distance])),
        "paper_mean_std_kpc": float(np.mean([row["std_predicted_kpc"] for row in per_distance])),
        "residual_kpc": residual_summary(predicted_distance_kpc - true_distance_kpc),
        "number_of_maps": int(len(true_distance_kpc)),
    }


# --- Mass-to-light ratio (beyond the public code; CB21 abstract: global M/L_V to 12 %) -------------
def percent_error(predicted, true):
    """100 |predicted − true| / true, element by element."""
    predicted = np.asarray(predicted, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    return 100.0 * np.abs(predicted - true) / true


def mass_to_light_statistics(log_flux_maps, true_log_mass_maps, predicted_log_mass_maps, true_distance_kpc, predicted_distance_kpc):
    """Global M/L_V, true against predicted, for every map.

    The luminosity needs a distance, L = F · 4π D². The true M/L_V uses the true mass and distance.
    The predicted M/L_V is given twice:

    - "true_distance": predicted mass map with the true distance. Only the mass map's error enters;
      this is our headline value, the one to compare with CB21's 12 % ([INF]: the paper's definition
      is not public, but with the predicted distance the CNN's ≈ 15 % distance error would enter
      squared and the 12 % could hardly be reached).
    - "predicted_distance": predicted mass map with π-DOC's own distance, what an observer who knows
      nothing but the image obtains. Maps with a non-positive predicted distance get NaN and are left
      out (their number is reported).

    Returns
    -------
    dict
        "true" (M/L_V per map), and for each of "true_distance" and "predicted_distance":
        "mass_to_light" per map, "mean_percent_error", "median_percent_error", "log_ratio_dex"
        (`residual_summary` of log10 predicted/true), "number_of_maps" used.
    """
    true_distance_kpc = np.asarray(true_distance_kpc, dtype=np.float64)
    predicted_distance_kpc = np.asarray(predicted_distance_kpc, dtype=np.float64)
    true_luminosity = luminosity_maps_lsun(log_flux_maps, true_distance_kpc)
    true_mass_to_light = global_mass_to_light(true_log_mass_maps, true_luminosity)
    statistics = {"true": true_mass_to_light}
    for choice, luminosity in (
        ("true_distance", true_luminosity),
        ("predicted_distance", luminosity_maps_lsun(log_flux_maps, predicted_distance_kpc)),
    ):
        predicted_mass_to_light = global_mass_to_light(predicted_log_mass_maps, luminosity)
        usable = np.isfinite(predicted_mass_to_light) & np.isfinite(true_mass_to_light)
        errors = percent_error(predicted_mass_to_light[usable], true_mass_to_light[usable])
        statistics[choice] = {
            "mass_to_light": predicted_mass_to_light,
            "mean_percent_error": float(errors.mean()) if errors.size else math.nan,
            "median_percent_error": float(np.median(errors)) if errors.size else math.nan,
            "log_ratio_dex": residual_summary(np.log10(predicted_mass_to_light[usable] / true_mass_to_light[usable])),
            "number_of_maps": int(usable.sum()),
        }
    return statistics


# --- Scores per present-day mass decade (the general model, trained_piDOC/general; beyond CB21) -----
# CB21's bins cover their N0 = 5×10⁴ clusters only: pixel masses 10⁻²–10 M☉ and field masses
# 10³–10^4.5 M☉. A 10⁶ M☉ cluster at 5–10 kpc puts up to ~10³ M☉ in a central pixel (10^3.3 in the
# general training split) and ~10^5.5 M☉ in the field, so the general model is scored on bins of the
# same widths (0.061 and 0.079 dex) extended upward. The bin-averaged definitions are otherwise CB21's.
GENERAL_PIXEL_MASS_BIN_EDGES_LOG_MSUN = np.linspace(-2.0, 3.5, 91)
GENERAL_TOTAL_MASS_BIN_EDGES_LOG_MSUN = np.linspace(3.0, 6.5, 45)
# Decades of the cluster's present-day total mass (log10 M☉); the Milky Way's clusters span 10⁴–10⁶.
MASS_DECADE_EDGES_LOG_MSUN = (3.0, 4.0, 5.0, 6.0, 7.0)
# The general model's targets (trained_piDOC/general/MODEL_CARD.md).
GENERAL_MODEL_TARGETS = {"pixel_mass_percent": 20.0, "total_mass_percent": 10.0, "mass_to_light_percent": 10.0,
                         "age_gyr": 1.0, "distance_relative_percent": 8.0}


def relative_distance_error_percent(true_distance_kpc, predicted_distance_kpc):
    """Mean of 100 |D_predicted − D_true| / D_true over the maps (a relative error, unlike CB21's kpc)."""
    return float(np.mean(percent_error(predicted_distance_kpc, true_distance_kpc)))


def headline_scores(log_flux_maps, true_log_mass_maps, predicted_log_mass_maps, true_distance_age, predicted_distance_age,
                    pixel_bin_edges=GENERAL_PIXEL_MASS_BIN_EDGES_LOG_MSUN, total_bin_edges=GENERAL_TOTAL_MASS_BIN_EDGES_LOG_MSUN):
    """The five headline scores of a set of maps, with the statistics above (wide bins by default).

    Returns
    -------
    dict
        "number_of_maps", "pixel_mass_percent" and "total_mass_percent" (CB21's bin averages),
        "mass_to_light_percent" (global M/L_V, true distance), "age_gyr" (CB21's bin average),
        "distance_kpc" (CB21's mean of per-distance MAEs) and "distance_relative_percent".
    """
    true_distance_age = np.asarray(true_distance_age, dtype=np.float64)
    predicted_distance_age = np.asarray(predicted_distance_age, dtype=np.float64)
    mass_to_light = mass_to_light_statistics(log_flux_maps, true_log_mass_maps, predicted_log_mass_maps,
                                             true_distance_age[:, 0], predicted_distance_age[:, 0])
    return {
        "number_of_maps": int(len(true_distance_age)),
        "pixel_mass_percent": pixel_mass_statistics(true_log_mass_maps, predicted_log_mass_maps, pixel_bin_edges)["paper"]["mean"],
        "total_mass_percent": total_mass_statistics(true_log_mass_maps, predicted_log_mass_maps, total_bin_edges)["paper"]["mean"],
        "mass_to_light_percent": mass_to_light["true_distance"]["mean_percent_error"],
        "age_gyr": age_statistics(true_distance_age[:, 1], predicted_distance_age[:, 1])["paper"]["mean"],
        "distance_kpc": distance_statistics(true_distance_age[:, 0], predicted_distance_age[:, 0])["paper_mean_absolute_error_kpc"],
        "distance_relative_percent": relative_distance_error_percent(true_distance_age[:, 0], predicted_distance_age[:, 0]),
    }


def mass_decade_groups(present_log_mass, decade_edges=MASS_DECADE_EDGES_LOG_MSUN):
    """The maps of each decade of present-day mass, then of 10⁴–10⁶ M☉ pooled, then of all maps.

    Returns
    -------
    list of tuple
        (label, low log mass, high log mass, indices of the member maps), for the non-empty groups only.
    """
    present_log_mass = np.asarray(present_log_mass, dtype=np.float64)
    groups = [(f"10^{low:g}–10^{high:g} M☉", low, high) for low, high in zip(decade_edges[:-1], decade_edges[1:])]
    groups += [("pooled 10^4–10^6 M☉", 4.0, 6.0), ("all maps", -np.inf, np.inf)]
    members = [(label, low, high, np.flatnonzero((present_log_mass >= low) & (present_log_mass < high)))
               for label, low, high in groups]
    return [group for group in members if group[3].size > 0]


def mass_decade_statistics(present_log_mass, log_flux_maps, true_log_mass_maps, predicted_log_mass_maps,
                           true_distance_age, predicted_distance_age, decade_edges=MASS_DECADE_EDGES_LOG_MSUN):
    """`headline_scores` per decade of the clusters' present-day mass, and pooled over 10⁴–10⁶ M☉.

    Parameters
    ----------
    present_log_mass : array_like, shape (N,)
        log10 of the present-day total mass (M☉) of the cluster each map shows (metadata.csv's
        total_mass_msun: the bound mass at that age, the same for every view of a snapshot).

    Returns
    -------
    list of dict
        One per non-empty decade, then one pooled over 10⁴–10⁶ M☉ and one over all maps; each holds
        "label", "low_log_mass", "high_log_mass" and the entries of `headline_scores`.
    """
    present_log_mass = np.asarray(present_log_mass, dtype=np.float64)
    if present_log_mass.shape != (len(true_distance_age),):
        raise ValueError(f"present_log_mass must hold one value per map ({len(true_distance_age)}), got shape {present_log_mass.shape}")
    rows = []
    for label, low, high, members in mass_decade_groups(present_log_mass, decade_edges):
        scores = headline_scores(log_flux_maps[members], true_log_mass_maps[members], predicted_log_mass_maps[members],
                                 np.asarray(true_distance_age)[members], np.asarray(predicted_distance_age)[members])
        rows.append({"label": label, "low_log_mass": float(low), "high_log_mass": float(high), **scores})
    return rows


def mass_decade_table_rows(rows, targets=GENERAL_MODEL_TARGETS):
    """Rows of `mass_decade_statistics` as a printable table, with the targets as the last row."""
    keys = ("pixel_mass_percent", "total_mass_percent", "mass_to_light_percent", "age_gyr", "distance_relative_percent")
    table = [["present-day mass", "maps", "pixel mass %", "total mass %", "M/L_V % (true D)", "age Gyr",
              "|ΔD|/D %", "distance kpc"]]
    for row in rows:
        # A bin average is undefined where no prediction of the decade falls in the bins.
        table.append([row["label"], str(row["number_of_maps"])]
                     + [format_or_reason(row[key], ".2f", "no prediction within the bins") for key in keys + ("distance_kpc",)])
    table.append(["target (≤)", ""] + [f"{targets[key]:g}" for key in keys] + [""])
    return table


# ==================================================================================================
# 3. Figures and tables (CB21 Figs 4, 5, 6, 8, 9; paper-CB21.md §10b)
# ==================================================================================================
# --- Values that cannot be computed, and predictions outside their intervals -----------------------
# Out-of-domain maps are when a user most needs every figure and table, and they are when π-DOC gives
# what the paper's code never met: a distance ≤ 0 (no luminosity), an age beyond 0–14 Gyr against an
# interval cut to that range, no calibrated interval at all, bins left empty. The figures and tables
# below draw and write all of it; nothing is written as "nan", an undefined value is written with its
# reason instead.
# A prediction outside its interval is marked OUTSIDE_MARK (∉) and tested with the summary's rounding
# tolerance (pidoc/calibration/uncertainty.py), so the figures and predictions_summary.txt agree.
UNDEFINED = "undefined"
MOSAIC_OUTSIDE_NOTE = (f"{OUTSIDE_MARK}: prediction outside its 68 % interval (intervals are cut to the physical range, "
                       f"age 0–{MAXIMUM_AGE_GYR:g} Gyr; such a map is outside π-DOC's domain)")


def is_undefined(value):
    """True for a float that is NaN or infinite: a statistic that could not be computed."""
    return isinstance(value, (float, np.floating)) and not math.isfinite(value)


def format_or_reason(value, format_spec, reason):
    """`value` formatted with `format_spec`, or "undefined (reason)" where it is NaN or infinite."""
    return f"{UNDEFINED} ({reason})" if is_undefined(value) else format(value, format_spec)


def write_statistics_table(path, rows, headers, floatfmt, undefined_reason):
    """`pidoc.io.write_table`, with every undefined number written "undefined (undefined_reason)".

    A table without undefined numbers is handed to `write_table` unchanged, so its text is what it
    always was. Otherwise every cell is formatted here, with its column's `floatfmt`, because
    `tabulate` would turn a column that mixes words and numbers into text and drop their format.
    """
    if not any(is_undefined(value) for row in rows for value in row):
        return write_table(path, rows, headers, floatfmt=floatfmt)
    formats = list(floatfmt) if isinstance(floatfmt, (list, tuple)) else [floatfmt] * max(len(row) for row in rows)
    cells = [[value if isinstance(value, str) else format_or_reason(value, column_format, undefined_reason)
              for value, column_format in zip(row, formats)] for row in rows]
    return write_table(path, cells, headers, disable_numparse=True)


def interval_categories(points, lower, upper):
    """Which points lie inside their interval, which outside it, and which have none.

    Parameters
    ----------
    points, lower, upper : array_like, same shape
        Predictions and the bounds of their intervals; a NaN bound means no interval (an uncalibrated
        model, or a distance ≤ 0 for which log10 D is undefined).

    Returns
    -------
    inside, outside, undefined : numpy.ndarray of bool
        Exclusive masks. "outside" allows `INTERVAL_TOLERANCE` for rounding.
    """
    points, lower, upper = (np.asarray(values, dtype=np.float64) for values in (points, lower, upper))
    undefined = ~(np.isfinite(lower) & np.isfinite(upper))
    with np.errstate(invalid="ignore"):
        tolerance = INTERVAL_TOLERANCE * np.maximum(np.maximum(np.abs(lower), np.abs(upper)), 1.0)
        outside = ~undefined & ((points < lower - tolerance) | (points > upper + tolerance))
    return ~undefined & ~outside, outside, undefined


def draw_prediction_intervals(axes, positions, points, lower, upper, frame):
    """Draw each prediction with its interval on `axes`, whatever the prediction and the interval.

    Predictions inside their interval get an error bar (yerr clipped at 0 for rounding). Where the
    prediction lies outside its interval, which matplotlib cannot draw as yerr, the interval is drawn
    as a bar of its own (caps at both bounds, so a zero-width one such as [14, 14] Gyr still shows)
    and the prediction as a red cross. Predictions without an interval are open squares. Predictions
    beyond `frame` = (low, high), invisible otherwise, get a triangle at the frame's edge. Each kind is
    drawn, and named in the legend, only where it occurs.
    """
    positions, points, lower, upper = (np.ravel(values) for values in (positions, points, lower, upper))
    inside, outside, undefined = interval_categories(points, lower, upper)
    if inside.any():
        axes.errorbar(positions[inside], points[inside],
                      yerr=[np.maximum(points[inside] - lower[inside], 0.0), np.maximum(upper[inside] - points[inside], 0.0)],
                      fmt="o", markersize=1.5, linewidth=0.5, color="k", alpha=0.5, label="68 % interval")
    if outside.any():
        axes.errorbar(positions[outside], (lower[outside] + upper[outside]) / 2.0, yerr=(upper[outside] - lower[outside]) / 2.0,
                      fmt="none", ecolor="C3", elinewidth=0.8, capsize=2.5, alpha=0.8)
        axes.plot(positions[outside], points[outside], "x", color="C3", markersize=4,
                  label="prediction outside its 68 % interval (red bar)")
    if undefined.any():
        axes.plot(positions[undefined], points[undefined], "s", markerfacecolor="none", color="C1", markersize=3,
                  label="68 % interval undefined")
    low, high = frame
    for beyond, edge, marker, side in ((points > high, high, "^", "above"), (points < low, low, "v", "below")):
        if beyond.any():
            axes.plot(positions[beyond], np.full(int(beyond.sum()), edge), marker, color="C3", markersize=4, clip_on=False,
                      label=f"prediction {side} the frame (at its edge)")


def choose_mosaic_maps(number_of_maps, random_seed=MOSAIC_RANDOM_SEED):
    """Indices of the (up to) four maps of the mosaic, drawn without replacement with a seeded generator."""
    count = min(MOSAIC_MAPS, number_of_maps)
    return sorted(int(index) for index in np.random.default_rng(random_seed).choice(number_of_maps, size=count, replace=False))


def display_mosaic_prediction(pathprediction, log_flux_maps, true_log_mass_maps, true_distance_age,
                              predicted_log_mass_maps, predicted_distance_age, random_seed=MOSAIC_RANDOM_SEED,
                              predicted_half_widths=None, predicted_intervals=None):
    """CB21 Fig. 4: four maps, chosen at random with a seed; rows are input flux, true mass, predicted mass.

    With `predicted_intervals` = (distance (lower, upper), age (lower, upper)), arrays of (N,): the
    68 % intervals, the predicted labels read "D = 27 ± 3 kpc" (± half the interval); a prediction
    outside its interval reads "A = 15.0 Gyr ∉ [14.0, 14.0]", explained below the maps, and one
    without an interval (NaN bounds) "D = -2.6 kpc, no interval (D ≤ 0)". `predicted_half_widths`
    ((N, 2): half the 68 % interval of distance and age), the older form, gives the ± labels only.

    Saves `mosaic_predictions_maps_a-b-c-d.png` with a, b, c, d the indices of the maps shown, and
    returns its path. Maps are drawn with row index = y and column index = x (`origin="lower"`), the
    convention of our mock clusters.
    """
    log_flux_maps = as_map_stack(log_flux_maps, "the flux maps")
    true_log_mass_maps, predicted_log_mass_maps = check_matching_maps(true_log_mass_maps, predicted_log_mass_maps, "mass maps")
    true_distance_age = check_distance_age(true_distance_age, len(log_flux_maps), "the true distance_age")
    predicted_distance_age = check_distance_age(predicted_distance_age, len(log_flux_maps), "the predicted distance_age")
    chosen = choose_mosaic_maps(len(log_flux_maps), random_seed)

    columns = len(chosen)
    figure = plt.figure(figsize=(1.6 * columns + 1.3, 3 * 1.6 + 0.9))
    grid = gridspec.GridSpec(3, columns + 2, width_ratios=[1.0] * columns + [0.04, 0.06], wspace=0.0, hspace=0.0,
                             left=0.12, right=0.86, top=0.86, bottom=0.09)
    extent_arcsec = [-MAP_HALF_WIDTH_ARCSEC, MAP_HALF_WIDTH_ARCSEC, -MAP_HALF_WIDTH_ARCSEC, MAP_HALF_WIDTH_ARCSEC]
    rows = (
        ("Input flux", log_flux_maps, None, "bone", FLUX_COLOUR_RANGE_LOG, FLUX_LABEL),
        ("Real mass", true_log_mass_maps, true_distance_age, "gist_heat", MASS_COLOUR_RANGE_LOG_MSUN, MASS_LABEL),
        ("Predicted mass", predicted_log_mass_maps, predicted_distance_age, "gist_heat", MASS_COLOUR_RANGE_LOG_MSUN, MASS_LABEL),
    )
    label_box = {"facecolor": "black", "alpha": 0.5, "edgecolor": "none"}
    any_outside = False
    for row, (row_title, maps, distance_age, colour_map, colour_range, colour_label) in enumerate(rows):
        for column, map_index in enumerate(chosen):
            axes = figure.add_subplot(grid[row, column])
            image = axes.imshow(maps[map_index, :, :, 0], extent=extent_arcsec, origin="lower", cmap=colour_map,
                                vmin=colour_range[0], vmax=colour_range[1])
            axes.set_xticks([-10, 0, 10] if column else [-20, -10, 0, 10])
            axes.set_yticks([-10, 0, 10, 20])
            if column == 0:
                axes.set_ylabel("y (arcsec)")
                axes.text(-17, 16, row_title, color="white", fontsize=7)
            else:
                axes.tick_params(axis="y", which="both", left=False, labelleft=False)
            if row == len(rows) - 1:
                axes.set_xlabel("x (arcsec)")
            else:
                axes.tick_params(axis="x", which="both", labelbottom=False)
            if distance_age is None:
                axes.text(-17, -18, f"({'abcd'[column]}) #{map_index}", color="white", fontsize=7)
            elif distance_age is predicted_distance_age and (predicted_intervals is not None or predicted_half_widths is not None):
                labels = [prediction_label(symbol, distance_age[map_index, quantity], unit, digits,
                                           None if predicted_intervals is None else
                                           [bound[map_index] for bound in predicted_intervals[quantity]],
                                           None if predicted_half_widths is None else predicted_half_widths[map_index][quantity])
                          for quantity, (symbol, unit, digits) in enumerate((("D", "kpc", 0), ("A", "Gyr", 1)))]
                any_outside = any_outside or any(OUTSIDE_MARK in label for label in labels)
                axes.text(-18.5, -18, labels[0], color="yellow", fontsize=5, bbox=label_box)
                axes.text(-18.5, -13, labels[1], color="red", fontsize=5, bbox=label_box)
            else:
                axes.text(-17, -18, f"D = {distance_age[map_index, 0]:.1f} kpc", color="yellow", fontsize=5.5, bbox=label_box)
                axes.text(3, -18, f"A = {distance_age[map_index, 1]:.1f} Gyr", color="red", fontsize=5.5, bbox=label_box)
        colour_bar = figure.colorbar(image, cax=figure.add_subplot(grid[row, columns + 1]))
        colour_bar.set_label(colour_label, fontsize=7)
    figure.suptitle("Top: V-band flux maps\nMiddle: true mass maps, distance and age\n"
                    "Bottom: predicted mass maps, distance and age", fontsize=9)
    if any_outside:
        figure.text(0.5, 0.005, MOSAIC_OUTSIDE_NOTE, ha="center", va="bottom", fontsize=5)
    path = Path(pathprediction) / f"mosaic_predictions_maps_{'-'.join(str(index) for index in chosen)}.png"
    save_figure(figure, path, dpi=300)
    print(f"--> Mosaic of {columns} maps with their predictions saved: {path}")
    return path


def prediction_label(symbol, value, unit, digits, interval=None, half_width=None):
    """The mosaic's label of a predicted distance or age, with its 68 % interval where there is one.

    Parameters
    ----------
    symbol, unit : str
        "D", "kpc" or "A", "Gyr".
    value : float
        The prediction.
    digits : int
        Decimals of the label.
    interval : (float, float), optional
        The 68 % interval; it takes precedence over `half_width`.
    half_width : float, optional
        Half the interval, the older form (`display_mosaic_prediction`'s `predicted_half_widths`).

    Returns
    -------
    str
        "D = 27 ± 3 kpc" for a prediction inside its interval, "A = 15.0 Gyr ∉ [14.0, 14.0]" outside
        it, "D = -2.6 kpc, no interval (D ≤ 0)" without one, "D = 27.0 kpc" with neither argument.
    """
    if interval is not None:
        lower, upper = (float(bound) for bound in interval)
        inside, outside, _ = interval_categories([value], [lower], [upper])
        if outside[0]:
            return f"{symbol} = {value:.{digits}f} {unit} {OUTSIDE_MARK} [{lower:.{digits}f}, {upper:.{digits}f}]"
        # The same half width, and the same text, as the older `predicted_half_widths` gave.
        half_width = (upper - lower) / 2.0 if inside[0] else math.nan
    elif half_width is None:
        return f"{symbol} = {value:.1f} {unit}"
    if not math.isfinite(half_width):
        # A calibrated model has no distance interval where log10 D is undefined, that is D ≤ 0.
        reason = f" ({symbol} ≤ 0)" if symbol == "D" and value <= 0 else ""
        return f"{symbol} = {value:.{max(digits, 1)}f} {unit}, no interval{reason}"
    return f"{symbol} = {value:.{digits}f} ± {half_width:.{digits}f} {unit}"


def plot_predicted_vs_true(path, true_values, predicted_values, bin_edges, xi, mu, side_panel_limit, quantity_label, title,
                           predicted_intervals=None):
    """The predicted-vs-true figure shared by CB21 Figs 5, 6 and 8.

    Centre: 2-D histogram of true (x) against predicted (y) on `bin_edges`, counts on a logarithmic
    colour scale, with the 1:1 line. Left: μ against the predicted bin centre. Bottom: ξ against the
    true bin centre. Layout: GridSpec 2×3, width ratios [1, 3, 0.25], height ratios [3, 1].
    With `predicted_intervals` = (lower, upper), each value is also drawn with its interval as an
    error bar (pidoc/calibration/uncertainty.py's calibrated 68 % intervals); values outside their
    interval, without one (NaN bounds) or beyond the frame are drawn and named as
    `draw_prediction_intervals` says.
    """
    low, high = bin_edges[0], bin_edges[-1]
    counts, _, _ = np.histogram2d(np.ravel(true_values), np.ravel(predicted_values), bins=(bin_edges, bin_edges))
    figure = plt.figure()
    grid = gridspec.GridSpec(2, 3, width_ratios=[1, 3, 0.25], height_ratios=[3, 1], figure=figure)
    histogram_axes = figure.add_subplot(grid[0, 1])
    mu_axes = figure.add_subplot(grid[0, 0])
    xi_axes = figure.add_subplot(grid[1, 1])
    colour_bar_axes = figure.add_subplot(grid[0, 2])

    true_edges, predicted_edges = np.meshgrid(bin_edges, bin_edges)
    # Empty cells stay blank; the norm starts at one count.
    image = histogram_axes.pcolormesh(true_edges, predicted_edges, np.ma.masked_equal(counts.T, 0),
                                      norm=LogNorm(vmin=1, vmax=max(2.0, counts.max())))
    figure.colorbar(image, cax=colour_bar_axes).set_label("Counts")
    histogram_axes.plot([low, high], [low, high], "-r")
    if predicted_intervals is not None:
        # Intervals cut to the physical range (age 0–14 Gyr) need not hold their prediction, and an
        # uncalibrated model has none: `draw_prediction_intervals` draws every case.
        draw_prediction_intervals(histogram_axes, true_values, predicted_values, *predicted_intervals, (low, high))
        if histogram_axes.get_legend_handles_labels()[0]:
            histogram_axes.legend(fontsize=7, loc="upper left")
    histogram_axes.set_xlim(low, high)
    histogram_axes.set_ylim(low, high)
    histogram_axes.get_xaxis().set_visible(False)
    histogram_axes.get_yaxis().set_visible(False)

    mu_axes.errorbar(mu["mean"], mu["centres"], xerr=mu["std"])
    mu_axes.plot([0, 0], [low, high], "r")
    mu_axes.set_xlim(-side_panel_limit, side_panel_limit)
    mu_axes.set_ylim(low, high)
    mu_axes.set_xlabel(r"$\mu$")
    mu_axes.set_ylabel(f"Predicted {quantity_label}")

    xi_axes.errorbar(xi["centres"], xi["mean"], yerr=xi["std"])
    xi_axes.plot([low, high], [0, 0], "r")
    xi_axes.set_xlim(low, high)
    xi_axes.set_ylim(-side_panel_limit, side_panel_limit)
    xi_axes.set_xlabel(f"True {quantity_label}")
    xi_axes.set_ylabel(r"$\xi$")

    figure.suptitle(title)
    figure.subplots_adjust(top=0.88, wspace=0.4, hspace=0.25)
    return save_figure(figure, path, bbox_inches="tight")


def no_prediction_in_bins(bin_edges, unit):
    """Why a bin-averaged statistic is undefined: CB21 average over predicted bins, and none was filled."""
    return f"no prediction within the bins, {bin_edges[0]:g} to {bin_edges[-1]:g} {unit}"


def residual_columns(summary, unit):
    """Headers and values of the plain statistics of a `residual_summary`."""
    headers = [f"Median residual ({unit})", f"16th pct ({unit})", f"84th pct ({unit})"]
    return headers, [summary["median"], summary["percentile_16"], summary["percentile_84"]]


def display_predicted_vs_true_mass(pathprediction, true_log_mass_maps, predicted_log_mass_maps):
    """CB21 Fig. 5 (`Mass_map_true_vs_predicted.png`) and its table (`predicted_vs_true_mass.txt`).

    Returns the statistics of `pixel_mass_statistics`.
    """
    true_log_mass_maps, predicted_log_mass_maps = check_matching_maps(true_log_mass_maps, predicted_log_mass_maps, "mass maps")
    statistics = pixel_mass_statistics(true_log_mass_maps, predicted_log_mass_maps)
    paper, bright = statistics["paper"], statistics["paper_without_faint_bins"]
    residual_headers, residual_values = residual_columns(statistics["residual_dex"], "dex")
    headers = ["Avg % error", "Min % error", "Max % error", "Avg % error, log M ≥ -1"] + residual_headers + ["Maps", "Pixels"]
    values = [paper["mean"], paper["minimum"], paper["maximum"], bright["mean"]] + residual_values
    values += [statistics["number_of_maps"], statistics["residual_dex"]["count"]]
    empty_bins = no_prediction_in_bins(PIXEL_MASS_BIN_EDGES_LOG_MSUN, "dex")
    write_statistics_table(Path(pathprediction) / "predicted_vs_true_mass.txt", [values], headers,
                           [".1f"] * 4 + [".3f"] * 3 + ["d"] * 2, empty_bins)
    print(f"Mass mean percentage error (CB21 §4, bin-averaged): {format_or_reason(paper['mean'], '.1f', empty_bins)} %")
    plot_predicted_vs_true(Path(pathprediction) / "Mass_map_true_vs_predicted.png", true_log_mass_maps, predicted_log_mass_maps,
                           PIXEL_MASS_BIN_EDGES_LOG_MSUN, statistics["xi"], statistics["mu"], PIXEL_MASS_SIDE_PANEL_LIMIT_DEX,
                           MASS_LABEL, "Predicted vs true mass distribution")
    print("--> Figure pixel-by-pixel predicted mass vs true mass saved")
    return statistics


def display_predicted_vs_true_total_mass(pathprediction, true_log_mass_maps, predicted_log_mass_maps):
    """CB21 Fig. 6 (`Total_mass_map_true_vs_predicted.png`) and its table (`predicted_vs_true_total_mass.txt`).

    Returns the statistics of `total_mass_statistics`.
    """
    true_log_mass_maps, predicted_log_mass_maps = check_matching_maps(true_log_mass_maps, predicted_log_mass_maps, "mass maps")
    statistics = total_mass_statistics(true_log_mass_maps, predicted_log_mass_maps)
    paper = statistics["paper"]
    residual_headers, residual_values = residual_columns(statistics["residual_dex"], "dex")
    headers = ["Average % error", "Minimum % error", "Maximum % error"] + residual_headers + ["Maps"]
    values = [paper["mean"], paper["minimum"], paper["maximum"]] + residual_values + [statistics["number_of_maps"]]
    empty_bins = no_prediction_in_bins(TOTAL_MASS_BIN_EDGES_LOG_MSUN, "dex")
    write_statistics_table(Path(pathprediction) / "predicted_vs_true_total_mass.txt", [values], headers,
                           [".1f"] * 3 + [".3f"] * 3 + ["d"], empty_bins)
    print(f"Total mass mean percentage error (CB21 §4, bin-averaged): {format_or_reason(paper['mean'], '.1f', empty_bins)} %")
    plot_predicted_vs_true(Path(pathprediction) / "Total_mass_map_true_vs_predicted.png", statistics["true_log_total_mass"],
                           statistics["predicted_log_total_mass"], TOTAL_MASS_BIN_EDGES_LOG_MSUN, statistics["xi"], statistics["mu"],
                           TOTAL_MASS_SIDE_PANEL_LIMIT_DEX, TOTAL_MASS_LABEL, "Predicted vs true total mass")
    print("--> Figure predicted total mass vs true total mass saved")
    return statistics


def display_predicted_vs_true_age(pathprediction, true_distance_age, predicted_distance_age, age_intervals_gyr=None):
    """CB21 Fig. 8 (`Age_true_vs_predicted.png`) and its table (`predicted_vs_true_age.txt`).

    `age_intervals_gyr` = (lower, upper), optional: each map's interval, drawn as an error bar.
    Returns the statistics of `age_statistics`.
    """
    true_distance_age = check_distance_age(true_distance_age, len(np.asarray(true_distance_age)), "the true distance_age")
    predicted_distance_age = check_distance_age(predicted_distance_age, len(true_distance_age), "the predicted distance_age")
    statistics = age_statistics(true_distance_age[:, 1], predicted_distance_age[:, 1])
    paper = statistics["paper"]
    residual_headers, residual_values = residual_columns(statistics["residual_gyr"], "Gyr")
    headers = ["Mean absolute error (Gyr)", "Minimum absolute error (Gyr)", "Maximum absolute error (Gyr)"] + residual_headers + ["Maps"]
    values = [paper["mean"], paper["minimum"], paper["maximum"]] + residual_values + [statistics["number_of_maps"]]
    empty_bins = no_prediction_in_bins(AGE_BIN_EDGES_GYR, "Gyr")
    write_statistics_table(Path(pathprediction) / "predicted_vs_true_age.txt", [values], headers, [".2f"] * 6 + ["d"], empty_bins)
    print(f"Mean age absolute error (CB21 §4, bin-averaged): {format_or_reason(paper['mean'], '.2f', empty_bins)} Gyr")
    plot_predicted_vs_true(Path(pathprediction) / "Age_true_vs_predicted.png", true_distance_age[:, 1], predicted_distance_age[:, 1],
                           AGE_BIN_EDGES_GYR, statistics["xi"], statistics["mu"], AGE_SIDE_PANEL_LIMIT_GYR, "age (Gyr)",
                           "Predicted vs true age", predicted_intervals=age_intervals_gyr)
    print("--> Figure predicted age vs true age saved")
    return statistics


def distance_table_rows(statistics):
    """Rows of the distance table: CB21's statistics per true distance with their averages, then plain ones."""
    per_distance = statistics["per_distance"]

    def cell(value):
        # Every map has a finite prediction, so these statistics are defined; the guard keeps "nan"
        # out of the table should one not be.
        return format_or_reason(value, ".2f", "not a finite number") if isinstance(value, float) else str(value)

    def row(label, key, average="/"):
        return [label] + [cell(entry[key]) for entry in per_distance] + [cell(average)]

    def residual_row(label, key):
        return [label] + [cell(entry["residual_kpc"][key]) for entry in per_distance] + [cell(statistics["residual_kpc"][key])]

    return [
        ["Real distance (kpc)"] + [f"{entry['true_distance_kpc']:g}" for entry in per_distance] + ["Avg / all"],
        row("Number of maps", "number_of_maps", statistics["number_of_maps"]),
        row("Mean predicted distance (kpc)", "mean_predicted_kpc"),
        row("Standard deviation (kpc)", "std_predicted_kpc", statistics["paper_mean_std_kpc"]),
        row("Mean absolute error (kpc)", "mean_absolute_error_kpc", statistics["paper_mean_absolute_error_kpc"]),
        residual_row("Median residual (kpc)", "median"),
        residual_row("16th pct residual (kpc)", "percentile_16"),
        residual_row("84th pct residual (kpc)", "percentile_84"),
    ]


def pdf_distances(pathprediction, true_distance_age, predicted_distance_age, distance_intervals_kpc=None):
    """CB21 Fig. 9 (`Pdf_distances.png`) and its table (`distance_predictions_stats.txt`).

    With `distance_intervals_kpc` = (lower, upper) per map, each true distance also gets an error bar
    at the top of the frame: the mean prediction with the mean lower and upper interval offsets, over
    the maps that have an interval (a distance ≤ 0 or an uncalibrated model has none). Where no map of
    a distance has one, an open square at the mean prediction says so; where the mean prediction lies
    outside the mean interval, the bar stops at the prediction and the point is a cross, both named
    in the legend.

    One filled step histogram (density) of the predicted distances for each true distance present,
    on int(n/3) bin edges between the smallest and largest prediction as in the authors' code (at
    least two edges, and ±0.5 kpc around a single value), with a dashed line at the true distance.
    The frame is the paper's 0–100 kpc by 0–0.2, widened only if the data reach beyond it.

    Returns the statistics of `distance_statistics`.
    """
    true_distance_age = check_distance_age(true_distance_age, len(np.asarray(true_distance_age)), "the true distance_age")
    predicted_distance_age = check_distance_age(predicted_distance_age, len(true_distance_age), "the predicted distance_age")
    true_distance, predicted_distance = true_distance_age[:, 0], predicted_distance_age[:, 0]
    statistics = distance_statistics(true_distance, predicted_distance)
    write_table(Path(pathprediction) / "distance_predictions_stats.txt", distance_table_rows(statistics), disable_numparse=True)
    print(f"Average absolute error on the {len(statistics['per_distance'])} distances (CB21 §4): "
          f"{format_or_reason(statistics['paper_mean_absolute_error_kpc'], '.2f', 'not a finite number')} kpc")

    figure, axes = plt.subplots()
    highest_density, farthest_kpc = DISTANCE_PDF_FRAME[1], DISTANCE_PDF_FRAME[0]
    for colour_index, entry in enumerate(statistics["per_distance"]):
        predicted = predicted_distance[true_distance == entry["true_distance_kpc"]]
        low, high = predicted.min(), predicted.max()
        if high == low:
            low, high = low - 0.5, high + 0.5
        density, edges = np.histogram(predicted, bins=np.linspace(low, high, max(predicted.size // 3, 2)), density=True)
        colour = f"C{colour_index % 10}"
        axes.stairs(density, edges, fill=True, alpha=0.5, color=colour, label=f"{entry['true_distance_kpc']:g} kpc")
        axes.axvline(entry["true_distance_kpc"], linestyle="--", color=colour)
        highest_density = max(highest_density, 1.05 * density.max())
        farthest_kpc = max(farthest_kpc, high)
    if distance_intervals_kpc is not None:
        lower, upper = (np.asarray(bound, dtype=np.float64) for bound in distance_intervals_kpc)
        with_interval = np.isfinite(lower) & np.isfinite(upper)
        labelled = set()   # each kind of mark is named once in the legend
        for colour_index, entry in enumerate(statistics["per_distance"]):
            rows = true_distance == entry["true_distance_kpc"]
            mean_kpc = predicted_distance[rows].mean()
            height = highest_density * (0.92 - 0.05 * colour_index)
            colour = f"C{colour_index % 10}"
            if not np.any(rows & with_interval):
                label = "no 68 % interval (D ≤ 0 or no calibration)"
                axes.plot([mean_kpc], [height], "s", markerfacecolor="none", markersize=4, color=colour,
                          label=None if label in labelled else label)
                labelled.add(label)
                continue
            offsets = np.array([[np.nanmean(predicted_distance[rows] - lower[rows])], [np.nanmean(upper[rows] - predicted_distance[rows])]])
            # An offset < 0, the mean prediction outside the mean interval, is no error bar matplotlib
            # can draw; the bar then stops at the prediction, marked as a cross.
            outside = bool(np.any(offsets < -INTERVAL_TOLERANCE * max(abs(mean_kpc), 1.0)))
            label = "mean prediction outside the mean 68 % interval" if outside else "mean 68 % interval"
            axes.errorbar([mean_kpc], [height], xerr=np.maximum(offsets, 0.0), fmt="x" if outside else "o", markersize=3,
                          capsize=2, color=colour, label=None if label in labelled else label)
            labelled.add(label)
    axes.set_xlabel("Distance (kpc)")
    axes.set_ylabel("PDF")
    axes.set_xlim(min(0.0, predicted_distance.min()), farthest_kpc)
    axes.set_ylim(0.0, highest_density)
    axes.legend(title="True distance", fontsize=8)
    figure.tight_layout()
    save_figure(figure, Path(pathprediction) / "Pdf_distances.png")
    print("--> PDF distances figure saved")
    return statistics


def display_mass_to_light_profiles(pathprediction, log_flux_maps, true_log_mass_maps, true_distance_age,
                                   predicted_log_mass_maps, predicted_distance_age, random_seed=MOSAIC_RANDOM_SEED):
    """M/L_V radial profiles of the mosaic's clusters, and global M/L_V for the whole sample.

    Top row: for each map of the mosaic (the same seeded choice as `display_mosaic_prediction`), the
    true M/L_V profile (true mass and distance) and the predicted one, with the true distance (solid)
    and with the predicted distance (dashed), in 1″ annuli about the light-weighted centre of the flux
    map. Bottom: predicted against true global M/L_V of every map, for both distance choices (see
    `mass_to_light_statistics`). Saves `Mass_to_light_true_vs_predicted.png` and the table
    `mass_to_light_stats.txt` (mean % error of the global M/L_V and plain statistics), and returns the
    statistics. A map predicted at D ≤ 0 has no luminosity with its predicted distance: its panel
    says so, the legend counts the maps left out, and a statistic without any map left is written
    "undefined (no map with a positive predicted distance)".
    """
    log_flux_maps = check_flux_maps(log_flux_maps)
    true_log_mass_maps, predicted_log_mass_maps = check_matching_maps(true_log_mass_maps, predicted_log_mass_maps, "mass maps")
    true_distance_age = check_distance_age(true_distance_age, len(log_flux_maps), "the true distance_age")
    predicted_distance_age = check_distance_age(predicted_distance_age, len(log_flux_maps), "the predicted distance_age")
    true_distance, predicted_distance = true_distance_age[:, 0], predicted_distance_age[:, 0]
    statistics = mass_to_light_statistics(log_flux_maps, true_log_mass_maps, predicted_log_mass_maps, true_distance, predicted_distance)

    rows = []
    for choice, label in (("true_distance", "predicted mass, true distance (headline)"),
                          ("predicted_distance", "predicted mass, predicted distance (image only)")):
        entry = statistics[choice]
        rows.append([label, entry["mean_percent_error"], entry["median_percent_error"], entry["log_ratio_dex"]["median"],
                     entry["log_ratio_dex"]["percentile_16"], entry["log_ratio_dex"]["percentile_84"], entry["number_of_maps"]])
    headers = ["Global M/L_V", "Mean % error", "Median % error", "Median log ratio (dex)", "16th pct (dex)", "84th pct (dex)", "Maps"]
    # The luminosity needs a distance > 0: with the predicted distance, maps predicted at D ≤ 0 are
    # left out, and with all of them out the statistics are undefined.
    no_usable_map = "no map with a positive predicted distance"
    write_statistics_table(Path(pathprediction) / "mass_to_light_stats.txt", rows, headers,
                           ["", ".1f", ".1f", ".3f", ".3f", ".3f", "d"], no_usable_map)
    print(f"Global M/L_V mean percentage error: "
          f"{format_or_reason(statistics['true_distance']['mean_percent_error'], '.1f', no_usable_map)} % with the true distance, "
          f"{format_or_reason(statistics['predicted_distance']['mean_percent_error'], '.1f', no_usable_map)} % with the predicted distance")
    non_positive_distances = int(np.sum(~(predicted_distance > 0)))

    chosen = choose_mosaic_maps(len(log_flux_maps), random_seed)
    figure = plt.figure(figsize=(2.4 * MOSAIC_MAPS, 7.0))
    grid = gridspec.GridSpec(2, MOSAIC_MAPS, height_ratios=[1, 1.3], hspace=0.35, wspace=0.3, figure=figure)
    radii_arcsec = bin_centres(MASS_TO_LIGHT_RADIUS_EDGES_ARCSEC)
    for column, map_index in enumerate(chosen):
        axes = figure.add_subplot(grid[0, column])
        centre = light_weighted_centre_pixels(log_flux_maps[map_index])
        for mass_map, distance_kpc, style, label in (
            (true_log_mass_maps[map_index], true_distance[map_index], "-k", "true"),
            (predicted_log_mass_maps[map_index], true_distance[map_index], "-r", "predicted, true D"),
            (predicted_log_mass_maps[map_index], predicted_distance[map_index], "--r", "predicted, predicted D"),
        ):
            luminosity = luminosity_maps_lsun(log_flux_maps[map_index][np.newaxis], [distance_kpc])[0]
            profile = mass_to_light_profile(mass_map, luminosity, centre, MASS_TO_LIGHT_RADIUS_EDGES_ARCSEC)
            axes.plot(radii_arcsec, profile, style, label=label)
        if not predicted_distance[map_index] > 0:
            # L = F · 4π D² has no value for D ≤ 0, so the dashed profile is missing; say why.
            axes.text(0.04, 0.96, f"no dashed line: predicted\nD = {predicted_distance[map_index]:.1f} kpc ≤ 0", va="top",
                      transform=axes.transAxes, fontsize=5, color="r", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
        axes.set_yscale("log")
        axes.set_xlabel("R (arcsec)")
        axes.set_title(f"#{map_index}: D = {true_distance[map_index]:.0f} kpc, A = {true_distance_age[map_index, 1]:.1f} Gyr", fontsize=8)
        if column == 0:
            axes.set_ylabel(r"$M/L_V$ (M$_\odot$/L$_\odot$)")
            axes.legend(fontsize=6)

    axes = figure.add_subplot(grid[1, :])
    true_mass_to_light = statistics["true"]
    for choice, marker, label in (("true_distance", "o", "true distance"), ("predicted_distance", "x", "predicted distance")):
        entry = statistics[choice]
        label = f"{label}: mean error {format_or_reason(entry['mean_percent_error'], '.1f', no_usable_map)} %"
        if choice == "predicted_distance" and non_positive_distances:
            label += f" ({non_positive_distances} map{'s' if non_positive_distances > 1 else ''} with D ≤ 0 left out)"
        axes.scatter(true_mass_to_light, entry["mass_to_light"], marker=marker, s=12, label=label)
    finite = np.concatenate([true_mass_to_light, statistics["true_distance"]["mass_to_light"], statistics["predicted_distance"]["mass_to_light"]])
    finite = finite[np.isfinite(finite) & (finite > 0)]
    # Without any positive M/L_V (no light at all), the frame falls back to one decade about 1.
    low, high = (finite.min() / 1.5, finite.max() * 1.5) if finite.size else (0.1, 10.0)
    axes.plot([low, high], [low, high], "-k", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_xlabel(r"True global $M/L_V$")
    axes.set_ylabel(r"Predicted global $M/L_V$")
    axes.legend(fontsize=8)
    figure.suptitle("Mass-to-light ratio: radial profiles (top) and global values (bottom)")
    save_figure(figure, Path(pathprediction) / "Mass_to_light_true_vs_predicted.png", dpi=150)
    print("--> Figure of mass-to-light profiles and global M/L_V saved")
    return statistics
