"""Calibrated intervals and a domain verdict for every π-DOC prediction.

π-DOC's networks return one number for any input. This module adds, per map, 68 % and 95 %
intervals with a median for the distance, the age, the total mass in the field, the global M/L_V
(light from the flux with the *predicted* distance, what an observer has) and every pixel of the
mass map; and a verdict on whether the map looks like the maps the intervals were calibrated on.
The committed networks stay the point predictors; nothing here retrains them. The method, in the
order the code follows it (details and references in docs/uncertainty.md):

1. Quantities. Each is handled where its errors are closest to additive: log10 D, age in Gyr,
   log10 M_tot, log10 M/L_V, and log10 M per pixel.
2. Difficulty. A small log-linear model σ(x) of the absolute residual is fitted on one half of the
   calibration clusters, x being what is known at prediction time: the predicted distance and age
   and the map's median log flux (for pixels also the pixel's predicted log mass). This makes the
   intervals adaptive: wider for far clusters and faint pixels (Lei et al. 2018, JASA 113, 1094,
   "locally weighted" split conformal).
3. Conformal quantiles. On the other half of the calibration clusters, the signed normalised
   residuals (truth − prediction) / σ are ranked, and the interval of level c runs from the
   (1 − c)/2 to the (1 + c)/2 conformal quantile (finite-sample ranks, Angelopoulos & Bates 2021,
   arXiv:2107.07511). Signed quantiles make intervals asymmetric where π-DOC is biased (it places
   far clusters too close). Pixels are calibrated per bin of predicted log mass ("Mondrian"
   conformal, Vovk et al. 2005), and all quantities per range of predicted distance, so faint and
   bright pixels, near and far clusters each get their own coverage.
   Coverage is guaranteed for clusters drawn like the calibration clusters (exchangeable with
   them); maps of one cluster are correlated, so the two halves and the test are split by cluster.
4. Domain. Every summary row carries the verdict of `pidoc/calibration/domain.py`, whose statistics are calibrated
   here too; `pidoc/calibration/coverage.py` measures how often the intervals hold the truth on a labelled split.

The calibration result is one JSON file per model folder (`<trained folder>/calibration.json`,
written by `calibrate_piDOC.py`), tied to the SHA-256 of the weights it was made for.
"""
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
from tabulate import tabulate

from pidoc import quantities
from pidoc.calibration import domain
from pidoc.frame import MAP_PIXELS
from pidoc.io import as_map_stack, check_flux_maps, save_array, save_text

# --- Files ------------------------------------------------------------------------------------------
CALIBRATION_FILE = "calibration.json"
# Format 2 added the domain verdict's distance edges (domain.fit_distance_edges).
CALIBRATION_FORMAT = "piDOC-calibration-2"
SUMMARY_CSV_FILE = "predictions_summary.csv"
SUMMARY_TEXT_FILE = "predictions_summary.txt"
# Per-pixel bounds: (N, 160, 160, 5) float32, log10 M☉, along the last axis PIXEL_BOUND_NAMES.
PIXEL_BOUNDS_FILE = "predictionM_intervals.npy"
PIXEL_BOUND_NAMES = ("lo95", "lo68", "median", "hi68", "hi95")

# --- Intervals --------------------------------------------------------------------------------------
INTERVAL_LEVELS = (0.68, 0.95)
# Central levels at which coverage is calibrated and measured (the reliability diagram); they
# include INTERVAL_LEVELS. Each level c needs the (1 − c)/2 and (1 + c)/2 quantiles.
RELIABILITY_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.68, 0.8, 0.9, 0.95, 0.99)
SCALAR_QUANTITIES = ("distance", "age", "total_mass", "mass_to_light")
# What each quantity is called in the summary table, and how its calibrated variable (column 2 of
# `pidoc.quantities.scalar_variables`) turns back into the reported unit.
SUMMARY_COLUMNS = {"distance": "distance_kpc", "age": "age_gyr", "total_mass": "log_total_mass_msun",
                   "mass_to_light": "mass_to_light_v"}
MAXIMUM_AGE_GYR = domain.MAXIMUM_AGE_GYR
# Difficulty features are clipped to the range the calibration clusters span, so a far-out input
# cannot extrapolate the log-linear σ model to absurd widths (the domain verdict flags it instead).
DIFFICULTY_DISTANCE_RANGE_KPC = (5.0, 120.0)
PIXEL_LOG_MASS_RANGE = (-3.0, 1.5)
# Mondrian groups. The shape of the normalised residuals, not only their scale, changes with the
# distance (a cluster at 15 kpc shows ~30 times more resolved stars per arcsec² than at 80 kpc), so
# quantiles are taken separately in four ranges of *predicted* distance, with edges halfway between
# CB21's test distances. Pixels are further split by their predicted log10 M: below −1.5 are mostly
# the seeing wings and empty sky of the field; above, 0.5-dex bins up to the cores.
DISTANCE_GROUP_EDGES_KPC = (22.5, 45.0, 70.0)
PIXEL_GROUP_EDGES_LOG_MSUN = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5)
# A group with fewer conformal scores than this takes the quantiles of all groups together: 40
# scores are the fewest that resolve the 2.5 % and 97.5 % quantiles at all ((n + 1) · 0.025 ≥ 1).
MINIMUM_SCORES_PER_GROUP = 40
# Pixels drawn per calibration map for the pixel intervals (seeded): 2400 maps × 2000 pixels are
# millions of residuals, plenty for the 2.5 % quantiles of every bin, in a fraction of the memory.
CALIBRATION_PIXELS_PER_MAP = 2000
CALIBRATION_SEED = 2021
PIXEL_CHUNK_MAPS = 32

