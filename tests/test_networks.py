"""Tests of pidoc/networks.py: the two architectures against the authors' files, and model I/O.

The authors' Keras 2.3.1 files (CED.json, CNN.json, CNN_100.h5) and the reference outputs of
their CNN are read from the shared reference folder; tests that need them skip without it.
"""
import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from pidoc import networks
from pidoc.standardization import read_standardization, standardize

EXPECTED_PARAMETERS = {
    "CED": {"total": 2_182_241, "trainable": 2_179_681, "non_trainable": 2_560},
    "CNN": {"total": 517_954, "trainable": 517_250, "non_trainable": 704},
}
EXPECTED_OUTPUT_SHAPES = {"CED": (None, 160, 160, 1), "CNN": (None, 2)}
BUILDERS = {"CED": networks.build_ced, "CNN": networks.build_cnn}
# Layer settings compared between our code and the authors' JSON, wherever a layer has them.
COMPARED_SETTINGS = (
    "filters", "kernel_size", "strides", "padding", "dilation_rate", "activation", "use_bias",
    "pool_size", "size", "interpolation", "rate", "units", "axis", "momentum", "epsilon",
    "center", "scale", "data_format",
)
# The authors' CNN reproduces their reference outputs to ~5e-7 under Keras 3; Keras 2 vs Keras 3
# differ by up to ~4e-6 (tf-stack.md §3), so 1e-4 in standardised units leaves a wide margin.
REFERENCE_TOLERANCE = 1e-4
# The same tolerance after de-standardisation (× the shared std of 32.4), in kpc and Gyr.
DISTANCE_AGE_TOLERANCE = 4e-3


# --- Fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_models():
    """Our two networks, built once for the module with fixed seeds."""
    return {"CED": networks.build_ced(seed=11), "CNN": networks.build_cnn(seed=12)}


@pytest.fixture(scope="module")
def authors_models(built_models, reference_directory, tmp_path_factory):
    """The authors' two graphs loaded from their JSON files under Keras 3.

    The CNN takes the authors' CNN_100.h5. Their CED weights are not public, so the CED takes a
    Keras 2 weights file written from our CED (its layer names and shapes must match theirs).
    """
    trained = reference_directory / "trained_piDOC"
    ced_weights_path = tmp_path_factory.mktemp("authors_ced") / "CED_200.h5"
    write_keras2_weights(built_models["CED"], ced_weights_path)
    return {
        "CED": networks.load_model(trained / "CED.json", ced_weights_path),
        "CNN": networks.load_model(trained / "CNN.json", trained / "CNN_100.h5"),
    }


@pytest.fixture(scope="module")
def reference_standardization(reference_directory):
    return read_standardization(reference_directory / "input_files" / "standardization_files")


@pytest.fixture
def float32_policy_after_test():
    """Restore the float32 policy after a test that changes the global dtype policy."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def flux_maps(count, seed=0):
    """Return `count` deterministic standardised flux maps of shape (count, 160, 160, 1)."""
    return np.random.default_rng(seed).normal(size=(count, 160, 160, 1)).astype(np.float32)


def authors_configuration(reference_directory, name):
    return json.loads((reference_directory / "trained_piDOC" / f"{name}.json").read_text())


def inbound_layer_names(layer_entry):
    """Names of the layers feeding a layer entry of a Keras 2 or a Keras 3 model configuration."""
    nodes = layer_entry["inbound_nodes"]
    if not nodes:
        return []
    if isinstance(nodes[0], list):  # Keras 2: [[[name, node index, tensor index, kwargs], ...]]
        return [inbound[0] for inbound in nodes[0]]
    names = []  # Keras 3: tensors in the call arguments carry their "keras_history".

    def collect(value):
        if isinstance(value, dict):
            if "keras_history" in value:
                names.append(value["keras_history"][0])
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(nodes[0]["args"])
    return names


def plain(value):
    """Turn tuples into lists, as JSON does, so that settings compare across Keras versions."""
    return json.loads(json.dumps(value))


def randomize_weights(model, seed):
    """Give every variable distinctive random values (positive moving variances)."""
    generator = np.random.default_rng(seed)
    for variable in model.weights:
        values = generator.normal(scale=0.05, size=variable.shape)
        if "moving_variance" in variable.path:
            values = np.abs(values) + 0.5
        variable.assign(values.astype(np.float32))


def write_keras2_weights(model, path):
    """Write `model`'s weights in the Keras 2 HDF5 layout: a group per layer, `weight_names` order."""
    with h5py.File(path, "w") as weights_file:
        weights_file.attrs["keras_version"] = b"2.3.1"
        weights_file.attrs["backend"] = b"tensorflow"
        weights_file.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        for layer in model.layers:
            group = weights_file.create_group(layer.name)
            weight_names = [f"{layer.name}_1/{variable.name}:0" for variable in layer.weights]
            group.attrs["weight_names"] = [name.encode() for name in weight_names]
            for name, variable in zip(weight_names, layer.weights):
                group.create_dataset(name, data=np.asarray(variable))


