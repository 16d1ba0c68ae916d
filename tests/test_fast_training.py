"""The general model's fast network through the trainer and the model folder, on a tiny mock data set.

Resume, export, loading by path and prediction are those of the real code; the data are the real
generator's at tiny sizes (test_training.py's flags).
"""
import json

import numpy as np
import pytest

import functions
import make_mock_clusters
import train_piDOC
from pidoc import frame, standardization
from pidoc.model import ARCHITECTURE_FILE, DIHEDRAL_AVERAGE_KEY, FAST_ARCHITECTURE, FAST_WEIGHTS_FILE, open_model
from test_training import TINY_DATA_FLAGS, read_log, training_settings


@pytest.fixture(scope="module")
def data_directory(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fast_training") / "data"
    make_mock_clusters.main(["--output-directory", str(directory)] + TINY_DATA_FLAGS)
    return directory


def test_two_data_sets_train_on_the_union_with_its_own_constants(data_directory, tmp_path):
    single = standardization.read_standardization(data_directory / "standardization_files")
    # The union of a split with itself has the split's own constants (float32 files against float64 sums).
    pooled = standardization.training_standardization([data_directory / "train", data_directory / "train"])
    assert pooled == pytest.approx(single, rel=1e-5)
    flux, mass, distance_age = train_piDOC.load_split([data_directory / "train"] * 2, "fast")
    number_of_maps = len(np.load(data_directory / "train" / "luminosity_V.npy"))
    assert flux.shape == mass.shape == (2 * number_of_maps, 160, 160, 1) and distance_age.shape == (2 * number_of_maps, 2)


def test_the_fast_network_trains_exports_and_predicts_by_its_path(data_directory, tmp_path):
    settings = training_settings(data_directory, tmp_path, "fast", 1, 4)
    _, state = train_piDOC.train_network("fast", settings)
    assert state["epoch"] == 1 and np.isfinite(state["best_val_loss"])
    trained = tmp_path / "trained"
    record = json.loads((trained / ARCHITECTURE_FILE).read_text())
    assert record["architecture"] == FAST_ARCHITECTURE and record["weights"] == FAST_WEIGHTS_FILE
    # The folder carries the constants it was trained with, so its path alone is enough.
    assert (trained / "standardization_files").is_dir()
    model = open_model(trained)
    assert model.architecture == FAST_ARCHITECTURE and model.dihedral_average
    assert list(model.fingerprint) == [FAST_WEIGHTS_FILE, "prediction"]
    log_flux = np.load(data_directory / "validation" / "luminosity_V.npy")[:3]
    predicted_mass, predicted_distance_age = functions.make_predictions(trained, data_directory, tmp_path / "predictions", log_flux)
    assert predicted_mass.shape == (3, 160, 160, 1) and predicted_distance_age.shape == (3, 2)
    assert np.all(np.isfinite(predicted_mass)) and np.all(np.isfinite(predicted_distance_age))
    # The exported float32 weights give the trainer's validation loss back.
    validation_arrays = train_piDOC.load_split(data_directory / "validation", "fast")
    validation = train_piDOC.MapBatches(validation_arrays[0], validation_arrays[1:], model.constants, "fast", 4)
    recompiled = train_piDOC.build_compiled_network("fast", 1e-3, seed=0)
    recompiled.set_weights(model.networks["fast"].get_weights())
    assert train_piDOC.validation_loss(recompiled, validation) == pytest.approx(state["best_val_loss"], rel=1e-4)


def test_a_fast_checkpoint_resumes_to_the_weights_of_an_uninterrupted_run(data_directory, tmp_path):
    reference, reference_state = train_piDOC.train_network(
        "fast", training_settings(data_directory, tmp_path / "reference", "fast", 2, 4))
    train_piDOC.train_network("fast", training_settings(data_directory, tmp_path, "fast", 1, 4))
    resumed, state = train_piDOC.train_network("fast", training_settings(data_directory, tmp_path, "fast", 2, 4))
    assert state["epoch"] == 2 and train_piDOC.optimizer_steps(resumed) == train_piDOC.optimizer_steps(reference)
    for expected, found in zip(reference.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)
    assert state["best_val_loss"] == pytest.approx(reference_state["best_val_loss"], rel=1e-5)


def test_a_learning_rate_reset_applies_once_and_keeps_the_best_epoch(data_directory, tmp_path):
    train_piDOC.train_network("fast", training_settings(data_directory, tmp_path, "fast", 1, 4))
    _, state = train_piDOC.train_network("fast", training_settings(data_directory, tmp_path, "fast", 2, 4,
                                                                    "--reset-learning-rate", "2.5e-4"))
    rows = read_log(tmp_path, "fast")
    assert [float(row["learning_rate"]) for row in rows] == [1e-3, 2.5e-4]
    assert state["learning_rate_reset"] == 2.5e-4 and state["best_epoch"] in (1, 2)
    # A plateau drop after the reset must survive later calls that repeat the flag.
    state_path = tmp_path / "runs" / "fast" / "training_state.json"
    saved = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**saved, "learning_rate": 1.25e-4}))
    train_piDOC.train_network("fast", training_settings(data_directory, tmp_path, "fast", 3, 4,
                                                        "--reset-learning-rate", "2.5e-4"))
    assert float(read_log(tmp_path, "fast")[-1]["learning_rate"]) == 1.25e-4


