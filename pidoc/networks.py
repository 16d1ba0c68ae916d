"""The two π-DOC networks, and reading and writing them.

Chardin & Bianchini (2021, hereafter CB21) use two Keras networks that read a globular cluster's
V-band flux map (160 × 160 pixels of standardised log10 flux):

* the CED, a convolutional encoder-decoder that predicts the standardised log10 mass map;
* the CNN, a convolutional network that predicts standardised [distance kpc, age Gyr].

`build_ced` and `build_cnn` write both architectures in plain Keras 3 code that follows the
authors' Keras 2.3.1 JSON files layer by layer (paper-CB21.md §7): the same layer types, order,
widths, kernel sizes, paddings, activations and layer names, so the parameter counts are the
published 2,182,241 (CED) and 517,954 (CNN). Only public `keras` APIs are used, so the module
runs under any Keras 3 backend (TensorFlow, JAX, PyTorch).

The rest of the module saves and loads networks. Our own networks are written as a Keras 3 JSON
file plus a `.weights.h5` file. The authors' files (`CED.json` + `CED_200.h5`, `CNN.json` +
`CNN_100.h5`) are Keras 2.3.1 files that Keras 3 cannot read directly (tf-stack.md §2); they are
rebuilt here from their layer list with public layers, and their HDF5 weights are copied by layer
name. Every failure raises `FileNotFoundError` or `ValueError` with the offending file in the
message.
"""
import json
import os
from pathlib import Path

import h5py
import keras
import numpy as np

from pidoc.frame import MAP_SHAPE

# --- Input and output shapes (paper-CB21.md §2) --------------------------------------------------
NETWORK_NAMES = ("CED", "CNN")

# --- Regularisation shared by both networks (paper-CB21.md §7) -------------------------------------
# The authors' spatial-dropout rate is 10^-2.5 after every hidden convolution, which suggests a
# hyper-parameter search on a logarithmic grid; the CNN's head adds an ordinary dropout of 0.1.
SPATIAL_DROPOUT_RATE = 10**-2.5
HEAD_DROPOUT_RATE = 0.1
BATCH_NORMALIZATION_MOMENTUM = 0.99
BATCH_NORMALIZATION_EPSILON = 1e-3

# --- CED widths (paper-CB21.md §7a) ------------------------------------------------------------------
# Four encoder blocks at 160, 80, 40 and 20 pixels, a bottleneck at 10 pixels, then three decoder
# levels at 20, 40 and 80 pixels. The decoder is narrower than the encoder at 40 and 80 pixels.
CED_ENCODER_FILTERS = (32, 64, 128, 128)
CED_BOTTLENECK_FILTERS = 128
CED_DECODER_FILTERS = (128, 64, 32)
CED_KERNEL_SIZE = 3

# --- CNN widths (paper-CB21.md §7b) --------------------------------------------------------------------
# (filters, kernel size) of the four 'valid' convolution blocks: 160 → 151 → 75 → 66 → 33 → 29 → 14
# → 10 → 5 pixels, then three dense layers and the two outputs [distance, age].
CNN_CONVOLUTION_BLOCKS = ((16, 10), (32, 10), (64, 5), (128, 5))
CNN_DENSE_UNITS = (64, 32, 16)
CNN_OUTPUTS = 2

# The keys and class name that mark a JSON file written by Keras 2 (the authors' files say
# {"class_name": "Model", "keras_version": "2.3.1", "backend": "tensorflow"}).
LEGACY_MODEL_CLASS_NAME = "Model"
# Keras 2 configuration keys that Keras 3 layers reject, per layer class. They carry no meaning for
# these layers: `trainable` on a layer without weights, and `noise_shape`, which must be None.
KERAS2_ONLY_KEYS = {
    "SpatialDropout1D": ("trainable", "noise_shape"),
    "SpatialDropout2D": ("trainable", "noise_shape"),
    "SpatialDropout3D": ("trainable", "noise_shape"),
}
KERAS3_WEIGHTS_SUFFIX = ".weights.h5"


