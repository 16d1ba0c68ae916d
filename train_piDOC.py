"""Train π-DOC's networks on a mock-cluster data set, with checkpoints that survive interruption.

Run `python3 train_piDOC.py` to train both networks with the settings below (each one is also a
command-line flag of the same name). The method, in the order the code follows it:

1. Data. Each split of the data set (`make_mock_clusters.py`) holds log10 V-band flux maps
   (N, 160, 160, 1) and the targets: log10 mass maps (N, 160, 160, 1) for the CED and
   [distance kpc, age Gyr] (N, 2) for the CNN. Splits are loaded into RAM when they fit.
2. Standardisation. Flux maps, mass maps and [distance, age] are standardised with the six
   scalar constants of the training split, one shared mean and std for both columns of
   [distance, age], as the original π-DOC does (Chardin & Bianchini 2021, hereafter CB21).
3. Augmentation. The physics of a cluster is isotropic, so each training map is drawn through a
   random element of the dihedral group (a 90° rotation k times, then an optional mirror), and
   the mass map gets the same transform. The draws come from a seeded numpy Generator.
4. Optimisation. Adam minimises the mean squared error on the standardised targets. The learning
   rate drops by a factor after `plateau_patience` epochs without a lower validation loss.
5. Warm start (optional). With `--initial-weights-directory`, a fresh run starts from the networks
   exported there (for instance the reproduction's `trained_piDOC/`) instead of random weights;
   the optimiser starts afresh. Such weights expect inputs standardised as they were trained, so
   `--standardization-directory` can name the constants to use instead of the data set's own; the
   constants used are then written beside the exported networks (`<output>/standardization_files/`),
   where `pidoc.model.open_model` finds them.
6. Bookkeeping. After every epoch: a row of the CSV log, the full training state (model and
   optimiser in a `.keras` file, plus a JSON of counters and the Generator state) in the run
   directory, and, when the validation loss is the lowest so far, the network exported to the
   output directory as `{CED,CNN}.json` + `{CED,CNN}.weights.h5`. A run that finds a saved state
   continues from it, so a time-limited or interrupted job is simply started again.
7. Growing the training split. A run may continue on a larger training split (more clusters, the
   same priors): its standardisation constants stay those it started with, and
   `--reset-learning-rate` raises the decayed learning rate once, so that the new clusters move the
   weights; later resumes with the same flag leave the plateau schedule alone.
8. Noise (optional). With `--noise-range-mag-arcsec2 LOW HIGH`, each training map gets noise of a
   1σ per 0.25″ pixel drawn uniform in that range of surface brightness, smoothed by the 2.5″
   seeing as an HST image matched by the image path carries it (`mock_clusters.add_photometric_noise`),
   so that the network learns to read noisy maps (docs/uncertainty.md, "Observing conditions": the
   noise-free networks need map noise fainter than ~28–29 mag arcsec⁻²). The validation maps stay
   noise-free, the targets of the project's test splits. Off by default.
9. Balancing the data sets. With several data sets, `--repeats` says how many times each one's
   training maps are drawn per epoch (each time with its own dihedral transform), so a small data
   set of one domain keeps its say when a larger one of another domain grows beside it.

Only backend-agnostic Keras 3 and numpy are used, so the same script trains under TensorFlow on
a CPU and under `KERAS_BACKEND=jax` on a GPU.
"""
import argparse
import csv
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from pidoc import fast_network, networks, standardization
from pidoc.frame import dihedral_transform
from pidoc.mocks.clusters import add_photometric_noise, surface_brightness_to_pixel_flux
from pidoc.model import DIHEDRAL_AVERAGE_KEY, FAST_ARCHITECTURE, FAST_WEIGHTS_FILE, PAPER_ARCHITECTURE, load_network, open_model, write_architecture_record

# --- Settings (each is also a command-line flag) --------------------------------------------------
DATA_DIRECTORY = "data"
# "ced" and "cnn" are the paper's two networks; "fast" is the general model's single network with
# two heads, designed for this project's CPU (pidoc/fast_network.py, trained_piDOC/general/MODEL_CARD.md).
NETWORKS = ("ced", "cnn", "fast")
OUTPUT_DIRECTORY = "trained_piDOC"
RUNS_DIRECTORY = "runs"
# The authors' weight files are CED_200.h5 and CNN_100.h5, which suggests 200 and 100 epochs.
EPOCHS = {"ced": 200, "cnn": 100, "fast": 60}
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 10
MINIMUM_LEARNING_RATE = 1e-6
MAX_MINUTES = None                  # wall-time budget of one invocation; None: no limit
MAX_TRAINING_MAPS = None            # random subset of the training split; None: all maps
MIXED_PRECISION = "float32"         # or "mixed_bfloat16"
SEED = 2021
INITIAL_WEIGHTS_DIRECTORY = None    # networks to start a fresh run from; None: random initialisation
STANDARDIZATION_DIRECTORY = None    # constants to standardise with; None: <data>/standardization_files
REPEATS = None                      # draws per epoch of each data set's training maps; None: once each
NOISE_RANGE_MAG_ARCSEC2 = None      # (low, high) 1σ noise per 0.25″ pixel added to training maps; None: none
# The noise of a map matched to π-DOC's seeing is smoothed like its light (pidoc/observations.py).
NOISE_CORRELATION_FWHM_ARCSEC = 2.5