# ==================================================================================================
# 1. Quantities
# ==================================================================================================
def to_reported_unit(quantity, values):
    """Calibrated variable → the unit of the summary table (kpc, Gyr, log10 M☉, M☉/L☉)."""
    values = np.asarray(values, dtype=np.float64)
    if quantity in ("distance", "mass_to_light"):
        return 10.0**values
    if quantity == "age":
        # The truth lies in [0, 14] Gyr, so cutting the interval there never lowers its coverage.
        return np.clip(values, 0.0, MAXIMUM_AGE_GYR)
    return values


# ==================================================================================================
# 2. Difficulty: a log-linear model of the absolute residual
# ==================================================================================================
def map_difficulty_features(log_flux_maps, predicted_distance_age):
    """Design matrix of the map-level σ model: what is known at prediction time, per map.

    Columns: 1, log10 D̂, (log10 D̂)², Â/14, (Â/14)², median log F (D̂, Â the predicted distance and
    age, clipped to the calibrated range). Far clusters have fewer resolved stars in the field and
    π-DOC is worse there (CB21 Fig. 9); young and old clusters differ in how fast light fades.
    """
    predicted_distance_age = np.asarray(predicted_distance_age, dtype=np.float64)
    distance_kpc = np.nan_to_num(predicted_distance_age[:, 0], nan=DIFFICULTY_DISTANCE_RANGE_KPC[0])
    log_distance = np.log10(np.clip(distance_kpc, *DIFFICULTY_DISTANCE_RANGE_KPC))
    age_fraction = np.clip(np.nan_to_num(predicted_distance_age[:, 1]), 0.0, MAXIMUM_AGE_GYR) / MAXIMUM_AGE_GYR
    median_log_flux = np.median(np.asarray(log_flux_maps, dtype=np.float64).reshape(len(log_distance), -1), axis=1)
    return np.column_stack([np.ones_like(log_distance), log_distance, log_distance**2, age_fraction, age_fraction**2,
                            median_log_flux])


def pixel_difficulty_features(predicted_log_mass, map_features):
    """Design matrix of the pixel σ model: the pixel's predicted log10 M (cubic) and its map's features.

    `predicted_log_mass` is (P,) and `map_features` (P, k), the map-level row of each pixel.
    """
    log_mass = np.clip(np.asarray(predicted_log_mass, dtype=np.float64), *PIXEL_LOG_MASS_RANGE)
    return np.column_stack([map_features, log_mass, log_mass**2, log_mass**3])


def fit_scale_model(features, residuals):
    """Least-squares coefficients β of log|r| ≈ X β, so that σ = exp(X β).

    For residuals r = σ(x) ε with ε of any fixed distribution, E log|r| = log σ(x) + const; the
    constant does not matter, because the conformal step rescales by quantiles of r / σ.
    """
    features = np.asarray(features, dtype=np.float64)
    residuals = np.asarray(residuals, dtype=np.float64)
    usable = np.isfinite(residuals) & np.all(np.isfinite(features), axis=1)
    absolute = np.abs(residuals[usable])
    # A floor keeps exact zeros (a pixel predicted perfectly) from dominating the log fit.
    floor = 1e-3 * max(float(np.median(absolute)), 1e-12)
    coefficients, *_ = np.linalg.lstsq(features[usable], np.log(absolute + floor), rcond=None)
    return coefficients


def scale(coefficients, features):
    """σ = exp(X β) of `fit_scale_model`."""
    return np.exp(np.asarray(features, dtype=np.float64) @ np.asarray(coefficients, dtype=np.float64))


# ==================================================================================================
# 3. Conformal quantiles
# ==================================================================================================
def quantile_probabilities(levels=RELIABILITY_LEVELS):
    """The lower and upper tail probabilities of every central level, and the median, sorted."""
    probabilities = {0.5}
    for level in levels:
        probabilities.update({round((1.0 - level) / 2.0, 6), round((1.0 + level) / 2.0, 6)})
    return sorted(probabilities)


def conformal_quantiles(scores, probabilities):
    """Finite-sample conformal quantiles of `scores` at `probabilities`.

    With n scores sorted increasingly, the upper quantile at p is the ⌈(n + 1) p⌉-th smallest and the
    lower one the ⌊(n + 1) p⌋-th, so a new exchangeable score falls below the upper one with
    probability ≥ p and below the lower one with probability ≤ p (Angelopoulos & Bates 2021, §1.1;
    Romano et al. 2019 for the two-sided version). Ranks beyond the sample are clipped to it, which
    can only happen with fewer than about 1/(1 − p) scores.
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64)[np.isfinite(scores)])
    count = scores.size
    if count == 0:
        raise ValueError("no finite calibration scores to take conformal quantiles of")
    quantiles = []
    for probability in probabilities:
        rank = math.ceil((count + 1) * probability) if probability >= 0.5 else math.floor((count + 1) * probability)
        quantiles.append(float(scores[min(max(rank, 1), count) - 1]))
    return quantiles


def distance_groups(predicted_distance_kpc):
    """Mondrian group of every map by its predicted distance (0 … len(DISTANCE_GROUP_EDGES_KPC))."""
    distance_kpc = np.nan_to_num(np.asarray(predicted_distance_kpc, dtype=np.float64), nan=0.0)
    return np.searchsorted(np.asarray(DISTANCE_GROUP_EDGES_KPC), distance_kpc, side="right")


def pixel_groups(predicted_log_mass, map_distance_groups):
    """Mondrian group of every pixel: its predicted-log-mass bin within its map's distance group."""
    mass_bin = np.searchsorted(np.asarray(PIXEL_GROUP_EDGES_LOG_MSUN), np.asarray(predicted_log_mass, dtype=np.float64),
                               side="right")
    return np.asarray(map_distance_groups) * (len(PIXEL_GROUP_EDGES_LOG_MSUN) + 1) + mass_bin


