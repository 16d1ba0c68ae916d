"""A trained π-DOC model folder as one object: its networks, constants, calibration and fingerprint.

A model folder (such as `trained_piDOC/` or `trained_piDOC/general/`) holds

- `architecture.json`: which networks it holds (`ARCHITECTURES`), so every driver loads either kind
  by its path alone;
- the networks' files: `CED.json` + `CED.weights.h5` and `CNN.json` + `CNN.weights.h5` for the
  paper's architecture (the authors' Keras 2.3.1 files are read too, `pidoc.networks`); one weights
  file named in the record for the general model's fast network (`pidoc.fast_network`), whose
  layers are built from the code;
- optionally `standardization_files/` (the six constants it was trained with; otherwise those of
  the input folder are used, as in the original π-DOC) and `calibration.json` (intervals and the
  domain verdict, `pidoc.calibration.uncertainty`).

`open_model` is the one place a folder is opened; the drivers, the evaluation, the calibration and
the training receive the `TrainedModel` it returns. The networks are built on first use, so a
driver that only needs the calibration or the fingerprint does not pay TensorFlow's import.
"""
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from pidoc import standardization
from pidoc.frame import DIHEDRAL_SYMMETRIES, MAP_SHAPE, dihedral_transform, inverse_dihedral_transform

ARCHITECTURE_FILE = "architecture.json"
STANDARDIZATION_SUBDIRECTORY = "standardization_files"
# The paper's two networks: the encoder-decoder (CED) for the mass map and the CNN for
# [distance, age] (CB21 §3, Figs 2 and 3).
PAPER_ARCHITECTURE = "cb21-ced-cnn"
# One network with two heads, made for this project's CPU (pidoc/fast_network.py; issue 13).
FAST_ARCHITECTURE = "fast-s2d-v1"
FAST_WEIGHTS_FILE = "piDOC_fast.weights.h5"
ARCHITECTURES = (PAPER_ARCHITECTURE, FAST_ARCHITECTURE)
# What each network of the paper's architecture returns for one map.
NETWORK_OUTPUT_SHAPES = {"CED": MAP_SHAPE, "CNN": (2,)}

# --- Inference ------------------------------------------------------------------------------------
# Maps per call of the network. Any size gives the same numbers (BatchNormalization uses its moving
# statistics at inference); these sizes keep the CED's largest activations (160² × 64 channels per
# map) under 1 GB while running at full speed on the CPU (benchmarks/inference.py).
MASS_NETWORK_BATCH_MAPS = 32
DISTANCE_AGE_NETWORK_BATCH_MAPS = 100
# Arithmetic of the CED at inference. bfloat16 runs it about 2–2.5× faster on this project's CPU
# (which has avx512_bf16), but it moves the authors' trained CNN by 2–3 kpc (tf-stack.md §3), and its
# error on the CED grows with training: 0.003 dex at most for an untrained CED, 0.008 dex after
# 160 training steps (100 maps), against a tolerance of 0.01 dex. So float32 stays until
# benchmarks/inference.py shows the fully trained CED within 0.01 dex on the test maps; only then
# switch to "bfloat16". The CNN always runs in float32.
MASS_NETWORK_COMPUTE_DTYPE = "float32"
# The fast network: maps per call, and its Keras dtype policy at inference ("mixed_bfloat16" only
# once benchmarks/training_throughput.py shows its maps within 0.01 dex of float32).
FAST_NETWORK_BATCH_MAPS = 64
FAST_NETWORK_COMPUTE_DTYPE = "float32"
# A fast-architecture record may say `"dihedral_average": true`: the network then reads each map in
# the eight orientations of the square (`frame.DIHEDRAL_SYMMETRIES`), each output is turned back, and
# the eight answers are averaged (log mass per pixel, distance and age). It was trained with a random
# one of them per map (train_piDOC.py, step 3), so each is an equally good reading, and their mean has
# less of the network's orientation noise: on the general validation split (1,000 maps, 50 clusters;
# epoch-47 weights) pixel-mass error 19.5 → 17.7 %, total mass 19.7 → 18.0 %, distance 10.2 → 9.4 %,
# age 1.03 → 0.95 Gyr, for 8× the inference time. Absent means false, so older folders keep their meaning.
DIHEDRAL_AVERAGE_KEY = "dihedral_average"