MAP_SHAPE = (160, 160, 1)
# The targets of each network: (file of the split, shape of one target, key of its standardisation
# constants, name of the network's output).
MASS_TARGET = ("mass.npy", MAP_SHAPE, "mass", "mass")
DISTANCE_AGE_TARGET = ("distance_age.npy", (2,), "distance_age", "distance_age")
TARGETS = {"ced": (MASS_TARGET,), "cnn": (DISTANCE_AGE_TARGET,), "fast": (MASS_TARGET, DISTANCE_AGE_TARGET)}
# The fast network's loss: the two mean squared errors of the standardised targets, summed with these
# weights. Both targets are standardised, so equal weights give each the same say.
FAST_LOSS_WEIGHTS = {"mass": 1.0, "distance_age": 1.0}
# Weight of the age column in the distance-age loss, relative to the distance column. Distance and age
# share one scalar standardisation (CB21 §3; mean 29.63, std 32.40 in the original), so an age error
# of 1 Gyr costs as much as a distance error of 1 kpc: at this project's targets (1 Gyr, 8 % of a
# 10–80 kpc distance, ≈ 3.8 kpc) the age term is ≈ 3.8² ≈ 14× smaller than the distance term. A
# weight above 1 gives the age back its say; 1 is the original loss, an unweighted mean squared error.
# It applies to both networks with a distance-age output, the CNN and the fast network.
AGE_LOSS_WEIGHT = 1.0
# A split is read into RAM when it needs less than this fraction of the machine's physical memory;
# larger ones are memory-mapped and read batch by batch.
IN_MEMORY_FRACTION = 0.5
# A split joined from several folders cannot be memory-mapped as one array, so it may take more of
# the RAM (three 1,000-cluster folders and the cb21 maps: 13 GB of 24 GB).
JOINED_IN_MEMORY_FRACTION = 0.75
LOG_COLUMNS = ("epoch", "loss", "val_loss", "learning_rate", "epoch_seconds", "maps_per_second")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-directory", nargs="+", default=[DATA_DIRECTORY],
                        help="data set(s) made by make_mock_clusters.py: the training split is the union of their "
                             "train/ folders; validation is the first one's")
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS), help="networks to train")
    parser.add_argument("--output-directory", default=OUTPUT_DIRECTORY, help="where the best networks are exported")
    parser.add_argument("--runs-directory", default=RUNS_DIRECTORY, help="training states and logs, one folder per network")
    parser.add_argument("--epochs", type=int, default=None, help=f"total epochs, counting resumed ones (None: {EPOCHS})")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="maps per optimiser step")
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE, help="Adam's initial learning rate")
    parser.add_argument("--plateau-factor", type=float, default=PLATEAU_FACTOR, help="learning-rate factor on a plateau")
    parser.add_argument("--plateau-patience", type=int, default=PLATEAU_PATIENCE, help="epochs without a lower val_loss before a drop")
    parser.add_argument("--minimum-learning-rate", type=float, default=MINIMUM_LEARNING_RATE, help="floor of the drops")
    parser.add_argument("--max-minutes", type=float, default=MAX_MINUTES, help="wall-time budget of this invocation")
    parser.add_argument("--max-training-maps", type=int, default=MAX_TRAINING_MAPS, help="random subset of the training maps")
    parser.add_argument("--mixed-precision", choices=("float32", "mixed_bfloat16"), default=MIXED_PRECISION, help="Keras dtype policy")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of weights, dropout, shuffling and augmentation")
    parser.add_argument("--initial-weights-directory", default=INITIAL_WEIGHTS_DIRECTORY,
                        help="start a fresh run from the networks exported here (a warm start)")
    parser.add_argument("--standardization-directory", default=STANDARDIZATION_DIRECTORY,
                        help="standardisation constants (default <data>/standardization_files); copied beside the exported networks")
    parser.add_argument("--age-loss-weight", type=float, default=AGE_LOSS_WEIGHT,
                        help="weight of age against distance in the distance-age loss of the CNN and the fast network (1: plain MSE)")
    parser.add_argument("--finished-clusters-only", action="store_true",
                        help="train on the finished clusters of a training split still being generated")
    parser.add_argument("--repeats", type=int, nargs="+", default=REPEATS, metavar="N",
                        help="times each --data-directory's training maps are drawn per epoch, one per data set")
    parser.add_argument("--reset-learning-rate", type=float, default=None,
                        help="on resuming, set the learning rate to this value once (e.g. after the training split has "
                             "grown); a later resume with the same value keeps the plateau schedule")
    parser.add_argument("--noise-range-mag-arcsec2", type=float, nargs=2, default=NOISE_RANGE_MAG_ARCSEC2,
                        metavar=("LOW", "HIGH"),
                        help="add seeing-smoothed noise of 1σ per 0.25″ pixel drawn in this range (mag arcsec⁻²) "
                             "to every training map")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="require a saved state (without either flag, a saved state is continued if present)")
    start.add_argument("--restart", action="store_true", help="ignore any saved state and start from scratch")
    settings = parser.parse_args(argv)
    positive = {"--epochs": settings.epochs, "--batch-size": settings.batch_size, "--learning-rate": settings.learning_rate,
                "--plateau-patience": settings.plateau_patience, "--max-training-maps": settings.max_training_maps,
                "--age-loss-weight": settings.age_loss_weight, "--reset-learning-rate": settings.reset_learning_rate}
    for flag, value in positive.items():
        if value is not None and value <= 0:
            raise ValueError(f"{flag} must be positive, got {value}")
    if settings.noise_range_mag_arcsec2 is not None:
        low, high = settings.noise_range_mag_arcsec2
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"--noise-range-mag-arcsec2 needs two finite values, LOW ≤ HIGH; got {low} {high}")
    if not 0 < settings.plateau_factor < 1:
        raise ValueError(f"--plateau-factor must lie between 0 and 1, got {settings.plateau_factor}")
    for flag, directory in (("--initial-weights-directory", settings.initial_weights_directory),
                            ("--standardization-directory", settings.standardization_directory)):
        if directory is not None and not Path(directory).is_dir():
            raise ValueError(f"{flag}: folder not found: {directory}")
    return settings


