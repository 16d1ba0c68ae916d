"""Calibrating on a mixture of nuisance families, and leaving one family out.

The intervals are guaranteed for clusters drawn like the calibration clusters, and no more: on
cluster simulations made by other codes they held the truth 38–69 % of the time at 68 % (issue 14).
`make_mock_clusters.py --nuisance FAMILY` makes calibration splits in which one assumption of the
mocks varies (docs/mock_clusters.md, "Nuisance families"); calibrating on the union of several
families widens the intervals to what those assumptions cost. Whether that is enough for an
assumption the calibration has *not* seen is measured by leaving each family out in turn: calibrate
on the others, in memory, and score the held-out family (its coverage, widths and flag rate). A
family the others do not cover shows as coverage below nominal.

A family is one calibration split folder (with its boundary split beside it, as for
`calibrate_piDOC.py`), named by the `nuisance` of its data set's settings.json ("nominal" without
one). Cluster ids repeat between data sets (they count clusters per split), so each family's ids are
offset by its position in the list times `FAMILY_CLUSTER_ID_OFFSET`: the two halves of the calibration
and the coverage count clusters of one family, never two clusters of different families as one.
Families made with the same `--seed` share their initial conditions (the same clusters under another
assumption), which would let a held-out family be calibrated on its own clusters; that is refused.
"""
import json
from pathlib import Path

import numpy as np

from pidoc.calibration import coverage, domain, uncertainty
from pidoc.calibration.uncertainty import INTERVAL_LEVELS
from pidoc.io import read_metadata_column
from pidoc.splits import METADATA_FILE, load_cluster_ids, load_split, predict_split

# Cluster ids of make_mock_clusters.py stay below 5 × 10⁶ (split code × 10⁶ + index); this offset keeps
# the ids of different families apart.
FAMILY_CLUSTER_ID_OFFSET = 100_000_000
NOMINAL_FAMILY = "nominal"
COVERAGE_QUANTITIES = ("distance", "age", "total_mass", "mass_to_light", "pixel_mass")
# Seeing and noise are conditions an observer measures, not unknowns of the cluster: a held-out seeing
# or noise family is also scored in bins of its condition (from metadata.csv), so that the tolerance
# can be read off, i.e. how far the matched PSF may lie from π-DOC's 2.5″ and how bright the noise per
# pixel may be before the intervals stop holding (docs/uncertainty.md, "Observing conditions"). The
# bins span the families' ranges (docs/mock_clusters.md, "Nuisance families"), finer near 2.5″.
CONDITION_BINS = {
    "seeing": ("seeing_fwhm_arcsec", (2.2, 2.3, 2.4, 2.45, 2.55, 2.6, 2.7, 2.8)),
    "noise": ("noise_surface_brightness_mag_arcsec2", (25.0, 25.5, 26.0, 26.5, 27.0)),
}


def data_set_settings(split_directory):
    """The settings.json of the data set a split folder belongs to, or {} where there is none."""
    path = Path(split_directory).parent / "settings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def family_name(split_directory):
    """The nuisance family of a split folder's data set ("nominal" without one)."""
    return data_set_settings(split_directory).get("nuisance") or NOMINAL_FAMILY


