"""Reading a split of mock clusters, and predicting it once.

A split folder holds the files written by `make_mock_clusters.py`:
    luminosity_V.npy   (N, 160, 160, 1) log10(F / (L☉ kpc⁻²)) per pixel, π-DOC's input
    mass.npy           (N, 160, 160, 1) true log10(M / M☉) per pixel
    distance_age.npy   (N, 2) true [distance kpc, age Gyr]
    metadata.csv       one row per map: its cluster, the cluster's present-day mass, …

The evaluation and the calibration both need π-DOC's predictions of a split; `predict_split` keeps
them in a cache keyed by the split and the weights, so the CED runs once per split (minutes on a CPU).
"""
import hashlib
from pathlib import Path

import numpy as np

from pidoc.io import as_map_stack, check_distance_age, check_finite, check_flux_maps, read_cluster_ids, read_metadata_column

SPLIT_FILES = ("luminosity_V.npy", "mass.npy", "distance_age.npy")
METADATA_FILE = "metadata.csv"
DEFAULT_CACHE_DIRECTORY = Path(__file__).resolve().parents[1] / "runs" / "prediction_cache"


def load_split(split_directory):
    """Read and check a split: flux maps, true mass maps and true [distance, age].

    The maps are memory-mapped, so only the networks' batches and the statistics hold them in RAM.
    """
    split_directory = Path(split_directory)
    for file_name in SPLIT_FILES:
        if not (split_directory / file_name).is_file():
            raise FileNotFoundError(f"split file missing: {split_directory / file_name}")
    log_flux_maps = check_flux_maps(np.load(split_directory / "luminosity_V.npy", mmap_mode="r"))
    true_log_mass_maps = as_map_stack(np.load(split_directory / "mass.npy", mmap_mode="r"), "the true mass maps")
    if len(true_log_mass_maps) != len(log_flux_maps):
        raise ValueError(f"{split_directory}: {len(log_flux_maps)} flux maps but {len(true_log_mass_maps)} mass maps")
    check_finite(true_log_mass_maps, f"{split_directory / 'mass.npy'}")
    true_distance_age = check_distance_age(np.load(split_directory / "distance_age.npy"), len(log_flux_maps),
                                           f"{split_directory / 'distance_age.npy'}")
    return log_flux_maps, true_log_mass_maps, true_distance_age


def load_cluster_ids(split_directory):
    """The cluster of every map of a split, from its `metadata.csv` (maps of one cluster are correlated)."""
    return read_cluster_ids(Path(split_directory) / METADATA_FILE)


def load_present_log_mass(split_directory):
    """log10 of the present-day total mass (M☉) of the cluster each map shows, from `metadata.csv`.

    This is the cluster's bound mass at the snapshot's age (`total_mass_msun`, the same for every
    view), not the mass in the 40″ field, which depends on the distance; it is what a catalogue such
    as Baumgardt & Hilker (2018) lists. None when the split has no metadata (e.g. `input_files/`).
    """
    path = Path(split_directory) / METADATA_FILE
    return np.log10(read_metadata_column(path, "total_mass_msun")) if path.is_file() else None


def predict_split(split_directory, model, cache_directory=DEFAULT_CACHE_DIRECTORY):
    """π-DOC's predictions of a split, from the cache when the same split and networks were predicted before.

    Parameters
    ----------
    split_directory : str or Path
    model : pidoc.model.TrainedModel
        The opened model folder.
    cache_directory : str or Path

    Returns
    -------
    predicted_log_mass_maps, predicted_distance_age, seconds_per_map
        As `TrainedModel.predict`; `seconds_per_map` is that of the run that filled the cache.
    """
    log_flux_maps, _, _ = load_split(split_directory)
    key = hashlib.sha256(repr((str(Path(split_directory).resolve()), sorted(model.fingerprint.items()),
                               str(model.standardization_directory),
                               (Path(split_directory) / "luminosity_V.npy").stat().st_mtime_ns)).encode()).hexdigest()[:16]
    cache_path = Path(cache_directory) / f"{Path(split_directory).resolve().name}-{key}.npz"
    if cache_path.is_file():
        cached = np.load(cache_path)
        seconds_per_map = dict(zip(cached["network_names"].tolist(), cached["seconds_per_map"].tolist()))
        return cached["predicted_log_mass_maps"], cached["predicted_distance_age"], seconds_per_map
    predicted_log_mass_maps, predicted_distance_age, seconds_per_map = model.predict(log_flux_maps)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_path.with_name(cache_path.stem + ".tmp.npz")
    np.savez(temporary, predicted_log_mass_maps=predicted_log_mass_maps, predicted_distance_age=predicted_distance_age,
             network_names=np.array(list(seconds_per_map)), seconds_per_map=np.array(list(seconds_per_map.values())))
    temporary.replace(cache_path)
    return predicted_log_mass_maps, predicted_distance_age, seconds_per_map