# --- 1. Data ---------------------------------------------------------------------------------------
def finished_rows(split_directory, number_of_maps, finished_clusters_only=False):
    """Rows of a split that hold finished clusters, from make_mock_clusters.py's progress records.

    make_mock_clusters.py writes a cluster's maps into rows index × maps-per-cluster onward and then
    its record `progress/cluster_<index>.json` (one metadata entry per map). A split whose generation
    was interrupted has rows of zeros where clusters are missing; training on them would be silently
    wrong, so such a split is refused unless `finished_clusters_only`, which keeps the finished rows.

    Returns
    -------
    numpy.ndarray of int or None
        The rows to use; None when every row is finished or the folder has no progress records.
    """
    progress_directory = Path(split_directory) / "progress"
    records = sorted(progress_directory.glob("cluster_*.json")) if progress_directory.is_dir() else []
    if not records:
        return None
    maps_per_cluster = len(json.loads(records[0].read_text()))
    finished = np.array([int(record.stem.split("_")[1]) for record in records])
    if len(finished) * maps_per_cluster == number_of_maps:
        return None
    if not finished_clusters_only:
        raise ValueError(f"{split_directory} is incomplete: {len(finished)} of {number_of_maps // maps_per_cluster} clusters "
                         f"finished; finish it with make_mock_clusters.py or train on them with --finished-clusters-only")
    return (finished[:, None] * maps_per_cluster + np.arange(maps_per_cluster)).ravel()


def open_split(split_directory, network, finished_clusters_only=False):
    """Memory-map one split folder's flux maps and the network's targets, and check their shapes.

    Returns
    -------
    arrays : list of numpy.memmap
        (flux, target, ...): one target per entry of `TARGETS[network]`.
    rows : numpy.ndarray of int
        The rows that hold finished clusters (`finished_rows`).
    partial : bool
        Whether `rows` leaves out unfinished clusters.
    """
    split_directory = Path(split_directory)
    if not split_directory.is_dir():
        raise FileNotFoundError(f"data split folder not found: {split_directory}")
    files = [("luminosity_V.npy", MAP_SHAPE)] + [(target[0], target[1]) for target in TARGETS[network]]
    arrays = []
    for file_name, shape in files:
        path = split_directory / file_name
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        array = np.load(path, mmap_mode="r")
        if array.shape[1:] != shape or len(array) == 0:
            raise ValueError(f"{path} has shape {array.shape}, expected (N, {', '.join(map(str, shape))}) with N > 0")
        arrays.append(array)
    for (file_name, _), array in zip(files[1:], arrays[1:]):
        if len(array) != len(arrays[0]):
            raise ValueError(f"{split_directory}: luminosity_V.npy has {len(arrays[0])} maps but {file_name} has {len(array)}")
    rows = finished_rows(split_directory, len(arrays[0]), finished_clusters_only)
    partial = rows is not None
    return arrays, (np.arange(len(arrays[0])) if rows is None else rows), partial


