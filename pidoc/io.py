"""Input checks and safe writing, shared by every driver and library module.

1. Input checks: a flux map must be a 160×160 map of log10(F / (L☉ kpc⁻²)), finite everywhere;
   predictions and labels are checked for shape and finiteness, and every message names the
   shape, the value or the file.
2. Safe writing: every output is written to a temporary name first and then renamed, so a file is
   complete or absent, and an old file survives any failure.
3. JSON: a JSON-friendly copy of any statistics dict (NaN becomes null).
"""
import json
import math
import os
from pathlib import Path

import numpy as np
from tabulate import tabulate

from pidoc.frame import MAP_PIXELS

# --- Input check for linear maps ------------------------------------------------------------------
# A flux map given as linear F instead of log10 F is non-negative everywhere (in any unit), so its
# median pixel is ≥ 0. A real log10(F / (L☉ kpc⁻²)) map has a median far below 0: the authors'
# public mosaic spans medians of −5.7 to −3.8 with peaks near −3 (paper-CB21.md §4), our mock
# clusters put empty pixels at −9, and even the core of a massive nearby cluster such as 47 Tuc
# (≈ 10⁵ L☉ pc⁻² at 4.5 kpc, i.e. ≈ 3 L☉ per 0.25″ pixel) gives only log10 F ≈ −2. A map whose median
# pixel is at or above this limit is therefore refused as linear.
LINEAR_MAP_MEDIAN_LIMIT = 0.0