# ==================================================================================================
# 1. The architecture record
# ==================================================================================================
def read_architecture_record(directory):
    """The checked record `<directory>/architecture.json`, as a dict with at least "architecture".

    Raises
    ------
    FileNotFoundError
        The folder or its record is missing; the message names the path and what to write there.
    ValueError
        The record is not JSON, or names an architecture this version does not know.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"trained-network folder not found: {directory}")
    path = directory / ARCHITECTURE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"model folder {directory} has no architecture record {path}; a folder of the paper's CED and "
            f"CNN (such as the authors' published files) needs one line: "
            f'{{"architecture": "{PAPER_ARCHITECTURE}"}}'
        )
    try:
        record = json.loads(path.read_text())
        architecture = record["architecture"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"architecture record {path} is unreadable (expected {{\"architecture\": ...}}): {error}") from error
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture record {path} names {architecture!r}; this version knows {list(ARCHITECTURES)}")
    if architecture == FAST_ARCHITECTURE and not isinstance(record.get("weights"), str):
        raise ValueError(f"architecture record {path} of {architecture} does not name its weights file")
    if not isinstance(record.get(DIHEDRAL_AVERAGE_KEY, False), bool):
        raise ValueError(f"architecture record {path}: {DIHEDRAL_AVERAGE_KEY!r} must be true or false, "
                         f"got {record[DIHEDRAL_AVERAGE_KEY]!r}")
    if record.get(DIHEDRAL_AVERAGE_KEY) and architecture != FAST_ARCHITECTURE:
        raise ValueError(f"architecture record {path}: {DIHEDRAL_AVERAGE_KEY!r} is defined for {FAST_ARCHITECTURE} only")
    return record


def read_architecture(directory):
    """The architecture named in `<directory>/architecture.json` (`read_architecture_record`)."""
    return read_architecture_record(directory)["architecture"]


def write_architecture_record(directory, architecture, **details):
    """Write `<directory>/architecture.json` atomically: the architecture's name and any details."""
    from pidoc.io import save_text

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {list(ARCHITECTURES)}")
    record = dict(architecture=architecture, **details)
    return save_text(Path(directory) / ARCHITECTURE_FILE, json.dumps(record, indent=1) + "\n")


def network_files(directory, architecture):
    """The configuration and weight files of the networks of `architecture` in `directory`."""
    from pidoc import networks

    if architecture == FAST_ARCHITECTURE:
        path = Path(directory) / read_architecture_record(directory)["weights"]
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path.name} named by {Path(directory) / ARCHITECTURE_FILE} is missing")
        return [path]
    files = []
    for name in NETWORK_OUTPUT_SHAPES:
        files.extend(networks.find_model_files(directory, name))
    return files


def weights_fingerprint(directory, architecture):
    """SHA-256 of every network file of the folder, by file name: what a calibration belongs to.

    A folder whose record asks for the dihedral average gets one more entry, so a calibration or a
    cached prediction made from single readings is never taken for one of averaged readings.
    """
    fingerprint = {Path(path).name: hashlib.sha256(Path(path).read_bytes()).hexdigest()
                   for path in network_files(directory, architecture)}
    if read_architecture_record(directory).get(DIHEDRAL_AVERAGE_KEY, False):
        fingerprint["prediction"] = "dihedral average of 8 orientations"
    return fingerprint