def load_family(split_directory, model, boundary_directory=None, cache_directory=None, present_mass_range_msun=None):
    """One family's calibration maps with π-DOC's predictions, and its boundary maps.

    Parameters
    ----------
    split_directory : str or Path
        A calibration split (luminosity_V.npy, mass.npy, distance_age.npy, metadata.csv).
    model : pidoc.model.TrainedModel
    boundary_directory : str or Path, optional
        Its boundary split; default the folder "boundary" beside it.
    cache_directory : str or Path, optional
        Where `pidoc.splits.predict_split` caches the predictions (its default otherwise).
    present_mass_range_msun : (float, float), optional
        Keep only the maps of clusters whose present-day mass (`total_mass_msun` of metadata.csv)
        lies in this range, in both splits (`present_mass_selection`); default all maps.

    Returns
    -------
    dict
        "name", "split_directory", "boundary_directory", "seed" (of the data set, None if unknown),
        "log_flux_maps", "true_log_mass_maps", "true_distance_age", "predicted_log_mass_maps",
        "predicted_distance_age", "cluster_ids" and "boundary" (as `uncertainty.fit_calibration` takes it).
    """
    split_directory = Path(split_directory)
    boundary_directory = Path(boundary_directory) if boundary_directory is not None else split_directory.parent / "boundary"
    cache = {} if cache_directory is None else {"cache_directory": cache_directory}
    log_flux_maps, true_log_mass_maps, true_distance_age = load_split(split_directory)
    cluster_ids = load_cluster_ids(split_directory)
    if len(cluster_ids) != len(log_flux_maps):
        raise ValueError(f"{split_directory / 'metadata.csv'} has {len(cluster_ids)} rows for {len(log_flux_maps)} maps")
    predicted_log_mass_maps, predicted_distance_age, _ = predict_split(split_directory, model, **cache)
    boundary_log_flux_maps, _, boundary_true_distance_age = load_split(boundary_directory)
    boundary_predicted_log_mass_maps, boundary_predicted_distance_age, _ = predict_split(boundary_directory, model, **cache)
    conditions = family_conditions(split_directory)
    if present_mass_range_msun is not None:
        keep = present_mass_selection(split_directory, present_mass_range_msun)
        log_flux_maps, true_log_mass_maps, true_distance_age = log_flux_maps[keep], true_log_mass_maps[keep], true_distance_age[keep]
        predicted_log_mass_maps, predicted_distance_age = predicted_log_mass_maps[keep], predicted_distance_age[keep]
        cluster_ids = np.asarray(cluster_ids)[keep]
        conditions = {column: values[keep] for column, values in conditions.items()}
        boundary_keep = present_mass_selection(boundary_directory, present_mass_range_msun)
        boundary_log_flux_maps, boundary_true_distance_age = boundary_log_flux_maps[boundary_keep], boundary_true_distance_age[boundary_keep]
        boundary_predicted_log_mass_maps = boundary_predicted_log_mass_maps[boundary_keep]
        boundary_predicted_distance_age = boundary_predicted_distance_age[boundary_keep]
    return {
        "name": family_name(split_directory), "split_directory": str(split_directory),
        "boundary_directory": str(boundary_directory), "seed": data_set_settings(split_directory).get("seed"),
        "log_flux_maps": log_flux_maps, "true_log_mass_maps": true_log_mass_maps, "true_distance_age": true_distance_age,
        "predicted_log_mass_maps": predicted_log_mass_maps, "predicted_distance_age": predicted_distance_age,
        "cluster_ids": np.asarray(cluster_ids), "conditions": conditions,
        "boundary": {"log_flux_maps": boundary_log_flux_maps, "predicted_log_mass_maps": boundary_predicted_log_mass_maps,
                     "predicted_distance_age": boundary_predicted_distance_age,
                     "true_distance_kpc": np.asarray(boundary_true_distance_age, dtype=np.float64)[:, 0]},
    }