def test_a_fast_folder_without_its_weights_is_refused_with_the_file_named(data_directory, tmp_path):
    trained = tmp_path / "trained"
    train_piDOC.train_network("fast", training_settings(data_directory, tmp_path, "fast", 1, 4))
    (trained / FAST_WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=FAST_WEIGHTS_FILE):
        open_model(trained)
    (trained / ARCHITECTURE_FILE).write_text(json.dumps({"architecture": FAST_ARCHITECTURE}))
    with pytest.raises(ValueError, match="does not name its weights file"):
        open_model(trained)


def test_an_unfinished_training_split_is_refused_unless_its_finished_clusters_are_asked_for(data_directory, tmp_path):
    import shutil

    split = tmp_path / "train"
    shutil.copytree(data_directory / "train", split)
    records = sorted((split / "progress").glob("cluster_*.json"))
    maps_per_cluster = len(json.loads(records[0].read_text()))
    records[0].unlink()   # cluster 0 "not finished yet": its rows would be zeros
    with pytest.raises(ValueError, match="incomplete: 1 of 2 clusters finished"):
        train_piDOC.load_split(split, "fast")
    flux, mass, distance_age = train_piDOC.load_split(split, "fast", finished_clusters_only=True)
    complete_flux = np.load(data_directory / "train" / "luminosity_V.npy")
    assert len(flux) == maps_per_cluster
    np.testing.assert_array_equal(flux, complete_flux[maps_per_cluster:2 * maps_per_cluster])


def test_a_joined_split_is_its_folders_in_order_with_only_their_finished_clusters(data_directory, tmp_path):
    import shutil

    partial = tmp_path / "partial_train"
    shutil.copytree(data_directory / "train", partial)
    records = sorted((partial / "progress").glob("cluster_*.json"))
    maps_per_cluster = len(json.loads(records[0].read_text()))
    records[1].unlink()   # cluster 1 unfinished: only cluster 0's rows may enter
    folders = [data_directory / "validation", partial, data_directory / "train"]
    joined = train_piDOC.load_split(folders, "fast", finished_clusters_only=True)
    parts = [train_piDOC.load_split(folder, "fast", finished_clusters_only=True) for folder in folders]
    assert len(parts[1][0]) == maps_per_cluster
    for joined_array, part_arrays in zip(joined, zip(*parts)):
        np.testing.assert_array_equal(joined_array, np.concatenate(part_arrays))
    # A subset is drawn over the joined rows and keeps their order.
    subset = train_piDOC.load_split(folders, "fast", maximum_maps=5, seed=3, finished_clusters_only=True)
    rows = np.sort(np.random.default_rng(3).choice(len(joined[0]), 5, replace=False))
    np.testing.assert_array_equal(subset[2], joined[2][rows])


def test_the_age_weight_scales_the_age_column_of_the_distance_age_loss():
    assert train_piDOC.distance_age_loss(1.0) == "mean_squared_error"
    loss = train_piDOC.distance_age_loss(4.0)
    errors = np.array([[1.0, 1.0], [0.0, 2.0]], dtype="float32")
    # Row 1: (1 + 4·1) / 2; row 2: (0 + 4·4) / 2.
    found = np.asarray(loss(np.zeros_like(errors), errors))
    np.testing.assert_allclose(found, [2.5, 8.0])