NUMBER_OF_DISTANCE_GROUPS = len(DISTANCE_GROUP_EDGES_KPC) + 1
NUMBER_OF_PIXEL_GROUPS = NUMBER_OF_DISTANCE_GROUPS * (len(PIXEL_GROUP_EDGES_LOG_MSUN) + 1)


def calibrate_quantity(fit_features, fit_residuals, conformal_features, conformal_residuals, probabilities,
                       conformal_groups=None, number_of_groups=1):
    """σ model on the first half; conformal quantiles of r / σ per Mondrian group on the second.

    Returns a JSON-ready dict: "scale_coefficients", "probabilities", "quantiles_per_group" (one list
    per group; a group with fewer than MINIMUM_SCORES_PER_GROUP scores gets the pooled quantiles)
    and "scores_per_group".
    """
    coefficients = fit_scale_model(fit_features, fit_residuals)
    normalised = np.asarray(conformal_residuals, dtype=np.float64) / scale(coefficients, conformal_features)
    groups = np.zeros(len(normalised), dtype=int) if conformal_groups is None else np.asarray(conformal_groups)
    pooled = conformal_quantiles(normalised, probabilities)
    quantiles, counts = [], []
    for group in range(number_of_groups):
        members = normalised[(groups == group) & np.isfinite(normalised)]
        counts.append(int(members.size))
        quantiles.append(conformal_quantiles(members, probabilities) if members.size >= MINIMUM_SCORES_PER_GROUP else pooled)
    return {"scale_coefficients": coefficients.tolist(), "probabilities": list(probabilities),
            "quantiles_per_group": quantiles, "scores_per_group": counts}


def quantile_column(calibrated, probability):
    """Index of `probability` among the calibrated probabilities."""
    probabilities = np.asarray(calibrated["probabilities"])
    index = int(np.argmin(np.abs(probabilities - probability)))
    if abs(probabilities[index] - probability) > 1e-6:
        raise ValueError(f"tail probability {probability} was not calibrated; calibrated: {calibrated['probabilities']}")
    return index


def bound(calibrated, point, sigma, groups, probability):
    """point + σ · q_group(p): the calibrated quantile `probability` of the truth, σ from `scale`."""
    table = np.asarray(calibrated["quantiles_per_group"])
    groups = np.zeros(np.shape(point), dtype=int) if groups is None else np.asarray(groups)
    return np.asarray(point, dtype=np.float64) + sigma * table[groups, quantile_column(calibrated, probability)]


def interval(calibrated, point, sigma, level, groups=None):
    """Bounds (lower, upper) of the central `level` interval about `point`, in the calibrated variable.

    `sigma` is the difficulty of each point (`scale` of its features). The point prediction is
    always inside: where π-DOC's bias would push both quantiles to one side, the interval is widened
    to include it (this only raises coverage).
    """
    point = np.asarray(point, dtype=np.float64)
    lower = bound(calibrated, point, sigma, groups, round((1.0 - level) / 2.0, 6))
    upper = bound(calibrated, point, sigma, groups, round((1.0 + level) / 2.0, 6))
    return np.minimum(lower, point), np.maximum(upper, point)