# ==================================================================================================
# 2. Loading and running networks
# ==================================================================================================
def load_network(pathtrained, name):
    """Load the trained network `name` ("CED" or "CNN") of the paper's architecture from `pathtrained`.

    The files are found by `networks.load_trained_network`: `{name}.json` with `{name}.weights.h5`,
    or the authors' Keras 2.3.1 `{name}.json` with `{name}_*.h5` (e.g. `CNN_100.h5`).

    Raises
    ------
    FileNotFoundError
        If `pathtrained` or the network's files are missing.
    ValueError
        If the files cannot be read, or the network does not map a 160×160×1 map to the output of
        `name` (for instance CED and CNN files swapped). Messages name the files.
    """
    # TensorFlow takes seconds to import; only inference needs it.
    from pidoc import networks

    directory = Path(pathtrained)
    if not directory.is_dir():
        raise FileNotFoundError(f"trained-network folder not found: {directory}")
    candidate_files = ", ".join(str(path) for path in sorted(directory.glob(f"{name}*"))) or "none"
    try:
        network = networks.load_trained_network(directory, name)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{name} network files missing in {directory} (found: {candidate_files}): {error}") from error
    except Exception as error:  # h5py, json and Keras raise many types for a corrupt file
        raise ValueError(f"cannot load the {name} network from {candidate_files}: {error}") from error
    input_shape = tuple(network.input_shape[1:])
    output_shape = tuple(network.output_shape[1:])
    if input_shape != MAP_SHAPE or output_shape != NETWORK_OUTPUT_SHAPES[name]:
        raise ValueError(
            f"the {name} network in {candidate_files} maps {input_shape} to {output_shape}; "
            f"π-DOC's {name} maps (160, 160, 1) to {NETWORK_OUTPUT_SHAPES[name]}"
        )
    return network


def make_forward_pass(network, batch_size_maps):
    """Return a function that runs `network` on standardised maps in batches of `batch_size_maps`.

    Each batch goes through one traced TensorFlow graph of `network(maps, training=False)`. This is
    what `model.predict` computes, without its tf.data pipeline, whose autotuning stalls the CPU for
    seconds at a time on this project's machine (tf-stack.md §4). The batch axis of the graph is
    left free, so a short last batch does not trigger a new trace.
    """
    import tensorflow as tf

    if batch_size_maps < 1:
        raise ValueError(f"batch_size_maps must be at least 1, got {batch_size_maps}")
    input_signature = [tf.TensorSpec((None,) + tuple(network.input_shape[1:]), tf.float32)]
    forward_graph = tf.function(lambda maps: network(maps, training=False), input_signature=input_signature)
    # A network of several named outputs (the fast network) returns a dict of them.
    output_shapes = ({name: tuple(tensor.shape) for name, tensor in network.output.items()}
                     if isinstance(network.output, dict) else tuple(network.output_shape))

    def forward_pass(standardized_maps):
        standardized_maps = np.asarray(standardized_maps, dtype=np.float32)
        number_of_maps = len(standardized_maps)
        if isinstance(output_shapes, dict):
            outputs = {name: np.empty((number_of_maps,) + tuple(shape[1:]), dtype=np.float32) for name, shape in output_shapes.items()}
        else:
            outputs = np.empty((number_of_maps,) + tuple(output_shapes[1:]), dtype=np.float32)
        for start in range(0, number_of_maps, batch_size_maps):
            stop = start + batch_size_maps
            result = forward_graph(tf.constant(standardized_maps[start:stop]))
            if isinstance(outputs, dict):
                for name in outputs:
                    outputs[name][start:stop] = result[name].numpy()
            else:
                outputs[start:stop] = result.numpy()
        return outputs

    return forward_pass


def bfloat16_copy_of_mass_network(network):
    """Return a copy of the CED that computes in bfloat16 (its output layer stays float32).

    The copy is `networks.build_ced` under Keras' "mixed_bfloat16" policy, with the weights of
    `network` copied layer by layer by name (our saved CEDs and the authors' share the layer names).
    """
    import keras

    from pidoc import networks

    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        copy = networks.build_ced()
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    for layer in network.layers:
        if layer.weights:
            copy.get_layer(layer.name).set_weights(layer.get_weights())
    return copy


def load_fast_network(directory):
    """Build the fast network (`pidoc.fast_network`) in float32 and load the weights its record names.

    Raises
    ------
    ValueError
        The weights file does not fit the architecture (the message names the file).
    """
    import keras

    from pidoc import fast_network

    weights_path = network_files(directory, FAST_ARCHITECTURE)[0]
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(FAST_NETWORK_COMPUTE_DTYPE)
    try:
        network = fast_network.build_fast_network()
    finally:
        keras.config.set_dtype_policy(previous_policy)
    try:
        network.load_weights(weights_path)
    except Exception as error:  # h5py and Keras raise many types for a foreign or corrupt file
        raise ValueError(f"cannot load the fast network's weights {weights_path}: {error}") from error
    return network