def predict(model, maps):
    return np.asarray(model(maps, training=False))


# --- Architectures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CED", "CNN"])
def test_architecture_matches_authors_json_layer_by_layer(
    name, built_models, authors_models, reference_directory
):
    """Same layer classes, names, order, wiring, settings and output shapes as the authors' JSON."""
    model = built_models[name]
    authors_layers = authors_configuration(reference_directory, name)["config"]["layers"]
    our_layers = json.loads(model.to_json())["config"]["layers"]
    # The authors' graph rebuilt under Keras 3 gives the output shape of each of their layers.
    authors_model = authors_models[name]
    assert [entry["class_name"] for entry in our_layers] == [
        entry["class_name"] for entry in authors_layers
    ]
    layer_pairs = zip(our_layers, authors_layers, model.layers, authors_model.layers)
    for ours, theirs, our_layer, their_layer in layer_pairs:
        assert ours["name"] == theirs["name"]
        assert inbound_layer_names(ours) == inbound_layer_names(theirs), ours["name"]
        for setting in COMPARED_SETTINGS:
            if setting in theirs["config"]:
                assert plain(ours["config"][setting]) == theirs["config"][setting], (ours["name"], setting)
        assert tuple(our_layer.output.shape) == tuple(their_layer.output.shape), ours["name"]
        if "kernel_initializer" in theirs["config"]:
            initializer = our_layer.kernel_initializer
            assert isinstance(initializer, keras.initializers.VarianceScaling)
            settings = (initializer.scale, initializer.mode, initializer.distribution)
            assert settings == (1.0, "fan_avg", "uniform"), ours["name"]
    assert tuple(model.output.shape) == EXPECTED_OUTPUT_SHAPES[name]
    assert model.name == name


@pytest.mark.parametrize("name", ["CED", "CNN"])
def test_parameter_counts_match_the_paper(name, built_models):
    assert networks.count_parameters(built_models[name]) == EXPECTED_PARAMETERS[name]
    assert built_models[name].count_params() == EXPECTED_PARAMETERS[name]["total"]


def test_seed_makes_networks_reproducible():
    first, second = networks.build_cnn(seed=5), networks.build_cnn(seed=5)
    other = networks.build_cnn(seed=6)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])
    with pytest.raises(ValueError, match="seed"):
        networks.build_cnn(seed=1.5)


def test_mixed_precision_policy_applies_and_outputs_stay_float32(
    reference_directory, float32_policy_after_test
):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    authors_cnn = networks.load_trained_network(reference_directory / "trained_piDOC", "CNN")
    for name, model in (("CED", networks.build_ced()), ("CNN", networks.build_cnn()), ("CNN", authors_cnn)):
        hidden_layers = [layer for layer in model.layers[1:-1] if layer.weights]
        assert all(layer.compute_dtype == "bfloat16" for layer in hidden_layers), name
        assert model.layers[-1].compute_dtype == "float32"
        assert model.output.dtype == "float32"
        assert all(variable.dtype == "float32" for variable in model.weights)
        assert networks.count_parameters(model) == EXPECTED_PARAMETERS[name]


