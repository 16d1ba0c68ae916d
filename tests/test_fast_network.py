"""Tests of pidoc/fast_network.py: shapes, precision, seeding, weight files and the FLOP count.

Every test builds the network on the CPU and runs it on two or three small random maps.
"""
import keras
import numpy as np
import pytest

from pidoc import fast_network

# Exact counts of the architecture "fast-s2d-v1"; a change of a setting must change these on purpose.
EXPECTED_PARAMETERS = 2_315_284
EXPECTED_FORWARD_GFLOP = 1.147227136
MAPS = 3
# Largest |bf16 − float32| of the mass output allowed when the learned residual is zero: the flux
# skip (the affine) and the sum run in float32, so nothing of the flux goes through bfloat16.
FLOAT32_SKIP_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def flux_maps():
    return np.random.default_rng(13).standard_normal((MAPS,) + fast_network.MAP_SHAPE, dtype=np.float32)


@pytest.fixture(scope="module")
def network():
    return fast_network.build_fast_network(seed=0)


@pytest.fixture
def dtype_policy():
    """Set a Keras dtype policy for one test and always restore float32 after it."""
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


def predict(model, flux):
    outputs = model.predict_on_batch(flux)
    return {name: np.asarray(value) for name, value in outputs.items()}


def test_architecture_name_is_a_nonempty_string():
    assert isinstance(fast_network.ARCHITECTURE_NAME, str) and fast_network.ARCHITECTURE_NAME


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_outputs_have_the_named_shapes_and_are_float32(policy, dtype_policy, flux_maps):
    dtype_policy(policy)
    model = fast_network.build_fast_network(seed=0)
    assert model.input_shape == (None, 160, 160, 1)
    assert {name: tuple(tensor.shape) for name, tensor in zip(model.output_names, model.outputs)} == {
        "mass": (None, 160, 160, 1), "distance_age": (None, 2)}
    outputs = predict(model, flux_maps)
    assert set(outputs) == {"mass", "distance_age"}
    assert outputs["mass"].shape == (MAPS, 160, 160, 1) and outputs["distance_age"].shape == (MAPS, 2)
    assert all(value.dtype == np.float32 and np.isfinite(value).all() for value in outputs.values())
    output_layers = ("flux_skip", "mass_residual_convolution", "mass_residual_depth_to_space", "mass", "distance_age")
    assert all(model.get_layer(name).compute_dtype == "float32" for name in output_layers)
    expected_hidden = "bfloat16" if policy == "mixed_bfloat16" else "float32"
    assert model.get_layer("stem_convolution").compute_dtype == expected_hidden


def test_parameter_count_is_exact(network):
    assert network.count_params() == EXPECTED_PARAMETERS
    assert sum(int(np.prod(weight.shape)) for weight in network.non_trainable_weights) == 0


def test_forward_gflop_count_is_exact(network):
    assert fast_network.forward_gflop_per_map(network) == pytest.approx(EXPECTED_FORWARD_GFLOP, abs=1e-12)


def test_gflop_count_follows_the_layer_shapes():
    inputs = keras.Input((8, 8, 3))
    tensor = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)             # 4×4×4 out: 9·3·4·16 MAC
    tensor = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(tensor)  # 9·4·2·16 MAC
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(tensor))                    # 128·5 MAC
    model = keras.Model(inputs, outputs)
    assert fast_network.forward_gflop_per_map(model) == pytest.approx(2 * (1728 + 1152 + 640) / 1e9, abs=1e-15)


def test_same_seed_gives_identical_weights_and_outputs(network, flux_maps):
    twin = fast_network.build_fast_network(seed=0)
    for left, right in zip(network.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)
    first, second = predict(network, flux_maps), predict(twin, flux_maps)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_different_seed_gives_different_weights_and_outputs(network, flux_maps):
    other = fast_network.build_fast_network(seed=1)
    kernels = [(left, right) for left, right in zip(network.get_weights(), other.get_weights()) if left.ndim > 1]
    different = [not np.array_equal(left, right) for left, right in kernels]
    # Every random kernel differs; only the flux skip (a constant 1) is the same.
    assert sum(different) == len(kernels) - 1
    first, second = predict(network, flux_maps), predict(other, flux_maps)
    assert not np.allclose(first["mass"], second["mass"]) and not np.allclose(first["distance_age"], second["distance_age"])


def test_invalid_seed_is_refused():
    with pytest.raises(ValueError, match="seed"):
        fast_network.build_fast_network(seed=1.5)


def test_weights_file_round_trip_gives_identical_predictions(network, flux_maps, tmp_path):
    path = tmp_path / "fast.weights.h5"
    network.save_weights(path)
    restored = fast_network.build_fast_network(seed=7)
    restored.load_weights(path)
    first, second = predict(network, flux_maps), predict(restored, flux_maps)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


def test_keras_file_round_trip_restores_the_custom_layers(network, flux_maps, tmp_path):
    path = tmp_path / "fast.keras"
    network.save(path)
    restored = keras.saving.load_model(path)
    assert [type(layer).__name__ for layer in restored.layers].count("DepthToSpace") == 3
    np.testing.assert_array_equal(predict(network, flux_maps)["mass"], predict(restored, flux_maps)["mass"])


def test_space_to_depth_and_depth_to_space_are_inverse(flux_maps):
    blocks = fast_network.SpaceToDepth(4)(flux_maps)
    assert tuple(blocks.shape) == (MAPS, 40, 40, 16)
    np.testing.assert_array_equal(np.asarray(blocks)[0, 0, 0, :4], flux_maps[0, 0, :4, 0])
    np.testing.assert_array_equal(np.asarray(fast_network.DepthToSpace(4)(blocks)), flux_maps)


def test_flux_skip_reaches_the_mass_output_in_float32(dtype_policy, flux_maps):
    # With the learned residual switched off, the bf16 network's mass must equal the float32 one's.
    weights = {}
    for policy in ("mixed_bfloat16", "float32"):
        dtype_policy(policy)
        model = fast_network.build_fast_network(seed=0)
        residual = model.get_layer("mass_residual_convolution")
        residual.set_weights([np.zeros_like(weight) for weight in residual.get_weights()])
        model.get_layer("flux_skip").set_weights([np.full((1, 1, 1, 1), 2.2, np.float32), np.array([-0.3], np.float32)])
        weights[policy] = predict(model, flux_maps)["mass"]
    np.testing.assert_allclose(weights["mixed_bfloat16"], 2.2 * flux_maps - 0.3, atol=FLOAT32_SKIP_TOLERANCE)
    np.testing.assert_allclose(weights["mixed_bfloat16"], weights["float32"], atol=FLOAT32_SKIP_TOLERANCE)
