"""make_predictions, the figures and tables, the driver and the input checks, end to end.

The networks are the real π-DOC architectures, freshly built with fixed seeds (untrained) and saved
with `networks.save_model`, so every test runs the code path a user runs; only the numbers are not
physical. The flux and mass maps are small deterministic cluster-like maps made here.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest

import functions
from pidoc import networks
import piDOC_predictions
from pidoc import standardization
from pidoc.model import ARCHITECTURE_FILE, PAPER_ARCHITECTURE, write_architecture_record
from pidoc import io as pidoc_io

# The authors' public standardisation constants (paper-CB21.md §6).
PUBLIC_CONSTANTS = {
    "luminosity_mean": -5.3818855, "luminosity_std": 0.97016734,
    "mass_mean": -0.8509903, "mass_std": 0.44931927,
    "distance_age_mean": 29.628756, "distance_age_std": 32.401917,
}
TEST_DISTANCES_KPC = (15.0, 30.0, 60.0, 80.0)
FIGURES_AND_TABLES = (
    "Mass_map_true_vs_predicted.png", "Total_mass_map_true_vs_predicted.png", "Age_true_vs_predicted.png",
    "Pdf_distances.png", "Mass_to_light_true_vs_predicted.png",
    "predicted_vs_true_mass.txt", "predicted_vs_true_total_mass.txt", "predicted_vs_true_age.txt",
    "distance_predictions_stats.txt", "mass_to_light_stats.txt", "predictions_summary.csv", "predictions_summary.txt",
)


def cluster_like_maps(number_of_maps, seed):
    """Deterministic mock clusters: Plummer-distributed stars seen through 1″ Gaussian seeing.

    Returns log10 flux (L☉ kpc⁻²) and log10 mass (M☉) maps of shape (N, 160, 160, 1) and
    [distance kpc, age Gyr] of shape (N, 2), the distances cycling through CB21's four.
    """
    rng = np.random.default_rng(seed)
    pixel_centres_arcsec = (np.arange(160) + 0.5) * 0.25 - 20.0
    x_arcsec, y_arcsec = np.meshgrid(pixel_centres_arcsec, pixel_centres_arcsec)
    distance_kpc = np.array(TEST_DISTANCES_KPC)[np.arange(number_of_maps) % 4]
    age_gyr = rng.uniform(0.5, 13.5, number_of_maps)
    log_flux, log_mass = [], []
    for distance in distance_kpc:
        stars = 150
        plummer_radius_arcsec = 4.0 * 30.0 / distance
        radius = plummer_radius_arcsec / np.sqrt(rng.uniform(0.05, 1.0, stars) ** (-2.0 / 3.0) - 1.0)
        angle = rng.uniform(0.0, 2.0 * np.pi, stars)
        star_x, star_y = radius * np.cos(angle), radius * np.sin(angle)
        seeing = np.exp(-((x_arcsec[None] - star_x[:, None, None]) ** 2 + (y_arcsec[None] - star_y[:, None, None]) ** 2) / 2.0)
        luminosity_lsun = rng.lognormal(0.0, 1.5, stars)
        mass_msun = rng.lognormal(-0.5, 0.4, stars)
        flux = np.tensordot(luminosity_lsun, seeing, axes=1) / (4.0 * np.pi * distance**2) * 0.05
        mass = np.tensordot(mass_msun, seeing, axes=1) * 0.3
        log_flux.append(np.log10(flux + 1e-8))
        log_mass.append(np.log10(mass + 1e-2))
    distance_age = np.stack([distance_kpc, age_gyr], axis=1).astype(np.float32)
    return (np.array(log_flux, np.float32)[..., None], np.array(log_mass, np.float32)[..., None], distance_age)


@pytest.fixture(scope="session")
def trained_directory(tmp_path_factory):
    """A `trained_piDOC/` with the two π-DOC networks, untrained, seeded, saved as our code saves them."""
    directory = tmp_path_factory.mktemp("trained_piDOC")
    networks.save_model(networks.build_ced(seed=1), directory / "CED.json", directory / "CED.weights.h5")
    networks.save_model(networks.build_cnn(seed=2), directory / "CNN.json", directory / "CNN.weights.h5")
    write_architecture_record(directory, PAPER_ARCHITECTURE)
    return directory


@pytest.fixture(scope="session")
def input_directory(tmp_path_factory):
    """An `input_files/` with four test maps, their truths and the standardisation constants."""
    directory = tmp_path_factory.mktemp("input_files")
    log_flux, log_mass, distance_age = cluster_like_maps(4, seed=7)
    np.save(directory / "luminosity_V_testset.npy", log_flux)
    np.save(directory / "mass_testset.npy", log_mass)
    np.save(directory / "distance_age_testset.npy", distance_age)
    standardization.write_standardization(directory / functions.STANDARDIZATION_SUBDIRECTORY, PUBLIC_CONSTANTS)
    return directory


@pytest.fixture(scope="session")
def driver_run(tmp_path_factory, trained_directory, input_directory):
    """The driver's main on the four maps: its prediction folder and what it returned."""
    prediction_directory = tmp_path_factory.mktemp("predictions")
    returned = piDOC_predictions.main(trained_directory, input_directory, prediction_directory)
    return prediction_directory, returned


