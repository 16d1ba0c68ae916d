"""Physics and bookkeeping of the mock-cluster generator, at tiny sizes."""
import hashlib
import itertools

import numpy as np
import pytest

import make_mock_clusters
from pidoc.mocks import clusters as mock_clusters

# A tiny data set: small clusters observed young (a 2,000-star cluster dissolves within a few Gyr
# at these Galactocentric radii, so the ages stay below 0.3 Gyr), with the coarse stellar tables.
TINY_FLAGS = [
    "--stars", "2000", "--training-clusters", "2", "--validation-clusters", "1", "--test-clusters", "1",
    "--snapshots-per-cluster", "1", "--test-snapshots-per-cluster", "1", "--views-per-snapshot", "2",
    "--calibration-clusters", "1", "--calibration-snapshots-per-cluster", "1",
    "--boundary-clusters", "1", "--boundary-snapshots-per-cluster", "1",
    "--age-range-gyr", "0.05", "0.3", "--workers", "1", "--coarse-stellar-tables", "--seed", "7",
]


def compact_cluster(rng, number_of_stars=3000, radius_pc=0.3):
    """Random stars inside a small sphere, with positive masses and luminosities."""
    positions_pc = rng.normal(0.0, radius_pc, (number_of_stars, 3))
    return positions_pc, rng.uniform(0.1, 0.8, number_of_stars), rng.uniform(0.01, 5.0, number_of_stars)


def linear(log_map):
    return np.power(10.0, log_map.astype(np.float64))


def test_flux_scales_as_inverse_distance_squared_for_one_projection():
    rng = np.random.default_rng(1)
    positions_pc, mass_msun, luminosity_lsun = compact_cluster(rng)
    rotation = mock_clusters.random_rotation(rng)
    totals = {}
    for distance_kpc in (30.0, 60.0):
        log_flux, _, field = mock_clusters.observe(positions_pc, mass_msun, luminosity_lsun, distance_kpc,
                                                   rotation, (0.0, 0.0), 2.5)
        # Pixels left at the numerical floor hold no light.
        flux = linear(log_flux)
        totals[distance_kpc] = flux[flux > mock_clusters.FLUX_FLOOR_LSUN_PER_KPC2 * 1.0001].sum()
        # The whole compact cluster is in the field at both distances.
        assert field["luminosity_v_in_field_lsun"] == pytest.approx(luminosity_lsun.sum(), rel=1e-9)
    assert totals[30.0] / totals[60.0] == pytest.approx(4.0, rel=1e-4)
    assert totals[30.0] == pytest.approx(luminosity_lsun.sum() / (4 * np.pi * 30.0**2), rel=1e-4)


def test_mass_map_holds_the_particles_in_the_field_and_smoothing_conserves_it():
    rng = np.random.default_rng(2)
    # Spread stars over ±30″ at 30 kpc (±4.4 pc), so some fall outside the 40″ field.
    distance_kpc = 30.0
    positions_pc = rng.uniform(-4.4, 4.4, (5000, 3))
    mass_msun = rng.uniform(0.1, 1.0, 5000)
    luminosity_lsun = rng.uniform(0.1, 1.0, 5000)
    identity = mock_clusters.Rotation.identity()
    _, log_mass, field = mock_clusters.observe(positions_pc, mass_msun, luminosity_lsun, distance_kpc,
                                               identity, (0.0, 0.0), 0.0)
    arcsec = positions_pc[:, :2] * mock_clusters.ARCSEC_PER_RADIAN / (distance_kpc * 1e3)
    in_field = np.all((arcsec >= -20.0) & (arcsec < 20.0), axis=1)
    assert 0 < in_field.sum() < in_field.size
    assert field["mass_in_field_msun"] == pytest.approx(mass_msun[in_field].sum(), rel=1e-9)
    unsmoothed = linear(log_mass)
    unsmoothed[unsmoothed <= mock_clusters.MASS_FLOOR_MSUN * 1.0001] = 0.0
    assert unsmoothed.sum() == pytest.approx(mass_msun[in_field].sum(), rel=1e-5)

    # Stars well inside the field: seeing moves mass between pixels but keeps all of it in the map.
    central = np.abs(positions_pc[:, :2]).max(axis=1) < 1.5
    _, log_mass_smoothed, _ = mock_clusters.observe(positions_pc[central], mass_msun[central], luminosity_lsun[central],
                                                    distance_kpc, identity, (0.0, 0.0), 2.5)
    assert linear(log_mass_smoothed).sum() == pytest.approx(mass_msun[central].sum(), rel=1e-3)


def test_kroupa_masses_follow_the_imf():
    masses = mock_clusters.kroupa_initial_masses(200_000, np.random.default_rng(3))
    assert masses.min() >= 0.08 and masses.max() <= 100.0
    # Mean mass of Kroupa (2001) on 0.08-100 M☉ is 0.58 M☉ (cBHBd's IMF integral gives 0.574 on the same range).
    assert masses.mean() == pytest.approx(0.574, rel=0.03)
    # Number fraction below the 0.5 M☉ break, from the IMF integrals: 3.015 / (3.015 + 0.946) = 0.761.
    assert np.mean(masses < 0.5) == pytest.approx(0.761, abs=0.005)


def test_preferential_escape_removes_low_mass_objects_first():
    rng = np.random.default_rng(4)
    masses = np.concatenate([np.full(5000, 0.1), np.full(5000, 0.9)])
    keep = mock_clusters.preferential_escape_mask(masses, 300.0, rng)
    removed = masses[~keep]
    assert removed.sum() == pytest.approx(300.0, abs=1.0)
    assert np.mean(removed == 0.1) > 0.7


