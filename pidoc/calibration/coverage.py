"""How often calibrated intervals hold the truth: coverage and width on a labelled split, counted by cluster.

Maps of one cluster (ages, projections, distances) are correlated, so every coverage here is the
mean over clusters of the per-cluster fraction of maps covered (for pixels: of the pixels with true
log10 M above a limit, and beside it of those *predicted* above it), with its standard error over
clusters. Used by `evaluate_piDOC.py` on any
split and by `piDOC_predictions.py` on the committed test maps; the figure is the reliability
diagram (empirical against nominal coverage), pooled and per true distance.
"""
import math
from pathlib import Path

import numpy as np
from scipy import stats

from pidoc import quantities
from pidoc.calibration import uncertainty
from pidoc.calibration.uncertainty import INTERVAL_LEVELS, RELIABILITY_LEVELS, SCALAR_QUANTITIES
from pidoc.io import save_figure, write_table

MINIMUM_MAPS_FOR_RANK_CORRELATION = 3


# ==================================================================================================
# 1. Coverage
# ==================================================================================================
def cluster_mean(values, cluster_ids):
    """Mean over clusters of the per-cluster mean of `values` (NaN ignored), and its standard error."""
    values = np.asarray(values, dtype=np.float64)
    cluster_ids = np.asarray(cluster_ids)
    per_cluster = np.array([np.nanmean(values[cluster_ids == cluster]) for cluster in np.unique(cluster_ids)
                            if np.any(np.isfinite(values[cluster_ids == cluster]))])
    if per_cluster.size == 0:
        return math.nan, math.nan, 0
    error = per_cluster.std(ddof=1) / math.sqrt(per_cluster.size) if per_cluster.size > 1 else math.nan
    return float(per_cluster.mean()), float(error), int(per_cluster.size)


def coverage_table(covered, widths, cluster_ids):
    """Coverage (percent, cluster-averaged, with its standard error) and mean width, per level."""
    result = {}
    for level in covered:
        coverage, error, clusters = cluster_mean(covered[level].astype(np.float64), cluster_ids)
        # A width is undefined where its variable is (log10 D for D ≤ 0; a map without a pixel above the
        # mass limit): the mean is taken over the defined ones, and is itself undefined where none is.
        level_widths = np.asarray(widths[level], dtype=np.float64)
        mean_width = float(np.nanmean(level_widths)) if np.isfinite(level_widths).any() else math.nan
        result[level] = {"coverage_percent": 100.0 * coverage, "standard_error_percent": 100.0 * error,
                         "mean_width": mean_width, "number_of_clusters": clusters}
    return result


PIXEL_SELECTIONS = ("truth", "prediction")


def pixel_coverage(calibration, log_flux_maps, true_log_mass_maps, predicted_log_mass_maps, predicted_distance_age,
                   pixel_mass_limit_log_msun, levels, selections=PIXEL_SELECTIONS):
    """Per map: the fraction of pixels above the mass limit inside their interval, and the mean width of
    those intervals (dex), per level; computed `uncertainty.PIXEL_CHUNK_MAPS` maps at a time.

    A selection says which log10 M must exceed the limit: the true one ("truth", the figure the issues
    quote) or π-DOC's prediction ("prediction", what an observer can select on). They differ on
    purpose: the intervals' conformal groups are bins of *predicted* log M, so their guarantee is for
    pixels chosen by prediction. Chosen by truth, the pixels just above the limit that π-DOC reads too
    low are kept and those it reads too high are dropped, which can lower the coverage (on the general
    fast model the two agree within 0.2 points, docs/uncertainty.md).

    Returns
    -------
    dict
        selection → (covered, widths), each level → (N,) float array (NaN for a map without a
        selected pixel).
    """
    for selection in selections:
        if selection not in PIXEL_SELECTIONS:
            raise ValueError(f"pixel selection {selection!r}: expected one of {PIXEL_SELECTIONS}")
    number_of_maps = len(predicted_distance_age)
    result = {selection: ({level: np.full(number_of_maps, np.nan) for level in levels},
                          {level: np.full(number_of_maps, np.nan) for level in levels}) for selection in selections}
    for start in range(0, number_of_maps, uncertainty.PIXEL_CHUNK_MAPS):
        chunk = slice(start, min(start + uncertainty.PIXEL_CHUNK_MAPS, number_of_maps))
        bounds = uncertainty.pixel_intervals(calibration, log_flux_maps[chunk], predicted_log_mass_maps[chunk],
                                             predicted_distance_age[chunk], levels)
        truth = np.asarray(true_log_mass_maps[chunk], dtype=np.float64).reshape(chunk.stop - start, -1)
        selectors = {"truth": truth,
                     "prediction": np.asarray(predicted_log_mass_maps[chunk], dtype=np.float64).reshape(truth.shape)}
        for selection, (covered, widths) in result.items():
            selected = selectors[selection] > pixel_mass_limit_log_msun
            counts = selected.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                for level in levels:
                    lower, upper = (bound.reshape(truth.shape) for bound in bounds[level])
                    inside = ((lower <= truth) & (truth <= upper) & selected).sum(axis=1)
                    covered[level][chunk] = np.where(counts > 0, inside / counts, np.nan)
                    widths[level][chunk] = np.where(
                        counts > 0, np.where(selected, upper - lower, 0.0).sum(axis=1) / counts, np.nan)
    return result