def test_module_imports_no_tensorflow():
    """pidoc/networks.py must run on any Keras 3 backend, so it imports no TensorFlow."""
    tree = ast.parse(Path(networks.__file__).read_text())
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append(node.module or "")
    assert not [module for module in imported if module.split(".")[0] == "tensorflow"]


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
def test_networks_build_under_jax_backend():
    script = (
        "import networks\n"
        "for build in (networks.build_ced, networks.build_cnn):\n"
        "    print(networks.count_parameters(build(seed=0))['total'])\n"
    )
    environment = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(networks.__file__).parent, env=environment,
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.split() == ["2182241", "517954"]


# --- The authors' files ----------------------------------------------------------------------------


def test_authors_cnn_reproduces_reference_outputs(reference_directory, reference_standardization):
    """The authors' CNN, loaded under Keras 3, matches what Keras 2 returns on six reference maps.

    The maps are standardised with the authors' scalar log-flux mean and std before the network.
    """
    reference = np.load(reference_directory / "checks" / "cnn_reference_io.npz")
    constants = reference_standardization
    model = networks.load_trained_network(reference_directory / "trained_piDOC", "CNN")
    assert model.name == "CNN"
    assert networks.count_parameters(model) == EXPECTED_PARAMETERS["CNN"]
    inputs = standardize(reference["log_flux"], constants["luminosity_mean"], constants["luminosity_std"])
    outputs = predict(model, inputs)
    np.testing.assert_allclose(outputs, reference["network_output"], rtol=0, atol=REFERENCE_TOLERANCE)
    distance_age = outputs * constants["distance_age_std"] + constants["distance_age_mean"]
    np.testing.assert_allclose(
        distance_age, reference["distance_age"], rtol=0, atol=DISTANCE_AGE_TOLERANCE
    )

    # Our own CNN code with the authors' weights computes the same function.
    ours = networks.build_cnn()
    ours.set_weights(model.get_weights())
    np.testing.assert_array_equal(predict(ours, inputs), outputs)


def test_authors_ced_json_rebuilds_and_takes_keras2_weights(built_models, reference_directory, tmp_path):
    """The authors' CED.json plus a CED_200.h5 dropped into a folder loads and runs like our CED.

    Their CED weights are not public, so the Keras 2 weights file is written from our CED.
    """
    ced = built_models["CED"]
    shutil.copy(reference_directory / "trained_piDOC" / "CED.json", tmp_path / "CED.json")
    write_keras2_weights(ced, tmp_path / "CED_200.h5")
    model = networks.load_trained_network(tmp_path, "CED")
    assert networks.count_parameters(model) == EXPECTED_PARAMETERS["CED"]
    assert [layer.name for layer in model.layers] == [layer.name for layer in ced.layers]
    maps = flux_maps(2)
    np.testing.assert_array_equal(predict(model, maps), predict(ced, maps))


# --- Saving and loading our networks -------------------------------------------------------------


@pytest.mark.parametrize("name", ["CED", "CNN"])
def test_save_and_load_round_trip_bit_exactly(name, tmp_path):
    model = BUILDERS[name](seed=3)
    randomize_weights(model, seed=4)
    networks.save_model(model, tmp_path / f"{name}.json", tmp_path / f"{name}.weights.h5")
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == sorted([f"{name}.json", f"{name}.weights.h5"])  # No temporary file is left.

    maps = flux_maps(2)
    for loaded in (
        networks.load_model(tmp_path / f"{name}.json", tmp_path / f"{name}.weights.h5"),
        networks.load_trained_network(tmp_path, name),
    ):
        assert loaded.name == name
        assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
        for original, restored in zip(model.weights, loaded.weights):
            assert original.path == restored.path
            np.testing.assert_array_equal(np.asarray(original), np.asarray(restored))
        np.testing.assert_array_equal(predict(loaded, maps), predict(model, maps))


class _FailingWeightsLayer(keras.layers.Layer):
    """A layer whose weights cannot be written, as on a full disk."""

    def call(self, inputs):
        return inputs

    def save_own_variables(self, store):
        raise OSError("simulated write failure")