def fits_in_memory(number_of_bytes, fraction=IN_MEMORY_FRACTION):
    """Whether arrays of this many bytes may be held in RAM, at most `fraction` of the machine's."""
    return number_of_bytes < fraction * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def load_split(split_directory, network, maximum_maps=None, seed=SEED, finished_clusters_only=False):
    """Load one split's flux maps and the network's targets: in RAM when they fit, else memory-mapped.

    Several split folders (a list) are joined into one split, in RAM. The joined arrays are allocated
    once and filled folder by folder from memory maps, so the peak memory is the split's own size and
    not twice it (three 1,000-cluster folders are 12 GB of float32 maps on a 24 GB machine).

    Parameters
    ----------
    split_directory : str or Path
        A split folder such as `data/train/`.
    network : {"ced", "cnn"}
    maximum_maps : int or None
        Keep a random subset of this many maps (drawn with `seed`), for quick runs.

    Returns
    -------
    tuple of numpy.ndarray
        (flux, target, ...): one target per entry of `TARGETS[network]`.

    Raises
    ------
    FileNotFoundError
        If the folder or a file is missing; ValueError if a shape is wrong (both name the file).
    """
    if isinstance(split_directory, (list, tuple)):
        opened = [open_split(directory, network, finished_clusters_only) for directory in split_directory]
        # Each row of the joined split is a (folder, row in that folder) pair, in the folders' order.
        folders = np.concatenate([np.full(len(rows), index) for index, (_, rows, _) in enumerate(opened)])
        rows = np.concatenate([rows for _, rows, _ in opened])
        if maximum_maps is not None and maximum_maps < len(rows):
            chosen = np.sort(np.random.default_rng(seed).choice(len(rows), maximum_maps, replace=False))
            folders, rows = folders[chosen], rows[chosen]
        row_bytes = sum(array[:1].nbytes for array in opened[0][0])
        if not fits_in_memory(len(rows) * row_bytes, JOINED_IN_MEMORY_FRACTION):
            raise ValueError(f"the joined split {', '.join(map(str, split_directory))} ({len(rows)} maps) does not fit in RAM")
        joined = [np.empty((len(rows),) + array.shape[1:], array.dtype) for array in opened[0][0]]
        for index, (arrays, _, _) in enumerate(opened):
            for output, array in zip(joined, arrays):
                output[folders == index] = array[rows[folders == index]]
        return tuple(joined)
    arrays, rows, partial = open_split(split_directory, network, finished_clusters_only)
    if maximum_maps is not None and maximum_maps < len(rows):
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), maximum_maps, replace=False))
    if fits_in_memory(len(rows) * sum(array[:1].nbytes for array in arrays)):
        return tuple(np.ascontiguousarray(array[rows]) for array in arrays)
    if len(rows) < len(arrays[0]):
        reason = "the finished clusters' maps" if partial else f"--max-training-maps {maximum_maps} maps"
        raise ValueError(f"{split_directory}: {reason} do not fit in RAM")
    return tuple(arrays)


def map_repeats(settings, train_directories):
    """How many times each training map is drawn per epoch, from `--repeats` (one count per data set).

    Returns None without `--repeats`. The counts follow the maps' order in `load_split`: data set by
    data set, each set's (finished) rows in order.
    """
    if settings.repeats is None:
        return None
    if len(settings.repeats) != len(train_directories):
        raise ValueError(f"--repeats has {len(settings.repeats)} counts for {len(train_directories)} data sets "
                         f"({', '.join(str(directory.parent) for directory in train_directories)})")
    if min(settings.repeats) < 1:
        raise ValueError(f"--repeats {' '.join(map(str, settings.repeats))}: every count must be at least 1")
    if settings.max_training_maps is not None:
        raise ValueError("--repeats and --max-training-maps cannot be combined: the subset is drawn across data sets")
    counts = []
    for directory in train_directories:
        number_of_maps = len(np.load(directory / "luminosity_V.npy", mmap_mode="r"))
        rows = finished_rows(directory, number_of_maps, settings.finished_clusters_only)
        counts.append(number_of_maps if rows is None else len(rows))
    return np.repeat(np.asarray(settings.repeats), counts)