def scalar_coverage(calibration, log_flux_maps, true_log_mass_maps, true_distance_age, predicted_log_mass_maps,
                    predicted_distance_age, levels=RELIABILITY_LEVELS):
    """Per map, whether each scalar's interval holds the truth, and the interval's width.

    Truths and intervals are in the calibrated variables (`pidoc.quantities.scalar_variables`).

    Returns
    -------
    covered, widths : dict
        quantity → level → (N,) bool / float array.
    intervals, truths : dict
        `uncertainty.scalar_intervals` and the true calibrated variables, for further use.
    """
    truths = quantities.scalar_variables(log_flux_maps, true_log_mass_maps, true_distance_age)
    intervals = uncertainty.scalar_intervals(calibration, log_flux_maps, predicted_log_mass_maps, predicted_distance_age, levels)
    covered, widths = {}, {}
    for quantity in SCALAR_QUANTITIES:
        truth = truths[quantity]
        covered[quantity] = {level: (intervals[quantity][level][0] <= truth) & (truth <= intervals[quantity][level][1])
                             for level in levels}
        widths[quantity] = {level: intervals[quantity][level][1] - intervals[quantity][level][0] for level in levels}
    return covered, widths, intervals, truths


def coverage_report(calibration, log_flux_maps, true_log_mass_maps, true_distance_age, predicted_log_mass_maps,
                    predicted_distance_age, cluster_ids, pixel_mass_limit_log_msun=-1.0, levels=RELIABILITY_LEVELS):
    """Empirical coverage of the intervals on a labelled split, pooled and per true distance.

    Widths are in the calibrated variables (dex for distance, total mass and M/L_V, Gyr for age, dex
    per pixel). Coverage of the per-pixel intervals counts the pixels with true log10 M above
    `pixel_mass_limit_log_msun`, averaged per map, then per cluster; "pixel_mass_by_prediction"
    counts those with *predicted* log10 M above it instead (`pixel_coverage`).

    Returns
    -------
    dict
        "pooled": quantity → level → coverage dict; "per_distance": true distance → the same;
        "spearman_width_error": quantity → ρ between the 68 % width and |point − truth|;
        "number_of_clusters".
    """
    cluster_ids = np.asarray(cluster_ids)
    true_distance_age = np.asarray(true_distance_age, dtype=np.float64)
    covered, widths, intervals, truths = scalar_coverage(calibration, log_flux_maps, true_log_mass_maps, true_distance_age,
                                                         predicted_log_mass_maps, predicted_distance_age, levels)
    pixels = pixel_coverage(calibration, log_flux_maps, true_log_mass_maps, predicted_log_mass_maps,
                            predicted_distance_age, pixel_mass_limit_log_msun, levels)
    for quantity, selection in (("pixel_mass", "truth"), ("pixel_mass_by_prediction", "prediction")):
        covered[quantity], widths[quantity] = pixels[selection]
    number_of_maps = len(true_distance_age)

    report = {"levels": list(levels), "number_of_maps": int(number_of_maps),
              "number_of_clusters": int(len(np.unique(cluster_ids))), "pooled": {}, "per_distance": {},
              "spearman_width_error": {}}
    for quantity in covered:
        report["pooled"][quantity] = coverage_table(covered[quantity], widths[quantity], cluster_ids)
    for distance_kpc in np.unique(true_distance_age[:, 0]):
        rows = true_distance_age[:, 0] == distance_kpc
        report["per_distance"][float(distance_kpc)] = {
            quantity: coverage_table({level: values[rows] for level, values in covered[quantity].items()},
                                     {level: values[rows] for level, values in widths[quantity].items()}, cluster_ids[rows])
            for quantity in covered}
    for quantity in SCALAR_QUANTITIES:
        error = np.abs(intervals[quantity]["point"] - truths[quantity])
        width = widths[quantity][0.68]
        usable = np.isfinite(error) & np.isfinite(width)
        # A rank correlation needs at least three maps with both values, and neither of them constant.
        defined = (usable.sum() >= MINIMUM_MAPS_FOR_RANK_CORRELATION and np.ptp(width[usable]) > 0
                   and np.ptp(error[usable]) > 0)
        report["spearman_width_error"][quantity] = (float(stats.spearmanr(width[usable], error[usable]).statistic)
                                                    if defined else math.nan)
    return report