def test_save_model_keeps_existing_files_when_writing_fails(tmp_path):
    json_path, weights_path = tmp_path / "CNN.json", tmp_path / "CNN.weights.h5"
    networks.save_model(networks.build_cnn(seed=0), json_path, weights_path)
    saved_json, saved_weights = json_path.read_bytes(), weights_path.read_bytes()

    # Writing the weights fails after the new JSON has been written to its temporary name.
    inputs = keras.Input(shape=(2,))
    failing_model = keras.Model(inputs, _FailingWeightsLayer()(inputs))
    with pytest.raises(OSError, match="simulated"):
        networks.save_model(failing_model, json_path, weights_path)
    assert json_path.read_bytes() == saved_json and weights_path.read_bytes() == saved_weights
    assert sorted(path.name for path in tmp_path.iterdir()) == ["CNN.json", "CNN.weights.h5"]

    with pytest.raises(ValueError, match="weights.h5"):
        networks.save_model(failing_model, json_path, tmp_path / "CNN.h5")


def test_save_model_creates_missing_folders(tmp_path):
    json_path = tmp_path / "new" / "CNN.json"
    weights_path = tmp_path / "new" / "CNN.weights.h5"
    networks.save_model(networks.build_cnn(seed=0), json_path, weights_path)
    assert networks.find_model_files(tmp_path / "new", "CNN") == (json_path, weights_path)


# --- Finding files -----------------------------------------------------------------------------------


def test_find_model_files_picks_keras3_weights_for_a_keras3_json(tmp_path):
    networks.save_model(networks.build_cnn(seed=0), tmp_path / "CNN.json", tmp_path / "CNN.weights.h5")
    (tmp_path / "CNN_100.h5").write_bytes(b"a stray Keras 2 file")
    expected = (tmp_path / "CNN.json", tmp_path / "CNN.weights.h5")
    assert networks.find_model_files(tmp_path, "CNN") == expected


