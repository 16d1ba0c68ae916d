"""Per-star stellar evolution of a simple stellar population: V-band light, current mass, remnants.

One job: given the initial masses of the stars of a cluster born in one burst, say for each star at
age T whether it is still a luminous star or a remnant (white dwarf, neutron star, black hole), its
current mass, its V-band luminosity, and the probability that it stayed bound after its natal kick.

Physics and sources
-------------------
* Stellar evolution: the SSE fitting formulae of Hurley, Pols & Tout (2000, MNRAS 315, 543), the
  stellar evolution used by NBODY6-type direct N-body codes, run on single stars through COSMIC
  (Breivik et al. 2020, ApJ 898, 71; package ``cosmic-popsynth``). Whether a star is alive comes
  from SSE's own stellar type (``kstar`` 0–9 luminous, 10–12 white dwarf, 13 neutron star, 14 black
  hole, 15 massless remnant), the same source as its light, so the giants that carry about half of
  an old cluster's V light are never lost to a mismatch of lifetimes.
* V-band light: SSE's bolometric luminosity and effective temperature with the bolometric
  correction BC_V(Teff) of Flower (1996, ApJ 469, 355) in the corrected coefficients of Torres
  (2010, AJ 140, 1158, Table 1); M_bol,☉ = 4.74 (IAU 2015 Resolution B2) and M_V,☉ = 4.81
  (Willmer 2018, ApJS 236, 47).
* Remnants: type and mass by initial mass from astro-ssptools' initial–final mass relation,
  ``ssptools.ifmr.IFMR`` (white dwarfs from MIST 2018 models; neutron stars 1.4 M☉; black holes from
  the updated SSE of Banerjee et al. 2020 with the Fryer et al. 2012 rapid supernova scheme).
  White dwarfs are dark in V here: SSE's cooling white dwarfs (Mestel cooling, Hurley et al. 2000)
  are faint and hot, so with the same BC_V the white dwarfs of a Kroupa population emit 2 × 10⁻⁵ of
  its V light at 2 and at 12 Gyr ([Fe/H] = −1.5, measured), far below the Poisson scatter of its
  few bright giants.
* Natal kicks: black-hole retention from ssptools' Maxwellian kick model with Fryer et al. (2012)
  fallback (``ssptools.kicks.kick_retention_fraction(m, 'maxwellian', vesc=, FeH=)``), which
  depends on the cluster's escape velocity and [Fe/H]. Neutron stars are retained with a constant
  probability of 0.1, the default ``NS_ret`` of ssptools' ``EvolvedMF`` (as used by GCfit, Dickson
  et al. 2023, MNRAS 522, 5320): a 265 km/s Maxwellian kick (Hobbs et al. 2005, MNRAS 360, 974)
  alone would keep only ~0.2 % of neutron stars at a 50 km/s escape velocity, too few for the
  pulsars seen in globular clusters (the retention problem; Pfahl, Rappaport & Podsiadlowski 2002,
  ApJ 573, 283), so a constant retention of order 10 % is the usual choice.

How it is used
--------------
The machine that generates mock clusters at scale has neither COSMIC nor ssptools, so everything is
precomputed once per metallicity into a small table (``build_stellar_table``) kept as an ``.npz``
cache (``load_stellar_table``); reading the cache needs only numpy. ``population_at_age``
evaluates the table for any set of stars at any age in 0–14 Gyr.

How the table is interpolated (and why)
---------------------------------------
Interpolating a plain (age × initial mass) grid fails for old populations: at 12 Gyr one step of a
3000-mass grid near the turn-off is ~30 Myr of evolution, as long as the whole bright upper red
giant branch, so the integrated V light jumped by ±10 % from one grid age to the next (measured).
The table therefore stores each grid mass's SSE *track* in equivalent evolutionary points: for each
SSE phase (main sequence, Hertzsprung gap, giant branch, core helium burning, early and thermally
pulsing AGB, three naked-helium phases) its start time and log L_V and mass at fixed fractions of
the phase, denser towards the end of the phase where the giant-branch and AGB luminosities climb
steeply. A star of any initial mass takes its lifetime from its two neighbouring grid masses
(log-linear in mass) and, from the same neighbours, the time left before death at the start of each
phase (linear in log mass, which keeps a 0.5-Myr AGB phase at 12 Gyr exact); it then finds its
phase and the fraction of that phase elapsed at the requested age, and takes L_V and mass at that
same point of the two neighbouring tracks. Alive or dead is decided by the interpolated SSE
lifetime itself. Measured against SSE run directly for off-grid masses (1500-mass table, [Fe/H] =
−1.5): log L_V agrees to a median 0.001 dex and to 0.02–0.03 dex for 95 % of giant-branch,
core-helium-burning and early-AGB stars; on the 0.5-Myr thermally pulsing AGB and its hot end the
differences reach ~1 dex for a few stars, the level at which SSE's own AGB timing moves (~0.1 Myr)
when only its output step changes. The integrated V light of a
Kroupa population is smooth in age and converged to 0.3 % between 200 and 3000 masses. The
(age × mass) arrays of the table are kept for inspection and are the same tracks evaluated at the
grid masses and grid ages.
"""
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# --- Photometric constants ------------------------------------------------------------------------
# Nominal solar bolometric magnitude, IAU 2015 Resolution B2 (Mamajek et al. 2015, arXiv:1510.06262).
SOLAR_BOLOMETRIC_MAGNITUDE = 4.74
# Absolute V magnitude of the Sun (Willmer 2018, ApJS 236, 47, Table 3).
SOLAR_ABSOLUTE_V_MAGNITUDE = 4.81
# BC_V(log Teff) = Σ c_k (log Teff)^k: Flower (1996) fits with the coefficients reprinted correctly by
# Torres (2010, AJ 140, 1158, Table 1), in three ranges of log Teff (< 3.70, 3.70–3.90, ≥ 3.90).
TORRES_COOL_COEFFICIENTS = (
    -0.190537291496456e05, 0.155144866764412e05, -0.421278819301717e04, 0.381476328422343e03,
)
TORRES_INTERMEDIATE_COEFFICIENTS = (
    -0.370510203809015e05, 0.385672629965804e05, -0.150651486316025e05, 0.261724637119416e04,
    -0.170623810323864e03,
)
TORRES_HOT_COEFFICIENTS = (
    -0.118115450538963e06, 0.137145973583929e06, -0.636233812100225e05, 0.147412923562646e05,
    -0.170587278406872e04, 0.788731721804990e02,
)
TORRES_COOL_LIMIT_LOG_TEFF = 3.70
TORRES_HOT_LIMIT_LOG_TEFF = 3.90
# Flower (1996) calibrated the fits on stars with 2900 K ≤ Teff ≤ 52 500 K (VizieR J/ApJ/469/355
# ReadMe). Outside that range the polynomials diverge (the cool branch reaches −11 mag at 2500 K), so
# the temperature is clamped to the calibrated range. The clamp only touches M dwarfs below about
# 0.15 M☉ and naked helium stars, whose share of a cluster's V light is negligible.
FLOWER_MINIMUM_TEFF_K = 2900.0
FLOWER_MAXIMUM_TEFF_K = 52500.0