# ==================================================================================================
# 5. Calibration: fit on a calibration split, save, load
# ==================================================================================================
def split_clusters_in_halves(cluster_ids, seed=CALIBRATION_SEED):
    """Boolean mask of the maps whose cluster is in the first (σ-fitting) half; seeded, by cluster."""
    clusters = np.unique(np.asarray(cluster_ids))
    first_half = np.random.default_rng(seed).permutation(clusters)[: len(clusters) // 2]
    return np.isin(cluster_ids, first_half)


def sample_pixels(number_of_maps, pixels_per_map, seed=CALIBRATION_SEED):
    """Seeded flat indices of `pixels_per_map` distinct pixels in each map; (N, pixels_per_map)."""
    rng = np.random.default_rng([seed, 1])
    pixels_per_map = min(pixels_per_map, MAP_PIXELS**2)
    return np.stack([rng.choice(MAP_PIXELS**2, pixels_per_map, replace=False) for _ in range(number_of_maps)])


def fit_calibration(log_flux_maps, true_log_mass_maps, true_distance_age, predicted_log_mass_maps,
                    predicted_distance_age, cluster_ids, boundary=None, pixels_per_map=CALIBRATION_PIXELS_PER_MAP):
    """Calibrate the intervals and the domain verdict on a calibration split.

    Parameters
    ----------
    log_flux_maps, true_log_mass_maps, predicted_log_mass_maps : numpy.ndarray, (N, 160, 160, 1)
    true_distance_age, predicted_distance_age : numpy.ndarray, (N, 2)
    cluster_ids : array_like, (N,)
        The cluster of each map; the two halves of the calibration are split by cluster.
    boundary : dict, optional
        Maps of the boundary split, clusters like these seen nearer and farther than the calibrated
        distances: "log_flux_maps", "predicted_log_mass_maps", "predicted_distance_age" and
        "true_distance_kpc". Without them the domain verdict has no distance edges
        (`domain.fit_distance_edges`); `calibrate_piDOC.py` always gives them.

    Returns
    -------
    dict
        JSON-ready: "scalars" (per quantity: σ-model coefficients, conformal quantiles), "pixels"
        (per Mondrian group), "domain", and bookkeeping.
    """
    cluster_ids = np.asarray(cluster_ids)
    if len(np.unique(cluster_ids)) < 4:
        raise ValueError(f"calibration needs maps of at least 4 clusters, got {len(np.unique(cluster_ids))}")
    probabilities = quantile_probabilities()
    first_half = split_clusters_in_halves(cluster_ids)
    second_half = ~first_half
    features = map_difficulty_features(log_flux_maps, predicted_distance_age)
    truths = quantities.scalar_variables(log_flux_maps, true_log_mass_maps, true_distance_age)
    points = quantities.scalar_variables(log_flux_maps, predicted_log_mass_maps, predicted_distance_age)
    groups = distance_groups(np.asarray(predicted_distance_age)[:, 0])
    scalars = {}
    for quantity in SCALAR_QUANTITIES:
        residuals = truths[quantity] - points[quantity]
        scalars[quantity] = calibrate_quantity(features[first_half], residuals[first_half], features[second_half],
                                               residuals[second_half], probabilities, groups[second_half],
                                               NUMBER_OF_DISTANCE_GROUPS)

    pixel_indices = sample_pixels(len(log_flux_maps), pixels_per_map)
    pixels_per_sampled_map = pixel_indices.shape[1]
    rows = np.arange(len(log_flux_maps))[:, None]
    flat_shape = (len(log_flux_maps), -1)
    predicted_pixels = np.asarray(predicted_log_mass_maps).reshape(flat_shape)[rows, pixel_indices].ravel()
    residual_pixels = np.asarray(true_log_mass_maps).reshape(flat_shape)[rows, pixel_indices].ravel() - predicted_pixels
    pixel_features = pixel_difficulty_features(predicted_pixels, np.repeat(features, pixels_per_sampled_map, axis=0))
    pixel_half = np.repeat(first_half, pixels_per_sampled_map)
    pixel_group = pixel_groups(predicted_pixels, np.repeat(groups, pixels_per_sampled_map))
    pixels = calibrate_quantity(pixel_features[pixel_half], residual_pixels[pixel_half], pixel_features[~pixel_half],
                                residual_pixels[~pixel_half], probabilities, pixel_group[~pixel_half], NUMBER_OF_PIXEL_GROUPS)
    pixels["pixels_per_map"] = int(pixels_per_sampled_map)
    return {
        "format": CALIBRATION_FORMAT,
        "number_of_maps": int(len(log_flux_maps)),
        "number_of_clusters": int(len(np.unique(cluster_ids))),
        "clusters_per_half": [int(len(np.unique(cluster_ids[first_half]))), int(len(np.unique(cluster_ids[second_half])))],
        "probabilities": probabilities,
        "scalars": scalars,
        "distance_group_edges_kpc": list(DISTANCE_GROUP_EDGES_KPC),
        "pixel_group_edges_log_msun": list(PIXEL_GROUP_EDGES_LOG_MSUN),
        "pixels": pixels,
        "domain": fit_domain(log_flux_maps, predicted_log_mass_maps, true_distance_age, predicted_distance_age,
                             first_half, boundary),
    }


def fit_domain(log_flux_maps, predicted_log_mass_maps, true_distance_age, predicted_distance_age, first_half, boundary):
    """The domain verdict's statistics (`domain.fit`) and, given boundary maps, its distance edges."""
    statistics = domain.map_statistics(log_flux_maps)
    calibrated = domain.fit(statistics, predicted_distance_age)
    calibrated["flux_scale_reference"] = domain.fit_flux_scale_reference(log_flux_maps, first_half, statistics)
    calibrated["novelty_reference"] = domain.fit_novelty_reference(
        domain.novelty_features(log_flux_maps, predicted_log_mass_maps, predicted_distance_age, statistics), first_half)
    calibrated["distance_edges"] = None
    if boundary is not None:
        true_distance_kpc = np.asarray(true_distance_age, dtype=np.float64)[:, 0]
        calibrated["distance_edges"] = domain.fit_distance_edges(
            domain.edge_features(log_flux_maps, predicted_log_mass_maps, predicted_distance_age, statistics), first_half,
            domain.edge_features(boundary["log_flux_maps"], boundary["predicted_log_mass_maps"],
                                 boundary["predicted_distance_age"]),
            boundary["true_distance_kpc"], (float(true_distance_kpc.min()), float(true_distance_kpc.max())))
    return calibrated


def save_calibration(model, calibration, provenance):
    """Write `<model folder>/calibration.json` atomically, with the fingerprint of its weights.

    `model` is an opened `pidoc.model.TrainedModel`; its `calibration` is updated to the new one.
    """
    record = dict(calibration, weights_sha256=model.fingerprint, provenance=provenance)
    path = save_text(model.directory / CALIBRATION_FILE, json.dumps(record, indent=1) + "\n")
    model.calibration = json.loads(path.read_text())
    return path


def check_distance_edges(edges):
    """Raise ValueError unless `edges` is None or two finite edge classifiers of this version's features."""
    if edges is None:
        return
    if edges["features"] != list(domain.EDGE_FEATURES):
        raise ValueError(f"distance-edge features {edges['features']} differ from this version's {list(domain.EDGE_FEATURES)}")
    number_of_terms = domain.quadratic_terms(np.zeros((1, len(domain.EDGE_FEATURES)))).shape[1]
    for side in domain.EDGE_SIDES:
        entry = edges["sides"][side]
        if len(entry["coefficients"]) != number_of_terms or not np.all(np.isfinite(entry["coefficients"] + [entry["threshold"]])):
            raise ValueError(f"distance edge '{side}' malformed")
    if not (np.all(np.asarray(edges["scale"]) > 0) and len(edges["mean"]) == len(domain.EDGE_FEATURES)):
        raise ValueError("distance-edge standardisation malformed")


def check_flux_scale_reference(reference):
    """Raise ValueError unless `reference` is None (an older file) or a flux-scale reference of this
    version's invariant statistics with a finite, positive spread."""
    if reference is None:
        return
    if reference["features"] != list(domain.FLUX_INVARIANT_FEATURES):
        raise ValueError(f"flux-scale features {reference['features']} differ from this version's "
                         f"{list(domain.FLUX_INVARIANT_FEATURES)}")
    invariant = np.asarray(reference["invariant"], dtype=np.float64)
    if (invariant.ndim != 2 or invariant.shape[1] != len(domain.FLUX_INVARIANT_FEATURES)
            or len(reference["flux_scale_dex"]) != len(invariant) or not np.all(np.isfinite(invariant))):
        raise ValueError(f"flux-scale reference malformed (invariant statistics of shape {invariant.shape})")
    if not (np.isfinite(reference["sigma_dex"]) and reference["sigma_dex"] > 0 and np.all(np.asarray(reference["scale"]) > 0)):
        raise ValueError(f"flux-scale spread {reference['sigma_dex']!r} dex is not a positive number")


def check_novelty_reference(reference):
    """Raise ValueError unless `reference` is None (an older file) or a novelty reference of this
    version's features with a finite, positive threshold."""
    if reference is None:
        return
    number_of_features = len(domain.EDGE_FEATURES) + len(domain.FLUX_SHAPE_PERCENTILES)
    halves = [np.asarray(half, dtype=np.float64) for half in reference["halves"]]
    if (len(reference["features"]) != number_of_features or len(halves) != 2
            or any(half.ndim != 2 or half.shape[1] != number_of_features or len(half) < reference["neighbours"] for half in halves)):
        raise ValueError(f"novelty reference malformed (halves of shapes {[half.shape for half in halves]}, "
                         f"{number_of_features} features expected)")
    if not (np.isfinite(reference["threshold"]) and reference["threshold"] > 0 and np.all(np.asarray(reference["scale"]) > 0)):
        raise ValueError(f"novelty threshold {reference['threshold']!r} is not a positive number")


def load_calibration(trained_directory, fingerprint, required=True):
    """Read and check `<trained_directory>/calibration.json` against the weights' `fingerprint`.

    Called by `pidoc.model.open_model`, which gives the fingerprint of the folder's network files;
    elsewhere use the opened model's `calibration`.

    Returns None when the file is absent and `required` is False.

    Raises
    ------
    FileNotFoundError
        The file is absent and `required` is True.
    ValueError
        The file is not valid JSON, lacks a part, or was made for other weights; the message names it.
    """
    path = Path(trained_directory) / CALIBRATION_FILE
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"calibration file missing: {path} (make it with `python3 calibrate_piDOC.py "
                                    f"<calibration split> --trained-directory {trained_directory}`)")
        return None
    try:
        calibration = json.loads(path.read_text())
        if calibration.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"format {calibration.get('format')!r}, expected {CALIBRATION_FORMAT!r} (made by another "
                             f"version of pidoc/calibration/uncertainty.py; recalibrate with calibrate_piDOC.py)")
        if (calibration["distance_group_edges_kpc"] != list(DISTANCE_GROUP_EDGES_KPC)
                or calibration["pixel_group_edges_log_msun"] != list(PIXEL_GROUP_EDGES_LOG_MSUN)):
            raise ValueError("Mondrian group edges differ from this version of pidoc/calibration/uncertainty.py")
        entries = [calibration["scalars"][quantity] for quantity in SCALAR_QUANTITIES] + [calibration["pixels"]]
        for entry, groups in zip(entries, [NUMBER_OF_DISTANCE_GROUPS] * len(SCALAR_QUANTITIES) + [NUMBER_OF_PIXEL_GROUPS]):
            table = np.asarray(entry["quantiles_per_group"], dtype=np.float64)
            if table.shape != (groups, len(entry["probabilities"])):
                raise ValueError(f"quantile table of shape {table.shape}, expected ({groups}, {len(entry['probabilities'])})")
            if not (np.all(np.isfinite(table)) and np.all(np.isfinite(entry["scale_coefficients"]))):
                raise ValueError("non-finite calibration numbers")
        domain_part = calibration["domain"]
        if domain_part["features"] != list(domain.DOMAIN_FEATURES):
            raise ValueError(f"domain statistics {domain_part['features']} differ from this version's {list(domain.DOMAIN_FEATURES)}")
        if (np.asarray(domain_part["covariance"]).shape != (len(domain.DOMAIN_FEATURES),) * 2
                or not np.isfinite(domain_part["threshold"]) or len(domain_part["predicted_distance_range_kpc"]) != 2):
            raise ValueError("domain covariance or threshold malformed")
        check_distance_edges(domain_part["distance_edges"])
        check_flux_scale_reference(domain_part.get("flux_scale_reference"))
        check_novelty_reference(domain_part.get("novelty_reference"))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"calibration file {path} is corrupt: {error}") from error
    if calibration.get("weights_sha256") != fingerprint:
        raise ValueError(f"calibration file {path} was made for other weights than those in {trained_directory} "
                         f"(SHA-256 differ); recalibrate with calibrate_piDOC.py")
    return calibration