def test_a_run_cannot_change_its_age_weight_half_way(data_directory, tmp_path):
    with pytest.raises(ValueError, match="--age-loss-weight must be positive"):
        training_settings(data_directory, tmp_path, "fast", 1, 4, "--age-loss-weight", "0")
    train_piDOC.train_network("fast", training_settings(data_directory, tmp_path, "fast", 1, 4))
    with pytest.raises(ValueError, match=r"training_state.json was trained with --age-loss-weight 1.0, not 4.0"):
        train_piDOC.train_network("fast", training_settings(data_directory, tmp_path, "fast", 2, 4, "--age-loss-weight", "4"))
    # A new run from the first one's networks may use another weight.
    _, state = train_piDOC.train_network("fast", training_settings(
        data_directory, tmp_path / "weighted", "fast", 1, 4, "--age-loss-weight", "4",
        "--initial-weights-directory", str(tmp_path / "trained")))
    assert state["epoch"] == 1 and np.isfinite(state["best_val_loss"]) and state["settings"]["age_loss_weight"] == 4.0


def test_the_dihedral_average_is_the_same_for_every_orientation_and_is_part_of_the_fingerprint(data_directory, tmp_path):
    train_piDOC.train_network("fast", training_settings(data_directory, tmp_path, "fast", 1, 4))
    trained = tmp_path / "trained"
    log_flux = np.load(data_directory / "validation" / "luminosity_V.npy")[:2]
    turned = np.ascontiguousarray(frame.dihedral_transform(log_flux, 1, True))
    averaged = open_model(trained)
    mass, distance_age, _ = averaged.predict(log_flux)
    turned_mass, turned_distance_age, _ = averaged.predict(turned)
    # Turning the input only permutes the eight orientations the average runs over.
    np.testing.assert_allclose(frame.inverse_dihedral_transform(turned_mass, 1, True), mass, atol=1e-5)
    np.testing.assert_allclose(turned_distance_age, distance_age, rtol=1e-5)
    # One orientation alone (the record's flag off) is not invariant, and its fingerprint differs.
    record = json.loads((trained / ARCHITECTURE_FILE).read_text())
    (trained / ARCHITECTURE_FILE).write_text(json.dumps({**record, DIHEDRAL_AVERAGE_KEY: False}))
    single = open_model(trained)
    single_mass, single_distance_age, _ = single.predict(log_flux)
    turned_single_mass, _, _ = single.predict(turned)
    assert np.max(np.abs(frame.inverse_dihedral_transform(turned_single_mass, 1, True) - single_mass)) > 1e-3
    assert np.max(np.abs(single_mass - mass)) > 1e-4 and single.fingerprint != averaged.fingerprint
    (trained / ARCHITECTURE_FILE).write_text(json.dumps({**record, DIHEDRAL_AVERAGE_KEY: "yes"}))
    with pytest.raises(ValueError, match="must be true or false"):
        open_model(trained)


def test_repeats_draw_each_data_set_its_number_of_times_per_epoch(data_directory, tmp_path):
    # The same data set twice, the second drawn twice per epoch: every map of the second copy appears
    # twice in an epoch's order, every map of the first once, and the epoch is 3 × N maps long.
    number_of_maps = len(np.load(data_directory / "train" / "luminosity_V.npy"))
    settings = training_settings(data_directory, tmp_path, "fast", 1, 4, "--repeats", "1", "2")
    settings.data_directory = [str(data_directory)] * 2
    repeats = train_piDOC.map_repeats(settings, [data_directory / "train"] * 2)
    assert repeats.tolist() == [1] * number_of_maps + [2] * number_of_maps
    flux, mass, distance_age = train_piDOC.load_split([data_directory / "train"] * 2, "fast")
    constants = standardization.read_standardization(data_directory / "standardization_files")
    batches = train_piDOC.MapBatches(flux, (mass, distance_age), constants, "fast", 4, np.random.default_rng(0), repeats)
    batches.shuffle()
    counts = np.bincount(batches.order, minlength=2 * number_of_maps)
    assert counts.tolist() == repeats.tolist() and len(batches) == -(-3 * number_of_maps // 4)
    _, state = train_piDOC.train_network("fast", settings)
    assert state["epoch"] == 1 and np.isfinite(state["best_val_loss"]) and state["settings"]["repeats"] == [1, 2]
    with pytest.raises(ValueError, match="--repeats has 1 counts for 2 data sets"):
        settings.repeats = [2]
        train_piDOC.map_repeats(settings, [data_directory / "train"] * 2)
    with pytest.raises(ValueError, match="at least 1"):
        settings.repeats = [1, 0]
        train_piDOC.map_repeats(settings, [data_directory / "train"] * 2)