# --- Stellar types of the table -------------------------------------------------------------------
LUMINOUS_STAR = 0
WHITE_DWARF = 1
NEUTRON_STAR = 2
BLACK_HOLE = 3
STELLAR_TYPE_NAMES = {LUMINOUS_STAR: "star", WHITE_DWARF: "WD", NEUTRON_STAR: "NS", BLACK_HOLE: "BH"}
# SSE stellar types (Hurley et al. 2000): 0–1 main sequence, 2 Hertzsprung gap, 3 first giant
# branch, 4 core helium burning, 5 early AGB, 6 thermally pulsing AGB, 7–9 naked helium main
# sequence, Hertzsprung gap and giant branch; 10–12 white dwarfs, 13 neutron star, 14 black hole,
# 15 massless remnant. A single star passes through them in increasing order (checked at build).
SSE_FIRST_REMNANT_KSTAR = 10
# Phases of the tracks: SSE types 0 and 1 are both the main sequence; types 2–9 are one phase each.
PHASE_NAMES = ("MS", "HG", "GB", "CHeB", "EAGB", "TPAGB", "HeMS", "HeHG", "HeGB")
NUMBER_OF_PHASES = len(PHASE_NAMES)
# Fractions of each phase at which a track is stored: every 5 % of the phase, plus points log-spaced
# in the remaining fraction from 5 % down to 10⁻⁴, where the giant-branch luminosity runs away
# towards the helium flash (and the AGB towards its end).
PHASE_FRACTIONS = np.unique(np.concatenate([np.linspace(0.0, 0.95, 20), 1.0 - np.geomspace(0.05, 1e-4, 28)]))
# Output steps of SSE per phase: at least this many samples per phase and star (COSMIC prints at fixed
# steps, set per phase with its timestep conditions). The giant branch gets two more levels ten and
# a hundred times finer once L exceeds 10 and 100 times its value at the base of the branch, to
# resolve the last few Myr before the helium flash.
SAMPLES_PER_PHASE = (60, 40, 200, 60, 100, 60, 30, 30, 30)
GIANT_BRANCH_REFINEMENT_LUMINOSITY_FACTORS = (10.0, 100.0)

# --- Metallicity ----------------------------------------------------------------------------------
# SSE's tracks are calibrated with Z☉ = 0.02 (Hurley et al. 2000), and astro-ssptools' SSE-based
# IFMR grids assume zsun = 0.02 too (ssptools data/ifmr/README.md), so Z = 0.02 × 10^[Fe/H].
SSE_SOLAR_METALLICITY_Z = 0.02
# SSE's fitting formulae cover 10⁻⁴ ≤ Z ≤ 0.03 (Hurley et al. 2000, abstract), i.e.
# −2.30 ≤ [Fe/H] ≤ +0.176.
MINIMUM_METALLICITY_FEH = float(np.log10(1e-4 / SSE_SOLAR_METALLICITY_Z))
MAXIMUM_METALLICITY_FEH = float(np.log10(0.03 / SSE_SOLAR_METALLICITY_Z))

# --- Grids ----------------------------------------------------------------------------------------
MINIMUM_AGE_GYR = 0.0
MAXIMUM_AGE_GYR = 14.0
# SSE is run to 20 Gyr, well beyond the last age asked for, so that every star that dies before
# 14 Gyr has two grid neighbours with known lifetimes; a star still luminous at 20 Gyr has an
# infinite lifetime in the table and its track ends at 20 Gyr.
EVOLUTION_END_MYR = 20000.0
# Hurley et al. (2000, abstract) fitted 0.1–100 M☉; COSMIC runs 0.08 M☉ (hydrogen-burning limit) and above
# 100 M☉ by extrapolation. Above 150 M☉ neither SSE nor the Kroupa IMF of the mock clusters apply.
LOWEST_ALLOWED_MASS_MSUN = 0.08
HIGHEST_ALLOWED_MASS_MSUN = 150.0
DEFAULT_MAXIMUM_MASS_MSUN = 100.0
DEFAULT_NUMBER_OF_MASSES = 1500
DEFAULT_AGE_STEP_GYR = 0.05
# A small grid for tests (built in ~4 s): its Kroupa M/L_V agrees with the default grid's to 0.3 %
# at 0.01–14 Gyr ([Fe/H] = −1.5, measured), because the tracks, not the grid, carry the phases.
COARSE_GRID = {"number_of_masses": 200, "age_step_gyr": 0.5}
# Initial masses are log-spaced, eight times denser between 0.7 and 3 M☉, the turn-off masses of
# 0.5–14 Gyr; at 12 Gyr the giant, horizontal-branch and AGB phases together span only ~0.02–0.03 M☉
# of initial mass near 0.8 M☉. With 1500 masses the step there is 0.15 % (~0.0012 M☉): 11–12 grid
# masses lie between the end of the main sequence and death at 12 Gyr ([Fe/H] = −1.5, measured).
# The phases themselves are resolved in time by the tracks (see the module docstring).
DENSE_MASS_RANGE_MSUN = (0.7, 3.0)
DENSE_MASS_DENSITY_FACTOR = 8.0
# The (age × mass) arrays also get 20 log-spaced ages per decade between 1 Myr and 1 Gyr, where the
# turn-off moves fastest.
YOUNG_AGES_PER_DECADE = 20
YOUNG_AGE_RANGE_GYR = (0.001, 1.0)
# Escape velocities for the natal-kick retention grid: 0 and 20 values per decade from 0.5 to
# 1000 km/s (initial escape velocities of globular clusters are ~10–100 km/s, e.g. Gnedin et al.
# 2002, ApJ 568, L23); retention is interpolated linearly in velocity between them.
ESCAPE_VELOCITY_GRID_KMS = np.concatenate([[0.0], np.geomspace(0.5, 1000.0, 67)])
# Neutron-star retention: ssptools' EvolvedMF default NS_ret = 0.1 (see module docstring).
NEUTRON_STAR_RETENTION = 0.1
# Dispersion of the Maxwellian natal kick, 265 km/s (Hobbs et al. 2005), scaled by (1 − fallback) for
# black holes (Fryer et al. 2012); ssptools' default.
NATAL_KICK_DISPERSION_KMS = 265.0

TABLE_FORMAT_VERSION = 2
GRID_SETTING_NAMES = ("number_of_masses", "age_step_gyr", "minimum_mass_msun", "maximum_mass_msun")
DEFAULT_CACHE_DIRECTORY = Path(__file__).resolve().parents[2] / ".cache" / "stellar_tables"