# ==================================================================================================
# 6. Intervals for new maps
# ==================================================================================================
def scalar_intervals(calibration, log_flux_maps, predicted_log_mass_maps, predicted_distance_age, levels=INTERVAL_LEVELS):
    """Point, median and bounds of the four quantities, in their calibrated variables.

    Returns
    -------
    dict
        quantity → {"point", "median", level → (lower, upper)}, arrays of shape (N,).
    """
    features = map_difficulty_features(log_flux_maps, predicted_distance_age)
    groups = distance_groups(np.asarray(predicted_distance_age)[:, 0])
    points = quantities.scalar_variables(log_flux_maps, predicted_log_mass_maps, predicted_distance_age)
    intervals = {}
    for quantity in SCALAR_QUANTITIES:
        calibrated = calibration["scalars"][quantity]
        sigma = scale(calibrated["scale_coefficients"], features)
        intervals[quantity] = {"point": points[quantity], "median": bound(calibrated, points[quantity], sigma, groups, 0.5)}
        for level in levels:
            intervals[quantity][level] = interval(calibrated, points[quantity], sigma, level, groups)
    return intervals


def pixel_intervals(calibration, log_flux_maps, predicted_log_mass_maps, predicted_distance_age, levels=INTERVAL_LEVELS):
    """Median and bounds of every pixel's log10 M.

    Returns
    -------
    dict
        "median" and, per level, (lower, upper): float32 arrays shaped like `predicted_log_mass_maps`.
        Maps are processed `PIXEL_CHUNK_MAPS` at a time, so memory stays small for any number of maps.
    """
    predicted = np.asarray(predicted_log_mass_maps)
    map_features = map_difficulty_features(log_flux_maps, predicted_distance_age)
    map_groups = distance_groups(np.asarray(predicted_distance_age)[:, 0])
    calibrated = calibration["pixels"]
    probabilities = {"median": [0.5]}
    probabilities.update({level: [round((1.0 - level) / 2.0, 6), round((1.0 + level) / 2.0, 6)] for level in levels})
    result = {key: [np.empty(predicted.shape, dtype=np.float32) for _ in wanted] for key, wanted in probabilities.items()}
    pixels_per_map = predicted[0].size
    # log σ is linear in the columns of `pixel_difficulty_features`, so its map part is computed
    # once per map rather than once per pixel (the same σ, several times faster).
    coefficients = np.asarray(calibrated["scale_coefficients"], dtype=np.float64)
    map_log_sigma = map_features @ coefficients[: map_features.shape[1]]
    for start in range(0, len(predicted), PIXEL_CHUNK_MAPS):
        chunk = slice(start, start + PIXEL_CHUNK_MAPS)
        point = np.asarray(predicted[chunk], dtype=np.float64).ravel()
        pixel_log_sigma = pixel_difficulty_features(point, np.zeros((len(point), 0))) @ coefficients[map_features.shape[1]:]
        sigma = np.exp(np.repeat(map_log_sigma[chunk], pixels_per_map) + pixel_log_sigma)
        groups = pixel_groups(point, np.repeat(map_groups[chunk], pixels_per_map))
        for key, wanted in probabilities.items():
            for output, probability in zip(result[key], wanted):
                output[chunk] = bound(calibrated, point, sigma, groups, probability).reshape(output[chunk].shape)
    intervals = {"median": result["median"][0]}
    for level in levels:
        lower, upper = result[level]
        intervals[level] = (np.minimum(lower, predicted), np.maximum(upper, predicted))
    return intervals


