"""The general (Milky Way preset) model's machinery: the dask engine, massive clusters, the preset's
checks, model folders that carry their own standardisation constants, and per-mass-decade scores."""
import numpy as np
import pytest

import functions
import make_mock_clusters
from pidoc.mocks import clusters as mock_clusters
from test_mock_clusters import file_digests, linear
from pidoc import model as pidoc_model

# A tiny split of the Milky Way preset: small, young clusters with the coarse stellar tables.
TINY_PRESET_FLAGS = [
    "--preset", "milky-way", "--stars-range", "1500", "3000", "--training-clusters", "3", "--validation-clusters", "0",
    "--test-clusters", "1", "--calibration-clusters", "0", "--boundary-clusters", "0", "--views-per-snapshot", "2",
    "--age-range-gyr", "0.05", "0.3", "--test-age-range-gyr", "0.05", "0.3", "--coarse-stellar-tables", "--seed", "11",
    "--metallicity-feh-values", "-2.0", "-1.5",
]


def test_two_dask_workers_write_the_bytes_of_one_process(tmp_path):
    make_mock_clusters.main(["--output-directory", str(tmp_path / "one"), "--workers", "1"] + TINY_PRESET_FLAGS)
    make_mock_clusters.main(["--output-directory", str(tmp_path / "two"), "--workers", "2"] + TINY_PRESET_FLAGS)
    one, two = file_digests(tmp_path / "one"), file_digests(tmp_path / "two")
    assert one == two and "train/luminosity_V.npy" in one and "test/mass.npy" in one
    distances = np.load(tmp_path / "one" / "test" / "distance_age.npy")[:, 0]
    assert sorted(distances.tolist()) == [10.0, 15.0, 30.0, 60.0, 80.0]


def test_a_massive_cluster_has_its_particles_in_the_field_as_its_field_mass():
    # 3×10⁵ M☉ in 20,000 particles with a 5-pc half-mass radius at 10 kpc, where the 40″ field is
    # 1.9 pc wide: most of the cluster lies outside the field.
    rng = np.random.default_rng(5)
    positions_pc = rng.normal(0.0, 5.0 / 1.53, (20_000, 3))
    mass_msun = rng.uniform(5.0, 25.0, positions_pc.shape[0])
    luminosity_lsun = rng.uniform(1.0, 30.0, positions_pc.shape[0])
    rotation = mock_clusters.random_rotation(rng)
    offset_arcsec = np.array([0.7, -0.4])
    _, log_mass, field = mock_clusters.observe(positions_pc, mass_msun, luminosity_lsun, 10.0, rotation, offset_arcsec, 0.0)
    arcsec = rotation.apply(positions_pc)[:, :2] * mock_clusters.ARCSEC_PER_RADIAN / 1e4 + offset_arcsec
    in_field = np.all((arcsec >= -20.0) & (arcsec < 20.0), axis=1)
    assert 0.05 < in_field.mean() < 0.5
    assert field["mass_in_field_msun"] == pytest.approx(mass_msun[in_field].sum(), rel=1e-12)
    unsmoothed = linear(log_mass)
    unsmoothed[unsmoothed <= mock_clusters.MASS_FLOOR_MSUN * 1.0001] = 0.0
    assert unsmoothed.sum() == pytest.approx(mass_msun[in_field].sum(), rel=1e-6)


@pytest.mark.parametrize("flags, named", [
    (["--preset", "andromeda"], "--preset"),
    (["--stars-range", "5000", "100"], "--stars-range"),
    (["--metallicity-feh-values", "-3.0"], "--metallicity-feh-values"),
    (["--concentration-w0-range", "0", "7"], "--concentration-w0-range"),
    (["--test-age-range-gyr", "10", "15"], "--test-age-range-gyr"),
    (["--galactocentric-radius-range-kpc", "-1", "20"], "--galactocentric-radius-range-kpc"),
    (["--initial-half-mass-radius-range-pc", "2", "1"], "--initial-half-mass-radius-range-pc"),
])
def test_bad_preset_or_flag_values_raise_value_error_naming_them(flags, named, tmp_path):
    with pytest.raises(ValueError, match=named):
        make_mock_clusters.main(["--output-directory", str(tmp_path / "bad"), "--workers", "1"] + TINY_PRESET_FLAGS + flags)