def standardization_directory_for(pathtrained, standardization_directory):
    """The folder of standardisation constants that belongs with the networks in `pathtrained`.

    A model folder may carry its own constants beside its weights, in
    `<pathtrained>/standardization_files/` (the general model, `trained_piDOC/general/`, does): a
    network only makes sense on inputs standardised the way it was trained, so those win. Otherwise
    `standardization_directory` is used (the reproduction keeps its constants in `input_files/`, as
    the original π-DOC did).
    """
    beside_weights = Path(pathtrained) / STANDARDIZATION_SUBDIRECTORY
    if beside_weights.is_dir() or standardization_directory is None:
        return beside_weights
    return Path(standardization_directory)


def dihedral_average(forward_pass, standardized_flux):
    """The fast network's outputs averaged over the eight orientations of each map (`DIHEDRAL_AVERAGE_KEY`).

    Each orientation's mass map is turned back before the average; distance and age do not depend on
    the orientation. The average is taken of the standardised outputs, i.e. of log10 mass per pixel.
    """
    sums = None
    for rotations, mirror in DIHEDRAL_SYMMETRIES:
        oriented = np.ascontiguousarray(dihedral_transform(standardized_flux, rotations, mirror))
        outputs = forward_pass(oriented)
        outputs = {"mass": inverse_dihedral_transform(outputs["mass"], rotations, mirror).astype(np.float64),
                   "distance_age": np.asarray(outputs["distance_age"], dtype=np.float64)}
        sums = outputs if sums is None else {name: sums[name] + outputs[name] for name in sums}
    return {name: (total / len(DIHEDRAL_SYMMETRIES)).astype(np.float32) for name, total in sums.items()}