# ==================================================================================================
# 1. Input checks
# ==================================================================================================
def as_map_stack(maps, name):
    """Return `maps` as a float32 array of shape (N, 160, 160, 1).

    A single (160, 160) map becomes (1, 160, 160, 1) and a stack (N, 160, 160) gains the channel axis.

    Raises
    ------
    ValueError
        For any other shape (the message gives the shape), an empty stack or non-numeric values.
    """
    maps = np.asarray(maps)
    if not (np.issubdtype(maps.dtype, np.floating) or np.issubdtype(maps.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers, got dtype {maps.dtype}")
    grid = (MAP_PIXELS, MAP_PIXELS)
    if maps.shape == grid:
        maps = maps.reshape((1,) + grid + (1,))
    elif maps.ndim == 3 and maps.shape[1:] == grid:
        maps = maps[..., np.newaxis]
    elif not (maps.ndim == 4 and maps.shape[1:] == grid + (1,)):
        raise ValueError(
            f"{name} must have shape (N, 160, 160, 1), (N, 160, 160) or (160, 160); got {maps.shape}"
        )
    if maps.shape[0] == 0:
        raise ValueError(f"{name} holds no map (shape {maps.shape})")
    return maps.astype(np.float32, copy=False)


def check_finite(values, name):
    """Raise ValueError naming the first offending map if `values` holds NaN or ±inf."""
    finite = np.isfinite(values)
    if not finite.all():
        per_map = finite.reshape(len(values), -1).all(axis=1)
        bad_maps = np.flatnonzero(~per_map)
        raise ValueError(
            f"{name} holds NaN or inf values in {bad_maps.size} map(s), first at index {bad_maps[0]}; "
            "π-DOC needs finite log10 values everywhere"
        )


def check_flux_maps(log_flux_maps):
    """Validate π-DOC's input and return it as (N, 160, 160, 1) float32.

    Parameters
    ----------
    log_flux_maps : array_like
        V-band flux maps in log10(F / (L☉ kpc⁻²)), shape (N, 160, 160, 1), (N, 160, 160) or (160, 160).

    Raises
    ------
    ValueError
        Wrong shape, NaN or inf values, or a map that looks linear rather than log10 (median pixel
        ≥ `LINEAR_MAP_MEDIAN_LIMIT`; see its comment for why real maps never reach it).
    """
    maps = as_map_stack(log_flux_maps, "the flux maps")
    check_finite(maps, "the flux maps")
    median_per_map = np.median(maps.reshape(len(maps), -1), axis=1)
    linear_maps = np.flatnonzero(median_per_map >= LINEAR_MAP_MEDIAN_LIMIT)
    if linear_maps.size:
        first = linear_maps[0]
        raise ValueError(
            f"{linear_maps.size} flux map(s) look linear, not log10: map {first} has a median pixel of "
            f"{median_per_map[first]:.3g}, while log10(F / (L☉ kpc⁻²)) maps of real clusters have medians "
            f"below about −2 (limit {LINEAR_MAP_MEDIAN_LIMIT}); pass np.log10 of the flux in L☉/kpc²"
        )
    return maps


def read_metadata_column(metadata_path, column, dtype=float):
    """One column of a split's metadata CSV (`make_mock_clusters.py`), one value per map, as an array."""
    import csv

    metadata_path = Path(metadata_path)
    if not metadata_path.is_file():
        raise FileNotFoundError(f"metadata file missing: {metadata_path}")
    with open(metadata_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or column not in rows[0]:
        raise ValueError(f"{metadata_path} has no {column} column")
    return np.array([dtype(row[column]) for row in rows])


def read_cluster_ids(metadata_path):
    """The cluster of every map (the `cluster_id` column): maps of one cluster are correlated, so
    held-out statistics are counted by cluster."""
    return read_metadata_column(metadata_path, "cluster_id", int)


def check_distance_age(distance_age, number_of_maps, name):
    """Return `distance_age` as an (N, 2) float64 array [distance kpc, age Gyr], checked."""
    distance_age = np.asarray(distance_age, dtype=np.float64)
    if distance_age.shape != (number_of_maps, 2):
        raise ValueError(f"{name} must have shape ({number_of_maps}, 2) [distance kpc, age Gyr]; got {distance_age.shape}")
    check_finite(distance_age, name)
    return distance_age


def check_matching_maps(true_maps, predicted_maps, name):
    """Return both mass-map stacks as (N, 160, 160, 1), checking they are finite and of equal length."""
    true_maps = as_map_stack(true_maps, f"the true {name}")
    predicted_maps = as_map_stack(predicted_maps, f"the predicted {name}")
    if len(true_maps) != len(predicted_maps):
        raise ValueError(f"{len(true_maps)} true but {len(predicted_maps)} predicted {name}")
    check_finite(true_maps, f"the true {name}")
    check_finite(predicted_maps, f"the predicted {name}")
    return true_maps, predicted_maps


# ==================================================================================================
# 2. Safe writing: a file is complete or absent, and an old file survives any failure
# ==================================================================================================
def temporary_path_for(path):
    """The temporary name `path` is written to before the rename (`name.tmp.ext`, git-ignored)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.tmp{path.suffix}")


def replace_atomically(path, write):
    """Call `write(temporary_path)`, then rename the temporary file to `path`.

    The rename (`os.replace`) is atomic on one file system, so `path` either keeps its old content or
    gets the complete new one. The temporary file is removed if `write` fails.
    """
    path = Path(path)
    temporary_path = temporary_path_for(path)
    try:
        write(temporary_path)
        os.replace(temporary_path, path)
    finally:
        if temporary_path.exists():
            temporary_path.unlink()
    return path


def save_array(path, array):
    """Save a numpy array to `path` atomically."""
    return replace_atomically(path, lambda temporary_path: np.save(temporary_path, array))


def save_text(path, text):
    """Write `text` to `path` atomically (UTF-8)."""
    return replace_atomically(path, lambda temporary_path: Path(temporary_path).write_text(text, encoding="utf-8"))


def save_figure(figure, path, **savefig_options):
    """Save a matplotlib figure to `path` atomically and close it."""
    # pyplot is imported here so that the input checks do not pull in matplotlib.
    import matplotlib.pyplot as plt

    try:
        return replace_atomically(path, lambda temporary_path: figure.savefig(temporary_path, **savefig_options))
    finally:
        plt.close(figure)


def write_table(path, rows, headers=(), floatfmt=".2f", disable_numparse=False):
    """Write a `tabulate` table to a text file atomically and return its text."""
    text = tabulate(rows, headers=headers, floatfmt=floatfmt, disable_numparse=disable_numparse) + "\n"
    save_text(path, text)
    return text


# ==================================================================================================
# 3. Numbers for machines: a JSON-friendly copy of any statistics dict
# ==================================================================================================
def to_json_ready(value):
    """Convert numpy scalars and arrays to Python numbers and lists, NaN to None, recursively."""
    if isinstance(value, dict):
        return {str(key): to_json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_json_ready(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


def save_json(path, statistics):
    """Write `statistics` as JSON atomically."""
    return save_text(path, json.dumps(to_json_ready(statistics), indent=2) + "\n")