# --- COSMIC / BSE settings ------------------------------------------------------------------------
# COSMIC 4.3.3 defaults (cosmic/data/cosmic-settings.json) except where a comment says otherwise. For
# single stars only the wind, timestep and remnant settings act; the binary ones are inert but COSMIC
# requires them all.
COSMIC_SETTINGS = {
    # Timestep factors of SSE (dt = pts × phase duration). pts1 = 0.05 is the main-sequence default
    # of the original SSE/BSE package (Hurley et al. 2000, 2002); COSMIC's 0.001 (Banerjee et al.
    # 2020) serves binary mass transfer. Measured here on single stars: lifetimes and 12-Gyr
    # luminosities change by < 10⁻⁵ between the two, and 0.05 runs five times faster.
    "pts1": 0.05, "pts2": 0.01, "pts3": 0.02,
    # Z☉ used by the metallicity-dependent winds: 0.02 as in SSE and the uSSE models behind ssptools'
    # black-hole IFMR (COSMIC's default is 0.014).
    "zsun": SSE_SOLAR_METALLICITY_Z,
    # Winds: Reimers η = 0.5 on the giant branch (Hurley et al. 2000 eq. 106), Vink et al. (2001)
    # metallicity-dependent winds for hot massive stars and LBV mass loss (windflag 3), as in the
    # updated SSE of Banerjee et al. (2020) used by NBODY7 and by ssptools' black-hole IFMR.
    "windflag": 3, "eddlimflag": 0, "neta": 0.5, "bwind": 0.0, "hewind": 0.5, "beta": 0.125,
    "xi": 0.5, "acc2": 1.5, "LBV_flag": 1,
    "alpha1": [1.0, 1.0], "lambdaf": 0.0, "ce2stageflag": 0, "ceflag": 0, "cekickflag": 2,
    "cemergeflag": 1, "cehestarflag": 0, "qcflag": 5, "qcrit_array": [0.0] * 16,
    "kickflag": 5, "sigma": NATAL_KICK_DISPERSION_KMS, "bhflag": 1, "bhsigmafrac": 1.0,
    "sigmadiv": -20.0, "ecsn": 2.25, "ecsn_mlow": 1.6, "aic": 1, "ussn": 1, "polar_kick_angle": 90.0,
    "natal_kick_array": [[-100.0, -100.0, -100.0, -100.0, 0.0], [-100.0, -100.0, -100.0, -100.0, 0.0]],
    "mm_mu_ns": 400.0, "mm_mu_bh": 200.0,
    # Remnant masses are taken from ssptools, not from SSE. The Fryer et al. (2012) rapid scheme
    # (remnantflag 3) is still chosen so that SSE's own remnants match ssptools' black-hole IFMR.
    "remnantflag": 3, "fryer_mass_limit": 0, "mxns": 3.0, "fryer_fmix": 1.0,
    "fryer_mcrit_nsbh": 5.75, "rembar_massloss": 0.5, "wd_mass_lim": 1, "maltsev_mode": 0,
    "maltsev_fallback": 0.5, "maltsev_pf_prob": 0.1, "pisn": -2, "ppi_co_shift": 0.0,
    "ppi_extra_ml": 0.0, "bhspinflag": 0, "bhspinmag": 0.0, "grflag": 1, "eddfac": 10, "gamma": -2,
    "don_lim": -1, "acc_lim": [-1, -1], "smt_periastron_check": 0, "tflag": 1, "ST_tide": 1,
    "fprimc_array": [2.0 / 21.0] * 16, "ifflag": 1, "wdflag": 1, "epsnov": 0.001, "bdecayfac": 1,
    "bconst": 3000, "ck": 1000, "rejuv_fac": 1.0, "rejuvflag": 0, "bhms_coll_flag": 0, "htpmb": 1,
    "ST_cr": 1, "rtmsflag": 0,
}
# COSMIC draws natal-kick directions with this seed; they do not change a single star's mass or
# light, but a fixed seed keeps the build fully deterministic.
COSMIC_RANDOM_SEED = 20210312
# Stars are evolved in batches whose lifetimes differ by at most this factor, so that one set of
# per-phase output steps suits every star of a batch.
BATCH_LIFETIME_RATIO = 2.0


# =================================================================================================
# Photometry
# =================================================================================================
def bolometric_correction_v(effective_temperature_k):
    """V-band bolometric correction BC_V = M_bol − M_V as a function of effective temperature.

    Flower (1996) polynomials in log Teff with the corrected coefficients of Torres (2010, AJ 140,
    1158, Table 1). Temperatures outside Flower's calibrated range, 2900–52 500 K, are clamped to it.

    Parameters
    ----------
    effective_temperature_k : float or array_like
        Effective temperature in kelvin, finite and positive.

    Returns
    -------
    float or numpy.ndarray
        BC_V in magnitudes (a float for a scalar input). About −0.08 for the Sun (5772 K).

    Raises
    ------
    ValueError
        If a temperature is not finite or not positive.
    """
    temperature_k = np.asarray(effective_temperature_k, dtype=np.float64)
    if not np.all(np.isfinite(temperature_k)) or np.any(temperature_k <= 0):
        raise ValueError("effective_temperature_k must be finite and positive")
    log_temperature = np.log10(np.clip(temperature_k, FLOWER_MINIMUM_TEFF_K, FLOWER_MAXIMUM_TEFF_K))
    correction = np.where(
        log_temperature < TORRES_COOL_LIMIT_LOG_TEFF,
        np.polynomial.polynomial.polyval(log_temperature, TORRES_COOL_COEFFICIENTS),
        np.where(
            log_temperature < TORRES_HOT_LIMIT_LOG_TEFF,
            np.polynomial.polynomial.polyval(log_temperature, TORRES_INTERMEDIATE_COEFFICIENTS),
            np.polynomial.polynomial.polyval(log_temperature, TORRES_HOT_COEFFICIENTS),
        ),
    )
    return float(correction) if correction.ndim == 0 else correction


def v_band_luminosity_lsun(bolometric_luminosity_lsun, effective_temperature_k):
    """V-band luminosity in solar V luminosities from bolometric luminosity and temperature.

    M_V = M_bol,☉ − 2.5 log10(L / L☉) − BC_V(Teff), and L_V / L_V,☉ = 10^(−0.4 (M_V − M_V,☉)) with
    M_bol,☉ = 4.74 and M_V,☉ = 4.81.

    Parameters
    ----------
    bolometric_luminosity_lsun : array_like
        Bolometric luminosity in L☉, positive.
    effective_temperature_k : array_like
        Effective temperature in kelvin.

    Returns
    -------
    numpy.ndarray
        L_V in units of the Sun's V-band luminosity.
    """
    luminosity_lsun = np.asarray(bolometric_luminosity_lsun, dtype=np.float64)
    absolute_v_magnitude = (
        SOLAR_BOLOMETRIC_MAGNITUDE - 2.5 * np.log10(luminosity_lsun)
        - bolometric_correction_v(effective_temperature_k)
    )
    return 10.0 ** (-0.4 * (absolute_v_magnitude - SOLAR_ABSOLUTE_V_MAGNITUDE))


# =================================================================================================
# Validation helpers
# =================================================================================================
def _check_metallicity(metallicity_feh):
    """Return [Fe/H] as a float, or raise ValueError outside SSE's range."""
    try:
        metallicity_feh = float(metallicity_feh)
    except (TypeError, ValueError) as error:
        raise ValueError(f"metallicity_feh must be a number, got {metallicity_feh!r}") from error
    if not (MINIMUM_METALLICITY_FEH - 1e-9 <= metallicity_feh <= MAXIMUM_METALLICITY_FEH + 1e-9):
        raise ValueError(
            f"metallicity_feh = {metallicity_feh} is outside the range of SSE's tracks "
            f"[{MINIMUM_METALLICITY_FEH:.3f}, {MAXIMUM_METALLICITY_FEH:+.3f}] (10⁻⁴ ≤ Z ≤ 0.03, Z☉ = 0.02)"
        )
    return metallicity_feh


def _check_grid_settings(number_of_masses, age_step_gyr, minimum_mass_msun, maximum_mass_msun):
    """Validate the grid settings; return them normalised (int, float, float, float)."""
    if isinstance(number_of_masses, bool) or not isinstance(number_of_masses, (int, np.integer)):
        raise ValueError(f"number_of_masses must be an integer, got {number_of_masses!r}")
    if not 50 <= number_of_masses <= 20000:
        raise ValueError(f"number_of_masses = {number_of_masses} must lie in 50–20000")
    try:
        age_step_gyr = float(age_step_gyr)
        minimum_mass_msun = float(minimum_mass_msun)
        maximum_mass_msun = float(maximum_mass_msun)
    except (TypeError, ValueError) as error:
        raise ValueError(f"age_step_gyr, minimum_mass_msun and maximum_mass_msun must be numbers ({error})") from error
    if not (np.isfinite(age_step_gyr) and 0.005 <= age_step_gyr <= 1.0):
        raise ValueError(f"age_step_gyr = {age_step_gyr} must lie in 0.005–1 Gyr")
    steps = MAXIMUM_AGE_GYR / age_step_gyr
    if abs(steps - round(steps)) > 1e-6:
        raise ValueError(f"age_step_gyr = {age_step_gyr} must divide {MAXIMUM_AGE_GYR} Gyr into whole steps")
    if not (np.isfinite(minimum_mass_msun) and minimum_mass_msun >= LOWEST_ALLOWED_MASS_MSUN - 1e-12):
        raise ValueError(f"minimum_mass_msun = {minimum_mass_msun} must be ≥ {LOWEST_ALLOWED_MASS_MSUN} M☉")
    if not (np.isfinite(maximum_mass_msun) and maximum_mass_msun <= HIGHEST_ALLOWED_MASS_MSUN):
        raise ValueError(f"maximum_mass_msun = {maximum_mass_msun} must be ≤ {HIGHEST_ALLOWED_MASS_MSUN} M☉")
    if not maximum_mass_msun > 2.0 * minimum_mass_msun:
        raise ValueError(f"maximum_mass_msun = {maximum_mass_msun} must exceed twice minimum_mass_msun")
    return int(number_of_masses), age_step_gyr, minimum_mass_msun, maximum_mass_msun


