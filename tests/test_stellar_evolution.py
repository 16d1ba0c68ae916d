"""Tests of `stellar_evolution`: SSE tracks, V light, remnants and natal kicks of a simple stellar population.

The table is built once per test session on a coarse grid (200 masses, 0.5-Gyr age step; a few
seconds) into a temporary cache folder. Measured with the full grid (1500 masses) the Kroupa M/L_V
at [Fe/H] = −1.5 is 0.635 (2 Gyr), 1.40 (6 Gyr) and 2.73 (12 Gyr); the coarse grid agrees to 0.3 %.
"""
import numpy as np
import pytest

from pidoc.mocks import stellar_evolution

METALLICITY_FEH = -1.5
COARSE_GRID = stellar_evolution.COARSE_GRID
# Kroupa (2001) IMF: dN/dm ∝ m^-1.3 below 0.5 M☉ and m^-2.3 above, over 0.08–100 M☉.
KROUPA_BREAK_MSUN = 0.5
KROUPA_SLOPES = (1.3, 2.3)
KROUPA_RANGE_MSUN = (0.08, 100.0)


@pytest.fixture(scope="session")
def cache_directory(tmp_path_factory):
    return tmp_path_factory.mktemp("stellar_tables")


@pytest.fixture(scope="session")
def table(cache_directory):
    pytest.importorskip("cosmic", reason="building a stellar table needs cosmic-popsynth")
    pytest.importorskip("ssptools", reason="building a stellar table needs astro-ssptools")
    return stellar_evolution.load_stellar_table(METALLICITY_FEH, cache_directory=cache_directory, **COARSE_GRID)


def kroupa_initial_masses_msun(number_of_stars, rng):
    """Draw initial masses from the two-segment Kroupa (2001) IMF by inverse CDF."""
    low_mass, high_mass = KROUPA_RANGE_MSUN
    low_slope, high_slope = KROUPA_SLOPES

    def segment_integral(lower, upper, slope):
        return (upper ** (1 - slope) - lower ** (1 - slope)) / (1 - slope)

    # The two segments join continuously at the break mass.
    low_weight = segment_integral(low_mass, KROUPA_BREAK_MSUN, low_slope)
    high_weight = (KROUPA_BREAK_MSUN ** (high_slope - low_slope)
                   * segment_integral(KROUPA_BREAK_MSUN, high_mass, high_slope))
    in_low_segment = rng.random(number_of_stars) < low_weight / (low_weight + high_weight)
    uniform = rng.random(number_of_stars)
    masses = np.empty(number_of_stars)
    for selection, lower, upper, slope in (
        (in_low_segment, low_mass, KROUPA_BREAK_MSUN, low_slope),
        (~in_low_segment, KROUPA_BREAK_MSUN, high_mass, high_slope),
    ):
        lower_term, upper_term = lower ** (1 - slope), upper ** (1 - slope)
        masses[selection] = (lower_term + uniform[selection] * (upper_term - lower_term)) ** (1 / (1 - slope))
    return masses


@pytest.fixture(scope="session")
def kroupa_masses_msun():
    # 10⁶ stars keep the Poisson scatter of the few bright giants in M/L_V at 12 Gyr near 2 %.
    return kroupa_initial_masses_msun(1_000_000, np.random.default_rng(20210312))


def test_table_layout(table):
    number_of_masses = COARSE_GRID["number_of_masses"]
    number_of_ages = table["age_gyr"].size
    assert table["initial_mass_msun"].shape == (number_of_masses,)
    assert table["initial_mass_msun"][0] == pytest.approx(0.08)
    assert table["initial_mass_msun"][-1] == pytest.approx(100.0)
    assert np.all(np.diff(table["initial_mass_msun"]) > 0)
    assert table["age_gyr"][0] == 0.0 and table["age_gyr"][-1] == pytest.approx(14.0)
    assert np.all(np.diff(table["age_gyr"]) > 0)
    for key, dtype in (("stellar_type", np.int8), ("current_mass_msun", np.float32), ("luminosity_v_lsun", np.float32)):
        assert table[key].shape == (number_of_ages, number_of_masses)
        assert table[key].dtype == dtype
    velocities = table["natal_kick_escape_velocity_kms"]
    assert table["natal_kick_retention"].shape == (velocities.size, number_of_masses)
    assert table["natal_kick_retention"].dtype == np.float32
    assert float(table["metallicity_feh"]) == METALLICITY_FEH
    assert str(table["cosmic_version"]) and str(table["ssptools_version"])
    assert set(np.unique(table["stellar_type"])) <= {0, 1, 2, 3}