# --- 2 and 3. Standardised, augmented batches -------------------------------------------------------
class MapBatches(keras.utils.PyDataset):
    """Batches of standardised (flux map, target); augmented and shuffled when given a Generator.

    Parameters
    ----------
    flux : numpy.ndarray
        Unstandardised flux maps of one split, (N, 160, 160, 1).
    targets : numpy.ndarray or tuple of numpy.ndarray
        Unstandardised targets, one per entry of `TARGETS[network]`: (N, 160, 160, 1) mass maps and/or
        (N, 2) [distance, age]. A network of several outputs gets a dict of them by output name.
    constants : dict
        From `standardization.read_standardization`.
    network : {"ced", "cnn"}
    batch_size : int
    generator : numpy.random.Generator or None
        Draws the shuffling and the dihedral transforms; None gives the fixed validation order.
    repeats : numpy.ndarray of int or None
        How many times each map is drawn per epoch (training only); None: once each.
    noise_range_mag_arcsec2 : (float, float) or None
        With a generator: each map's 1σ noise per 0.25″ pixel, drawn uniform in this range of
        surface brightness, added to its linear flux smoothed by the seeing. None: no noise.
    """

    def __init__(self, flux, targets, constants, network, batch_size, generator=None, repeats=None,
                 noise_range_mag_arcsec2=None):
        super().__init__()
        self.flux, self.batch_size, self.generator = flux, batch_size, generator
        self.noise_range_mag_arcsec2 = noise_range_mag_arcsec2
        self.repeated_rows = None if repeats is None else np.repeat(np.arange(len(flux)), repeats)
        self.targets = targets if isinstance(targets, (list, tuple)) else (targets,)
        self.specifications = TARGETS[network]
        if len(self.targets) != len(self.specifications):
            raise ValueError(f"network {network} has {len(self.specifications)} targets, got {len(self.targets)}")
        self.flux_mean, self.flux_std = constants["luminosity_mean"], constants["luminosity_std"]
        self.target_constants = [(constants[f"{key}_mean"], constants[f"{key}_std"]) for _, _, key, _ in self.specifications]
        self.order = np.arange(len(flux)) if self.repeated_rows is None else self.repeated_rows

    def __len__(self):
        return math.ceil(len(self.order) / self.batch_size)

    def shuffle(self):
        """Draw a new order of the maps for the next epoch (training only)."""
        if self.generator is not None:
            self.order = self.generator.permutation(len(self.flux) if self.repeated_rows is None else self.repeated_rows)

    def __getitem__(self, index):
        # Sorted rows read faster from a memory map; the order inside a batch does not matter.
        rows = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        flux = self.flux[rows]
        if self.generator is not None and self.noise_range_mag_arcsec2 is not None:
            levels = self.generator.uniform(*self.noise_range_mag_arcsec2, len(rows))
            flux = np.stack([add_photometric_noise(log_flux[..., 0], float(surface_brightness_to_pixel_flux(level)), 0.0,
                                                   self.generator, NOISE_CORRELATION_FWHM_ARCSEC)[..., None]
                             for log_flux, level in zip(flux, levels)])
        flux = standardization.standardize(flux, self.flux_mean, self.flux_std)
        targets = [standardization.standardize(target[rows], mean, std)
                   for target, (mean, std) in zip(self.targets, self.target_constants)]
        if self.generator is not None:
            rotations = self.generator.integers(0, 4, len(rows))
            mirrors = self.generator.integers(0, 2, len(rows)).astype(bool)
            flux = np.stack([dihedral_transform(*arguments) for arguments in zip(flux, rotations, mirrors)])
            # Maps turn with the flux map; [distance, age] does not depend on the orientation.
            targets = [np.stack([dihedral_transform(*arguments) for arguments in zip(target, rotations, mirrors)])
                       if target.ndim == 4 else target for target in targets]
        if len(targets) == 1:
            return flux, targets[0]
        return flux, {specification[3]: target for specification, target in zip(self.specifications, targets)}


def batches_ahead(batches):
    """Yield every batch in order while a thread prepares the next one, so the model never waits."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        pending = executor.submit(batches.__getitem__, 0)
        for index in range(len(batches)):
            batch = pending.result()
            if index + 1 < len(batches):
                pending = executor.submit(batches.__getitem__, index + 1)
            yield batch


# --- 4. Model, optimiser and loss ----------------------------------------------------------------
def build_network(network, seed=None):
    """Build the uncompiled network `network` ("ced", "cnn" or "fast") under the current dtype policy."""
    if network == "fast":
        return fast_network.build_fast_network(seed=seed)
    return getattr(networks, f"build_{network}")(seed=seed)


def distance_age_loss(age_loss_weight):
    """The loss of the standardised [distance, age] output: a mean squared error, its age column weighted.

    Returns Keras's own "mean_squared_error" for a weight of 1, so the original loss stays the original.
    """
    if age_loss_weight == 1.0:
        return "mean_squared_error"
    column_weights = keras.ops.convert_to_tensor([1.0, float(age_loss_weight)], dtype="float32")

    def weighted_mean_squared_error(true, predicted):
        error = keras.ops.cast(predicted, "float32") - keras.ops.cast(true, "float32")
        return keras.ops.mean(column_weights * keras.ops.square(error), axis=-1)

    return weighted_mean_squared_error


def build_compiled_network(network, learning_rate, seed, age_loss_weight=AGE_LOSS_WEIGHT):
    """Build a network and compile it with Adam and the MSE loss, the optimiser's state created.

    `age_loss_weight` weighs the age column of the distance-age loss (see AGE_LOSS_WEIGHT); the CED has none.
    """
    model = build_network(network, seed=seed)
    if network == "fast":
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss={"mass": "mean_squared_error", "distance_age": distance_age_loss(age_loss_weight)},
                      loss_weights=FAST_LOSS_WEIGHTS)
    else:
        loss = distance_age_loss(age_loss_weight) if network == "cnn" else "mean_squared_error"
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    # Building the optimiser's variables now lets `load_weights` restore its moments on resume.
    model.optimizer.build(model.trainable_variables)
    return model


def optimizer_steps(model):
    """Number of optimiser updates so far, read in a backend-agnostic way."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def dropout_random_states(model):
    """The states of the dropout layers' random-seed generators, which `.keras` files leave out.

    Restoring them on resume makes an interrupted run draw the same dropout masks, and so the same
    weights, as an uninterrupted one.
    """
    return [variable for variable in model.variables if variable.name == "seed_generator_state"]