class _LayerNamer:
    """Hand out layer names as Keras 2 did: `conv2d_1`, `conv2d_2`, … counted per prefix.

    The authors' JSON files keep Keras 2's automatic names for most layers; reproducing them lets
    a layer of our network be matched by name to the same layer in their files and weights.
    """

    def __init__(self):
        self.counts = {}

    def __call__(self, prefix):
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}_{self.counts[prefix]}"


class SeedSequence:
    """Hand out one integer seed per random layer: seed, seed + 1, …, or always None.

    Each kernel initialiser and each dropout layer gets its own seed, so a seeded network is
    reproducible while no two layers draw the same random numbers.
    """

    def __init__(self, seed):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        self.next_seed = None if seed is None else int(seed)

    def __call__(self):
        if self.next_seed is None:
            return None
        seed = self.next_seed
        self.next_seed += 1
        return seed


def _glorot_uniform(seeds):
    """Return the Glorot-uniform kernel initialiser of the authors' layers (paper-CB21.md §7)."""
    return keras.initializers.GlorotUniform(seed=seeds())


def _batch_normalization(names):
    """Return a batch-normalisation layer with the authors' momentum 0.99 and epsilon 1e-3."""
    return keras.layers.BatchNormalization(
        momentum=BATCH_NORMALIZATION_MOMENTUM,
        epsilon=BATCH_NORMALIZATION_EPSILON,
        name=names("batch_normalization"),
    )


def _convolution_unit(tensor, filters, kernel_size, padding, names, seeds, convolution_name=None):
    """Apply Conv2D (ReLU) → BatchNormalization → SpatialDropout2D, the unit of both networks.

    CB21's hidden convolutions all apply ReLU inside the convolution, then batch normalisation,
    then spatial dropout at 10^-2.5 (paper-CB21.md §7).
    """
    tensor = keras.layers.Conv2D(
        filters,
        kernel_size,
        padding=padding,
        activation="relu",
        kernel_initializer=_glorot_uniform(seeds),
        name=convolution_name or names("conv2d"),
    )(tensor)
    tensor = _batch_normalization(names)(tensor)
    return keras.layers.SpatialDropout2D(
        SPATIAL_DROPOUT_RATE, seed=seeds(), name=names("spatial_dropout2d")
    )(tensor)