def test_the_cluster_like_maps_look_like_real_ones():
    log_flux, log_mass, _ = cluster_like_maps(4, seed=7)
    assert -8.5 < np.median(log_flux) < -4.0 and log_flux.max() < -2.0
    pidoc_io.check_flux_maps(log_flux)


def test_driver_writes_every_figure_and_table(driver_run):
    prediction_directory, _ = driver_run
    mosaics = list(prediction_directory.glob("mosaic_predictions_maps_*-*-*-*.png"))
    assert len(mosaics) == 1 and mosaics[0].stat().st_size > 0
    for file_name in FIGURES_AND_TABLES + (functions.PREDICTED_MASS_FILE, functions.PREDICTED_DISTANCE_AGE_FILE):
        assert (prediction_directory / file_name).stat().st_size > 0, file_name
    assert not list(prediction_directory.glob("*.tmp*")), "temporary files left behind"
    assert "Avg % error" in (prediction_directory / "predicted_vs_true_mass.txt").read_text(encoding="utf-8")
    assert "Mean absolute error (kpc)" in (prediction_directory / "distance_predictions_stats.txt").read_text(encoding="utf-8")


def test_driver_equals_a_direct_call(driver_run, trained_directory, input_directory, tmp_path):
    prediction_directory, (driver_mass, driver_distance_age) = driver_run
    log_flux = np.load(input_directory / "luminosity_V_testset.npy")
    direct_mass, direct_distance_age = functions.make_predictions(trained_directory, input_directory, tmp_path, log_flux)
    assert direct_mass.shape == (4, 160, 160, 1) and direct_mass.dtype == np.float32
    assert direct_distance_age.shape == (4, 2)
    np.testing.assert_allclose(np.load(prediction_directory / functions.PREDICTED_MASS_FILE), direct_mass, atol=1e-6)
    np.testing.assert_allclose(np.load(prediction_directory / functions.PREDICTED_DISTANCE_AGE_FILE), direct_distance_age, atol=1e-5)
    np.testing.assert_array_equal(driver_mass, np.load(prediction_directory / functions.PREDICTED_MASS_FILE))
    np.testing.assert_array_equal(direct_distance_age, np.load(tmp_path / functions.PREDICTED_DISTANCE_AGE_FILE))


def test_the_mosaic_choice_is_seeded():
    assert functions.choose_mosaic_maps(100, 5) == functions.choose_mosaic_maps(100, 5)
    assert functions.choose_mosaic_maps(100, 5) != functions.choose_mosaic_maps(100, 6)
    assert functions.choose_mosaic_maps(3) == [0, 1, 2]


def test_single_and_channel_less_maps_are_accepted(trained_directory, input_directory, tmp_path):
    log_flux = np.load(input_directory / "luminosity_V_testset.npy")
    single_mass, single_distance_age = functions.make_predictions(trained_directory, input_directory, tmp_path, log_flux[0, :, :, 0])
    assert single_mass.shape == (1, 160, 160, 1) and single_distance_age.shape == (1, 2)
    stack_mass, _ = functions.make_predictions(trained_directory, input_directory, tmp_path, log_flux[:2, :, :, 0])
    assert stack_mass.shape == (2, 160, 160, 1)
    np.testing.assert_allclose(stack_mass[:1], single_mass, atol=1e-5)