def pixel_bounds_array(pixel_interval):
    """The (N, 160, 160, 5) float32 array of `PIXEL_BOUNDS_FILE`: lo95, lo68, median, hi68, hi95."""
    return np.concatenate([pixel_interval[0.95][0], pixel_interval[0.68][0], pixel_interval["median"],
                           pixel_interval[0.68][1], pixel_interval[0.95][1]], axis=-1).astype(np.float32)


def summarize(model, log_flux_maps, predicted_log_mass_maps, predicted_distance_age, map_names=None,
              extra_domain_reasons=None):
    """One summary row per map, with intervals and the domain verdict; and the per-pixel bounds.

    Parameters
    ----------
    model : pidoc.model.TrainedModel
        The opened model folder; its calibration is used when present. Without it, the intervals are
        NaN, the pixel bounds None, and the verdict only checks physical limits (`unchecked` otherwise).
    log_flux_maps, predicted_log_mass_maps : numpy.ndarray, (N, 160, 160, 1)
    predicted_distance_age : numpy.ndarray, (N, 2)
        π-DOC's outputs, as `functions.make_predictions` returns them.
    map_names : list of str, optional
        The `map` column; default "0", "1", ….
    extra_domain_reasons : list of (str or None), optional
        Per map, a reason from outside π-DOC (e.g. the image pipeline) that makes the map `outside`.

    Returns
    -------
    rows : list of dict
        Columns: map; for each of distance_kpc, age_gyr, log_total_mass_msun, mass_to_light_v the
        point prediction, `_median`, `_lo68`, `_hi68`, `_lo95`, `_hi95` (after the age's, where any
        map's age was clipped to 0–14 Gyr, `age_note`: "age 14.2 Gyr clipped to the prior's 14 Gyr",
        empty for the other maps); domain; domain_reason. An age outside 0–14 Gyr is reported clipped
        where its 95 % interval reaches into the prior, and as π-DOC gave it where the whole interval
        lies outside (the verdict then calls it impossible).
    pixel_bounds : numpy.ndarray (N, 160, 160, 5) or None
    """
    log_flux_maps = check_flux_maps(log_flux_maps)
    predicted_log_mass_maps = as_map_stack(predicted_log_mass_maps, "the predicted mass maps")
    predicted_distance_age = np.asarray(predicted_distance_age, dtype=np.float64).reshape(-1, 2)
    number_of_maps = len(log_flux_maps)
    if len(predicted_log_mass_maps) != number_of_maps or len(predicted_distance_age) != number_of_maps:
        raise ValueError(f"{number_of_maps} flux maps but {len(predicted_log_mass_maps)} mass maps and "
                         f"{len(predicted_distance_age)} distance-age rows")
    if extra_domain_reasons is not None and len(extra_domain_reasons) != number_of_maps:
        raise ValueError(f"extra_domain_reasons has {len(extra_domain_reasons)} entries for {number_of_maps} maps")
    calibration = model.calibration
    names = [str(name) for name in (map_names if map_names is not None else range(number_of_maps))]
    points = quantities.scalar_variables(log_flux_maps, predicted_log_mass_maps, predicted_distance_age)
    intervals = (scalar_intervals(calibration, log_flux_maps, predicted_log_mass_maps, predicted_distance_age)
                 if calibration is not None else None)
    age_bounds_gyr = None if intervals is None else intervals["age"][domain.AGE_INTERVAL_LEVEL]
    verdicts = domain.verdicts(calibration, log_flux_maps, predicted_log_mass_maps, predicted_distance_age,
                               extra_domain_reasons, age_bounds_gyr=age_bounds_gyr)
    notes = domain.age_notes(predicted_distance_age, age_bounds_gyr)
    reported_ages_gyr = domain.reported_ages_gyr(predicted_distance_age, age_bounds_gyr)
    rows = []
    for index in range(number_of_maps):
        row = {"map": names[index]}
        for quantity, column in SUMMARY_COLUMNS.items():
            # The distance is π-DOC's own output (that of predictiondistance_age.npy); so is the age,
            # but clipped to the 0–14 Gyr prior where it lies outside and is possible (its interval
            # reaches into the prior), which the `age_note` column then says; an impossible age stays
            # as π-DOC gave it, and the verdict says why it is impossible.
            point = predicted_distance_age[index, 0] if quantity == "distance" else reported_ages_gyr[index] \
                if quantity == "age" else to_reported_unit(quantity, points[quantity][index])
            row[column] = float(point)
            values = {"median": math.nan, "lo68": math.nan, "hi68": math.nan, "lo95": math.nan, "hi95": math.nan}
            if intervals is not None:
                values["median"] = intervals[quantity]["median"][index]
                for level in INTERVAL_LEVELS:
                    tag = f"{round(level * 100):d}"
                    values[f"lo{tag}"], values[f"hi{tag}"] = (bound[index] for bound in intervals[quantity][level])
                values = {key: float(to_reported_unit(quantity, value)) for key, value in values.items()}
            row.update({f"{column}_{key}": value for key, value in values.items()})
            # The note follows the age columns, and only where some map needs it, so summaries
            # without a clipped age keep their columns.
            if quantity == "age" and any(notes):
                row["age_note"] = notes[index]
        row["domain"], row["domain_reason"] = verdicts[index]
        rows.append(row)
    pixel_bounds = None
    if calibration is not None:
        pixel_bounds = pixel_bounds_array(pixel_intervals(calibration, log_flux_maps, predicted_log_mass_maps,
                                                          predicted_distance_age))
    return rows, pixel_bounds