def build_ced(seed=None):
    """Build the CED, π-DOC's encoder-decoder from flux map to mass map (CB21; paper-CB21.md §7a).

    Every hidden convolution is 3×3, 'same' padding, ReLU, followed by batch normalisation and
    spatial dropout. Each encoder block runs two convolutions, concatenates the second with the
    first and max-pools by 2. Each decoder level upsamples by 2 (nearest neighbour), concatenates
    the first-convolution features of the matching encoder block, convolves, concatenates the
    pooled output of the encoder block above, and convolves again. The last level ends in a single
    linear 3×3 filter.

    Parameters
    ----------
    seed : int or None
        Seed of the kernel initialisers and the dropout layers (each layer gets its own seed
        derived from it). None draws from Keras' global random state.

    Returns
    -------
    keras.Model
        The model named "CED": input (None, 160, 160, 1) standardised log10 flux, output
        (None, 160, 160, 1) standardised log10 mass, 2,182,241 parameters.
    """
    names = _LayerNamer()
    seeds = SeedSequence(seed)
    flux_map = keras.Input(shape=MAP_SHAPE, name=names("input"))

    # Encoder: keep each block's first-convolution output and pooled output for the skips.
    first_convolutions, pooled_outputs = [], []
    tensor = flux_map
    for filters in CED_ENCODER_FILTERS:
        first = _convolution_unit(tensor, filters, CED_KERNEL_SIZE, "same", names, seeds)
        second = _convolution_unit(first, filters, CED_KERNEL_SIZE, "same", names, seeds)
        # The authors concatenate the second convolution before the first (their JSON's order).
        tensor = keras.layers.Concatenate(name=names("concatenate"))([second, first])
        tensor = keras.layers.MaxPooling2D(2, padding="same", name=names("max_pooling2d"))(tensor)
        first_convolutions.append(first)
        pooled_outputs.append(tensor)

    tensor = _convolution_unit(tensor, CED_BOTTLENECK_FILTERS, CED_KERNEL_SIZE, "same", names, seeds)

    # Decoder: at 20, 40 and 80 pixels, the encoder blocks 4, 3 and 2 provide the skips; the
    # pooled skip is the output of the block one level finer (pooled to this resolution).
    for level, filters in zip((3, 2, 1), CED_DECODER_FILTERS):
        tensor = keras.layers.UpSampling2D(2, name=names("up_sampling2d"))(tensor)
        tensor = keras.layers.Concatenate(name=names("concatenate"))(
            [tensor, first_convolutions[level]]
        )
        tensor = _convolution_unit(tensor, filters, CED_KERNEL_SIZE, "same", names, seeds)
        tensor = keras.layers.Concatenate(name=names("concatenate"))(
            [tensor, pooled_outputs[level - 1]]
        )
        tensor = _convolution_unit(tensor, filters, CED_KERNEL_SIZE, "same", names, seeds)

    # Full resolution: upsample, merge the first convolution of the first block, and map to one
    # linear channel. The output layer computes in float32, so that under a mixed-precision
    # policy the loss is taken in float32; this does not change any weight.
    tensor = keras.layers.UpSampling2D(2, name=names("up_sampling2d"))(tensor)
    tensor = keras.layers.Concatenate(name=names("concatenate"))([tensor, first_convolutions[0]])
    mass_map = keras.layers.Conv2D(
        1,
        CED_KERNEL_SIZE,
        padding="same",
        activation="linear",
        kernel_initializer=_glorot_uniform(seeds),
        dtype="float32",
        name=names("conv2d"),
    )(tensor)
    return keras.Model(flux_map, mass_map, name="CED")


def build_cnn(seed=None):
    """Build the CNN, π-DOC's network from flux map to [distance, age] (CB21; paper-CB21.md §7b).

    Four blocks of Conv2D ('valid', ReLU) → BatchNormalization → SpatialDropout2D → ReLU →
    MaxPool 2×2, then Flatten → Dropout 0.1 → three Dense (ReLU) → BatchNormalization → ReLU
    blocks of 64, 32 and 16 units, and a linear Dense layer of two outputs. The ReLU applied twice
    around batch normalisation is the authors' design, kept as published.

    Parameters
    ----------
    seed : int or None
        Seed of the kernel initialisers and the dropout layers (each layer gets its own seed
        derived from it). None draws from Keras' global random state.

    Returns
    -------
    keras.Model
        The model named "CNN": input (None, 160, 160, 1) standardised log10 flux, output
        (None, 2) standardised [distance, age], 517,954 parameters.
    """
    names = _LayerNamer()
    seeds = SeedSequence(seed)
    flux_map = keras.Input(shape=MAP_SHAPE, name=names("input"))

    tensor = flux_map
    for block, (filters, kernel_size) in enumerate(CNN_CONVOLUTION_BLOCKS, start=1):
        tensor = _convolution_unit(
            tensor, filters, kernel_size, "valid", names, seeds, convolution_name=f"Conv-{block}"
        )
        tensor = keras.layers.Activation("relu", name=names("activation"))(tensor)
        tensor = keras.layers.MaxPooling2D(2, padding="valid", name=f"Pool-{block}")(tensor)

    tensor = keras.layers.Flatten(name="Flat")(tensor)
    tensor = keras.layers.Dropout(HEAD_DROPOUT_RATE, seed=seeds(), name=names("dropout"))(tensor)
    for block, units in enumerate(CNN_DENSE_UNITS, start=1):
        tensor = keras.layers.Dense(
            units, activation="relu", kernel_initializer=_glorot_uniform(seeds), name=f"Dense-{block}"
        )(tensor)
        tensor = _batch_normalization(names)(tensor)
        tensor = keras.layers.Activation("relu", name=names("activation"))(tensor)

    # The output layer computes in float32 under any mixed-precision policy (see build_ced).
    distance_age = keras.layers.Dense(
        CNN_OUTPUTS,
        activation="linear",
        kernel_initializer=_glorot_uniform(seeds),
        dtype="float32",
        name="Out",
    )(tensor)
    return keras.Model(flux_map, distance_age, name="CNN")