def _check_number_of_processes(number_of_processes):
    """Return a positive process count (default: all CPUs, at most 8)."""
    if number_of_processes is None:
        return min(os.cpu_count() or 1, 8)
    if isinstance(number_of_processes, bool) or not isinstance(number_of_processes, (int, np.integer)) \
            or number_of_processes < 1:
        raise ValueError(f"number_of_processes must be a positive integer, got {number_of_processes!r}")
    return int(number_of_processes)


# =================================================================================================
# Grids
# =================================================================================================
def initial_mass_grid_msun(number_of_masses, minimum_mass_msun, maximum_mass_msun):
    """Log-spaced initial masses, `DENSE_MASS_DENSITY_FACTOR` times denser in 0.7–3 M☉.

    Parameters
    ----------
    number_of_masses : int
        Number of grid masses, both ends included.
    minimum_mass_msun, maximum_mass_msun : float
        Grid ends in M☉.

    Returns
    -------
    numpy.ndarray
        Strictly increasing masses in M☉.
    """
    log_low, log_high = np.log10(minimum_mass_msun), np.log10(maximum_mass_msun)
    dense_low = np.clip(np.log10(DENSE_MASS_RANGE_MSUN[0]), log_low, log_high)
    dense_high = np.clip(np.log10(DENSE_MASS_RANGE_MSUN[1]), log_low, log_high)
    # Cumulative point density in log mass: slope 1 outside the dense range, the factor inside it.
    breaks = np.array([log_low, dense_low, dense_high, log_high])
    densities = np.array([1.0, DENSE_MASS_DENSITY_FACTOR, 1.0])
    cumulative = np.concatenate([[0.0], np.cumsum(np.diff(breaks) * densities)])
    positions = np.linspace(0.0, cumulative[-1], number_of_masses)
    masses_msun = 10.0 ** np.interp(positions, cumulative, breaks)
    masses_msun[0], masses_msun[-1] = minimum_mass_msun, maximum_mass_msun
    return masses_msun


def age_grid_gyr(age_step_gyr):
    """Ages of the (age × mass) arrays: steps of `age_step_gyr` over 0–14 Gyr plus a log grid 1 Myr–1 Gyr.

    Returns
    -------
    numpy.ndarray
        Strictly increasing ages in Gyr, from 0 to 14.
    """
    number_of_steps = int(round(MAXIMUM_AGE_GYR / age_step_gyr))
    uniform_gyr = np.linspace(MINIMUM_AGE_GYR, MAXIMUM_AGE_GYR, number_of_steps + 1)
    low, high = YOUNG_AGE_RANGE_GYR
    young_gyr = np.geomspace(low, high, int(round(np.log10(high / low) * YOUNG_AGES_PER_DECADE)) + 1)
    return np.unique(np.round(np.concatenate([uniform_gyr, young_gyr]), 9))