def test_the_driver_runs_from_another_folder(monkeypatch, tmp_path):
    # The default paths hang on the script's folder, not on the working directory.
    monkeypatch.chdir(tmp_path)
    assert piDOC_predictions.pathtrained == Path(piDOC_predictions.__file__).resolve().parent / "trained_piDOC"
    assert piDOC_predictions.pathinput.is_absolute() and piDOC_predictions.pathprediction.is_absolute()


# --- Bad input: a clear error, and the prediction folder untouched ---------------------------------
def copy_of(directory, tmp_path, name):
    """A writable copy of a fixture folder."""
    return Path(shutil.copytree(directory, tmp_path / name))


def break_nothing(trained, inputs):
    return None


def remove_ced_weights(trained, inputs):
    (trained / "CED.weights.h5").unlink()


def corrupt_cnn_weights(trained, inputs):
    (trained / "CNN.weights.h5").write_bytes(b"not an HDF5 file")


def corrupt_ced_json(trained, inputs):
    (trained / "CED.json").write_text("{ truncated", encoding="utf-8")


def swap_the_networks(trained, inputs):
    for suffix in (".json", ".weights.h5"):
        (trained / f"CED{suffix}").rename(trained / f"swap{suffix}")
        (trained / f"CNN{suffix}").rename(trained / f"CED{suffix}")
        (trained / f"swap{suffix}").rename(trained / f"CNN{suffix}")


def remove_the_architecture_record(trained, inputs):
    (trained / ARCHITECTURE_FILE).unlink()


def name_an_unknown_architecture(trained, inputs):
    (trained / ARCHITECTURE_FILE).write_text('{"architecture": "resnet-from-elsewhere"}', encoding="utf-8")


def remove_a_standardisation_file(trained, inputs):
    (inputs / functions.STANDARDIZATION_SUBDIRECTORY / "stdmasstrain.npy").unlink()


def corrupt_a_standardisation_file(trained, inputs):
    (inputs / functions.STANDARDIZATION_SUBDIRECTORY / "meanluminosityVtrain.npy").write_bytes(b"garbage")


def good_maps(log_flux):
    return log_flux


def with_nan(log_flux):
    log_flux = log_flux.copy()
    log_flux[2, 80, 80, 0] = np.nan
    return log_flux


def with_inf(log_flux):
    log_flux = log_flux.copy()
    log_flux[1, 0, 0, 0] = -np.inf
    return log_flux