def count_parameters(model):
    """Count a model's parameters as Keras' summary does.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    dict
        "total", "trainable" and "non_trainable" (batch-normalisation moving statistics) counts.
    """
    trainable = sum(int(np.prod(variable.shape)) for variable in model.trainable_weights)
    non_trainable = sum(int(np.prod(variable.shape)) for variable in model.non_trainable_weights)
    return {"total": trainable + non_trainable, "trainable": trainable, "non_trainable": non_trainable}


# --- Saving ------------------------------------------------------------------------------------------


def save_model(model, json_path, weights_path):
    """Write a model as a Keras 3 JSON configuration and a `.weights.h5` weights file.

    Both files are first written under temporary names in their target folders (created if
    missing) and then renamed over the targets, so an existing pair is never left truncated by a
    failed write.

    Parameters
    ----------
    model : keras.Model
    json_path : str or Path
        Where the configuration goes, conventionally `trained_piDOC/{CED,CNN}.json`.
    weights_path : str or Path
        Where the weights go; the name must end in ".weights.h5", as Keras 3 requires.

    Raises
    ------
    ValueError
        If `weights_path` does not end in ".weights.h5".
    """
    json_path, weights_path = Path(json_path), Path(weights_path)
    if not weights_path.name.endswith(KERAS3_WEIGHTS_SUFFIX):
        raise ValueError(f"weights file {weights_path} must end in '{KERAS3_WEIGHTS_SUFFIX}'")
    # The temporary names match the repository's `*.tmp.*` ignore pattern, and the weights'
    # temporary name keeps the suffix Keras 3 insists on.
    json_path.parent.mkdir(parents=True, exist_ok=True)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    process_tag = f"{os.getpid()}.tmp"
    temporary_json_path = json_path.with_name(f"{json_path.name}.{process_tag}.json")
    weights_stem = weights_path.name[: -len(KERAS3_WEIGHTS_SUFFIX)]
    temporary_weights_path = weights_path.with_name(f"{weights_stem}.{process_tag}{KERAS3_WEIGHTS_SUFFIX}")
    try:
        temporary_json_path.write_text(model.to_json(), encoding="utf-8")
        model.save_weights(temporary_weights_path)
        os.replace(temporary_weights_path, weights_path)
        os.replace(temporary_json_path, json_path)
    finally:
        for temporary_path in (temporary_json_path, temporary_weights_path):
            if temporary_path.exists():
                temporary_path.unlink()


# --- Loading -----------------------------------------------------------------------------------------