def present_mass_selection(split_directory, present_mass_range_msun):
    """Boolean mask of a split's maps whose cluster's present-day mass lies in `present_mass_range_msun`.

    A model is calibrated for the clusters it claims (the general model: 10⁴–10⁶ M☉, issue 13), not
    for every cluster its generator makes: a few per cent of the Milky Way preset's clusters have
    dissolved below 10⁴ M☉ by their snapshot, and their sparse maps are the calibration maps nearest
    to clusters the model reads badly (docs/uncertainty.md, "The calibrated mass range"). The mass is
    the cluster's bound mass at the snapshot (`total_mass_msun` of metadata.csv, as a catalogue lists it).
    """
    low_msun, high_msun = (float(value) for value in present_mass_range_msun)
    if not 0 < low_msun < high_msun:
        raise ValueError(f"present-day mass range {low_msun:g}–{high_msun:g} M☉ must be positive and increasing")
    present_mass_msun = read_metadata_column(Path(split_directory) / METADATA_FILE, "total_mass_msun")
    keep = (present_mass_msun >= low_msun) & (present_mass_msun <= high_msun)
    if not keep.any():
        raise ValueError(f"{split_directory}: none of its {len(keep)} maps shows a cluster of {low_msun:g}–{high_msun:g} M☉ "
                         f"(present-day masses {present_mass_msun.min():.3g}–{present_mass_msun.max():.3g} M☉)")
    return keep


def family_conditions(split_directory, condition_bins=None):
    """Column → one value per map, for the condition columns of `CONDITION_BINS` the split's metadata holds."""
    path = Path(split_directory) / METADATA_FILE
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        header = handle.readline().strip().split(",")
    columns = [column for column, _ in (CONDITION_BINS if condition_bins is None else condition_bins).values()]
    return {column: read_metadata_column(path, column) for column in columns if column in header}


def condition_breakdown(calibration, family, cluster_ids, outside, column, edges, levels=INTERVAL_LEVELS):
    """Coverage and flags of one held-out family in bins of an observing condition.

    Parameters
    ----------
    calibration : dict
        Fitted without the family (`calibrate`).
    family : dict
        As `load_family` returns it, with `family["conditions"][column]` one value per map.
    cluster_ids : numpy.ndarray
        The family's offset cluster ids (`family_cluster_ids`).
    outside : numpy.ndarray of bool
        Which of its maps the verdict flags.
    column : str
    edges : sequence of float
        Bin edges; a bin holds low ≤ value < high, the last one also its upper edge.

    Returns
    -------
    list of dict
        Per non-empty bin: "column", "low", "high", "number_of_maps", "number_of_clusters",
        "percent_outside" and "pooled" (quantity → level → coverage, as `coverage.coverage_report`).
    """
    values = np.asarray(family["conditions"][column], dtype=np.float64)
    if len(values) != len(family["log_flux_maps"]):
        raise ValueError(f"{family['split_directory']}: {len(values)} values of {column} for {len(family['log_flux_maps'])} maps")
    rows = []
    for index, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        chosen = (values >= low) & ((values < high) | ((index == len(edges) - 2) & (values == high)))
        if not chosen.any():
            continue
        report = coverage.coverage_report(calibration, family["log_flux_maps"][chosen], family["true_log_mass_maps"][chosen],
                                          np.asarray(family["true_distance_age"])[chosen],
                                          family["predicted_log_mass_maps"][chosen],
                                          np.asarray(family["predicted_distance_age"])[chosen], cluster_ids[chosen], levels=levels)
        rows.append({"column": column, "low": float(low), "high": float(high), "number_of_maps": int(chosen.sum()),
                     "number_of_clusters": report["number_of_clusters"],
                     "percent_outside": 100.0 * float(outside[chosen].mean()), "pooled": report["pooled"]})
    return rows


def family_flags(calibration, family):
    """`domain.flag_fraction` on a family's maps, with "outside": which of its maps are flagged (bool array)."""
    flags = domain.flag_fraction(calibration, family["log_flux_maps"], family["predicted_log_mass_maps"],
                                 family["predicted_distance_age"])
    flags["outside"] = np.zeros(len(family["log_flux_maps"]), dtype=bool)
    flags["outside"][flags["outside_map_indices"]] = True
    return flags