BAD_INPUTS = {
    "wrong shape": (lambda log_flux: log_flux[:, :100, :100, :], break_nothing, r"\(4, 100, 100, 1\)"),
    "two channels": (lambda log_flux: np.concatenate([log_flux, log_flux], axis=3), break_nothing, r"\(4, 160, 160, 2\)"),
    "NaN": (with_nan, break_nothing, "NaN or inf.*index 2"),
    "inf": (with_inf, break_nothing, "NaN or inf.*index 1"),
    "linear map": (lambda log_flux: 10.0**log_flux, break_nothing, "linear"),
    "missing weights": (good_maps, remove_ced_weights, "CED.weights.h5"),
    "corrupt weights": (good_maps, corrupt_cnn_weights, "CNN.weights.h5"),
    "corrupt configuration": (good_maps, corrupt_ced_json, "CED.json"),
    "swapped networks": (good_maps, swap_the_networks, "CED"),
    "missing architecture record": (good_maps, remove_the_architecture_record, "has no architecture record .*architecture.json"),
    "unknown architecture": (good_maps, name_an_unknown_architecture, "architecture.json names 'resnet-from-elsewhere'"),
    "missing standardisation file": (good_maps, remove_a_standardisation_file, "stdmasstrain.npy"),
    "corrupt standardisation file": (good_maps, corrupt_a_standardisation_file, "meanluminosityVtrain.npy"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_and_nothing_is_lost(case, trained_directory, input_directory, tmp_path):
    change_maps, break_files, message = BAD_INPUTS[case]
    trained = copy_of(trained_directory, tmp_path, "trained_piDOC")
    inputs = copy_of(input_directory, tmp_path, "input_files")
    break_files(trained, inputs)
    prediction_directory = tmp_path / "predictions"
    prediction_directory.mkdir()
    earlier_prediction = np.full((1, 160, 160, 1), 0.5, np.float32)
    np.save(prediction_directory / functions.PREDICTED_MASS_FILE, earlier_prediction)
    (prediction_directory / "notes.txt").write_text("earlier work", encoding="utf-8")

    log_flux = change_maps(np.load(inputs / "luminosity_V_testset.npy"))
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        functions.make_predictions(trained, inputs, prediction_directory, log_flux)

    assert sorted(path.name for path in prediction_directory.iterdir()) == ["notes.txt", functions.PREDICTED_MASS_FILE]
    np.testing.assert_array_equal(np.load(prediction_directory / functions.PREDICTED_MASS_FILE), earlier_prediction)
    assert (prediction_directory / "notes.txt").read_text(encoding="utf-8") == "earlier work"


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "table.txt"
    path.write_text("old", encoding="utf-8")

    def failing_writer(temporary_path):
        Path(temporary_path).write_text("half", encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError):
        pidoc_io.replace_atomically(path, failing_writer)
    assert path.read_text(encoding="utf-8") == "old" and sorted(tmp_path.iterdir()) == [path]


# --- The authors' published CNN runs through make_predictions ---------------------------------------
def test_the_authors_cnn_runs_through_make_predictions(reference_directory, trained_directory, tmp_path):
    trained = tmp_path / "trained_piDOC"
    trained.mkdir()
    for file_name in ("CNN.json", "CNN_100.h5"):
        shutil.copy(reference_directory / "trained_piDOC" / file_name, trained / file_name)
    # The authors' CED weights are not public; a stand-in CED sits beside their CNN.
    for file_name in ("CED.json", "CED.weights.h5", ARCHITECTURE_FILE):
        shutil.copy(trained_directory / file_name, trained / file_name)
    inputs = tmp_path / "input_files"
    shutil.copytree(reference_directory / "input_files" / functions.STANDARDIZATION_SUBDIRECTORY,
                    inputs / functions.STANDARDIZATION_SUBDIRECTORY)
    reference = np.load(reference_directory / "checks" / "cnn_reference_io.npz")

    _, distance_age = functions.make_predictions(trained, inputs, tmp_path / "predictions", reference["log_flux"])
    # Keras 2 (tf_keras) and our Keras 3 rebuild agree to ~1e-5 in standardised units, i.e. ~3e-4 kpc.
    np.testing.assert_allclose(distance_age, reference["distance_age"], atol=2e-3)


# --- evaluate_piDOC scores a split with the same statistics ------------------------------------------
def test_evaluate_piDOC_writes_its_table_and_numbers(trained_directory, input_directory, driver_run, tmp_path):
    import json

    import evaluate_piDOC

    split = tmp_path / "test_split"
    split.mkdir()
    for split_name, input_name in (("luminosity_V.npy", "luminosity_V_testset.npy"), ("mass.npy", "mass_testset.npy"),
                                   ("distance_age.npy", "distance_age_testset.npy")):
        shutil.copy(input_directory / input_name, split / split_name)
    output = tmp_path / "evaluation"
    statistics = evaluate_piDOC.main([str(split), "--trained-directory", str(trained_directory), "--standardization-directory",
                                      str(input_directory / functions.STANDARDIZATION_SUBDIRECTORY), "--output-directory", str(output)])
    assert "Pixel mass" in (output / "evaluation.txt").read_text(encoding="utf-8")
    numbers = json.loads((output / "evaluation.json").read_text(encoding="utf-8"))
    assert numbers["number_of_maps"] == 4 and len(numbers["distance"]["per_distance"]) == 4
    # The same statistic as the driver's table, from the same functions.
    prediction_directory, _ = driver_run
    driver_table = (prediction_directory / "predicted_vs_true_mass.txt").read_text(encoding="utf-8")
    assert f"{statistics['pixel_mass']['paper']['mean']:.1f}" in driver_table