def test_cache_is_written_once_and_read_back(table, cache_directory):
    path = cache_directory / stellar_evolution.stellar_table_file_name(METALLICITY_FEH, **COARSE_GRID)
    assert path.is_file()
    assert not list(cache_directory.glob("*.tmp*")), "a temporary file was left behind"
    modified = path.stat().st_mtime_ns
    reloaded = stellar_evolution.load_stellar_table(METALLICITY_FEH, cache_directory=cache_directory, **COARSE_GRID)
    assert path.stat().st_mtime_ns == modified
    assert set(reloaded) == set(table)
    for key in table:
        np.testing.assert_array_equal(reloaded[key], table[key])


def test_bolometric_correction_of_the_sun():
    assert -0.10 <= stellar_evolution.bolometric_correction_v(5772.0) <= -0.07
    # Outside Flower's calibrated 2900–52 500 K the temperature is clamped, never extrapolated.
    assert stellar_evolution.bolometric_correction_v(2000.0) == stellar_evolution.bolometric_correction_v(2900.0)
    assert stellar_evolution.bolometric_correction_v(2e5) == stellar_evolution.bolometric_correction_v(52500.0)
    assert stellar_evolution.bolometric_correction_v([4000.0, 6500.0, 9000.0]).shape == (3,)


def test_sun_like_star_has_solar_v_light():
    # 1 L☉ at 5772 K: L_V = 10^(0.4 (BC_V + M_V,☉ − M_bol,☉)) ≈ 0.98 L_V,☉.
    assert stellar_evolution.v_band_luminosity_lsun(1.0, 5772.0) == pytest.approx(0.98, abs=0.01)


@pytest.mark.parametrize("age_gyr, lower, upper", [(2.0, 0.5, 0.7), (12.0, 1.9, 3.0)])
def test_kroupa_mass_to_light_ratio_in_published_range(table, kroupa_masses_msun, age_gyr, lower, upper):
    population = stellar_evolution.population_at_age(table, kroupa_masses_msun, age_gyr, escape_velocity_kms=30.0)
    # All stars are kept (no escapers, every remnant retained): M counts every object.
    mass_to_light = population["current_mass_msun"].sum() / population["luminosity_v_lsun"].sum()
    assert lower <= mass_to_light <= upper


def test_v_light_fades_monotonically(table, kroupa_masses_msun):
    ages_gyr = [1.0, 2.0, 3.0, 4.5, 6.0, 8.0, 10.0, 12.0]
    light = [stellar_evolution.population_at_age(table, kroupa_masses_msun, age, 30.0)["luminosity_v_lsun"].sum()
             for age in ages_gyr]
    assert np.all(np.diff(light) < 0), light


@pytest.mark.parametrize("age_gyr", [0.0, 0.013, 0.1, 1.0, 5.5, 12.0, 13.7, 14.0])
def test_dead_stars_are_dark_and_stars_shine(table, kroupa_masses_msun, age_gyr):
    population = stellar_evolution.population_at_age(table, kroupa_masses_msun[:100_000], age_gyr, 30.0)
    luminous = population["stellar_type"] == stellar_evolution.LUMINOUS_STAR
    assert population["stellar_type"].dtype == np.int8
    assert np.all(population["luminosity_v_lsun"][~luminous] == 0.0)
    assert np.all(population["luminosity_v_lsun"][luminous] > 0.0)
    assert np.all(population["current_mass_msun"] > 0.0)
    assert np.all(population["current_mass_msun"] <= kroupa_masses_msun[:100_000] * (1 + 1e-6))
    assert np.all(population["natal_kick_retention"][luminous] == 1.0)
    if age_gyr == 0.0:
        assert np.all(luminous)
        np.testing.assert_allclose(population["current_mass_msun"], kroupa_masses_msun[:100_000], rtol=1e-5)