def check_families(families):
    """Raise ValueError for families with one name or made with one seed (shared initial conditions)."""
    names = [family["name"] for family in families]
    if len(set(names)) != len(names):
        raise ValueError(f"two split folders hold the same family: {names}")
    seeds = {}
    for family in families:
        if family.get("seed") is None:
            continue
        if family["seed"] in seeds:
            raise ValueError(f"families '{seeds[family['seed']]}' and '{family['name']}' were made with the same "
                             f"--seed {family['seed']}: they share their clusters' initial conditions, so one cannot "
                             f"be held out from the other; make each family with its own seed")
        seeds[family["seed"]] = family["name"]


def family_cluster_ids(family, position):
    """The family's cluster ids, offset by its position in the list of families."""
    return position * FAMILY_CLUSTER_ID_OFFSET + np.asarray(family["cluster_ids"], dtype=np.int64)


def union(families, positions=None):
    """The calibration arguments of `uncertainty.fit_calibration` for the union of `families`.

    `positions` gives each family's position for its cluster-id offset (default 0, 1, …), so a family
    keeps the same ids in every union it joins. Maps are concatenated into memory.

    Returns
    -------
    dict
        log_flux_maps, true_log_mass_maps, true_distance_age, predicted_log_mass_maps,
        predicted_distance_age, cluster_ids and boundary.
    """
    if not families:
        raise ValueError("no families to calibrate on")
    positions = list(range(len(families))) if positions is None else list(positions)

    def stacked(key, source=None):
        return np.concatenate([np.asarray(family[key] if source is None else family[source][key]) for family in families])

    return {
        "log_flux_maps": stacked("log_flux_maps"), "true_log_mass_maps": stacked("true_log_mass_maps"),
        "true_distance_age": stacked("true_distance_age"), "predicted_log_mass_maps": stacked("predicted_log_mass_maps"),
        "predicted_distance_age": stacked("predicted_distance_age"),
        "cluster_ids": np.concatenate([family_cluster_ids(family, position) for family, position in zip(families, positions)]),
        "boundary": {key: stacked(key, "boundary") for key in ("log_flux_maps", "predicted_log_mass_maps",
                                                                "predicted_distance_age", "true_distance_kpc")},
    }


def calibrate(families, positions=None):
    """`uncertainty.fit_calibration` on the union of `families` (nothing is written)."""
    arguments = union(families, positions)
    return uncertainty.fit_calibration(arguments["log_flux_maps"], arguments["true_log_mass_maps"],
                                       arguments["true_distance_age"], arguments["predicted_log_mass_maps"],
                                       arguments["predicted_distance_age"], arguments["cluster_ids"],
                                       boundary=arguments["boundary"])


