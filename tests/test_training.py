"""Training of both networks on a tiny mock data set: learning, export, resume and bad input."""
import csv
import json

import numpy as np
import pytest

import make_mock_clusters
from pidoc import frame
from pidoc.mocks import clusters as mock_clusters
from pidoc import networks
from pidoc import standardization
import train_piDOC

# A tiny data set from the real generator: 16 training and 8 validation maps of 2,000-star
# clusters observed young, with the coarse stellar tables (as in test_mock_clusters.py).
TINY_DATA_FLAGS = [
    "--stars", "2000", "--training-clusters", "2", "--validation-clusters", "1", "--test-clusters", "1",
    "--snapshots-per-cluster", "1", "--test-snapshots-per-cluster", "1", "--views-per-snapshot", "8",
    "--calibration-clusters", "0", "--boundary-clusters", "0",
    "--age-range-gyr", "0.05", "0.3", "--workers", "1", "--coarse-stellar-tables", "--seed", "11",
]


@pytest.fixture(scope="module")
def data_directory(tmp_path_factory):
    directory = tmp_path_factory.mktemp("training") / "data"
    make_mock_clusters.main(["--output-directory", str(directory)] + TINY_DATA_FLAGS)
    return directory


def training_settings(data_directory, tmp_path, network, epochs, batch_size, *extra):
    return train_piDOC.parse_arguments([
        "--data-directory", str(data_directory), "--networks", network, "--epochs", str(epochs),
        "--batch-size", str(batch_size), "--runs-directory", str(tmp_path / "runs"),
        "--output-directory", str(tmp_path / "trained"), "--seed", "3", *extra])


def read_log(tmp_path, network):
    with open(tmp_path / "runs" / network / "training_log.csv", newline="") as log_file:
        return list(csv.DictReader(log_file))


def untrained_validation_loss(data_directory, network, batch_size, seed=3):
    """Validation loss of the network as built, before any training step, with the trainer's seeds."""
    import keras
    keras.config.set_dtype_policy("float32")
    model = train_piDOC.build_compiled_network(network, 1e-3, seed)
    constants = standardization.read_standardization(data_directory / "standardization_files")
    validation = train_piDOC.MapBatches(*train_piDOC.load_split(data_directory / "validation", network),
                                        constants, network, batch_size)
    return train_piDOC.validation_loss(model, validation), validation


def test_augmentation_applies_one_dihedral_transform_to_map_and_target_alike():
    maps = np.random.default_rng(0).standard_normal((8, 160, 160, 1)).astype(np.float32)
    constants = {"luminosity_mean": 0.0, "luminosity_std": 1.0, "mass_mean": 0.0, "mass_std": 1.0}
    batches = train_piDOC.MapBatches(maps, maps.copy(), constants, "ced", 8, np.random.default_rng(5))
    batches.shuffle()
    flux, mass = batches[0]
    np.testing.assert_array_equal(flux, mass)
    # Every output is one of the eight symmetries of its own input map.
    symmetries = [frame.dihedral_transform(maps[0], rotations, mirror) for rotations in range(4) for mirror in (False, True)]
    assert len({symmetry.tobytes() for symmetry in symmetries}) == 8
    assert any(np.array_equal(flux[0], symmetry) for symmetry in symmetries)
    # The same seed gives the same batches.
    again = train_piDOC.MapBatches(maps, maps.copy(), constants, "ced", 8, np.random.default_rng(5))
    again.shuffle()
    np.testing.assert_array_equal(again[0][0], flux)


def test_noise_augmentation_adds_seeded_seeing_smoothed_noise_to_training_maps_only():
    # Flat maps of log F = −3 with identity constants: the batch is the noisy log map itself. The
    # noise of 1σ at 24–25 mag arcsec⁻² per pixel (3–8×10⁻⁵ L☉ kpc⁻²) comes back, smoothed like the
    # seeing (neighbours correlated), the same from the same seed, and never in validation batches.
    maps = np.full((4, 160, 160, 1), -3.0, dtype=np.float32)
    constants = {"luminosity_mean": 0.0, "luminosity_std": 1.0, "mass_mean": 0.0, "mass_std": 1.0}

    def first_batch(generator, noise_range):
        batches = train_piDOC.MapBatches(maps, maps.copy(), constants, "ced", 4, generator,
                                         noise_range_mag_arcsec2=noise_range)
        batches.shuffle()
        return batches[0][0]

    noisy = first_batch(np.random.default_rng(5), (24.0, 25.0))
    np.testing.assert_array_equal(noisy, first_batch(np.random.default_rng(5), (24.0, 25.0)))
    noise = 10.0 ** noisy.astype(np.float64) - 1e-3
    low, high = (float(mock_clusters.surface_brightness_to_pixel_flux(level)) for level in (25.0, 24.0))
    assert all(0.97 * low < per_map.std() < 1.03 * high for per_map in noise)
    assert np.corrcoef(noise[0, :, 1:].ravel(), noise[0, :, :-1].ravel())[0, 1] > 0.95
    np.testing.assert_array_equal(first_batch(None, (24.0, 25.0)), maps)
    np.testing.assert_array_equal(first_batch(np.random.default_rng(5), None), maps)