def test_default_preset_keeps_cb21_settings_and_milky_way_preset_spans_real_masses():
    cb21 = make_mock_clusters.parse_arguments([])
    assert cb21.stars == 50_000 and cb21.stars_range is None and cb21.test_distances_kpc == [15.0, 30.0, 60.0, 80.0]
    milky_way = make_mock_clusters.parse_arguments(["--preset", "milky-way"])
    assert milky_way.stars_range == [50_000, 3_500_000]
    assert milky_way.test_distances_kpc == [10.0, 15.0, 30.0, 60.0, 80.0]
    assert milky_way.training_clusters * milky_way.snapshots_per_cluster * milky_way.views_per_snapshot >= 20_000
    draws = [make_mock_clusters.cluster_plan(milky_way, "train", index)[0].initial_stars for index in range(200)]
    assert min(draws) >= 50_000 and max(draws) <= 3_500_000 and max(draws) > 10 * min(draws)


def test_standardisation_beside_the_weights_wins(tmp_path):
    fallback = tmp_path / "input_files" / functions.STANDARDIZATION_SUBDIRECTORY
    assert pidoc_model.standardization_directory_for(tmp_path / "model", fallback) == fallback
    (tmp_path / "model" / functions.STANDARDIZATION_SUBDIRECTORY).mkdir(parents=True)
    assert pidoc_model.standardization_directory_for(tmp_path / "model", fallback) == (
        tmp_path / "model" / functions.STANDARDIZATION_SUBDIRECTORY)


def test_warm_start_begins_from_the_given_networks_and_carries_their_constants(tmp_path):
    import keras

    from pidoc import networks
    from pidoc import standardization
    import train_piDOC

    data_directory = tmp_path / "data"
    make_mock_clusters.main(["--output-directory", str(data_directory), "--workers", "1"] + TINY_PRESET_FLAGS
                            + ["--training-clusters", "1", "--validation-clusters", "1", "--test-clusters", "0"])
    project = functions.Path(__file__).resolve().parents[1]
    reproduction_constants = project / "input_files" / functions.STANDARDIZATION_SUBDIRECTORY
    train_piDOC.main(["--data-directory", str(data_directory), "--networks", "cnn", "--epochs", "1", "--batch-size", "8",
                      "--learning-rate", "1e-12", "--runs-directory", str(tmp_path / "runs"),
                      "--output-directory", str(tmp_path / "general"), "--seed", "3",
                      "--initial-weights-directory", str(project / "trained_piDOC"),
                      "--standardization-directory", str(reproduction_constants)])
    keras.config.set_dtype_policy("float32")
    started_from = networks.load_trained_network(project / "trained_piDOC", "CNN")
    fine_tuned = networks.load_trained_network(tmp_path / "general", "CNN")
    kernels = [(layer.name, layer.get_weights()[0]) for layer in started_from.layers if "conv2d" in layer.name or "dense" in layer.name]
    for name, kernel in kernels:
        np.testing.assert_allclose(fine_tuned.get_layer(name).get_weights()[0], kernel, atol=1e-6)
    assert standardization.read_standardization(tmp_path / "general" / functions.STANDARDIZATION_SUBDIRECTORY) == (
        standardization.read_standardization(reproduction_constants))
    with pytest.raises(ValueError, match="--initial-weights-directory"):
        train_piDOC.parse_arguments(["--initial-weights-directory", str(tmp_path / "nowhere")])


def test_mass_decade_scores_group_maps_by_present_mass_and_pool_the_milky_way_range():
    rng = np.random.default_rng(8)
    log_flux = rng.uniform(-7.0, -3.0, (6, 160, 160, 1))
    true_log_mass = rng.uniform(-1.5, 1.5, (6, 160, 160, 1))
    predicted_log_mass = true_log_mass + rng.normal(0.0, 0.01, true_log_mass.shape)
    true_distance_age = np.array([[10.0, 12.0], [15.0, 11.0], [30.0, 13.0], [60.0, 10.5], [80.0, 12.5], [10.0, 11.5]])
    predicted_distance_age = true_distance_age * np.array([1.1, 1.0])
    present_log_mass = np.array([3.6, 4.2, 4.8, 5.1, 5.9, 6.3])
    rows = functions.mass_decade_statistics(present_log_mass, log_flux, true_log_mass, predicted_log_mass,
                                            true_distance_age, predicted_distance_age)
    counts = {row["label"]: row["number_of_maps"] for row in rows}
    assert counts == {"10^3–10^4 M☉": 1, "10^4–10^5 M☉": 2, "10^5–10^6 M☉": 2, "10^6–10^7 M☉": 1,
                      "pooled 10^4–10^6 M☉": 4, "all maps": 6}
    for row in rows:
        assert row["distance_relative_percent"] == pytest.approx(10.0)
        assert row["mass_to_light_percent"] < 5.0
    assert len(functions.mass_decade_table_rows(rows)) == len(rows) + 2
    with pytest.raises(ValueError, match="present_log_mass"):
        functions.mass_decade_statistics(present_log_mass[:3], log_flux, true_log_mass, predicted_log_mass,
                                         true_distance_age, predicted_distance_age)