def leave_one_family_out(families, levels=INTERVAL_LEVELS, condition_bins=None, scored_only=()):
    """For each family: calibrate on all the others, in memory, and score it.

    Parameters
    ----------
    families : list of dict
        As `load_family` returns them (at least two).
    levels : tuple of float
        Interval levels to score (default 68 % and 95 %).
    condition_bins : dict, optional
        Family name → (metadata column, bin edges) of the families also scored per bin of an
        observing condition (default `CONDITION_BINS`); used where the family has that column.
    scored_only : sequence of str
        Names of families that are scored but never calibrated on, for any held-out family: the
        conditions an observer measures and the image path matches rather than marginalises (the
        seeing, matched to 2.5″ and flagged beyond `observations.SEEING_TOLERANCE_ARCSEC`;
        docs/uncertainty.md, "Observing conditions").

    Returns
    -------
    dict
        family name → {"coverage": `coverage.coverage_report` on the held-out family (distance, age,
        total mass, M/L_V, pixel mass), "percent_outside" and "number_of_maps" (its domain flags),
        "calibration_families", "calibration_cluster_ids" (sorted, offset ids the calibration used) and
        "held_out_cluster_ids" (the same for the held-out family), and "by_condition"
        (`condition_breakdown`) for the families of `condition_bins`}.
    """
    if len(families) < 2:
        raise ValueError(f"leaving one family out needs at least two families, got {len(families)}")
    check_families(families)
    names = [family["name"] for family in families]
    unknown = sorted(set(scored_only) - set(names))
    if unknown:
        raise ValueError(f"families to score only {unknown} are not among the families given {names}")
    if len(set(names) - set(scored_only)) < 2:
        raise ValueError(f"scoring only {sorted(scored_only)} leaves fewer than two families to calibrate on and leave out")
    condition_bins = CONDITION_BINS if condition_bins is None else condition_bins
    results = {}
    for held_out_position, held_out in enumerate(families):
        positions = [position for position in range(len(families))
                     if position != held_out_position and families[position]["name"] not in scored_only]
        others = [families[position] for position in positions]
        calibration = calibrate(others, positions)
        held_out_ids = family_cluster_ids(held_out, held_out_position)
        report = coverage.coverage_report(calibration, held_out["log_flux_maps"], held_out["true_log_mass_maps"],
                                          held_out["true_distance_age"], held_out["predicted_log_mass_maps"],
                                          held_out["predicted_distance_age"], held_out_ids, levels=levels)
        flags = family_flags(calibration, held_out)
        results[held_out["name"]] = {
            "coverage": report, "percent_outside": flags["percent_outside"], "number_of_maps": flags["number_of_maps"],
            "calibration_families": [family["name"] for family in others],
            "calibration_cluster_ids": np.unique(np.concatenate([family_cluster_ids(family, position)
                                                                 for family, position in zip(others, positions)])).tolist(),
            "held_out_cluster_ids": np.unique(held_out_ids).tolist(),
        }
        column, edges = condition_bins.get(held_out["name"], (None, None))
        if column is not None and column in held_out.get("conditions", {}):
            results[held_out["name"]]["by_condition"] = condition_breakdown(calibration, held_out, held_out_ids,
                                                                            flags["outside"], column, edges, levels)
    return results


def leave_one_family_out_rows(results, levels=INTERVAL_LEVELS):
    """Table rows: held-out family, quantity, then per level coverage ± standard error and mean width, then % outside."""
    rows = []
    for name, entry in results.items():
        pooled = entry["coverage"]["pooled"]
        for quantity in COVERAGE_QUANTITIES:
            row = [name, quantity]
            for level in levels:
                cell = pooled[quantity][level]
                row += [number_text(cell["coverage_percent"], 1) + " ± " + number_text(cell["standard_error_percent"], 1),
                        number_text(cell["mean_width"], 3)]
            row.append(f"{entry['percent_outside']:.1f}")
            rows.append(row)
    return rows


def condition_rows(results, levels=INTERVAL_LEVELS):
    """Table rows of the per-condition scores: family, bin, maps, clusters, % outside, then per level
    the coverage of distance / age / total mass / M/L_V / pixel mass."""
    rows = []
    for name, entry in results.items():
        for cell in entry.get("by_condition", []):
            row = [name, f"{cell['column']} {cell['low']:g}–{cell['high']:g}", cell["number_of_maps"],
                   cell["number_of_clusters"], f"{cell['percent_outside']:.1f}"]
            row += [" / ".join(number_text(cell["pooled"][quantity][level]["coverage_percent"], 0)
                               for quantity in COVERAGE_QUANTITIES) for level in levels]
            rows.append(row)
    return rows


def condition_headers(levels=INTERVAL_LEVELS):
    return (["held-out family", "condition", "maps", "clusters", "% outside"]
            + [f"{round(100 * level)} % coverage: " + " / ".join(COVERAGE_QUANTITIES) for level in levels])


def number_text(value, digits):
    """A number with `digits` decimals, or "undefined" (one cluster has no standard error)."""
    return f"{value:.{digits}f}" if np.isfinite(value) else "undefined"


def leave_one_family_out_headers(levels=INTERVAL_LEVELS):
    headers = ["held-out family", "quantity"]
    for level in levels:
        headers += [f"{round(100 * level)} % coverage", f"{round(100 * level)} % width"]
    return headers + ["% outside"]