def _read_json(json_path):
    """Read a model's JSON configuration; raise FileNotFoundError or ValueError naming the file."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"model configuration file not found: {json_path}")
    try:
        configuration = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"model configuration file {json_path} is not valid JSON: {error}") from error
    if not isinstance(configuration, dict) or not isinstance(configuration.get("config"), dict):
        raise ValueError(f"model configuration file {json_path} holds no Keras model configuration")
    return configuration


def _is_legacy_configuration(configuration):
    """Tell whether a parsed model JSON was written by Keras 2 (the authors' files are)."""
    return (
        str(configuration.get("keras_version", "")).startswith("2")
        and configuration.get("class_name") == LEGACY_MODEL_CLASS_NAME
    )


def _legacy_layer(class_name, layer_configuration, is_output, json_path):
    """Create the public Keras 3 layer that a Keras 2 layer configuration describes.

    Pinned dtypes are dropped so that a global mixed-precision policy applies; only the output
    layer is pinned to float32, as in `build_ced` and `build_cnn`.
    """
    layer_class = getattr(keras.layers, class_name, None)
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise ValueError(f"model configuration file {json_path}: unknown layer class '{class_name}'")
    arguments = {key: value for key, value in layer_configuration.items() if key != "dtype"}
    for key in KERAS2_ONLY_KEYS.get(class_name, ()):
        value = arguments.pop(key, None)
        if key == "noise_shape" and value is not None:
            raise ValueError(
                f"model configuration file {json_path}: layer '{arguments.get('name')}' has a "
                f"noise_shape {value}, which Keras 3's {class_name} cannot reproduce"
            )
    if is_output:
        arguments["dtype"] = "float32"
    try:
        return layer_class(**arguments)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"model configuration file {json_path}: cannot create layer '{arguments.get('name')}' "
            f"({class_name}) under Keras 3: {error}"
        ) from error


def _model_from_legacy_configuration(configuration, json_path):
    """Rebuild a Keras 2 functional model from its layer list with public Keras 3 layers.

    Keras 3's `model_from_json` cannot read Keras 2 files (tf-stack.md §2), so the graph is rebuilt
    here layer by layer: InputLayer's `batch_input_shape` becomes `keras.Input(batch_shape=...)`
    and each other layer is called on the outputs of its inbound layers. Only single-use layers
    with a single output are supported, which covers every Keras 2 functional model without
    shared layers, π-DOC's two networks included. The model is named after the JSON file, since
    Keras 2 stored only its automatic name ("model_1").
    """
    model_configuration = configuration["config"]
    try:
        layer_entries = model_configuration["layers"]
        input_names = [entry[0] for entry in model_configuration["input_layers"]]
        output_names = [entry[0] for entry in model_configuration["output_layers"]]
    except (KeyError, TypeError, IndexError) as error:
        raise ValueError(
            f"model configuration file {json_path} lacks a Keras 2 layer list, input_layers or "
            f"output_layers: {error!r}"
        ) from error

    tensors = {}
    for entry in layer_entries:
        try:
            class_name, layer_name = entry["class_name"], entry["name"]
            layer_configuration, inbound_nodes = entry["config"], entry["inbound_nodes"]
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"model configuration file {json_path}: malformed layer entry: {error!r}"
            ) from error

        if class_name == "InputLayer":
            if "batch_input_shape" not in layer_configuration:
                raise ValueError(
                    f"model configuration file {json_path}: input '{layer_name}' has no batch_input_shape"
                )
            tensors[layer_name] = keras.Input(
                batch_shape=tuple(layer_configuration["batch_input_shape"]), name=layer_name
            )
            continue

        if len(inbound_nodes) != 1:
            raise ValueError(
                f"model configuration file {json_path}: layer '{layer_name}' is called "
                f"{len(inbound_nodes)} times; only layers used once are supported"
            )
        inputs = []
        for inbound in inbound_nodes[0]:
            source_name, node_index, tensor_index = inbound[0], inbound[1], inbound[2]
            call_arguments = inbound[3] if len(inbound) > 3 else {}
            if source_name not in tensors or node_index != 0 or tensor_index != 0 or call_arguments:
                raise ValueError(
                    f"model configuration file {json_path}: layer '{layer_name}' has an "
                    f"unsupported or out-of-order input {inbound!r}"
                )
            inputs.append(tensors[source_name])
        layer = _legacy_layer(class_name, layer_configuration, layer_name in output_names, json_path)
        tensors[layer_name] = layer(inputs if len(inputs) > 1 else inputs[0])

    missing = [name for name in input_names + output_names if name not in tensors]
    if missing:
        raise ValueError(
            f"model configuration file {json_path}: input/output layers {missing} are not defined"
        )
    inputs = [tensors[name] for name in input_names]
    outputs = [tensors[name] for name in output_names]
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=Path(json_path).stem,
    )