# =================================================================================================
# Building the table (needs cosmic-popsynth and astro-ssptools)
# =================================================================================================
@contextlib.contextmanager
def _silenced_output():
    """Send the process's stdout/stderr file descriptors (and Python warnings) to /dev/null.

    COSMIC's Fortran writes straight to file descriptors 1 and 2, so redirecting `sys.stdout` is not
    enough. Worker processes forked inside the block inherit the redirection.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_descriptors = [os.dup(1), os.dup(2)]
    null_descriptor = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null_descriptor, 1)
        os.dup2(null_descriptor, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_descriptors[0], 1)
        os.dup2(saved_descriptors[1], 2)
        for descriptor in saved_descriptors + [null_descriptor]:
            os.close(descriptor)


def _run_sse(initial_masses_msun, metallicity_z, output_step_myr, timestep_conditions, number_of_processes):
    """Evolve single stars to `EVOLUTION_END_MYR` with COSMIC's SSE; return (bcm, bpp) as numpy arrays.

    Single stars follow COSMIC's own convention: a massless companion (mass 0, kstar 15) and no orbit
    (porb = ecc = −1). Columns of both arrays: star index, time [Myr], SSE type, mass [M☉],
    luminosity [L☉], effective temperature [K].
    """
    from cosmic.evolve import Evolve
    from cosmic.sample.initialbinarytable import InitialBinaryTable

    count = initial_masses_msun.size
    # SSE starts stars below 0.7 M☉ as fully convective main-sequence stars (kstar 0), others as kstar 1.
    initial_kstar = np.where(initial_masses_msun < 0.7, 0, 1)
    binaries = InitialBinaryTable.InitialBinaries(
        initial_masses_msun, np.zeros(count), -np.ones(count), -np.ones(count),
        np.full(count, EVOLUTION_END_MYR), initial_kstar, np.full(count, 15), np.full(count, metallicity_z),
    )
    binaries = binaries.assign(dtp=np.full(count, output_step_myr), randomseed=np.full(count, COSMIC_RANDOM_SEED))
    columns = ["tphys", "kstar_1", "mass_1", "lum_1", "teff_1"]
    with _silenced_output():
        bpp, bcm, _, _ = Evolve.evolve(
            initialbinarytable=binaries, BSEDict=dict(COSMIC_SETTINGS), nproc=min(number_of_processes, count),
            bcm_columns=columns, bpp_columns=columns, timestep_conditions=timestep_conditions,
        )
    arrays = []
    for frame in (bcm, bpp):
        star = frame["bin_num"].to_numpy().astype(np.float64)
        arrays.append(np.column_stack([star] + [frame[name].to_numpy().astype(np.float64) for name in columns]))
    return arrays[0], arrays[1]


def _phase_of_kstar(kstar):
    """Track phase index (0 MS, 1 HG, …, 8 HeGB) of SSE luminous types 0–9."""
    return np.maximum(np.asarray(kstar, dtype=np.int64) - 1, 0)


def _phase_start_times_myr(key_events, number_of_masses):
    """Start time of every track phase and the lifetime of every star from SSE's key-event table.

    Absent phases get zero duration (their start equals the start of the next phase present).
    Stars still luminous at the end of the evolution get an infinite lifetime; their last phase ends
    at `EVOLUTION_END_MYR` in the returned start array.
    """
    starts = np.full((number_of_masses, NUMBER_OF_PHASES + 1), np.nan)
    lifetime_myr = np.full(number_of_masses, np.inf)
    star_index = key_events[:, 0].astype(np.int64)
    times_myr, kstar = key_events[:, 1], key_events[:, 2].astype(np.int64)
    for star in range(number_of_masses):
        rows = star_index == star
        star_times, star_kstar = times_myr[rows], kstar[rows]
        order = np.argsort(star_times, kind="stable")
        star_times, star_kstar = star_times[order], star_kstar[order]
        remnant = star_kstar >= SSE_FIRST_REMNANT_KSTAR
        if np.any(remnant):
            lifetime_myr[star] = star_times[remnant][0]
        luminous = ~remnant & (star_times < lifetime_myr[star])
        phases = _phase_of_kstar(star_kstar[luminous])
        if np.any(np.diff(phases) < 0):
            raise RuntimeError(f"SSE phases of grid star {star} are not in increasing order: {phases}")
        for phase, start_myr in zip(phases, star_times[luminous]):
            if np.isnan(starts[star, phase]):
                starts[star, phase] = start_myr
        starts[star, NUMBER_OF_PHASES] = min(lifetime_myr[star], EVOLUTION_END_MYR)
        # An absent phase starts where the next present one does.
        for phase in range(NUMBER_OF_PHASES - 1, -1, -1):
            if np.isnan(starts[star, phase]):
                starts[star, phase] = starts[star, phase + 1]
    return starts, lifetime_myr


def _batches_and_conditions(phase_starts_myr, key_events, initial_masses_msun):
    """Group stars by lifetime; give each group COSMIC output steps that sample every phase.

    Returns a list of (star indices, base output step in Myr, timestep conditions).
    """
    durations_myr = np.diff(phase_starts_myr, axis=1)
    end_myr = phase_starts_myr[:, -1]
    # Luminosity at the base of the giant branch, for the refinement near its tip.
    base_luminosity_lsun = np.full(initial_masses_msun.size, np.inf)
    giant_branch_rows = key_events[:, 2] == 3
    np.minimum.at(base_luminosity_lsun, key_events[giant_branch_rows, 0].astype(np.int64),
                  key_events[giant_branch_rows, 4])

    order = np.argsort(end_myr, kind="stable")
    batches, current = [], [order[0]]
    for star in order[1:]:
        if end_myr[star] <= BATCH_LIFETIME_RATIO * end_myr[current[0]]:
            current.append(star)
        else:
            batches.append(np.array(current))
            current = [star]
    batches.append(np.array(current))

    result = []
    for members in batches:
        conditions, steps_myr = [], np.full(NUMBER_OF_PHASES, np.nan)
        for phase in range(NUMBER_OF_PHASES):
            phase_durations = durations_myr[members, phase]
            phase_durations = phase_durations[phase_durations > 0]
            if phase_durations.size == 0:
                continue
            # Sample the shortest phase of the batch well, but never more than 4× as finely as the
            # longest one needs (which bounds the number of output rows).
            samples = SAMPLES_PER_PHASE[phase]
            steps_myr[phase] = max(phase_durations.min() / samples, phase_durations.max() / (4 * samples))
            selector = "kstar_1<=1" if phase == 0 else f"kstar_1={phase + 1}"
            conditions.append([selector, f"dtp={float(steps_myr[phase])!r}"])
            if phase == 2 and np.isfinite(base_luminosity_lsun[members]).any():
                base_lsun = np.min(base_luminosity_lsun[members][np.isfinite(base_luminosity_lsun[members])])
                for factor in GIANT_BRANCH_REFINEMENT_LUMINOSITY_FACTORS:
                    conditions.append(["kstar_1=3", f"lum_1>={float(factor * base_lsun)!r}",
                                       f"dtp={float(steps_myr[phase] / factor)!r}"])
        # After death only the final state is printed.
        conditions.append([f"kstar_1>={SSE_FIRST_REMNANT_KSTAR}", "dtp=None"])
        base_step_myr = steps_myr[0] if np.isfinite(steps_myr[0]) else EVOLUTION_END_MYR
        result.append((members, base_step_myr, conditions))
    return result


def _tracks_from_samples(samples, phase_starts_myr, number_of_masses):
    """Resample every star's SSE output on the fixed phase fractions of `PHASE_FRACTIONS`.

    Returns log10 L_V and current mass, both (n_m, n_phases, n_fractions); an absent phase holds
    the values at the start of the next phase present (or the last values of the track).
    """
    shape = (number_of_masses, NUMBER_OF_PHASES, PHASE_FRACTIONS.size)
    log_luminosity_v = np.full(shape, np.nan)
    current_mass_msun = np.full(shape, np.nan)
    star_index = samples[:, 0].astype(np.int64)
    order = np.lexsort((samples[:, 1], star_index))
    samples, star_index = samples[order], star_index[order]
    boundaries = np.searchsorted(star_index, np.arange(number_of_masses + 1))
    for star in range(number_of_masses):
        rows = samples[boundaries[star]:boundaries[star + 1]]
        rows = rows[rows[:, 2] < SSE_FIRST_REMNANT_KSTAR]
        times_myr, phases = rows[:, 1], _phase_of_kstar(rows[:, 2])
        log_light = np.log10(v_band_luminosity_lsun(rows[:, 4], rows[:, 5]))
        for phase in range(NUMBER_OF_PHASES):
            start_myr, end_myr = phase_starts_myr[star, phase], phase_starts_myr[star, phase + 1]
            in_phase = phases == phase
            if end_myr <= start_myr or not np.any(in_phase):
                continue
            fraction = (times_myr[in_phase] - start_myr) / (end_myr - start_myr)
            log_luminosity_v[star, phase] = np.interp(PHASE_FRACTIONS, fraction, log_light[in_phase])
            current_mass_msun[star, phase] = np.interp(PHASE_FRACTIONS, fraction, rows[in_phase, 3])
        # Fill absent phases backwards from the next present phase, then forwards from the last one.
        for values in (log_luminosity_v, current_mass_msun):
            next_values = None
            for phase in range(NUMBER_OF_PHASES - 1, -1, -1):
                if np.isnan(values[star, phase, 0]):
                    if next_values is not None:
                        values[star, phase] = next_values
                else:
                    next_values = values[star, phase, 0]
            last_values = None
            for phase in range(NUMBER_OF_PHASES):
                if np.isnan(values[star, phase, 0]):
                    values[star, phase] = last_values
                else:
                    last_values = values[star, phase, -1]
    return log_luminosity_v, current_mass_msun


def build_stellar_table(
    metallicity_feh,
    number_of_masses=DEFAULT_NUMBER_OF_MASSES,
    age_step_gyr=DEFAULT_AGE_STEP_GYR,
    minimum_mass_msun=LOWEST_ALLOWED_MASS_MSUN,
    maximum_mass_msun=DEFAULT_MAXIMUM_MASS_MSUN,
    number_of_processes=None,
):
    """Run SSE on a grid of initial masses and tabulate tracks, remnants and natal-kick retention.

    Needs ``cosmic-popsynth`` and ``astro-ssptools`` (imported here only).

    Parameters
    ----------
    metallicity_feh : float
        [Fe/H] of the population, within SSE's range −2.30 to +0.176 (Z = 0.02 × 10^[Fe/H]).
    number_of_masses : int, optional
        Number of initial masses (log-spaced, 8× denser in 0.7–3 M☉). Default 1500.
    age_step_gyr : float, optional
        Step of the uniform ages of the (age × mass) arrays, which must divide 14 Gyr; log-spaced ages
        are added below 1 Gyr. Default 0.05 Gyr. `population_at_age` works at any age regardless.
    minimum_mass_msun, maximum_mass_msun : float, optional
        Ends of the initial-mass grid, default 0.08 and 100 M☉.
    number_of_processes : int, optional
        Processes for COSMIC; default all CPUs, at most 8. Not part of the result.

    Returns
    -------
    dict
        (age × mass) arrays: ``initial_mass_msun`` (n_m,); ``age_gyr`` (n_t,); ``stellar_type``
        (n_t, n_m) int8 with codes 0 luminous star, 1 white dwarf, 2 neutron star, 3 black hole;
        ``current_mass_msun`` (n_t, n_m) float32 (SSE mass of luminous stars, ssptools IFMR mass of
        remnants); ``luminosity_v_lsun`` (n_t, n_m) float32 (0 for remnants).
        Tracks: ``lifetime_gyr`` (n_m,), SSE age at which the star becomes a remnant (inf if it is
        still luminous at 20 Gyr); ``phase_start_gyr`` (n_m, 10), start of each SSE phase
        (`PHASE_NAMES`) and end of the track; ``phase_fraction`` (n_f,);
        ``track_log_luminosity_v_lsun`` and ``track_current_mass_msun`` (n_m, 9, n_f) float32.
        Remnants: ``remnant_type`` (n_m,) int8 and ``remnant_mass_msun`` (n_m,) float32 from the
        IFMR; ``natal_kick_escape_velocity_kms`` (n_v,); ``natal_kick_retention`` (n_v, n_m) float32,
        probability that the remnant of that initial mass is retained (1 for white dwarfs).
        Metadata as 0-d arrays: ``metallicity_feh``, ``metallicity_z``, the grid settings,
        ``neutron_star_retention``, the IFMR's type boundaries, package versions, ``build_seconds``.

    Raises
    ------
    ValueError
        If a setting is out of range (the message names it).
    """
    metallicity_feh = _check_metallicity(metallicity_feh)
    number_of_masses, age_step_gyr, minimum_mass_msun, maximum_mass_msun = _check_grid_settings(
        number_of_masses, age_step_gyr, minimum_mass_msun, maximum_mass_msun
    )
    number_of_processes = _check_number_of_processes(number_of_processes)

    from importlib.metadata import version

    import ssptools.ifmr
    import ssptools.kicks

    start_seconds = time.perf_counter()
    metallicity_z = SSE_SOLAR_METALLICITY_Z * 10.0 ** metallicity_feh
    initial_masses_msun = initial_mass_grid_msun(number_of_masses, minimum_mass_msun, maximum_mass_msun)

    # --- SSE, first pass: phase durations only (final state printed) ---------------------------------
    _, first_key_events = _run_sse(initial_masses_msun, metallicity_z, EVOLUTION_END_MYR, [], number_of_processes)
    first_starts_myr, _ = _phase_start_times_myr(first_key_events, number_of_masses)

    # --- SSE, second pass: every phase sampled finely, in batches of similar lifetime ---------------
    sample_blocks, key_event_blocks = [], []
    batches = _batches_and_conditions(first_starts_myr, first_key_events, initial_masses_msun)
    for members, base_step_myr, conditions in batches:
        samples, key_events = _run_sse(initial_masses_msun[members], metallicity_z, base_step_myr, conditions,
                                       number_of_processes)
        # COSMIC keeps at most 50 000 printed rows per star; a star whose output stops before the end
        # of the evolution was truncated and its track would be wrong.
        last_time_myr = np.full(members.size, -np.inf)
        np.maximum.at(last_time_myr, samples[:, 0].astype(np.int64), samples[:, 1])
        if np.any(last_time_myr < EVOLUTION_END_MYR - 1e-6):
            raise RuntimeError("COSMIC's output of some stars stopped early (too many output rows)")
        # COSMIC numbers the stars of a batch from 0; map them back to grid indices.
        samples[:, 0] = members[samples[:, 0].astype(np.int64)]
        key_events[:, 0] = members[key_events[:, 0].astype(np.int64)]
        sample_blocks.append(samples)
        key_event_blocks.append(key_events)
    key_events = np.concatenate(key_event_blocks)
    samples = np.concatenate(sample_blocks + [key_events])
    phase_starts_myr, lifetime_myr = _phase_start_times_myr(key_events, number_of_masses)
    # Alive or dead has one source, SSE's stellar type: printed samples and key events must agree (at
    # the instant of a supernova the key events hold both the last luminous and the remnant state).
    sample_lifetime = lifetime_myr[samples[:, 0].astype(np.int64)]
    is_remnant_sample = samples[:, 2] >= SSE_FIRST_REMNANT_KSTAR
    if np.any(is_remnant_sample & (samples[:, 1] < sample_lifetime)) or \
            np.any(~is_remnant_sample & (samples[:, 1] > sample_lifetime)):
        raise RuntimeError("SSE's printed stellar types and its key events disagree on when stars die")
    luminous_samples = samples[:, 2] < SSE_FIRST_REMNANT_KSTAR
    if np.any(samples[luminous_samples, 4] <= 0) or np.any(samples[luminous_samples, 5] <= 0):
        raise RuntimeError("SSE returned a luminous star with non-positive luminosity or temperature")
    track_log_luminosity_v, track_current_mass_msun = _tracks_from_samples(samples, phase_starts_myr, number_of_masses)

    # --- Remnants: ssptools IFMR and natal-kick retention ---------------------------------------------
    initial_final = ssptools.ifmr.IFMR(metallicity_feh)
    remnant_names = np.array(initial_final.predict_type(initial_masses_msun))
    remnant_type = np.select(
        [remnant_names == "WD", remnant_names == "NS", remnant_names == "BH"],
        [WHITE_DWARF, NEUTRON_STAR, BLACK_HOLE], default=-1,
    ).astype(np.int8)
    if np.any(remnant_type < 0):
        raise RuntimeError(f"ssptools returned unknown remnant types {set(remnant_names)}")
    remnant_mass_msun = np.asarray(initial_final.predict(initial_masses_msun), dtype=np.float64)
    # ssptools' kick fallback tables span −2.5 ≤ [Fe/H] ≤ +0.4 (data/ifmr/uSSE_rapid), which contains
    # SSE's range; the clip only guards the file-name rounding at the ends.
    kick_metallicity_feh = float(np.clip(metallicity_feh, -2.5, 0.4))
    retention = np.ones((ESCAPE_VELOCITY_GRID_KMS.size, number_of_masses))
    retention[:, remnant_type == NEUTRON_STAR] = NEUTRON_STAR_RETENTION
    black_hole = remnant_type == BLACK_HOLE
    if np.any(black_hole):
        for velocity_index, escape_velocity_kms in enumerate(ESCAPE_VELOCITY_GRID_KMS):
            retention[velocity_index, black_hole] = ssptools.kicks.kick_retention_fraction(
                initial_masses_msun[black_hole], "maxwellian", vesc=float(escape_velocity_kms),
                FeH=kick_metallicity_feh, vdisp=NATAL_KICK_DISPERSION_KMS, SNe_method="rapid",
            )
    retention = np.clip(retention, 0.0, 1.0)

    table = {
        "initial_mass_msun": initial_masses_msun,
        "lifetime_gyr": lifetime_myr / 1000.0,
        "phase_start_gyr": phase_starts_myr / 1000.0,
        "phase_fraction": PHASE_FRACTIONS.copy(),
        "track_log_luminosity_v_lsun": track_log_luminosity_v.astype(np.float32),
        "track_current_mass_msun": track_current_mass_msun.astype(np.float32),
        "remnant_type": remnant_type,
        "remnant_mass_msun": remnant_mass_msun.astype(np.float32),
        "natal_kick_escape_velocity_kms": ESCAPE_VELOCITY_GRID_KMS.copy(),
        "natal_kick_retention": retention.astype(np.float32),
        "metallicity_feh": np.array(metallicity_feh),
        "metallicity_z": np.array(metallicity_z),
        "number_of_masses": np.array(number_of_masses),
        "age_step_gyr": np.array(age_step_gyr),
        "minimum_mass_msun": np.array(minimum_mass_msun),
        "maximum_mass_msun": np.array(maximum_mass_msun),
        "neutron_star_retention": np.array(NEUTRON_STAR_RETENTION),
        "white_dwarf_maximum_initial_mass_msun": np.array(float(initial_final.WD_mi.upper)),
        "black_hole_minimum_initial_mass_msun": np.array(float(initial_final.BH_mi.lower)),
        "table_format_version": np.array(TABLE_FORMAT_VERSION),
        "cosmic_version": np.array(version("cosmic-popsynth")),
        "ssptools_version": np.array(version("astro-ssptools")),
        "numpy_version": np.array(np.__version__),
    }
    table.update(_age_mass_arrays(table, age_grid_gyr(age_step_gyr)))
    table["build_seconds"] = np.array(time.perf_counter() - start_seconds)
    return table


def _age_mass_arrays(table, ages_gyr):
    """The tracks evaluated at every grid mass and age: the (age × mass) arrays of the table."""
    masses = np.asarray(table["initial_mass_msun"], dtype=np.float64)
    stellar_type = np.empty((ages_gyr.size, masses.size), dtype=np.int8)
    current_mass = np.empty((ages_gyr.size, masses.size), dtype=np.float32)
    luminosity = np.empty((ages_gyr.size, masses.size), dtype=np.float32)
    for index, age in enumerate(ages_gyr):
        state = _evaluate(table, masses, float(age), escape_velocity_kms=0.0)
        stellar_type[index] = state["stellar_type"]
        current_mass[index] = state["current_mass_msun"]
        luminosity[index] = state["luminosity_v_lsun"]
    return {"age_gyr": ages_gyr, "stellar_type": stellar_type, "current_mass_msun": current_mass,
            "luminosity_v_lsun": luminosity}


# =================================================================================================
# Cache
# =================================================================================================
def stellar_table_file_name(metallicity_feh, number_of_masses=DEFAULT_NUMBER_OF_MASSES,
                            age_step_gyr=DEFAULT_AGE_STEP_GYR, minimum_mass_msun=LOWEST_ALLOWED_MASS_MSUN,
                            maximum_mass_msun=DEFAULT_MAXIMUM_MASS_MSUN):
    """Cache file name encoding [Fe/H], the grid settings and the table format version."""
    return (
        f"stellar_table_feh{metallicity_feh:+.4f}_masses{number_of_masses}_step{age_step_gyr * 1000.0:g}myr"
        f"_range{minimum_mass_msun:g}-{maximum_mass_msun:g}msun_v{TABLE_FORMAT_VERSION}.npz"
    )


def load_stellar_table(metallicity_feh, cache_directory=None, **grid_settings):
    """Return the stellar table for `metallicity_feh`, from the `.npz` cache or built and cached.

    Reading a cached table needs only numpy; building one needs cosmic-popsynth and astro-ssptools.
    A new table is written under a temporary name and renamed, so readers never see a partial file.

    Parameters
    ----------
    metallicity_feh : float
        [Fe/H], −2.30 to +0.176.
    cache_directory : str or Path, optional
        Folder of the cache; default ``<repository>/.cache/stellar_tables/`` (ignored by git).
    **grid_settings
        Any of ``number_of_masses``, ``age_step_gyr``, ``minimum_mass_msun``, ``maximum_mass_msun``
        (see `build_stellar_table`); they are part of the cache file name.

    Returns
    -------
    dict
        The table, as returned by `build_stellar_table`.

    Raises
    ------
    ValueError
        For an unknown or out-of-range setting.
    RuntimeError
        If the table is not cached and cosmic-popsynth / astro-ssptools are not installed.
    """
    unknown = sorted(set(grid_settings) - set(GRID_SETTING_NAMES))
    if unknown:
        raise ValueError(f"unknown grid setting(s) {unknown}; known: {list(GRID_SETTING_NAMES)}")
    metallicity_feh = _check_metallicity(metallicity_feh)
    settings = {
        "number_of_masses": DEFAULT_NUMBER_OF_MASSES, "age_step_gyr": DEFAULT_AGE_STEP_GYR,
        "minimum_mass_msun": LOWEST_ALLOWED_MASS_MSUN, "maximum_mass_msun": DEFAULT_MAXIMUM_MASS_MSUN,
    }
    settings.update(grid_settings)
    settings = dict(zip(GRID_SETTING_NAMES, _check_grid_settings(**settings)))
    directory = Path(cache_directory) if cache_directory is not None else DEFAULT_CACHE_DIRECTORY
    path = directory / stellar_table_file_name(metallicity_feh, **settings)
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            table = {key: stored[key] for key in stored.files}
        if abs(float(table["metallicity_feh"]) - metallicity_feh) < 1e-9:
            return table
        # Two [Fe/H] values that round to the same file name: rebuild for the one asked for.
    try:
        table = build_stellar_table(metallicity_feh, **settings)
    except ImportError as error:
        raise RuntimeError(
            f"stellar table {path} is not cached and cannot be built here ({error}); build it where "
            "cosmic-popsynth and astro-ssptools are installed and copy the cache folder along"
        ) from error
    directory.mkdir(parents=True, exist_ok=True)
    temporary_path = directory / f"{path.name}.tmp.{os.getpid()}"
    try:
        with open(temporary_path, "wb") as handle:
            np.savez_compressed(handle, **table)
        os.replace(temporary_path, path)
    finally:
        if temporary_path.exists():
            temporary_path.unlink()
    return table


# =================================================================================================
# Population at an age
# =================================================================================================
_REQUIRED_TABLE_KEYS = (
    "initial_mass_msun", "lifetime_gyr", "phase_start_gyr", "phase_fraction", "track_log_luminosity_v_lsun",
    "track_current_mass_msun", "remnant_type", "remnant_mass_msun", "natal_kick_escape_velocity_kms",
    "natal_kick_retention", "white_dwarf_maximum_initial_mass_msun", "black_hole_minimum_initial_mass_msun",
)


def _interpolate_by_type(log_initial_masses, log_grid_masses, grid_values, grid_types, star_types):
    """Interpolate a per-mass remnant quantity in log mass, only between grid masses of the same type."""
    result = np.zeros(log_initial_masses.size)
    for kind in (WHITE_DWARF, NEUTRON_STAR, BLACK_HOLE):
        stars = star_types == kind
        grid = grid_types == kind
        if np.any(stars) and np.any(grid):
            result[stars] = np.interp(log_initial_masses[stars], log_grid_masses[grid], grid_values[grid])
    return result


def _track_value(track, star_index, phase, fraction_index, fraction_weight):
    """Values of `track` (n_m, n_phases, n_f) at the given stars, phases and fractional positions."""
    low = track[star_index, phase, fraction_index].astype(np.float64)
    high = track[star_index, phase, fraction_index + 1].astype(np.float64)
    return low + fraction_weight * (high - low)


def _evaluate(table, masses, age_gyr, escape_velocity_kms):
    """Core of `population_at_age`, without input validation (masses already inside the grid)."""
    grid_masses = np.asarray(table["initial_mass_msun"], dtype=np.float64)
    log_grid_masses = np.log10(grid_masses)
    log_masses = np.log10(np.clip(masses, grid_masses[0], grid_masses[-1]))
    # Neighbouring grid masses and the weight of the upper one, linear in log mass.
    lower = np.clip(np.searchsorted(log_grid_masses, log_masses, side="right") - 1, 0, grid_masses.size - 2)
    upper = lower + 1
    mass_weight = (log_masses - log_grid_masses[lower]) / (log_grid_masses[upper] - log_grid_masses[lower])

    # Lifetime: log-linear between the neighbours; a neighbour still luminous at 20 Gyr counts 20 Gyr
    # (the end of its track).
    lifetimes = np.asarray(table["lifetime_gyr"], dtype=np.float64)
    phase_starts = np.asarray(table["phase_start_gyr"], dtype=np.float64)
    track_ends = phase_starts[:, -1]
    lifetime = 10.0 ** ((1.0 - mass_weight) * np.log10(track_ends[lower]) + mass_weight * np.log10(track_ends[upper]))
    both_survive = ~np.isfinite(lifetimes[lower]) & ~np.isfinite(lifetimes[upper])
    alive = both_survive | (age_gyr < lifetime)

    stellar_type = np.zeros(masses.size, dtype=np.int8)
    current_mass_msun = np.zeros(masses.size)
    luminosity_v_lsun = np.zeros(masses.size)
    retention = np.ones(masses.size)

    if np.any(alive):
        # Phase start times of each star, counted back from its death: the time left before death at
        # the start of each phase is interpolated linearly in log mass between the neighbours. This
        # keeps the short late phases (a 0.5-Myr thermally pulsing AGB at 12 Gyr) exact, where
        # interpolating the absolute start times would err by ~0.05 Myr; the main sequence starts at 0.
        weight = mass_weight[alive][:, None]
        remaining = ((1.0 - weight) * (track_ends[lower[alive]][:, None] - phase_starts[lower[alive]])
                     + weight * (track_ends[upper[alive]][:, None] - phase_starts[upper[alive]]))
        alive_starts = np.maximum.accumulate(np.maximum(lifetime[alive][:, None] - remaining, 0.0), axis=1)
        alive_starts[:, 0] = 0.0
        alive_starts[:, -1] = lifetime[alive]
        # Phase: the last phase that has started before the requested age.
        phase = np.clip(np.sum(alive_starts[:, 1:NUMBER_OF_PHASES] <= age_gyr, axis=1), 0, NUMBER_OF_PHASES - 1)
        rows = np.arange(phase.size)
        phase_start = alive_starts[rows, phase]
        phase_end = alive_starts[rows, phase + 1]
        fraction = np.clip((age_gyr - phase_start) / np.maximum(phase_end - phase_start, 1e-30), 0.0, 1.0)
        fractions = np.asarray(table["phase_fraction"], dtype=np.float64)
        fraction_index = np.clip(np.searchsorted(fractions, fraction, side="right") - 1, 0, fractions.size - 2)
        fraction_step = fractions[fraction_index + 1] - fractions[fraction_index]
        fraction_weight = (fraction - fractions[fraction_index]) / fraction_step
        weight = mass_weight[alive]
        log_light = table["track_log_luminosity_v_lsun"]
        mass_track = table["track_current_mass_msun"]
        log_luminosity = (
            (1.0 - weight) * _track_value(log_light, lower[alive], phase, fraction_index, fraction_weight)
            + weight * _track_value(log_light, upper[alive], phase, fraction_index, fraction_weight)
        )
        mass = (
            (1.0 - weight) * _track_value(mass_track, lower[alive], phase, fraction_index, fraction_weight)
            + weight * _track_value(mass_track, upper[alive], phase, fraction_index, fraction_weight)
        )
        luminosity_v_lsun[alive] = 10.0 ** log_luminosity
        # A single star never gains mass: cap at the initial mass against interpolation round-off.
        current_mass_msun[alive] = np.minimum(mass, masses[alive])

    dead = ~alive
    if np.any(dead):
        white_dwarf_limit = float(table["white_dwarf_maximum_initial_mass_msun"])
        black_hole_limit = float(table["black_hole_minimum_initial_mass_msun"])
        dead_masses = masses[dead]
        # The same boundaries as ssptools' IFMR.predict_type.
        dead_types = np.where(
            dead_masses >= black_hole_limit, BLACK_HOLE,
            np.where(dead_masses > white_dwarf_limit, NEUTRON_STAR, WHITE_DWARF),
        ).astype(np.int8)
        grid_types = np.asarray(table["remnant_type"])
        stellar_type[dead] = dead_types
        current_mass_msun[dead] = _interpolate_by_type(
            log_masses[dead], log_grid_masses, np.asarray(table["remnant_mass_msun"], dtype=np.float64),
            grid_types, dead_types,
        )
        # Retention: linear in escape velocity between the two bracketing grid velocities.
        velocity_grid = np.asarray(table["natal_kick_escape_velocity_kms"], dtype=np.float64)
        velocity_upper = int(np.clip(np.searchsorted(velocity_grid, escape_velocity_kms, side="left"),
                                     1, velocity_grid.size - 1))
        velocity_lower = velocity_upper - 1
        velocity_weight = (escape_velocity_kms - velocity_grid[velocity_lower]) / (
            velocity_grid[velocity_upper] - velocity_grid[velocity_lower]
        )
        retention_table = table["natal_kick_retention"]
        retention_row = (
            (1.0 - velocity_weight) * np.asarray(retention_table[velocity_lower], dtype=np.float64)
            + velocity_weight * np.asarray(retention_table[velocity_upper], dtype=np.float64)
        )
        retention[dead] = np.clip(
            _interpolate_by_type(log_masses[dead], log_grid_masses, retention_row, grid_types, dead_types), 0.0, 1.0
        )
        retention[dead & (stellar_type == WHITE_DWARF)] = 1.0
    return {
        "stellar_type": stellar_type,
        "current_mass_msun": current_mass_msun,
        "luminosity_v_lsun": luminosity_v_lsun,
        "natal_kick_retention": retention,
    }


def population_at_age(table, initial_mass_msun, age_gyr, escape_velocity_kms):
    """State of every star of a simple stellar population at `age_gyr`.

    Alive or dead follows SSE's lifetime, interpolated (log-linear) between the two grid masses that
    bracket the star. A luminous star takes its SSE phase and the fraction of that phase elapsed from
    its neighbours' phase start times (as time left before death, interpolated linearly in log mass),
    then log L_V and mass at that same point of both neighbouring tracks, blended linearly in log
    mass; so short phases (giant-branch tip, horizontal branch, AGB) line up at every age. Remnants
    take type and mass from the IFMR at their initial mass, L_V = 0, and the natal-kick retention
    interpolated linearly in escape velocity.

    Parameters
    ----------
    table : dict
        A stellar table from `load_stellar_table` or `build_stellar_table`.
    initial_mass_msun : array_like
        Initial masses in M☉, within the table's mass range.
    age_gyr : float
        Age of the population, 0–14 Gyr.
    escape_velocity_kms : float
        Escape velocity of the cluster when the remnants form (for the natal-kick retention), ≥ 0.

    Returns
    -------
    dict of numpy.ndarray
        ``stellar_type`` (int8; 0 star, 1 WD, 2 NS, 3 BH), ``current_mass_msun``,
        ``luminosity_v_lsun`` (0 for remnants) and ``natal_kick_retention`` (1 for stars and white
        dwarfs), all float64 except the type, one entry per input star (flattened).

    Raises
    ------
    ValueError
        If a mass, the age or the escape velocity is out of range (the message names it), or
        `table` is not a stellar table.
    """
    if not isinstance(table, dict) or any(key not in table for key in _REQUIRED_TABLE_KEYS):
        raise ValueError("table must be a stellar table from load_stellar_table / build_stellar_table "
                         f"(format version {TABLE_FORMAT_VERSION})")
    grid_masses = np.asarray(table["initial_mass_msun"], dtype=np.float64)
    try:
        masses = np.asarray(initial_mass_msun, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ValueError(f"initial_mass_msun must be numbers ({error})") from error
    if not np.all(np.isfinite(masses)):
        raise ValueError("initial_mass_msun must be finite")
    if masses.size and (masses.min() < grid_masses[0] * (1 - 1e-9) or masses.max() > grid_masses[-1] * (1 + 1e-9)):
        raise ValueError(
            f"initial_mass_msun must lie in the table's range {grid_masses[0]:g}–{grid_masses[-1]:g} M☉ "
            f"(got {masses.min():g}–{masses.max():g}; zero or negative masses are not stars)"
        )
    try:
        age_gyr = float(age_gyr)
    except (TypeError, ValueError) as error:
        raise ValueError(f"age_gyr must be a number, got {age_gyr!r}") from error
    if not (np.isfinite(age_gyr) and MINIMUM_AGE_GYR <= age_gyr <= MAXIMUM_AGE_GYR):
        raise ValueError(f"age_gyr = {age_gyr} must lie in {MINIMUM_AGE_GYR}–{MAXIMUM_AGE_GYR} Gyr")
    velocity_grid = np.asarray(table["natal_kick_escape_velocity_kms"], dtype=np.float64)
    try:
        escape_velocity_kms = float(escape_velocity_kms)
    except (TypeError, ValueError) as error:
        raise ValueError(f"escape_velocity_kms must be a number, got {escape_velocity_kms!r}") from error
    if not (np.isfinite(escape_velocity_kms) and velocity_grid[0] <= escape_velocity_kms <= velocity_grid[-1]):
        raise ValueError(
            f"escape_velocity_kms = {escape_velocity_kms} must lie in "
            f"{velocity_grid[0]:g}–{velocity_grid[-1]:g} km/s"
        )
    return _evaluate(table, masses, age_gyr, escape_velocity_kms)