def test_ced_training_lowers_validation_loss_and_exports_the_best_network(data_directory, tmp_path):
    initial_loss, validation = untrained_validation_loss(data_directory, "ced", 2)
    settings = training_settings(data_directory, tmp_path, "ced", 2, 2, "--max-training-maps", "8")
    train_piDOC.train_network("ced", settings)
    rows = read_log(tmp_path, "ced")
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert list(rows[0]) == list(train_piDOC.LOG_COLUMNS)
    best_loss = min(float(row["val_loss"]) for row in rows)
    assert best_loss < initial_loss
    # The exported network is the best epoch's: reloaded, it gives that epoch's validation loss.
    exported = networks.load_model(tmp_path / "trained" / "CED.json", tmp_path / "trained" / "CED.weights.h5")
    exported.compile(loss="mean_squared_error")
    assert train_piDOC.validation_loss(exported, validation) == pytest.approx(best_loss, rel=1e-5)
    assert (tmp_path / "runs" / "ced" / "learning_curves.png").stat().st_size > 0


def test_mixed_precision_run_from_the_command_line_exports_a_float32_network(data_directory, tmp_path):
    train_piDOC.main(["--data-directory", str(data_directory), "--networks", "cnn", "--epochs", "1",
                      "--batch-size", "8", "--mixed-precision", "mixed_bfloat16", "--seed", "3",
                      "--runs-directory", str(tmp_path / "runs"), "--output-directory", str(tmp_path / "trained")])
    import keras
    keras.config.set_dtype_policy("float32")
    exported = networks.load_trained_network(tmp_path / "trained", "CNN")
    assert {layer.dtype_policy.name for layer in exported.layers} == {"float32"}
    assert np.isfinite(float(read_log(tmp_path, "cnn")[0]["val_loss"]))


def test_resume_continues_from_the_saved_epoch_with_the_same_optimizer_state(data_directory, tmp_path):
    import keras
    # An uninterrupted two-epoch run is the reference.
    reference, reference_state = train_piDOC.train_network(
        "cnn", training_settings(data_directory, tmp_path / "reference", "cnn", 2, 4))
    # The interrupted run stops after epoch 1; its checkpoint holds the optimiser's state exactly.
    interrupted, state = train_piDOC.train_network("cnn", training_settings(data_directory, tmp_path, "cnn", 1, 4))
    run_directory = tmp_path / "runs" / "cnn"
    saved = json.loads((run_directory / "training_state.json").read_text())
    assert saved["epoch"] == 1 and saved["optimizer_iterations"] == 4
    restored = train_piDOC.build_compiled_network("cnn", 1e-3, seed=99)
    restored.load_weights(run_directory / saved["checkpoint"])
    for original, loaded in zip(interrupted.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(original), keras.ops.convert_to_numpy(loaded))
    # Started again with two epochs, it continues at epoch 2 and ends where the reference ends.
    resumed, state = train_piDOC.train_network("cnn", training_settings(data_directory, tmp_path, "cnn", 2, 4))
    assert state["epoch"] == 2 and train_piDOC.optimizer_steps(resumed) == 8
    assert [int(row["epoch"]) for row in read_log(tmp_path, "cnn")] == [1, 2]
    assert sorted(path.name for path in run_directory.glob("*.keras")) == ["checkpoint_epoch0002.keras"]
    for expected, found in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)
    assert state["best_val_loss"] == pytest.approx(reference_state["best_val_loss"], rel=1e-5)
    # A finished run started again trains nothing more, nor does one whose time budget is spent.
    _, state = train_piDOC.train_network("cnn", training_settings(data_directory, tmp_path, "cnn", 2, 4))
    assert state["epoch"] == 2 and len(read_log(tmp_path, "cnn")) == 2
    _, state = train_piDOC.train_network("cnn", training_settings(data_directory, tmp_path, "cnn", 3, 4, "--max-minutes", "0"))
    assert state["epoch"] == 2 and len(read_log(tmp_path, "cnn")) == 2


def test_bad_data_directories_raise_errors_that_name_the_path(data_directory, tmp_path):
    missing = tmp_path / "no_such_data"
    with pytest.raises(FileNotFoundError, match="no_such_data"):
        train_piDOC.main(["--data-directory", str(missing), "--networks", "cnn",
                          "--runs-directory", str(tmp_path / "runs"), "--output-directory", str(tmp_path / "trained")])
    split = tmp_path / "broken" / "train"
    split.mkdir(parents=True)
    np.save(split / "luminosity_V.npy", np.zeros((3, 80, 80, 1), np.float32))
    with pytest.raises(ValueError, match=r"luminosity_V\.npy has shape \(3, 80, 80, 1\)"):
        train_piDOC.load_split(split, "cnn")
    np.save(split / "luminosity_V.npy", np.zeros((3, 160, 160, 1), np.float32))
    with pytest.raises(FileNotFoundError, match=r"broken/train/distance_age\.npy"):
        train_piDOC.load_split(split, "cnn")
    np.save(split / "distance_age.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="3 maps but distance_age.npy has 2"):
        train_piDOC.load_split(split, "cnn")