def total_loss(result):
    """The total loss from what `train_on_batch` / `test_on_batch` return (a list, total first, for
    a network of several outputs)."""
    if isinstance(result, (list, tuple)):
        result = result[0]
    return float(result)


def validation_loss(model, batches):
    """Mean squared error over every map of the validation split (inference mode, no augmentation)."""
    total = 0.0
    for flux, targets in batches_ahead(batches):
        total += total_loss(model.test_on_batch(flux, targets)) * len(flux)
    return total / len(batches.flux)


# --- 5. Bookkeeping -------------------------------------------------------------------------------
def export_network(model, network, output_directory):
    """Export the weights in a float32, uncompiled copy of the network, as the original files were."""
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        exported = build_network(network)
    finally:
        keras.config.set_dtype_policy(policy)
    exported.set_weights(model.get_weights())
    output_directory.mkdir(parents=True, exist_ok=True)
    # The record tells `pidoc.model.open_model` which networks the folder holds.
    if network == "fast":
        save_weights_atomically(exported, output_directory / FAST_WEIGHTS_FILE)
        # The network was trained on one random orientation per map, so the exported folder predicts
        # with the mean over all eight (pidoc.model.DIHEDRAL_AVERAGE_KEY, measured there).
        write_architecture_record(output_directory, FAST_ARCHITECTURE, weights=FAST_WEIGHTS_FILE,
                                  parameters=int(exported.count_params()), **{DIHEDRAL_AVERAGE_KEY: True})
        return
    name = network.upper()
    networks.save_model(exported, output_directory / f"{name}.json", output_directory / f"{name}.weights.h5")
    write_architecture_record(output_directory, PAPER_ARCHITECTURE)


def save_weights_atomically(model, path):
    """Save a model's weights to `path` (a `.weights.h5` file) through a temporary name."""
    temporary = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
    model.save_weights(temporary)
    os.replace(temporary, path)


def save_training_state(model, run_directory, state):
    """Save model and optimiser under a new epoch-numbered name, then point the state JSON at it.

    The JSON is replaced only once the checkpoint is complete, and old checkpoints are deleted only
    after that, so an interruption at any moment leaves a consistent state to resume from.
    """
    checkpoint = f"checkpoint_epoch{state['epoch']:04d}.keras"
    model.save(run_directory / "checkpoint.tmp.keras")
    os.replace(run_directory / "checkpoint.tmp.keras", run_directory / checkpoint)
    temporary = run_directory / "training_state.json.tmp"
    temporary.write_text(json.dumps({**state, "checkpoint": checkpoint}, indent=1))
    os.replace(temporary, run_directory / "training_state.json")
    for old in run_directory.glob("checkpoint_epoch*.keras"):
        if old.name != checkpoint:
            old.unlink()


def warm_start(model, initial_weights_directory):
    """Copy the weights of the network exported in `initial_weights_directory` into `model`.

    The architectures are the same (`pidoc/networks.py`), so the weights copy variable for variable; under
    mixed precision the float32 master weights take them. The optimiser's moments stay at zero.
    """
    name = model.name  # "CED", "CNN" (networks.build_ced / build_cnn) or "fast_network"
    # The same readers, with the same checks, as every driver's (`pidoc.model`).
    if name == "fast_network":  # pidoc/fast_network.py names its model so
        trained = open_model(initial_weights_directory).networks["fast"]
    else:
        trained = load_network(initial_weights_directory, name)
    model.set_weights(trained.get_weights())
    print(f"{name}: warm start from {initial_weights_directory}")