def test_segregation_grows_with_dynamical_age():
    delta = mock_clusters.mass_segregation_delta(np.array([0.0, 1.0, 10.0, 100.0]))
    assert delta[0] == 0.0
    assert np.all(np.diff(delta) > 0)
    assert delta[-1] == pytest.approx(0.5, abs=1e-6)


def file_digests(directory):
    digests = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix in (".npy", ".csv"):
            digests[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def tiny_data_set(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny") / "data"
    make_mock_clusters.main(["--output-directory", str(directory)] + TINY_FLAGS)
    return directory


def test_tiny_data_set_has_the_pidoc_layout(tiny_data_set):
    import csv

    for split, maps in (("train", 4), ("validation", 2), ("test", 4), ("calibration", 4)):
        log_flux = np.load(tiny_data_set / split / "luminosity_V.npy")
        log_mass = np.load(tiny_data_set / split / "mass.npy")
        labels = np.load(tiny_data_set / split / "distance_age.npy")
        assert log_flux.shape == log_mass.shape == (maps, 160, 160, 1)
        assert log_flux.dtype == log_mass.dtype == labels.dtype == np.float32
        assert labels.shape == (maps, 2)
        assert np.all(np.isfinite(log_flux)) and np.all(np.isfinite(log_mass))
        rows = list(csv.DictReader(open(tiny_data_set / split / "metadata.csv")))
        assert len(rows) == maps
        # The metadata's distance and age are the labels.
        np.testing.assert_allclose([[float(r["distance_kpc"]), float(r["age_gyr"])] for r in rows], labels, rtol=1e-6)
    for split in ("test", "calibration"):
        labels = np.load(tiny_data_set / split / "distance_age.npy")
        assert sorted(set(labels[:, 0].tolist())) == [15.0, 30.0, 60.0, 80.0]
    train_distances = np.load(tiny_data_set / "train" / "distance_age.npy")[:, 0]
    assert np.all((train_distances >= 10.0) & (train_distances <= 90.0))
    # The boundary split sees each snapshot once nearer (3.75–12 kpc) and once farther (96–160 kpc)
    # than CB21's test distances.
    near_kpc, far_kpc = np.load(tiny_data_set / "boundary" / "distance_age.npy")[:, 0]
    assert 3.75 <= near_kpc <= 12.0 and 96.0 <= far_kpc <= 160.0


def test_no_cluster_is_in_two_splits(tiny_data_set):
    import csv

    clusters = {}
    for split in ("train", "validation", "test", "calibration", "boundary"):
        rows = list(csv.DictReader(open(tiny_data_set / split / "metadata.csv")))
        clusters[split] = {(row["cluster_id"], row["seed"]) for row in rows}
    for first, second in itertools.combinations(clusters, 2):
        assert not clusters[first] & clusters[second], (first, second)
    seeds = [seed for split in clusters.values() for _, seed in split]
    assert len(seeds) == len(set(seeds))


def test_standardisation_constants_come_from_the_training_split(tiny_data_set):
    from pidoc import standardization

    constants = standardization.read_standardization(tiny_data_set / "standardization_files")
    log_flux = np.load(tiny_data_set / "train" / "luminosity_V.npy").astype(np.float64)
    labels = np.load(tiny_data_set / "train" / "distance_age.npy").astype(np.float64)
    assert constants["luminosity_mean"] == pytest.approx(log_flux.mean(), rel=1e-5)
    assert constants["luminosity_std"] == pytest.approx(log_flux.std(), rel=1e-4)
    assert constants["distance_age_mean"] == pytest.approx(labels.mean(), rel=1e-5)


def test_same_seed_gives_identical_bytes_and_resume_completes(tiny_data_set, tmp_path):
    again = tmp_path / "again"
    make_mock_clusters.main(["--output-directory", str(again)] + TINY_FLAGS)
    assert file_digests(again) == file_digests(tiny_data_set)

    # An interrupted run: one training cluster lost its record and its maps. Resuming restores it.
    (again / "train" / "progress" / "cluster_000001.json").unlink()
    maps = np.load(again / "train" / "luminosity_V.npy", mmap_mode="r+")
    maps[2:] = 0.0
    maps.flush()
    del maps
    make_mock_clusters.main(["--output-directory", str(again)] + TINY_FLAGS)
    assert file_digests(again) == file_digests(tiny_data_set)


@pytest.mark.parametrize("flags, setting", [
    (["--test-distances-kpc", "-15", "30"], "distances"),
    (["--training-distance-range-kpc", "-5", "90"], "distance"),
    (["--age-range-gyr", "0", "15"], "--age-range-gyr"),
    (["--stars", "0"], "--stars"),
    (["--splits", "train", "holdout"], "holdout"),
])
def test_bad_settings_raise_value_error_naming_the_setting(flags, setting, tmp_path):
    with pytest.raises(ValueError, match=setting):
        make_mock_clusters.main(["--output-directory", str(tmp_path / "bad")] + TINY_FLAGS + flags)


def test_bad_physical_inputs_raise_value_error():
    with pytest.raises(ValueError, match="distance_kpc"):
        mock_clusters.check_distance(-1.0)
    with pytest.raises(ValueError, match="age_gyr"):
        mock_clusters.check_age(14.5)
    with pytest.raises(ValueError, match="N0"):
        mock_clusters.kroupa_initial_masses(0, np.random.default_rng(0))
