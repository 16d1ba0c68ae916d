"""Scalar standardisation of π-DOC's inputs and targets.

The original π-DOC standardises every map with one scalar mean and one scalar standard deviation
computed over all pixels of its training set, and [distance, age] with one scalar shared by both
columns (Chardin & Bianchini 2021, §3; the authors' public constants are 0-d float32 arrays:
log flux -5.38/0.97, log mass -0.85/0.45, distance-age 29.63/32.40). This module reads and writes
those six constants under the original file names, and applies them.
"""
import os
from pathlib import Path

import numpy as np

# The six file names of the original `input_files/standardization_files/`.
STANDARDIZATION_FILE_NAMES = {
    "luminosity_mean": "meanluminosityVtrain.npy",
    "luminosity_std": "stdluminosityVtrain.npy",
    "mass_mean": "meanmasstrain.npy",
    "mass_std": "stdmasstrain.npy",
    "distance_age_mean": "mean_distance_age_train.npy",
    "distance_age_std": "std_distance_age_train.npy",
}


def read_standardization(directory):
    """Read the six scalar constants from `directory`.

    Parameters
    ----------
    directory : str or Path
        Folder holding the six `.npy` files named in `STANDARDIZATION_FILE_NAMES`.

    Returns
    -------
    dict
        The six constants as Python floats, keyed as in `STANDARDIZATION_FILE_NAMES`.

    Raises
    ------
    FileNotFoundError
        If a file is missing (the message names it).
    ValueError
        If a file is unreadable, not a single number, not finite, or a std is not positive.
    """
    directory = Path(directory)
    constants = {}
    for key, file_name in STANDARDIZATION_FILE_NAMES.items():
        path = directory / file_name
        if not path.is_file():
            raise FileNotFoundError(f"standardisation file missing: {path}")
        try:
            value = np.load(path, allow_pickle=False)
        except Exception as error:  # numpy raises several types for a corrupt file
            raise ValueError(f"standardisation file {path} is not a readable .npy file: {error}") from error
        if value.size != 1:
            raise ValueError(f"standardisation file {path} must hold one number, found shape {value.shape}")
        value = float(np.asarray(value, dtype=np.float64).reshape(()))
        if not np.isfinite(value):
            raise ValueError(f"standardisation file {path} holds a non-finite value {value}")
        if key.endswith("_std") and value <= 0:
            raise ValueError(f"standardisation file {path} holds a non-positive std {value}")
        constants[key] = value
    return constants


def write_standardization(directory, constants):
    """Write the six constants as 0-d float32 `.npy` files, as the original does.

    Each file is written to a temporary name and renamed, so an interrupted write never leaves a
    truncated constant behind.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for key, file_name in STANDARDIZATION_FILE_NAMES.items():
        if key not in constants:
            raise ValueError(f"standardisation constant '{key}' is missing")
        temporary_path = directory / (file_name + ".tmp.npy")
        np.save(temporary_path, np.asarray(constants[key], dtype=np.float32))
        os.replace(temporary_path, directory / file_name)


def standardize(values, mean, std):
    """Return (values - mean) / std as float32."""
    return ((np.asarray(values, dtype=np.float32) - np.float32(mean)) / np.float32(std)).astype(np.float32)


def destandardize(values, mean, std):
    """Return values * std + mean as float32, the inverse of `standardize`."""
    return (np.asarray(values, dtype=np.float32) * np.float32(std) + np.float32(mean)).astype(np.float32)


def training_standardization(train_directories, chunk=512, rows_per_directory=None):
    """The six scalar constants of a training split: pixel mean/std of log flux and log mass, and one
    mean/std shared by both [distance, age] columns, as in the original (CB21 §3).

    Parameters
    ----------
    train_directories : str, Path or list of them
        One training split (`<data>/train/`), or several whose union is the training split (the
        general model trains on the Milky Way preset's split and a share of the cb21 domain's):
        the sums run over every map of every folder, so the constants are those of the union.
    chunk : int
        Maps read at a time from the memory-mapped files.
    rows_per_directory : list of (array of int or None), optional
        The maps of each folder to count (for a split still being generated, its finished
        clusters' rows); None counts every map.
    """
    if isinstance(train_directories, (str, Path)):
        train_directories = [train_directories]
    directories = [Path(directory) for directory in train_directories]
    rows_per_directory = rows_per_directory or [None] * len(directories)
    constants = {}
    for key, file_name in (("luminosity", "luminosity_V.npy"), ("mass", "mass.npy")):
        total = total_squares = 0.0
        count = 0
        for directory, rows in zip(directories, rows_per_directory):
            values = np.load(directory / file_name, mmap_mode="r")
            rows = np.arange(len(values)) if rows is None else np.asarray(rows)
            for first in range(0, len(rows), chunk):
                block = np.asarray(values[rows[first:first + chunk]], dtype=np.float64)
                total += block.sum()
                total_squares += np.square(block).sum()
            count += len(rows) * int(np.prod(values.shape[1:]))
        mean = total / count
        constants[f"{key}_mean"] = mean
        constants[f"{key}_std"] = np.sqrt(max(total_squares / count - mean**2, 0.0))
    distance_age = np.concatenate([
        np.load(directory / "distance_age.npy").astype(np.float64)[slice(None) if rows is None else rows]
        for directory, rows in zip(directories, rows_per_directory)])
    constants["distance_age_mean"] = distance_age.mean()
    constants["distance_age_std"] = distance_age.std()
    return constants