def resume_or_start(model, generator, run_directory, settings):
    """Load the saved training state into `model` and `generator`, or start a fresh state.

    Returns
    -------
    state : dict
        Counters of the run (see `save_training_state`); epoch 0 for a fresh start.
    log_rows : list of dict
        The CSV log rows up to the saved epoch.
    """
    state_path, log_path = run_directory / "training_state.json", run_directory / "training_log.csv"
    if settings.resume and not state_path.exists():
        raise FileNotFoundError(f"--resume: no saved training state at {state_path}")
    if settings.restart or not state_path.exists():
        # A fresh start forgets any old state first, so an interruption cannot resume the old run.
        state_path.unlink(missing_ok=True)
        if settings.initial_weights_directory is not None:
            warm_start(model, settings.initial_weights_directory)
        return {"network": model.name, "epoch": 0, "best_val_loss": math.inf, "best_epoch": 0, "plateau_counter": 0,
                "learning_rate": settings.learning_rate, "elapsed_seconds": 0.0,
                "learning_rate_reset": settings.reset_learning_rate}, []
    state = json.loads(state_path.read_text())
    # The loss defines the validation loss that picks the best epoch and the plateaus, so a run cannot
    # change it half way; a new weight is a new run, started from this one's networks.
    saved_age_loss_weight = state["settings"].get("age_loss_weight", 1.0)
    if model.name != "CED" and saved_age_loss_weight != settings.age_loss_weight:
        raise ValueError(f"{state_path} was trained with --age-loss-weight {saved_age_loss_weight}, not "
                         f"{settings.age_loss_weight}; to change the loss, start a new run (another "
                         f"--runs-directory) with --initial-weights-directory")
    model.load_weights(run_directory / state["checkpoint"])
    # The reset is recorded in the state, so the same flag on every later call applies it only once.
    if settings.reset_learning_rate is not None and state.get("learning_rate_reset") != settings.reset_learning_rate:
        print(f"{model.name}: learning rate reset from {state['learning_rate']:.3g} to {settings.reset_learning_rate:.3g} "
              f"after epoch {state['epoch']}")
        state.update(learning_rate=settings.reset_learning_rate, learning_rate_reset=settings.reset_learning_rate,
                     plateau_counter=0)
    model.optimizer.learning_rate = state["learning_rate"]
    generator.bit_generator.state = state["generator_state"]
    for variable, value in zip(dropout_random_states(model), state["dropout_random_states"]):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    changed = [key for key in ("data_directory", "repeats", "batch_size", "max_training_maps", "mixed_precision", "seed",
                               "noise_range_mag_arcsec2")
               if state["settings"].get(key) != getattr(settings, key)]
    if changed:
        print(f"{model.name}: warning: resuming with settings that differ from the saved run: {', '.join(changed)}")
    print(f"{model.name}: resuming after epoch {state['epoch']} ({optimizer_steps(model)} optimiser steps) from {run_directory}")
    # Rows of epochs after the checkpoint (left by an interruption while saving) are dropped.
    log_rows = []
    if log_path.exists():
        with open(log_path, newline="") as log_file:
            log_rows = [row for row in csv.DictReader(log_file) if int(row["epoch"]) <= state["epoch"]]
    return state, log_rows


def train_one_epoch(model, training, description):
    """Run one pass over the training batches; return the mean loss, the maps seen and the seconds."""
    start = time.perf_counter()
    training.shuffle()
    loss_sum, maps_done = 0.0, 0
    with tqdm(total=len(training), desc=description, unit="batch", mininterval=1.0) as progress:
        for flux, targets in batches_ahead(training):
            loss_sum += total_loss(model.train_on_batch(flux, targets)) * len(flux)
            maps_done += len(flux)
            progress.set_postfix(loss=f"{loss_sum / maps_done:.4g}", refresh=False)
            progress.update()
    return loss_sum / maps_done, maps_done, time.perf_counter() - start