# ==================================================================================================
# 3. The model folder as one object
# ==================================================================================================
class TrainedModel:
    """An opened model folder; made by `open_model`.

    Attributes
    ----------
    directory : Path
    architecture : str
        One of `ARCHITECTURES`, from the folder's record.
    constants : dict
        The six standardisation constants (`pidoc.standardization.read_standardization`).
    standardization_directory : Path
        Where they were read from.
    fingerprint : dict
        SHA-256 of every network file, by name (`weights_fingerprint`).
    calibration : dict or None
        The checked `calibration.json`, or None where the folder has none.
    dihedral_average : bool
        Whether `predict` averages the eight orientations of each map (`DIHEDRAL_AVERAGE_KEY`).
    networks : dict
        The Keras networks by name, built on first access.
    """

    def __init__(self, directory, architecture, constants, standardization_directory, fingerprint, calibration,
                 dihedral_average=False):
        self.directory = Path(directory)
        self.dihedral_average = bool(dihedral_average)
        self.architecture = architecture
        self.constants = constants
        self.standardization_directory = Path(standardization_directory)
        self.fingerprint = fingerprint
        self.calibration = calibration
        self._networks = None

    def __repr__(self):
        calibrated = "calibrated" if self.calibration is not None else "uncalibrated"
        return f"TrainedModel({str(self.directory)!r}, {self.architecture}, {calibrated})"

    @property
    def networks(self):
        if self._networks is None and self.architecture == FAST_ARCHITECTURE:
            self._networks = {"fast": load_fast_network(self.directory)}
        if self._networks is None:
            mass_network = load_network(self.directory, "CED")
            if MASS_NETWORK_COMPUTE_DTYPE == "bfloat16":
                mass_network = bfloat16_copy_of_mass_network(mass_network)
            elif MASS_NETWORK_COMPUTE_DTYPE != "float32":
                raise ValueError(f"MASS_NETWORK_COMPUTE_DTYPE must be 'float32' or 'bfloat16', not {MASS_NETWORK_COMPUTE_DTYPE!r}")
            self._networks = {"CED": mass_network, "CNN": load_network(self.directory, "CNN")}
        return self._networks

    def require_calibration(self):
        """The calibration; FileNotFoundError saying how to make it where the folder has none."""
        if self.calibration is None:
            from pidoc.calibration.uncertainty import CALIBRATION_FILE

            raise FileNotFoundError(
                f"calibration file missing: {self.directory / CALIBRATION_FILE} (make it with `python3 "
                f"calibrate_piDOC.py <calibration split> --trained-directory {self.directory}`)"
            )
        return self.calibration

    def predict(self, log_flux_maps):
        """Predict mass maps and [distance, age] for checked flux maps; nothing is written.

        Parameters
        ----------
        log_flux_maps : numpy.ndarray, shape (N, 160, 160, 1)
            Output of `pidoc.io.check_flux_maps`.

        Returns
        -------
        predicted_log_mass_maps : numpy.ndarray, (N, 160, 160, 1) float32, log10 M☉ per pixel
        predicted_distance_age : numpy.ndarray, (N, 2) float32, [distance kpc, age Gyr]
        seconds_per_map : dict
            Wall time per map of each network (graph tracing included).
        """
        constants = self.constants
        networks = self.networks
        # CB21 §3: the networks were trained on inputs standardised with the training set's scalars.
        standardized_flux = standardization.standardize(log_flux_maps, constants["luminosity_mean"], constants["luminosity_std"])
        number_of_maps = len(standardized_flux)
        if self.architecture == FAST_ARCHITECTURE:
            start = time.perf_counter()
            forward_pass = make_forward_pass(networks["fast"], FAST_NETWORK_BATCH_MAPS)
            if self.dihedral_average:
                outputs = dihedral_average(forward_pass, standardized_flux)
            else:
                outputs = forward_pass(standardized_flux)
            predicted_log_mass_maps = standardization.destandardize(outputs["mass"], constants["mass_mean"], constants["mass_std"])
            predicted_distance_age = standardization.destandardize(
                outputs["distance_age"], constants["distance_age_mean"], constants["distance_age_std"])
            return predicted_log_mass_maps, predicted_distance_age, {"fast": (time.perf_counter() - start) / number_of_maps}

        start = time.perf_counter()
        mass_forward_pass = make_forward_pass(networks["CED"], MASS_NETWORK_BATCH_MAPS)
        predicted_log_mass_maps = standardization.destandardize(
            mass_forward_pass(standardized_flux), constants["mass_mean"], constants["mass_std"]
        )
        mass_seconds = time.perf_counter() - start

        start = time.perf_counter()
        distance_age_forward_pass = make_forward_pass(networks["CNN"], DISTANCE_AGE_NETWORK_BATCH_MAPS)
        # One scalar mean and std are shared by distance and age (paper-CB21.md §6).
        predicted_distance_age = standardization.destandardize(
            distance_age_forward_pass(standardized_flux), constants["distance_age_mean"], constants["distance_age_std"]
        )
        distance_age_seconds = time.perf_counter() - start
        seconds_per_map = {"CED": mass_seconds / number_of_maps, "CNN": distance_age_seconds / number_of_maps}
        return predicted_log_mass_maps, predicted_distance_age, seconds_per_map


def open_model(directory, standardization_directory=None, read_calibration=True):
    """Open a trained model folder: read its architecture, constants, fingerprint and calibration.

    Parameters
    ----------
    directory : str, Path or TrainedModel
        The model folder. An opened `TrainedModel` is returned as it is.
    standardization_directory : str or Path, optional
        Constants to use where the folder carries none of its own (`standardization_directory_for`).
    read_calibration : bool
        False opens the folder as uncalibrated whatever `calibration.json` holds: what
        `calibrate_piDOC.py` needs to replace a calibration made for earlier weights.

    Raises
    ------
    FileNotFoundError, ValueError
        A missing or unknown architecture record, missing network or constant files, or a corrupt
        calibration or one made for other weights; each message names the path.
    """
    if isinstance(directory, TrainedModel):
        return directory
    # Imported here: the calibration module reads the model's fingerprint through this module.
    from pidoc.calibration import uncertainty

    directory = Path(directory)
    architecture = read_architecture(directory)
    constants_directory = standardization_directory_for(directory, standardization_directory)
    constants = standardization.read_standardization(constants_directory)
    try:
        fingerprint = weights_fingerprint(directory, architecture)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"network files missing in model folder {directory}: {error}") from error
    calibration = uncertainty.load_calibration(directory, fingerprint, required=False) if read_calibration else None
    return TrainedModel(directory, architecture, constants, constants_directory, fingerprint, calibration,
                        dihedral_average=read_architecture_record(directory).get(DIHEDRAL_AVERAGE_KEY, False))