# --- Values a summary cannot give, and predictions outside their intervals -------------------------
# The column of predictions_summary.csv that says why a field is left empty. It is added only when
# some value of the table is undefined, so a table without any keeps the columns (and the bytes) it
# always had; the columns before it never change.
UNDEFINED_REASON_COLUMN = "undefined_reason"
INTERVAL_KEYS = ("median", "lo68", "hi68", "lo95", "hi95")
# Why a summary number can be undefined: the CSV's words, and the short ones of the text table.
UNDEFINED_REASONS = {
    "distance_not_positive": ("the predicted distance is ≤ 0, so log10 D and its interval are undefined", "D ≤ 0"),
    "no_luminosity": ("the predicted distance is ≤ 0, so there is no luminosity L = 4π D² F", "D ≤ 0"),
    "not_calibrated": ("the model folder has no calibration.json", "not calibrated"),
    "not_finite": ("not a finite number", "not finite"),
}
# A point counts as outside its interval only beyond this relative tolerance: the distance bounds are
# 10** of bounds computed in log10 D, and may miss the point by a rounding error although they hold it.
INTERVAL_TOLERANCE = 1e-9
OUTSIDE_MARK = "∉"
OUTSIDE_NOTE = (f"{OUTSIDE_MARK}: the prediction lies outside its 68 % interval. The intervals are cut to the physical "
                f"range (age 0–{MAXIMUM_AGE_GYR:g} Gyr), which the truth cannot leave; a prediction beyond it is a sign "
                f"that π-DOC is outside its domain.")


def is_defined(value):
    """True for a finite number; False for NaN, infinity or anything that is not a number."""
    return isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)


def point_outside_interval(point, lower, upper):
    """True when `point` lies outside [lower, upper] by more than the rounding tolerance."""
    tolerance = INTERVAL_TOLERANCE * max(abs(lower), abs(upper), 1.0)
    return point < lower - tolerance or point > upper + tolerance


def undefined_value_reasons(row):
    """Why each undefined (NaN or infinite) number of a summary row is undefined.

    A row does not say whether its model was calibrated, but it shows it: an uncalibrated model
    leaves every interval undefined, whereas a calibrated one leaves an interval undefined only where
    its calibrated variable is (log10 D and log10 M/L_V when D ≤ 0), never the age's.

    Returns
    -------
    dict
        Column name → key of `UNDEFINED_REASONS`, for the undefined numbers only (empty if none).
    """
    distance_not_positive = is_defined(row["distance_kpc"]) and row["distance_kpc"] <= 0
    not_calibrated = not any(is_defined(row[f"{column}_{key}"]) for column in SUMMARY_COLUMNS.values() for key in INTERVAL_KEYS)
    reasons = {}
    for column in SUMMARY_COLUMNS.values():
        for name in [column] + [f"{column}_{key}" for key in INTERVAL_KEYS]:
            if is_defined(row[name]):
                continue
            if distance_not_positive and column == "distance_kpc":
                reasons[name] = "distance_not_positive"
            elif distance_not_positive and column == "mass_to_light_v":
                reasons[name] = "no_luminosity"
            elif not_calibrated and name != column:
                reasons[name] = "not_calibrated"
            else:
                reasons[name] = "not_finite"
    return reasons