def train_network(network, settings, started=None):
    """Train one network, continuing a saved state when there is one (see the module docstring).

    Parameters
    ----------
    network : {"ced", "cnn"}
    settings : argparse.Namespace
        From `parse_arguments`.
    started : float or None
        `time.perf_counter()` at which the `--max-minutes` budget started; default now.

    Returns
    -------
    tuple
        (model after the last epoch run, training state as saved in `training_state.json`).
    """
    started = time.perf_counter() if started is None else started
    name, epochs = network.upper(), settings.epochs or EPOCHS[network]
    if network == "fast":
        name = "FAST"
    run_directory = Path(settings.runs_directory) / network
    log_path = run_directory / "training_log.csv"
    # The precision policy is global and must be set before any layer is built.
    keras.config.set_dtype_policy(settings.mixed_precision)
    keras.utils.set_random_seed(settings.seed)

    data_directories = [Path(directory) for directory in settings.data_directory]
    for data_directory in data_directories:
        if not data_directory.is_dir():
            raise FileNotFoundError(f"data set directory not found: {data_directory}")
    train_directories = [directory / "train" for directory in data_directories]
    run_constants_directory = run_directory / "standardization_files"
    if settings.standardization_directory is not None:
        constants = standardization.read_standardization(settings.standardization_directory)
    elif run_constants_directory.is_dir() and not settings.restart:
        # A resumed run keeps the constants it started with, even if its data set has grown since.
        constants = standardization.read_standardization(run_constants_directory)
    elif len(data_directories) == 1 and not settings.finished_clusters_only:
        constants = standardization.read_standardization(data_directories[0] / "standardization_files")
    else:
        # The training split is the union of the data sets' train/ folders (their finished clusters,
        # with --finished-clusters-only), and so are its constants.
        rows = [finished_rows(directory, len(np.load(directory / "luminosity_V.npy", mmap_mode="r")),
                              settings.finished_clusters_only) for directory in train_directories]
        constants = standardization.training_standardization(train_directories, rows_per_directory=rows)
    standardization.write_standardization(run_constants_directory, constants)
    if settings.standardization_directory is not None or len(data_directories) > 1 or network == "fast":
        # The exported networks carry the constants they were trained with (see the module docstring).
        standardization.write_standardization(Path(settings.output_directory) / "standardization_files", constants)
    generator = np.random.default_rng(settings.seed)
    training_arrays = load_split(train_directories if len(train_directories) > 1 else train_directories[0], network,
                                 settings.max_training_maps, settings.seed, settings.finished_clusters_only)
    training = MapBatches(training_arrays[0], training_arrays[1:], constants, network, settings.batch_size, generator,
                          map_repeats(settings, train_directories), settings.noise_range_mag_arcsec2)
    validation_arrays = load_split(data_directories[0] / "validation", network)
    validation = MapBatches(validation_arrays[0], validation_arrays[1:], constants, network, settings.batch_size)

    model = build_compiled_network(network, settings.learning_rate, settings.seed, settings.age_loss_weight)
    state, log_rows = resume_or_start(model, generator, run_directory, settings)
    run_directory.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", newline="") as log_file:
        writer = csv.DictWriter(log_file, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(log_rows)

    longest_epoch = 0.0
    while state["epoch"] < epochs:
        # Stop before an epoch that would not end inside the budget, judged by the longest so far.
        if settings.max_minutes is not None and 60 * settings.max_minutes - (time.perf_counter() - started) < longest_epoch:
            print(f"{name}: stopped after epoch {state['epoch']} of {epochs} by --max-minutes; run again to resume")
            break
        epoch_start, epoch, learning_rate = time.perf_counter(), state["epoch"] + 1, state["learning_rate"]
        loss, maps_done, training_seconds = train_one_epoch(model, training, f"{name} epoch {epoch}/{epochs}")
        if not math.isfinite(loss):
            raise FloatingPointError(f"{name}: the training loss became {loss} in epoch {epoch}; "
                                     f"the last good state is in {run_directory}")
        val_loss = validation_loss(model, validation)

        # The best network and the learning-rate plateau are both judged on the validation loss.
        if val_loss < state["best_val_loss"]:
            state.update(best_val_loss=val_loss, best_epoch=epoch, plateau_counter=0)
            export_network(model, network, Path(settings.output_directory))
        elif state["plateau_counter"] + 1 >= settings.plateau_patience:
            state.update(plateau_counter=0, learning_rate=max(learning_rate * settings.plateau_factor,
                                                              settings.minimum_learning_rate))
            model.optimizer.learning_rate = state["learning_rate"]
        else:
            state["plateau_counter"] += 1

        epoch_seconds = time.perf_counter() - epoch_start
        with open(log_path, "a", newline="") as log_file:
            csv.DictWriter(log_file, LOG_COLUMNS).writerow(
                {"epoch": epoch, "loss": loss, "val_loss": val_loss, "learning_rate": learning_rate,
                 "epoch_seconds": round(epoch_seconds, 3),
                 "maps_per_second": round(maps_done / training_seconds, 3)})
        state.update(epoch=epoch, elapsed_seconds=state["elapsed_seconds"] + time.perf_counter() - epoch_start,
                     optimizer_iterations=optimizer_steps(model), generator_state=generator.bit_generator.state,
                     dropout_random_states=[keras.ops.convert_to_numpy(variable).tolist()
                                            for variable in dropout_random_states(model)],
                     settings=vars(settings))
        save_training_state(model, run_directory, state)
        longest_epoch = max(longest_epoch, time.perf_counter() - epoch_start)
        tqdm.write(f"{name} epoch {epoch}: loss {loss:.4g}, val_loss {val_loss:.4g} (best {state['best_val_loss']:.4g} "
                   f"at epoch {state['best_epoch']}), learning rate {learning_rate:.3g}, {epoch_seconds:.1f} s")
    if state["epoch"] > 0:
        plot_learning_curves([log_path], run_directory / "learning_curves.png")
    return model, state


def plot_learning_curves(csv_paths, png_path):
    """Plot loss and val_loss against epoch (log scale) from one or more training logs into a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, axis = plt.subplots(figsize=(6, 4))
    for index, csv_path in enumerate(map(Path, csv_paths)):
        with open(csv_path, newline="") as log_file:
            rows = list(csv.DictReader(log_file))
        if not rows:
            continue
        epochs = [int(row["epoch"]) for row in rows]
        label = csv_path.parent.name.upper()
        axis.plot(epochs, [float(row["loss"]) for row in rows], color=f"C{index}", label=f"{label} training")
        axis.plot(epochs, [float(row["val_loss"]) for row in rows], color=f"C{index}", linestyle="--", label=f"{label} validation")
    axis.set_yscale("log")
    axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.set_ylabel("MSE of standardised targets")
    axis.legend()
    figure.tight_layout()
    png_path = Path(png_path)
    temporary = png_path.with_name(png_path.stem + ".tmp.png")
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, png_path)


def main(argv=None):
    settings = parse_arguments(argv)
    started = time.perf_counter()
    for network in settings.networks:
        train_network(network, settings, started)


if __name__ == "__main__":
    main()