# Why a width can be undefined, per quantity: its calibrated variable is undefined for every map.
UNDEFINED_WIDTH_REASONS = {"distance": "undefined (D ≤ 0 for every map)", "mass_to_light": "undefined (D ≤ 0 for every map)",
                           "pixel_mass": "undefined (no pixel above the mass limit)",
                           "pixel_mass_by_prediction": "undefined (no pixel predicted above the mass limit)"}


def coverage_cell(entry):
    """'67.0 ± 4.6', or words where the coverage or its standard error is undefined (never `nan`)."""
    if entry["number_of_clusters"] == 0 or not math.isfinite(entry["coverage_percent"]):
        return "undefined (no cluster with a defined value)"
    if entry["number_of_clusters"] == 1 or not math.isfinite(entry["standard_error_percent"]):
        return f"{entry['coverage_percent']:.1f} ± undefined (one cluster)"
    return f"{entry['coverage_percent']:.1f} ± {entry['standard_error_percent']:.1f}"


def width_cell(quantity, entry):
    """The mean width in three decimals, or why it is undefined."""
    if math.isfinite(entry["mean_width"]):
        return f"{entry['mean_width']:.3f}"
    return UNDEFINED_WIDTH_REASONS.get(quantity, "undefined (no finite width)")


def coverage_rows(report, levels=INTERVAL_LEVELS):
    """Table rows: quantity, where (pooled or D = … kpc), then coverage ± error and mean width per level."""
    rows = []
    for where, block in [("pooled", report["pooled"])] + [(f"D = {distance:g} kpc", block)
                                                           for distance, block in report["per_distance"].items()]:
        for quantity, table in block.items():
            row = [quantity, where]
            for level in levels:
                entry = table[level]
                row += [coverage_cell(entry), width_cell(quantity, entry)]
            rows.append(row)
    return rows


COVERAGE_HEADERS = ["quantity", "sample", "68 % coverage", "68 % width", "95 % coverage", "95 % width"]
WIDTH_UNITS = {"distance": "dex", "age": "Gyr", "total_mass": "dex", "mass_to_light": "dex", "pixel_mass": "dex",
               "pixel_mass_by_prediction": "dex"}


# ==================================================================================================
# 2. The calibration figure and table
# ==================================================================================================
COVERAGE_FIGURE_FILE = "Interval_coverage.png"
COVERAGE_TABLE_FILE = "interval_coverage.txt"
QUANTITY_LABELS = {"distance": "distance", "age": "age", "total_mass": "total mass", "mass_to_light": "global M/L_V",
                   "pixel_mass": "pixel mass (log M > -1)",
                   "pixel_mass_by_prediction": "pixel mass (predicted log M > -1)"}


def coverage_figure(path, report):
    """Empirical against nominal coverage, per quantity: pooled, then one panel per true distance.

    Error bars are the standard errors over clusters. A calibrated interval lies on the diagonal;
    below it, intervals are too narrow (overconfident); above, too wide.
    """
    import matplotlib.pyplot as plt

    samples = [("all distances", report["pooled"])] + [(f"D = {distance:g} kpc", block)
                                                        for distance, block in report["per_distance"].items()]
    figure, axes = plt.subplots(1, len(samples), figsize=(3.0 * len(samples), 3.4), sharey=True, squeeze=False)
    nominal = 100.0 * np.asarray(report["levels"], dtype=np.float64)
    for axis, (title, block) in zip(axes[0], samples):
        axis.plot([0, 100], [0, 100], "-", color="0.6", linewidth=0.8)
        for colour_index, (quantity, table) in enumerate(block.items()):
            covered = [table[level]["coverage_percent"] for level in report["levels"]]
            error = [table[level]["standard_error_percent"] for level in report["levels"]]
            axis.errorbar(nominal, covered, yerr=error, marker="o", markersize=2.5, linewidth=1.0, capsize=1.5,
                          color=f"C{colour_index}", label=QUANTITY_LABELS.get(quantity, quantity))
        axis.set_xlim(0, 100)
        axis.set_ylim(0, 100)
        axis.set_xlabel("nominal coverage (%)")
        axis.set_title(title, fontsize=9)
    axes[0, 0].set_ylabel("empirical coverage (%)")
    axes[0, 0].legend(fontsize=6, loc="upper left")
    figure.suptitle(f"Calibrated intervals: coverage on {report['number_of_clusters']} clusters "
                    f"({report['number_of_maps']} maps)", fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path, dpi=120)


def write_coverage_outputs(output_directory, report):
    """Write the calibration figure and its table (68 % and 95 % coverage and widths) into a folder."""
    output_directory = Path(output_directory)
    rows = coverage_rows(report)
    write_table(output_directory / COVERAGE_TABLE_FILE, rows, COVERAGE_HEADERS, disable_numparse=True)
    return coverage_figure(output_directory / COVERAGE_FIGURE_FILE, report)