def describe_columns(names):
    """Short words for a set of summary columns: "mass_to_light_v with its median and intervals", …"""
    present = set(names)
    every_interval = {f"{column}_{key}" for column in SUMMARY_COLUMNS.values() for key in INTERVAL_KEYS}
    if present == every_interval:
        return "every median and interval"
    descriptions = []
    for column in SUMMARY_COLUMNS.values():
        interval_names = [f"{column}_{key}" for key in INTERVAL_KEYS]
        if column in present and present.issuperset(interval_names):
            descriptions.append(f"{column} with its median and intervals")
        elif present.issuperset(interval_names):
            descriptions.append(f"{column}'s median and intervals")
        else:
            descriptions.extend(name for name in [column] + interval_names if name in present)
    return ", ".join(descriptions)


def undefined_reason_text(reasons):
    """The CSV's reason cell of one row: for each reason, the columns it leaves empty ("" if none)."""
    names_per_reason = {}
    for name, reason in reasons.items():
        names_per_reason.setdefault(reason, []).append(name)
    return "; ".join(f"{describe_columns(names)}: {UNDEFINED_REASONS[reason][0]}" for reason, names in names_per_reason.items())


def summary_text(rows):
    """The `tabulate` version of the summary: 68 % intervals, the verdict and its reason.

    Nothing is written as `nan`: an undefined value reads "undefined (D ≤ 0)", an undefined interval
    "[undefined: not calibrated]". A prediction outside its interval (possible where the interval is
    cut to the physical range, a predicted age of 15 Gyr against [14.0, 14.0]) is marked ∉, and a note
    below the table says what that means.
    """
    table = []
    any_outside = False
    for row in rows:
        reasons = undefined_value_reasons(row)
        cells = [row["map"]]
        for column, digits in (("distance_kpc", 1), ("age_gyr", 1), ("log_total_mass_msun", 2), ("mass_to_light_v", 2)):
            if column in reasons:
                cells.append(f"undefined ({UNDEFINED_REASONS[reasons[column]][1]})")
                continue
            point = row[column]
            interval_reason = reasons.get(f"{column}_lo68") or reasons.get(f"{column}_hi68")
            if interval_reason is not None:
                cells.append(f"{point:.{digits}f} [undefined: {UNDEFINED_REASONS[interval_reason][1]}]")
                continue
            low, high = row[f"{column}_lo68"], row[f"{column}_hi68"]
            outside = point_outside_interval(point, low, high)
            any_outside = any_outside or outside
            mark = f" {OUTSIDE_MARK}" if outside else ""
            cells.append(f"{point:.{digits}f}{mark} [{low:.{digits}f}, {high:.{digits}f}]")
        cells += [row["domain"], row["domain_reason"]]
        table.append(cells)
    headers = ["map", "D (kpc) [68 %]", "age (Gyr) [68 %]", "log M_tot (M☉) [68 %]", "M/L_V [68 %]", "domain", "reason"]
    text = tabulate(table, headers=headers, disable_numparse=True) + "\n"
    # The note is added only where it applies, so a table without such a prediction is unchanged.
    return text + f"\n{OUTSIDE_NOTE}\n" if any_outside else text


def summary_csv_cell(value):
    """A number of the CSV in six significant digits; an undefined one as an empty field."""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return value


def write_prediction_summary(output_directory, rows, pixel_bounds=None):
    """Write `predictions_summary.csv`, `predictions_summary.txt` and, if given, the pixel bounds.

    An undefined number (NaN: a distance ≤ 0 has no log10 D nor luminosity; an uncalibrated model no
    intervals) is an empty CSV field, and the column `undefined_reason`, added after the others when
    any field is empty, says why (`undefined_value_reasons`). Both texts are made before anything is
    written, and each file goes to a temporary name first and is then renamed, so bad rows leave the
    folder as it was. Returns the paths written.
    """
    if not rows:
        raise ValueError("no summary rows to write")
    reasons_per_row = [undefined_value_reasons(row) for row in rows]
    fieldnames = list(rows[0])
    add_reason_column = any(reasons_per_row) and UNDEFINED_REASON_COLUMN not in fieldnames
    if add_reason_column:
        fieldnames.append(UNDEFINED_REASON_COLUMN)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for row, reasons in zip(rows, reasons_per_row):
        cells = {key: summary_csv_cell(value) for key, value in row.items()}
        if add_reason_column:
            cells[UNDEFINED_REASON_COLUMN] = undefined_reason_text(reasons)
        writer.writerow(cells)
    table = summary_text(rows)
    output_directory = Path(output_directory)
    output_directory.mkdir(parents=True, exist_ok=True)
    paths = [save_text(output_directory / SUMMARY_CSV_FILE, buffer.getvalue()),
             save_text(output_directory / SUMMARY_TEXT_FILE, table)]
    if pixel_bounds is not None:
        paths.append(save_array(output_directory / PIXEL_BOUNDS_FILE, pixel_bounds))
    return paths


def summary_bounds(rows, column, level):
    """(lower, upper) arrays of a summary column's interval at `level` (0.68 or 0.95)."""
    tag = f"{round(level * 100):d}"
    return (np.array([row[f"{column}_lo{tag}"] for row in rows], dtype=np.float64),
            np.array([row[f"{column}_hi{tag}"] for row in rows], dtype=np.float64))


def warning_lines(rows):
    """One line per map outside the domain, for the drivers to print."""
    return [f"WARNING: map {row['map']} is outside π-DOC's domain: {row['domain_reason']}"
            for row in rows if row["domain"] == "outside"]