def _decode(name):
    """Return an HDF5 attribute string as str (Keras 2 stores them as bytes)."""
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)


def _read_legacy_weights(weights_path):
    """Read a Keras 2 HDF5 weights file into {layer name: [arrays in the layer's weight order]}.

    The order comes from each layer group's `weight_names` attribute (kernel, bias; gamma, beta,
    moving mean, moving variance), not from HDF5's alphabetical listing (tf-stack.md §2).
    """
    try:
        with h5py.File(weights_path, "r") as weights_file:
            # A whole-model Keras 2 file nests the weights under "model_weights".
            group = weights_file["model_weights"] if "model_weights" in weights_file else weights_file
            if "layer_names" not in group.attrs:
                raise ValueError(
                    f"weights file {weights_path} is not a Keras 2 HDF5 weights file (no layer_names)"
                )
            weights_by_layer = {}
            for layer_name in (_decode(name) for name in group.attrs["layer_names"]):
                layer_group = group[layer_name]
                weight_names = [_decode(name) for name in layer_group.attrs.get("weight_names", [])]
                if weight_names:
                    weights_by_layer[layer_name] = [np.asarray(layer_group[name]) for name in weight_names]
            return weights_by_layer
    except (OSError, KeyError) as error:
        raise ValueError(f"weights file {weights_path} is unreadable or incomplete: {error}") from error


def _load_legacy_weights(model, weights_path):
    """Copy Keras 2 HDF5 weights into `model` by layer name, strictly.

    Every layer with weights must find them in the file with matching count and shapes, and the
    file must hold no weights for a layer the model lacks; otherwise ValueError names the file.
    """
    weights_by_layer = _read_legacy_weights(weights_path)
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in weights_by_layer:
            raise ValueError(f"weights file {weights_path} holds no weights for layer '{layer.name}'")
        values = weights_by_layer.pop(layer.name)
        expected_shapes = [tuple(variable.shape) for variable in layer.weights]
        found_shapes = [value.shape for value in values]
        if expected_shapes != found_shapes:
            raise ValueError(
                f"weights file {weights_path}: layer '{layer.name}' expects weight shapes "
                f"{expected_shapes}, the file holds {found_shapes}"
            )
        layer.set_weights(values)
    if weights_by_layer:
        raise ValueError(
            f"weights file {weights_path} holds weights for layers the model lacks: "
            f"{sorted(weights_by_layer)}"
        )


def load_model(json_path, weights_path):
    """Load a network from its JSON configuration and weights file.

    A Keras 2 JSON file (the authors' `CED.json`, `CNN.json`) is rebuilt with public Keras 3 layers
    and its HDF5 weights (`CED_200.h5`, `CNN_100.h5`) are copied by layer name. In the rebuilt
    model pinned float32 dtypes are dropped, except on the output layer, so a global
    mixed-precision policy applies as it does to `build_ced` and `build_cnn`; the model is named
    after the JSON file ("CNN" for CNN.json) instead of Keras 2's automatic "model_1".

    A Keras 3 JSON file (written by `save_model`) is read with `keras.models.model_from_json` and
    its `.weights.h5` with `load_weights`; it keeps the dtype policies recorded when it was saved.

    Parameters
    ----------
    json_path : str or Path
        The model's JSON configuration.
    weights_path : str or Path
        Keras 2 HDF5 weights for a Keras 2 configuration, `.weights.h5` for a Keras 3 one.

    Returns
    -------
    keras.Model

    Raises
    ------
    FileNotFoundError
        If either file is missing.
    ValueError
        If a file is corrupt or incomplete, or the weights do not fit the configuration; the
        message names the file.
    """
    json_path, weights_path = Path(json_path), Path(weights_path)
    configuration = _read_json(json_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"weights file not found: {weights_path}")

    if _is_legacy_configuration(configuration):
        model = _model_from_legacy_configuration(configuration, json_path)
        _load_legacy_weights(model, weights_path)
        return model

    if not weights_path.name.endswith(KERAS3_WEIGHTS_SUFFIX):
        raise ValueError(
            f"weights file {weights_path} must end in '{KERAS3_WEIGHTS_SUFFIX}' to go with the "
            f"Keras 3 configuration {json_path}"
        )
    # Keras raises several exception types for a configuration or weights file it cannot use;
    # each is turned into a ValueError that names the file.
    try:
        model = keras.models.model_from_json(json.dumps(configuration))
    except Exception as error:
        raise ValueError(
            f"model configuration file {json_path} cannot be rebuilt by Keras 3: {error}"
        ) from error
    try:
        model.load_weights(weights_path)
    except Exception as error:
        raise ValueError(
            f"weights file {weights_path} is unreadable or does not fit the model in {json_path}: {error}"
        ) from error
    return model