def test_find_model_files_picks_keras2_weights_for_a_legacy_json(reference_directory, tmp_path):
    trained = reference_directory / "trained_piDOC"
    assert networks.find_model_files(trained, "CNN") == (trained / "CNN.json", trained / "CNN_100.h5")

    shutil.copy(trained / "CED.json", tmp_path / "CED.json")
    (tmp_path / "CED_200.h5").write_bytes(b"")
    (tmp_path / "CED.weights.h5").write_bytes(b"")  # A Keras 3 file never goes with a Keras 2 JSON.
    assert networks.find_model_files(tmp_path, "CED") == (tmp_path / "CED.json", tmp_path / "CED_200.h5")

    (tmp_path / "CED_100.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="CED_100.h5"):
        networks.find_model_files(tmp_path, "CED")


def test_find_model_files_errors_name_the_directory_and_file(reference_directory, tmp_path):
    with pytest.raises(ValueError, match="CED"):
        networks.find_model_files(tmp_path, "mass")
    with pytest.raises(FileNotFoundError, match="missing"):
        networks.find_model_files(tmp_path / "missing", "CNN")
    with pytest.raises(FileNotFoundError, match=r"CED\.json") as error:
        networks.find_model_files(tmp_path, "CED")
    assert str(tmp_path) in str(error.value)

    networks.save_model(networks.build_cnn(seed=0), tmp_path / "CNN.json", tmp_path / "CNN.weights.h5")
    (tmp_path / "CNN.weights.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"CNN\.weights\.h5"):
        networks.find_model_files(tmp_path, "CNN")

    shutil.copy(reference_directory / "trained_piDOC" / "CNN.json", tmp_path / "CNN.json")
    with pytest.raises(FileNotFoundError, match=r"CNN_\*\.h5"):
        networks.find_model_files(tmp_path, "CNN")


# --- Missing and corrupt files ---------------------------------------------------------------------


@pytest.fixture
def authors_cnn_copy(reference_directory, tmp_path):
    """A scratch copy of the authors' CNN files, to damage in a test."""
    for file_name in ("CNN.json", "CNN_100.h5"):
        shutil.copy(reference_directory / "trained_piDOC" / file_name, tmp_path / file_name)
    return tmp_path / "CNN.json", tmp_path / "CNN_100.h5"


def test_missing_files_raise_with_their_names(authors_cnn_copy, tmp_path):
    json_path, weights_path = authors_cnn_copy
    with pytest.raises(FileNotFoundError, match="absent.json"):
        networks.load_model(tmp_path / "absent.json", weights_path)
    with pytest.raises(FileNotFoundError, match="absent.h5"):
        networks.load_model(json_path, tmp_path / "absent.h5")


@pytest.mark.parametrize("content", [b'{"class_name": "Model", "con', b"\xff\xfe", b"[1, 2]"])
def test_corrupt_json_raises_with_its_name(authors_cnn_copy, content):
    json_path, weights_path = authors_cnn_copy
    json_path.write_bytes(content)
    with pytest.raises(ValueError, match="CNN.json"):
        networks.load_model(json_path, weights_path)


def test_corrupt_or_truncated_keras2_weights_raise_with_their_name(authors_cnn_copy):
    json_path, weights_path = authors_cnn_copy
    content = weights_path.read_bytes()
    for damaged in (content[: len(content) // 2], b"not an HDF5 file"):
        weights_path.write_bytes(damaged)
        with pytest.raises(ValueError, match="CNN_100.h5"):
            networks.load_model(json_path, weights_path)


def _drop_weight_names(weights_file):
    """Leave a weighted layer with an empty weight list, as if it had no weights."""
    weights_file["Dense-2"].attrs.create("weight_names", np.array([], "S1"))


def _drop_datasets(weights_file):
    """Remove a layer's arrays while its weight_names still list them."""
    del weights_file["Out/Out_2"]


def _widen_bias(weights_file):
    """Give the output layer three biases instead of two."""
    del weights_file["Out/Out_2/bias:0"]
    weights_file["Out/Out_2"].create_dataset("bias:0", data=np.zeros(3, np.float32))


@pytest.mark.parametrize(
    "damage, message",
    [
        (_drop_weight_names, "no weights for layer 'Dense-2'"),
        (_drop_datasets, "unreadable or incomplete"),
        (_widen_bias, "expects weight shapes"),
    ],
)
def test_incomplete_or_mismatched_keras2_weights_raise_with_their_name(authors_cnn_copy, damage, message):
    json_path, weights_path = authors_cnn_copy
    with h5py.File(weights_path, "a") as weights_file:
        damage(weights_file)
    with pytest.raises(ValueError, match=message) as error:
        networks.load_model(json_path, weights_path)
    assert "CNN_100.h5" in str(error.value)


def test_keras2_weights_of_another_network_are_refused(authors_cnn_copy, reference_directory):
    _, weights_path = authors_cnn_copy
    with pytest.raises(ValueError, match="CNN_100.h5"):
        networks.load_model(reference_directory / "trained_piDOC" / "CED.json", weights_path)


def test_corrupt_or_mismatched_keras3_weights_raise_with_their_name(tmp_path):
    networks.save_model(networks.build_cnn(seed=0), tmp_path / "CNN.json", tmp_path / "CNN.weights.h5")
    networks.save_model(networks.build_ced(seed=0), tmp_path / "CED.json", tmp_path / "CED.weights.h5")
    with pytest.raises(ValueError, match="CED.weights.h5"):
        networks.load_model(tmp_path / "CNN.json", tmp_path / "CED.weights.h5")

    content = (tmp_path / "CNN.weights.h5").read_bytes()
    for damaged in (content[: len(content) // 2], b"not an HDF5 file"):
        (tmp_path / "CNN.weights.h5").write_bytes(damaged)
        with pytest.raises(ValueError, match="CNN.weights.h5"):
            networks.load_model(tmp_path / "CNN.json", tmp_path / "CNN.weights.h5")

    # A Keras 3 configuration refuses a weights file not named like a Keras 3 one.
    (tmp_path / "CNN_100.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="CNN_100.h5"):
        networks.load_model(tmp_path / "CNN.json", tmp_path / "CNN_100.h5")