def test_alive_or_dead_follows_sse_lifetime(table):
    lifetimes_gyr = table["lifetime_gyr"]
    masses = table["initial_mass_msun"]
    dying = np.flatnonzero(np.isfinite(lifetimes_gyr) & (lifetimes_gyr > 0.02) & (lifetimes_gyr < 13.9))
    for index in dying[:: max(dying.size // 10, 1)]:
        before = stellar_evolution.population_at_age(table, [masses[index]], lifetimes_gyr[index] * 0.999, 30.0)
        after = stellar_evolution.population_at_age(table, [masses[index]], lifetimes_gyr[index] * 1.001, 30.0)
        assert before["stellar_type"][0] == stellar_evolution.LUMINOUS_STAR
        assert after["stellar_type"][0] != stellar_evolution.LUMINOUS_STAR
        assert after["luminosity_v_lsun"][0] == 0.0


def test_old_population_has_giants_near_the_turnoff(table):
    # At 12 Gyr and [Fe/H] = −1.5 SSE's turn-off is near 0.84 M☉: stars a little above it are giants
    # (hundreds of L_V,☉ near the tip of the giant branch), stars well below are faint dwarfs.
    masses = np.linspace(0.80, 0.86, 6001)
    population = stellar_evolution.population_at_age(table, masses, 12.0, 30.0)
    luminous = population["stellar_type"] == stellar_evolution.LUMINOUS_STAR
    assert luminous[0] and not luminous[-1]
    assert population["luminosity_v_lsun"].max() > 300.0
    assert population["luminosity_v_lsun"][0] < 2.0


def test_remnant_types_and_masses(table):
    ssptools_ifmr = pytest.importorskip("ssptools.ifmr")
    initial_final = ssptools_ifmr.IFMR(METALLICITY_FEH)
    cases = [  # (initial mass, age): a Sun-like star long dead, an 8 and a 30 M☉ star at 1 Gyr
        (1.0, 14.0), (8.0, 1.0), (30.0, 1.0), (60.0, 0.5),
    ]
    masses = np.array([mass for mass, _ in cases])
    expected_names = initial_final.predict_type(masses)
    codes = {"WD": stellar_evolution.WHITE_DWARF, "NS": stellar_evolution.NEUTRON_STAR,
             "BH": stellar_evolution.BLACK_HOLE}
    for (mass, age), name in zip(cases, expected_names):
        state = stellar_evolution.population_at_age(table, [mass], age, 30.0)
        assert state["stellar_type"][0] == codes[name], (mass, age, name)
        assert state["luminosity_v_lsun"][0] == 0.0
    white_dwarf = stellar_evolution.population_at_age(table, [1.0], 14.0, 30.0)
    assert white_dwarf["stellar_type"][0] == stellar_evolution.WHITE_DWARF
    assert 0.5 < white_dwarf["current_mass_msun"][0] < 0.7
    assert white_dwarf["natal_kick_retention"][0] == 1.0
    neutron_star = stellar_evolution.population_at_age(table, [8.0], 1.0, 30.0)
    assert neutron_star["current_mass_msun"][0] == pytest.approx(1.4)
    assert neutron_star["natal_kick_retention"][0] == pytest.approx(stellar_evolution.NEUTRON_STAR_RETENTION)
    black_hole = stellar_evolution.population_at_age(table, [30.0], 1.0, 30.0)
    assert black_hole["stellar_type"][0] == stellar_evolution.BLACK_HOLE
    assert black_hole["current_mass_msun"][0] > 3.0
    # A low-mass star is still on the main sequence at 14 Gyr.
    dwarf = stellar_evolution.population_at_age(table, [0.5], 14.0, 30.0)
    assert dwarf["stellar_type"][0] == stellar_evolution.LUMINOUS_STAR
    assert dwarf["current_mass_msun"][0] == pytest.approx(0.5, rel=1e-4)


def test_black_hole_retention_matches_ssptools_and_grows_with_escape_velocity(table):
    ssptools_kicks = pytest.importorskip("ssptools.kicks")
    masses = table["initial_mass_msun"]
    black_holes = np.flatnonzero(table["remnant_type"] == stellar_evolution.BLACK_HOLE)
    velocities = table["natal_kick_escape_velocity_kms"]
    velocity_index = int(np.argmin(np.abs(velocities - 50.0)))
    for index in black_holes[::5]:
        expected = ssptools_kicks.kick_retention_fraction(
            masses[index], "maxwellian", vesc=float(velocities[velocity_index]), FeH=METALLICITY_FEH)
        state = stellar_evolution.population_at_age(table, [masses[index]], 1.0, velocities[velocity_index])
        assert state["natal_kick_retention"][0] == pytest.approx(float(expected), abs=1e-6)
    heavy_kicked = [masses[index] for index in black_holes
                    if table["natal_kick_retention"][velocity_index, index] < 0.5]
    assert heavy_kicked, "expected some black holes that natal kicks can eject"
    slow = stellar_evolution.population_at_age(table, heavy_kicked, 1.0, 10.0)["natal_kick_retention"]
    fast = stellar_evolution.population_at_age(table, heavy_kicked, 1.0, 100.0)["natal_kick_retention"]
    assert np.all(fast >= slow) and np.any(fast > slow)


def test_age_mass_arrays_agree_with_population_at_age(table):
    masses = table["initial_mass_msun"]
    for age_index in range(0, table["age_gyr"].size, 7):
        state = stellar_evolution.population_at_age(table, masses, table["age_gyr"][age_index], 0.0)
        np.testing.assert_array_equal(state["stellar_type"], table["stellar_type"][age_index])
        np.testing.assert_allclose(state["luminosity_v_lsun"], table["luminosity_v_lsun"][age_index], rtol=1e-5)
        np.testing.assert_allclose(state["current_mass_msun"], table["current_mass_msun"][age_index], rtol=1e-5)


@pytest.mark.parametrize(
    "masses, age_gyr, escape_velocity_kms, name",
    [
        ([1.0, -0.5], 1.0, 30.0, "initial_mass_msun"),
        ([0.0], 1.0, 30.0, "initial_mass_msun"),
        ([150.0], 1.0, 30.0, "initial_mass_msun"),
        ([np.nan], 1.0, 30.0, "initial_mass_msun"),
        ([1.0], -0.1, 30.0, "age_gyr"),
        ([1.0], 14.5, 30.0, "age_gyr"),
        ([1.0], float("nan"), 30.0, "age_gyr"),
        ([1.0], 1.0, -5.0, "escape_velocity_kms"),
        ([1.0], 1.0, 5000.0, "escape_velocity_kms"),
    ],
)
def test_population_rejects_bad_inputs(table, masses, age_gyr, escape_velocity_kms, name):
    with pytest.raises(ValueError, match=name):
        stellar_evolution.population_at_age(table, masses, age_gyr, escape_velocity_kms)


def test_population_rejects_a_non_table():
    with pytest.raises(ValueError, match="stellar table"):
        stellar_evolution.population_at_age({"initial_mass_msun": np.array([1.0])}, [1.0], 1.0, 30.0)


@pytest.mark.parametrize(
    "metallicity_feh, settings, name",
    [
        (-3.0, {}, "metallicity_feh"),
        (0.5, {}, "metallicity_feh"),
        ("metal-poor", {}, "metallicity_feh"),
        (-1.5, {"number_of_masses": 10}, "number_of_masses"),
        (-1.5, {"number_of_masses": 300.5}, "number_of_masses"),
        (-1.5, {"age_step_gyr": 0.3}, "age_step_gyr"),
        (-1.5, {"age_step_gyr": -0.5}, "age_step_gyr"),
        (-1.5, {"minimum_mass_msun": 0.01}, "minimum_mass_msun"),
        (-1.5, {"maximum_mass_msun": 500.0}, "maximum_mass_msun"),
        (-1.5, {"number_of_stars": 5}, "unknown grid setting"),
    ],
)
def test_load_rejects_bad_settings(tmp_path, metallicity_feh, settings, name):
    with pytest.raises(ValueError, match=name):
        stellar_evolution.load_stellar_table(metallicity_feh, cache_directory=tmp_path, **settings)
    assert not any(tmp_path.iterdir())


def test_build_rejects_bad_settings():
    with pytest.raises(ValueError, match="metallicity_feh"):
        stellar_evolution.build_stellar_table(1.0)
    with pytest.raises(ValueError, match="number_of_processes"):
        stellar_evolution.build_stellar_table(-1.5, number_of_masses=200, number_of_processes=0)
    with pytest.raises(ValueError, match="effective_temperature_k"):
        stellar_evolution.bolometric_correction_v(-10.0)