def find_model_files(directory, name):
    """Find the configuration and weights of network `name` ("CED" or "CNN") in `directory`.

    The configuration is `{name}.json`. If it is a Keras 3 file, the weights are
    `{name}.weights.h5`; if it is the authors' Keras 2 file, the weights are the single
    `{name}_*.h5` beside it (the authors ship `CED_200.h5` and `CNN_100.h5`, named after the
    training epoch). So the authors' files can be dropped into `trained_piDOC/` unchanged.

    Parameters
    ----------
    directory : str or Path
    name : {"CED", "CNN"}

    Returns
    -------
    tuple of Path
        (json_path, weights_path).

    Raises
    ------
    FileNotFoundError
        If the directory, the JSON file or the weights file is missing; the message names the
        directory and the file names looked for.
    ValueError
        If `name` is unknown, the JSON is corrupt, or several Keras 2 weights files match.
    """
    if name not in NETWORK_NAMES:
        raise ValueError(f"network name must be one of {NETWORK_NAMES}, got {name!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"trained-network directory not found: {directory}")
    json_path = directory / f"{name}.json"
    if not json_path.is_file():
        raise FileNotFoundError(f"no configuration '{name}.json' for network {name} in {directory}")

    if not _is_legacy_configuration(_read_json(json_path)):
        weights_path = directory / f"{name}{KERAS3_WEIGHTS_SUFFIX}"
        if not weights_path.is_file():
            raise FileNotFoundError(
                f"{json_path} is a Keras 3 configuration, but its weights '{weights_path.name}' "
                f"are not in {directory}"
            )
        return json_path, weights_path

    # Keras 2 weights are named after the epoch, as in CNN_100.h5; Keras 3 files are excluded.
    candidates = sorted(
        path
        for path in directory.glob(f"{name}_*.h5")
        if path.is_file() and not path.name.endswith(KERAS3_WEIGHTS_SUFFIX)
    )
    if not candidates:
        raise FileNotFoundError(
            f"{json_path} is a Keras 2 configuration, but no Keras 2 weights file '{name}_*.h5' "
            f"(such as the authors' {name}_<epoch>.h5) is in {directory}"
        )
    if len(candidates) > 1:
        raise ValueError(
            f"several Keras 2 weights files for network {name} in {directory}: "
            f"{[path.name for path in candidates]}; keep exactly one '{name}_*.h5'"
        )
    return json_path, candidates[0]


def load_trained_network(directory, name):
    """Load trained network `name` ("CED" or "CNN") from `directory`.

    Combines `find_model_files` and `load_model`; see them for the files accepted and the errors.

    Parameters
    ----------
    directory : str or Path
        A folder such as `trained_piDOC/`.
    name : {"CED", "CNN"}

    Returns
    -------
    keras.Model
    """
    json_path, weights_path = find_model_files(directory, name)
    return load_model(json_path, weights_path)
