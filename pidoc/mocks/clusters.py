"""The physics of π-DOC's mock globular clusters: from initial conditions to V-band flux and mass maps.

Chardin & Bianchini (2021, hereafter CB21) trained π-DOC on mock observations of direct N-body
simulations of N = 5×10⁴ stars. Those simulations are not public and cannot be run here, so each
mock cluster is built by a semi-analytic chain that a cluster dynamicist would recognise (the same
chain as GCfit's evolved models; see docs/mock_clusters.md for every number and its source):

1. Initial stars: N0 masses from the Kroupa (2001) IMF, 0.08–100 M☉.
2. Stellar evolution: SSE (Hurley et al. 2000) via COSMIC, V light from the Torres (2010) BC_V,
   remnant masses and natal-kick retention from astro-ssptools (module `stellar_evolution`).
3. Evolution in the Galactic tidal field: cBHBd (Antonini & Gieles 2020) gives the bound mass
   M(t), the half-mass radius r_h(t), the relaxation time and the retained black holes.
   Escapers are removed preferentially at low mass (Lamers et al. 2013 law, as in ssptools).
4. Structure: a mass-segregated multimass lowered-isothermal model (limepy; Gieles & Zocchi 2015)
   whose segregation δ grows from 0 at t = 0 to 0.5 after a few relaxation times.
5. Observation: random rotation, random centre offset, distance D, a 160×160 grid at 0.25″/px,
   flux F = L_V / (4π D²) in L☉/kpc², Gaussian seeing, and the same smoothing for the mass map.

Nuisance families (`NUISANCE_FAMILIES`, `draw_nuisance`) each vary one thing the mocks assume and
real clusters need not share: the IMF, unresolved binaries, primordial mass segregation, the tidal
history, the stellar-evolution tracks, the seeing, photometric noise with sky residuals, and the
centring of the frame. Without a family every map is made exactly as before, byte for byte.

Every random draw comes from a `numpy.random.Generator` that the caller seeds.
"""
import dataclasses
import warnings

import numpy as np
import scipy
from scipy import ndimage
from scipy.spatial.transform import Rotation

from pidoc.frame import MAP_PIXELS, PIXEL_SCALE_ARCSEC
from pidoc.mocks import stellar_evolution

# --- Map geometry of π-DOC (CB21 §2; paper-CB21.md §2; the frame's size is in pidoc.frame) -------
ARCSEC_PER_RADIAN = 206264.806
# A pixel with no light or mass at all would have log10 = -inf. These guards sit far below anything
# a cluster produces inside the seeing-smoothed field (about 1e-7 L☉/kpc² and 1e-4 M☉ per pixel),
# so they only ever touch pixels that no star reaches.
FLUX_FLOOR_LSUN_PER_KPC2 = 1e-9
MASS_FLOOR_MSUN = 1e-5

# --- Initial mass function: Kroupa (2001), two segments with a break at 0.5 M☉ -------------------
KROUPA_BREAK_MSUN = 0.5
KROUPA_LOW_SLOPE = 1.3
KROUPA_HIGH_SLOPE = 2.3
MINIMUM_STELLAR_MASS_MSUN = 0.08
MAXIMUM_STELLAR_MASS_MSUN = 100.0

# --- Dynamics -------------------------------------------------------------------------------------
# limepy truncation parameter g = 1.5 lies between King (g = 1) and Wilson (g = 2) models; it is the
# value GCfit adopts for Milky Way clusters (Gieles & Zocchi 2015; Dickson et al. 2023).
LIMEPY_TRUNCATION_G = 1.5
# Mass segregation saturates near δ = 0.5 in evolved N-body clusters (Gieles & Zocchi 2015 §4;
# Peuten et al. 2017), and is absent at t = 0. It builds up over a few initial relaxation times
# (Spitzer 1969), so δ = 0.5 (1 - exp(-n_rh / 2)) with n_rh the number of elapsed t_rh.
MAXIMUM_SEGREGATION_DELTA = 0.5
SEGREGATION_RELAXATION_TIMES = 2.0
# Preferential escape of low-mass objects: escape weight 1 - sqrt(m / 1.2 M☉), zero above 1.2 M☉
# (Lamers et al. 2013; the default `md` of ssptools' EvolvedMF).
ESCAPE_DEPLETION_MASS_MSUN = 1.2
# limepy components: log-spaced bins of luminous stars, plus white dwarfs and neutron stars.
STAR_MASS_BINS = 7
WHITE_DWARF_MASS_BINS = 2
MAXIMUM_AGE_GYR = 14.0

# --- Nuisance families (docs/mock_clusters.md, "Nuisance families") -------------------------------
# Each family draws its parameter per cluster (physics) or per map (observation) from generators
# seeded by (cluster seed, NUISANCE_STREAM, family code, …): streams 0–2 belong to the nominal
# chain, so a family never moves the nominal draws it does not replace.
NUISANCE_FAMILIES = ("imf", "binaries", "segregation", "tidal", "stellar-evolution", "seeing", "noise", "centring")
NUISANCE_FAMILY_CODES = {name: code for code, name in enumerate(NUISANCE_FAMILIES)}
NUISANCE_STREAM = 3
# IMF: Kroupa (2001, MNRAS 322, 231) gives α1 = 1.3 ± 0.5 (0.08–0.5 M☉) and α2 = 2.3 ± 0.3 (0.5–1 M☉;
# 2.3 ± 0.7 above 1 M☉); one slope per cluster and segment, uniform within those errors. The
# high-mass slope applies above 0.5 M☉, as in the nominal IMF, and cBHBd gets the same slopes.
IMF_LOW_MASS_SLOPE_RANGE = (0.8, 1.8)
IMF_HIGH_MASS_SLOPE_RANGE = (2.0, 2.6)
# Unresolved binaries: Milone et al. (2012, A&A 540, A16) measure main-sequence binary fractions of
# ~1–20 % in 59 Galactic globular clusters (higher in some cores); 0–30 % per cluster covers them.
# The fraction counts binaries among systems; companions are paired at random among the luminous stars
# (random pairing, Kouwenhoven et al. 2009, A&A 493, 979) and sit at the heavier star's position, so
# their light and mass merge into one unresolved point.
BINARY_FRACTION_RANGE = (0.0, 0.3)
# Primordial mass segregation: Baumgardt, De Marchi & Kroupa (2008, ApJ 685, 247) find that the
# depleted low-mass functions of several globular clusters need clusters born segregated. limepy's δ
# then starts at δ0 instead of 0 and still saturates at MAXIMUM_SEGREGATION_DELTA.
PRIMORDIAL_SEGREGATION_DELTA_RANGE = (0.0, MAXIMUM_SEGREGATION_DELTA)
# Tidal history: the preset's circular orbits become eccentric ones. The orbit's semi-major axis is
# drawn log-uniform from the preset's lowest Galactocentric radius to twice its largest (the Milky
# Way's clusters reach 100 kpc and more, Harris 1996, 2010 edition) and its eccentricity uniform in
# 0–0.5 (Gaia DR2 orbits of Milky Way globular clusters have e mostly 0.2–0.8, Baumgardt et al.
# 2019, MNRAS 482, 5138; above 0.5 most low-mass clusters of the priors dissolve). cBHBd takes an
# eccentric orbit as a circular one at a(1 − e) (its documented approximation for `rg`).
TIDAL_SEMI_MAJOR_AXIS_FACTORS = (1.0, 2.0)
ORBITAL_ECCENTRICITY_RANGE = (0.0, 0.5)
# Stellar evolution: the tables hold one code (SSE), so a second set of tracks is SSE at a metallicity
# 0.25 dex off the cluster's, for the light, remnants and natal kicks of its stars (cBHBd keeps the
# cluster's). Integrated light trades age against metallicity (Worthey 1994, ApJS 95, 107: a factor
# 2 in Z looks like a factor 3 in age), so this stands in for the disagreement between stellar-model
# sets on a population's light at a given age, and for [Fe/H] scales that differ by ~0.2 dex
# (Carretta et al. 2009, A&A 508, 695, against earlier scales). Offsets that would leave SSE's range
# (Z ≥ 10⁻⁴) take the other sign.
TRACK_METALLICITY_OFFSETS_DEX = (-0.25, 0.25)
# Seeing: the authors' maps show stars 2.3–2.8″ wide (paper-CB21.md §4); each map draws its FWHM
# uniform in 2.2–2.8″. The mass map, the target, keeps the nominal smoothing.
SEEING_FWHM_RANGE_ARCSEC = (2.2, 2.8)
# Photometric noise and sky residuals, per map, added to the linear flux after the seeing. The 1σ
# noise per 0.25″ pixel is a surface brightness drawn uniform in 25–27 mag arcsec⁻² (V): a 4-m
# telescope's 10-minute V exposure under a 21.6 mag arcsec⁻² dark sky (Patat 2003, A&A 400, 1183,
# Paranal) has sky-limited 1σ of ≈ 26 mag arcsec⁻² per 0.25″ pixel (zero point ≈ 26.5 mag for 1 e⁻/s);
# shorter or longer exposures span ±1 mag. The sky residual left by the sky subtraction is a constant
# of ±1 % of that sky (the accuracy of flat fields and sky models in deep imaging), drawn uniform.
NOISE_SURFACE_BRIGHTNESS_RANGE_MAG_ARCSEC2 = (25.0, 27.0)
SKY_SURFACE_BRIGHTNESS_MAG_ARCSEC2 = 21.6
SKY_RESIDUAL_FRACTION_RANGE = (-0.01, 0.01)
# Centring: an observer's frame is centred on a catalogue or fitted centre, good to ~1″ under 2.5″
# seeing (centres of Galactic globular clusters moved by up to a few arcsec between catalogues,
# Goldsbury et al. 2010, AJ 140, 1830); each map adds an error of uniform direction and a length
# uniform in 0–1″ to the nominal N(0, 1″) offset.
CENTRING_ERROR_MAXIMUM_ARCSEC = 1.0


@dataclasses.dataclass(frozen=True)
class ClusterParameters:
    """Initial conditions of one mock cluster (one 'simulation' in CB21's language)."""

    cluster_id: int
    seed: int
    initial_stars: int
    initial_half_mass_radius_pc: float
    galactocentric_radius_kpc: float
    metallicity_feh: float
    concentration_w0: float


@dataclasses.dataclass(frozen=True)
class Priors:
    """Priors over initial conditions and the observational settings (docs/mock_clusters.md).

    The defaults are CB21's domain (N0 = 5×10⁴). `initial_stars_range` (N0 log-uniform between the two
    values) and the log-uniform flags open the Milky Way preset of `make_mock_clusters.py`; they are
    drawn after the other parameters, so the default clusters keep their draws and bytes.
    """

    initial_stars: int = 50_000
    initial_half_mass_radius_pc: tuple = (0.5, 1.5)
    galactocentric_radius_kpc: tuple = (10.0, 30.0)
    metallicity_feh_values: tuple = (-2.0, -1.5)
    concentration_w0: tuple = (5.0, 7.5)
    centre_offset_arcsec: float = 1.0
    seeing_fwhm_arcsec: float = 2.5
    initial_stars_range: tuple = None
    log_uniform_radii: bool = False


def check_age(age_gyr):
    """Raise ValueError unless 0 ≤ age ≤ 14 Gyr (the range of CB21's snapshots)."""
    if not np.isfinite(age_gyr) or not 0.0 <= age_gyr <= MAXIMUM_AGE_GYR:
        raise ValueError(f"age_gyr must lie in [0, {MAXIMUM_AGE_GYR}] Gyr, got {age_gyr}")


def check_distance(distance_kpc):
    """Raise ValueError unless the distance is a positive finite number of kpc."""
    if not np.isfinite(distance_kpc) or distance_kpc <= 0:
        raise ValueError(f"distance_kpc must be positive, got {distance_kpc}")


def draw_cluster_parameters(cluster_id, seed, priors):
    """Draw one cluster's initial conditions from `priors` with a generator seeded by `seed`."""
    if priors.initial_stars < 1:
        raise ValueError(f"initial_stars (N0) must be at least 1, got {priors.initial_stars}")
    if priors.initial_stars_range is not None and not 1 <= priors.initial_stars_range[0] <= priors.initial_stars_range[1]:
        raise ValueError(f"initial_stars_range (N0) must be ordered and at least 1, got {priors.initial_stars_range}")
    rng = np.random.default_rng([seed, 0])

    def draw_radius(low_high):
        # Sizes spanning a decade are drawn log-uniform in the Milky Way preset (every scale equally).
        if priors.log_uniform_radii:
            return float(np.exp(rng.uniform(*np.log(low_high))))
        return float(rng.uniform(*low_high))

    initial_half_mass_radius_pc = draw_radius(priors.initial_half_mass_radius_pc)
    galactocentric_radius_kpc = draw_radius(priors.galactocentric_radius_kpc)
    metallicity_feh = float(rng.choice(priors.metallicity_feh_values))
    concentration_w0 = float(rng.uniform(*priors.concentration_w0))
    initial_stars = int(priors.initial_stars)
    if priors.initial_stars_range is not None:
        initial_stars = int(round(np.exp(rng.uniform(*np.log(priors.initial_stars_range)))))
    return ClusterParameters(
        cluster_id=int(cluster_id),
        seed=int(seed),
        initial_stars=initial_stars,
        initial_half_mass_radius_pc=initial_half_mass_radius_pc,
        galactocentric_radius_kpc=galactocentric_radius_kpc,
        metallicity_feh=metallicity_feh,
        concentration_w0=concentration_w0,
    )


# --- 1. Initial stars -----------------------------------------------------------------------------
def kroupa_initial_masses(number_of_stars, rng, low_mass_slope=KROUPA_LOW_SLOPE, high_mass_slope=KROUPA_HIGH_SLOPE):
    """Draw initial masses (M☉) from the Kroupa (2001) IMF by inverting its cumulative distribution.

    dN/dm ∝ m^-1.3 on [0.08, 0.5] M☉ and ∝ m^-2.3 on [0.5, 100] M☉, continuous at 0.5 M☉. The slopes
    can be changed (the "imf" nuisance family); a slope of exactly 1 takes the logarithmic form.
    """
    if number_of_stars < 1:
        raise ValueError(f"number_of_stars (N0) must be at least 1, got {number_of_stars}")
    for name, slope in (("low_mass_slope", low_mass_slope), ("high_mass_slope", high_mass_slope)):
        if not np.isfinite(slope) or slope <= 0:
            raise ValueError(f"{name} must be a positive number, got {slope}")

    def segment_integral(low, high, slope):
        exponent = 1.0 - slope
        if exponent == 0.0:
            return np.log(high / low)
        return (high**exponent - low**exponent) / exponent

    def segment_inverse(fraction, low, high, slope):
        exponent = 1.0 - slope
        if exponent == 0.0:
            return low * (high / low) ** fraction
        return (low**exponent + fraction * (high**exponent - low**exponent)) ** (1.0 / exponent)

    # Continuity at the break sets the relative normalisation of the high-mass segment.
    high_norm = KROUPA_BREAK_MSUN ** (high_mass_slope - low_mass_slope)
    low_weight = segment_integral(MINIMUM_STELLAR_MASS_MSUN, KROUPA_BREAK_MSUN, low_mass_slope)
    high_weight = high_norm * segment_integral(KROUPA_BREAK_MSUN, MAXIMUM_STELLAR_MASS_MSUN, high_mass_slope)
    in_low_segment = rng.random(number_of_stars) < low_weight / (low_weight + high_weight)
    fraction = rng.random(number_of_stars)
    return np.where(
        in_low_segment,
        segment_inverse(fraction, MINIMUM_STELLAR_MASS_MSUN, KROUPA_BREAK_MSUN, low_mass_slope),
        segment_inverse(fraction, KROUPA_BREAK_MSUN, MAXIMUM_STELLAR_MASS_MSUN, high_mass_slope),
    )


# --- 3. Evolution in the tidal field --------------------------------------------------------------
def cluster_evolution_track(parameters, nuisance=None):
    """Run cBHBd for one cluster and return its global evolution on a time grid.

    `nuisance` (a `Nuisance`, optional) changes the IMF slopes cBHBd integrates and the orbit: an
    eccentric orbit of semi-major axis r_g and eccentricity e runs as a circular one at r_g (1 − e).

    Returns
    -------
    dict of numpy arrays
        time_gyr, stellar_mass_msun (all non-BH mass), black_hole_number, half_mass_radius_pc,
        relaxation_time_myr, relaxation_times_elapsed (∫dt/t_rh), escape_velocity_kms,
        and the scalar initial_mass_msun of cBHBd's own IMF integral.
    """
    import cbhbd.cbhbd

    options = {}
    galactocentric_radius_kpc = parameters.galactocentric_radius_kpc
    if nuisance is not None:
        # cBHBd's slopes are those of dN/dm, negative; its three segments break at 0.5 and 1 M☉.
        if (nuisance.imf_low_mass_slope, nuisance.imf_high_mass_slope) != (KROUPA_LOW_SLOPE, KROUPA_HIGH_SLOPE):
            options["a_slopes"] = [-nuisance.imf_low_mass_slope, -nuisance.imf_high_mass_slope, -nuisance.imf_high_mass_slope]
        galactocentric_radius_kpc = parameters.galactocentric_radius_kpc * (1.0 - nuisance.orbital_eccentricity)
    model = cbhbd.cbhbd.CBHBD(
        N=parameters.initial_stars,
        rh0=parameters.initial_half_mass_radius_pc,
        rg=galactocentric_radius_kpc,
        FeH=parameters.metallicity_feh,
        # The same Kroupa IMF as our stars, so cBHBd's mass budget matches the sampled population.
        m_breaks=[MINIMUM_STELLAR_MASS_MSUN, KROUPA_BREAK_MSUN, 1.0, MAXIMUM_STELLAR_MASS_MSUN],
        tend=MAXIMUM_AGE_GYR * 1e3,
        compute_mergers=False,
        verbose=False,
        seed=parameters.seed % 2**31,
        **options,
    )
    track = model.cluster
    time_gyr = np.asarray(track.t, dtype=float)
    relaxation_time_myr = np.asarray(track.trh, dtype=float)
    rate_per_gyr = 1e3 / relaxation_time_myr
    elapsed = np.concatenate([[0.0], np.cumsum(0.5 * (rate_per_gyr[1:] + rate_per_gyr[:-1]) * np.diff(time_gyr))])
    return {
        "time_gyr": time_gyr,
        "stellar_mass_msun": np.asarray(track.Mst, dtype=float),
        "black_hole_number": np.asarray(track.Nbh, dtype=float),
        "half_mass_radius_pc": np.asarray(track.rh, dtype=float),
        "relaxation_time_myr": relaxation_time_myr,
        "relaxation_times_elapsed": elapsed,
        "escape_velocity_kms": np.asarray(track.vesc, dtype=float),
        "initial_mass_msun": float(model.M0),
    }


def track_at(track, key, age_gyr):
    """Interpolate one quantity of a cBHBd track at `age_gyr` (linear in time)."""
    return float(np.interp(age_gyr, track["time_gyr"], track[key]))


def mass_segregation_delta(relaxation_times_elapsed, primordial_delta=None):
    """limepy's δ as a function of dynamical age: 0 at t = 0, saturating at 0.5 (see constants).

    With `primordial_delta` δ0 (the "segregation" nuisance family) the cluster is born segregated:
    δ = δ0 + (0.5 − δ0)(1 − exp(−n_rh / 2)).
    """
    if primordial_delta is None:
        return MAXIMUM_SEGREGATION_DELTA * (1.0 - np.exp(-relaxation_times_elapsed / SEGREGATION_RELAXATION_TIMES))
    if not 0.0 <= primordial_delta <= MAXIMUM_SEGREGATION_DELTA:
        raise ValueError(f"primordial_delta must lie in [0, {MAXIMUM_SEGREGATION_DELTA}], got {primordial_delta}")
    growth = 1.0 - np.exp(-relaxation_times_elapsed / SEGREGATION_RELAXATION_TIMES)
    return primordial_delta + (MAXIMUM_SEGREGATION_DELTA - primordial_delta) * growth


def preferential_escape_mask(masses_msun, mass_to_remove_msun, rng):
    """Choose escapers, lightest objects first in probability, until `mass_to_remove_msun` is gone.

    Weighted sampling without replacement (Efraimidis & Spirakis 2006): each object gets the key
    u^(1/w) with w = 1 - sqrt(m / 1.2 M☉); objects are removed in order of decreasing key until the
    removed mass reaches the target. Objects above 1.2 M☉ never escape by evaporation.

    Returns
    -------
    numpy.ndarray of bool
        True for objects that stay in the cluster.
    """
    keep = np.ones(masses_msun.size, dtype=bool)
    if mass_to_remove_msun <= 0:
        return keep
    weights = np.clip(1.0 - np.sqrt(masses_msun / ESCAPE_DEPLETION_MASS_MSUN), 0.0, None)
    candidates = np.flatnonzero(weights > 0)
    keys = rng.random(candidates.size) ** (1.0 / weights[candidates])
    order = candidates[np.argsort(-keys, kind="stable")]
    removed_mass = np.cumsum(masses_msun[order])
    number_removed = int(np.searchsorted(removed_mass, mass_to_remove_msun)) + 1
    keep[order[:number_removed]] = False
    return keep


def evolve_population(initial_masses_msun, age_gyr, track, stellar_table, rng):
    """The bound population of one cluster at `age_gyr`: stars, white dwarfs, neutron stars, BHs.

    Stellar evolution decides alive or dead and the V light from one source (SSE). Remnants are
    retained after their natal kick with ssptools' probability (drawn here). Retained black holes
    are then ejected dynamically from the most massive down to cBHBd's N_BH(t) (Antonini & Gieles
    2020 deplete the BH mass function top-down). Finally escapers are removed preferentially at low
    mass until the non-BH mass equals cBHBd's stellar mass, rescaled to our sampled initial mass.

    Returns
    -------
    dict of numpy arrays
        mass_msun, luminosity_v_lsun, stellar_type (0 star, 1 WD, 2 NS, 3 BH), plus scalars
        escaped_mass_msun and retained_black_holes.
    """
    check_age(age_gyr)
    initial_escape_velocity_kms = float(track["escape_velocity_kms"][0])
    population = stellar_evolution.population_at_age(
        stellar_table, initial_masses_msun, age_gyr, initial_escape_velocity_kms
    )
    stellar_type = population["stellar_type"]
    retained = rng.random(initial_masses_msun.size) < population["natal_kick_retention"]
    retained |= stellar_type <= 1

    is_black_hole = retained & (stellar_type == 3)
    black_holes_to_keep = int(round(track_at(track, "black_hole_number", age_gyr)))
    black_hole_indices = np.flatnonzero(is_black_hole)
    lightest_first = black_hole_indices[np.argsort(population["current_mass_msun"][black_hole_indices], kind="stable")]
    retained[lightest_first[black_holes_to_keep:]] = False

    mass_msun = population["current_mass_msun"][retained]
    luminosity_v_lsun = population["luminosity_v_lsun"][retained]
    stellar_type = stellar_type[retained]

    non_black_hole = stellar_type != 3
    target_mass_msun = track_at(track, "stellar_mass_msun", age_gyr) * initial_masses_msun.sum() / track["initial_mass_msun"]
    excess_mass_msun = mass_msun[non_black_hole].sum() - target_mass_msun
    stays = np.ones(mass_msun.size, dtype=bool)
    stays[non_black_hole] = preferential_escape_mask(mass_msun[non_black_hole], excess_mass_msun, rng)
    return {
        "mass_msun": mass_msun[stays],
        "luminosity_v_lsun": luminosity_v_lsun[stays],
        "stellar_type": stellar_type[stays],
        "escaped_mass_msun": float(mass_msun[~stays].sum()),
        "retained_black_holes": int(np.count_nonzero(stellar_type[stays] == 3)),
    }


# --- 4. Structure ---------------------------------------------------------------------------------
def limepy_components(mass_msun, stellar_type):
    """Group the non-BH population into limepy mass components.

    Returns the component index of every object (-1 for BHs) with each component's mean mass and
    total mass. Luminous stars get log-spaced bins (giants fall in the top bin), white dwarfs two
    bins, neutron stars one.
    """
    component = np.full(mass_msun.size, -1, dtype=int)
    mean_masses, total_masses = [], []
    for kind, bins in ((0, STAR_MASS_BINS), (1, WHITE_DWARF_MASS_BINS), (2, 1)):
        members = np.flatnonzero(stellar_type == kind)
        if members.size == 0:
            continue
        log_mass = np.log10(mass_msun[members])
        edges = np.linspace(log_mass.min(), log_mass.max() + 1e-9, bins + 1)
        bin_of_member = np.clip(np.searchsorted(edges, log_mass, side="right") - 1, 0, bins - 1)
        for bin_index in range(bins):
            in_bin = members[bin_of_member == bin_index]
            if in_bin.size == 0:
                continue
            component[in_bin] = len(mean_masses)
            mean_masses.append(mass_msun[in_bin].mean())
            total_masses.append(mass_msun[in_bin].sum())
    return component, np.array(mean_masses), np.array(total_masses)


def _solve_limepy(concentration_w0, delta, half_mass_radius_pc, mean_masses, total_masses):
    """Solve a multimass limepy model in physical units (pc, M☉).

    The fast full-step iteration of the component normalisations occasionally overshoots
    ("rmax reached in mf iteration"); limepy's default half step is then tried, and as a last
    resort a weaker segregation (half the δ), which is recorded in the model's `delta`.
    """
    import limepy

    _patch_scipy_for_limepy()
    attempts = ((1.0, delta), (0.5, delta), (0.5, 0.5 * delta))
    for attempt, (iteration_index, attempt_delta) in enumerate(attempts):
        try:
            return limepy.limepy(
                concentration_w0, LIMEPY_TRUNCATION_G,
                M=float(total_masses.sum()), rh=float(half_mass_radius_pc),
                mj=mean_masses, Mj=total_masses, delta=float(attempt_delta),
                # A 1e-2 relative tolerance on the component masses is ample for sampling 5e4
                # positions. The full update step (mf_iter_index = 1) converges in about 12
                # iterations instead of 27 at limepy's default 0.5, with the same component masses
                # to 0.3 % (measured here).
                meanmassdef="global", diffdef="rel", diffcrit=1e-2, mf_iter_index=iteration_index, verbose=False,
            )
        except ValueError:
            if attempt == len(attempts) - 1:
                raise


def _patch_scipy_for_limepy():
    """Make astro-limepy 1.3.0 run on scipy ≥ 1.17 (forward-model.md §5.1).

    limepy passes `nsteps=1e6` as a float, which scipy 1.17 refuses, and scipy 1.17's dopri5 runner
    calls the integrator's step callback with the f_params appended, which its own three-argument
    `_solout` then refuses. Only newer scipy is patched; on the pinned scipy 1.16 this does nothing.
    """
    from scipy.integrate import _ode

    version = tuple(int(part) for part in scipy.__version__.split(".")[:2])
    if version < (1, 17) or getattr(_ode, "_pidoc_patched", False):
        return
    original_set_integrator, original_solout = _ode.ode.set_integrator, _ode.dopri5._solout

    def set_integrator(self, name, **parameters):
        if "nsteps" in parameters:
            parameters["nsteps"] = int(parameters["nsteps"])
        return original_set_integrator(self, name, **parameters)

    def solout(self, time, state, *appended_parameters):
        return original_solout(self, time, state)

    _ode.ode.set_integrator, _ode.dopri5._solout, _ode._pidoc_patched = set_integrator, solout, True


def sample_positions(population, concentration_w0, delta, half_mass_radius_pc, rng):
    """Draw 3-D positions (pc) for every object of `population` from a multimass limepy model.

    Each component's radii come from inverting its enclosed-mass profile M_j(<r). Directions are
    isotropic. Black holes are not in the limepy model: heavy components often stop limepy from
    converging (forward-model.md §5.3), and they are a small fraction of the mass. They are placed
    with the radii of the heaviest component scaled by (m_heavy / m_BH)^1/2, the scaling of a
    population in energy equipartition inside a harmonic core (σ² ∝ 1/m, so r ∝ m^-1/2).

    Returns
    -------
    positions_pc : numpy.ndarray, shape (N, 3)
    model : limepy model (for diagnostics)
    """
    mass_msun = population["mass_msun"]
    component, mean_masses, total_masses = limepy_components(mass_msun, population["stellar_type"])
    model = _solve_limepy(concentration_w0, delta, half_mass_radius_pc, mean_masses, total_masses)
    if not model.converged:
        warnings.warn(f"limepy did not converge (W0={concentration_w0:.2f}, delta={delta:.3f}); using its last iterate")
    enclosed = np.atleast_2d(model.mcj)
    radius_pc = np.empty(mass_msun.size)
    for index in range(mean_masses.size):
        members = np.flatnonzero(component == index)
        profile = enclosed[index] / enclosed[index, -1]
        radius_pc[members] = np.interp(rng.random(members.size), profile, model.r)

    black_holes = np.flatnonzero(component < 0)
    if black_holes.size:
        heaviest = int(np.argmax(mean_masses))
        profile = enclosed[heaviest] / enclosed[heaviest, -1]
        heavy_radius_pc = np.interp(rng.random(black_holes.size), profile, model.r)
        radius_pc[black_holes] = heavy_radius_pc * np.sqrt(mean_masses[heaviest] / mass_msun[black_holes])

    cos_theta = rng.uniform(-1.0, 1.0, mass_msun.size)
    phi = rng.uniform(0.0, 2.0 * np.pi, mass_msun.size)
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    positions_pc = radius_pc[:, None] * np.column_stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta])
    return positions_pc, model


# --- 5. Observation -------------------------------------------------------------------------------
def seeing_sigma_pixels(seeing_fwhm_arcsec):
    """Gaussian σ in pixels for a seeing FWHM in arcsec (FWHM = 2 sqrt(2 ln 2) σ)."""
    if not np.isfinite(seeing_fwhm_arcsec) or seeing_fwhm_arcsec < 0:
        raise ValueError(f"seeing_fwhm_arcsec must be non-negative, got {seeing_fwhm_arcsec}")
    return seeing_fwhm_arcsec / (2.0 * np.sqrt(2.0 * np.log(2.0))) / PIXEL_SCALE_ARCSEC


def pixel_indices(x_arcsec, y_arcsec, padding_pixels=0):
    """Flat pixel index of every object on the π-DOC grid extended by `padding_pixels` on every side.

    The central 160×160 pixels cover [-20″, 20″) on both axes. Row index follows y, column follows
    x, so `imshow(origin="lower")` shows the sky with x to the right.

    Returns
    -------
    flat_index : numpy.ndarray of int64
        row × size + column of each object that falls on the grid.
    inside : numpy.ndarray of bool
        Which objects fall on the grid (`flat_index` holds only those).
    size : int
        Pixels per side of the padded grid.
    """
    size = MAP_PIXELS + 2 * padding_pixels
    half_width_arcsec = 0.5 * size * PIXEL_SCALE_ARCSEC
    # Floors stay floats (exact small integers) until the objects off the grid are dropped, so only
    # the objects on the grid are converted and indexed; for a 10⁶-star cluster seen from 10 kpc
    # that is a small fraction of them.
    column = np.floor((x_arcsec + half_width_arcsec) / PIXEL_SCALE_ARCSEC)
    row = np.floor((y_arcsec + half_width_arcsec) / PIXEL_SCALE_ARCSEC)
    inside = (column >= 0) & (column < size) & (row >= 0) & (row < size)
    return row[inside].astype(np.int64) * size + column[inside].astype(np.int64), inside, size


def pixel_sums(x_arcsec, y_arcsec, weights, padding_pixels=0):
    """Sum `weights` into the π-DOC pixel grid, extended by `padding_pixels` on every side."""
    flat_index, inside, size = pixel_indices(x_arcsec, y_arcsec, padding_pixels)
    return np.bincount(flat_index, weights=weights[inside], minlength=size * size).reshape(size, size)


def observe(positions_pc, mass_msun, luminosity_v_lsun, distance_kpc, rotation, offset_arcsec, seeing_fwhm_arcsec,
            mass_smoothing_fwhm_arcsec=None):
    """Mock-observe a cluster: log10 flux map (L☉/kpc²) and log10 mass map (M☉) per pixel.

    `mass_smoothing_fwhm_arcsec` smooths the mass map with another kernel than the flux's seeing (the
    "seeing" nuisance family keeps the target mass map at the nominal 2.5″); by default the same.

    The cluster is rotated (random projection), projected onto the sky at `distance_kpc`, shifted by
    `offset_arcsec`, binned on a grid padded by four seeing σ (so light from stars just outside the
    field still enters it, as through a real PSF), convolved with Gaussian seeing and cropped to
    160×160. The flux of a star is L_V / (4π D²), D in kpc (paper-CB21.md §2). The mass map holds all
    mass, dark remnants included, smoothed with the same kernel (forward-model.md §4).

    Returns
    -------
    log_flux, log_mass : numpy.ndarray, shape (160, 160), float32
    field : dict
        mass_in_field_msun and luminosity_v_in_field_lsun, summed over the objects that fall in the
        unpadded 40″ × 40″ field before smoothing.
    """
    check_distance(distance_kpc)
    sigma_pixels = seeing_sigma_pixels(seeing_fwhm_arcsec)
    mass_sigma_pixels = sigma_pixels if mass_smoothing_fwhm_arcsec is None else seeing_sigma_pixels(mass_smoothing_fwhm_arcsec)
    padding_pixels = int(np.ceil(4.0 * max(sigma_pixels, mass_sigma_pixels)))
    arcsec_per_pc = ARCSEC_PER_RADIAN / (distance_kpc * 1e3)
    projected_pc = rotation.apply(positions_pc)[:, :2]
    x_arcsec = projected_pc[:, 0] * arcsec_per_pc + offset_arcsec[0]
    y_arcsec = projected_pc[:, 1] * arcsec_per_pc + offset_arcsec[1]
    flux_per_star = luminosity_v_lsun / (4.0 * np.pi * distance_kpc**2)
    # One pixel assignment serves both maps; only the objects that land on the padded grid are binned.
    flat_index, inside, size = pixel_indices(x_arcsec, y_arcsec, padding_pixels)

    crop = slice(padding_pixels, padding_pixels + MAP_PIXELS)
    maps, sums_in_field = [], []
    for weights, floor, kernel_sigma_pixels in ((flux_per_star, FLUX_FLOOR_LSUN_PER_KPC2, sigma_pixels),
                                                (mass_msun, MASS_FLOOR_MSUN, mass_sigma_pixels)):
        padded = np.bincount(flat_index, weights=weights[inside], minlength=size * size).reshape(size, size)
        sums_in_field.append(float(padded[crop, crop].sum()))
        if kernel_sigma_pixels > 0:
            padded = ndimage.gaussian_filter(padded, kernel_sigma_pixels, mode="constant", truncate=4.0)
        maps.append(np.log10(np.maximum(padded[crop, crop], floor)).astype(np.float32))
    field = {
        "luminosity_v_in_field_lsun": sums_in_field[0] * 4.0 * np.pi * distance_kpc**2,
        "mass_in_field_msun": sums_in_field[1],
    }
    return maps[0], maps[1], field


def merge_unresolved_binaries(positions_pc, mass_msun, stellar_type, binary_fraction, rng):
    """Positions with a fraction of the luminous stars paired into unresolved binaries.

    A binary fraction f counts binaries among systems, so n_b = round(f n / (1 + f)) pairs are made
    from the n luminous stars, paired at random (Kouwenhoven et al. 2009); the lighter star of each
    pair moves to the heavier one's position, so their light and mass fall on one point. Returns a
    new (N, 3) array and the number of pairs.
    """
    if not 0.0 <= binary_fraction < 1.0:
        raise ValueError(f"binary_fraction must lie in [0, 1), got {binary_fraction}")
    luminous = np.flatnonzero(stellar_type == 0)
    number_of_pairs = int(round(binary_fraction * luminous.size / (1.0 + binary_fraction)))
    members = rng.permutation(luminous)[: 2 * number_of_pairs].reshape(2, number_of_pairs)
    heavier_first = mass_msun[members[0]] >= mass_msun[members[1]]
    heavier = np.where(heavier_first, members[0], members[1])
    lighter = np.where(heavier_first, members[1], members[0])
    merged = np.array(positions_pc, dtype=np.float64, copy=True)
    merged[lighter] = merged[heavier]
    return merged, number_of_pairs


def surface_brightness_to_pixel_flux(surface_brightness_mag_arcsec2):
    """V surface brightness (mag arcsec⁻²) → π-DOC's flux per 0.25″ pixel, L☉/kpc².

    The Sun seen from 10 pc has F = L☉ / (4π (0.01 kpc)²) = 10⁴/(4π) L☉ kpc⁻² and V = M_V,☉ = 4.81
    (Willmer 2018), so a surface brightness μ gives 10⁴/(4π) · 10^(−0.4 (μ − M_V,☉)) per arcsec²,
    times the pixel's 0.0625 arcsec² (log10 F = 1.697 − 0.4 (μ − 4.81)).
    """
    return (1e4 / (4.0 * np.pi) * PIXEL_SCALE_ARCSEC**2
            * 10.0 ** (-0.4 * (np.asarray(surface_brightness_mag_arcsec2, dtype=np.float64)
                               - stellar_evolution.SOLAR_ABSOLUTE_V_MAGNITUDE)))


def add_photometric_noise(log_flux, noise_sigma_lsun_per_kpc2, sky_residual_lsun_per_kpc2, rng,
                          correlation_fwhm_arcsec=None):
    """log10 flux map with Gaussian noise per pixel and a constant sky residual added to the linear flux.

    Pixels that the noise or a negative residual take to or below zero get the mocks' floor, as the
    image pipeline gives pixels whose light the sky subtraction cancelled (pidoc/observations.py).

    `noise_sigma_lsun_per_kpc2` is the 1σ noise of one pixel of the map that is returned. By default
    the noise of neighbouring pixels is independent: an image taken at π-DOC's seeing and used as it
    is. With `correlation_fwhm_arcsec` the noise field is first smoothed by a Gaussian of that FWHM
    and then scaled back to the same 1σ per pixel: an image taken at a much sharper PSF (HST) and
    convolved to π-DOC's seeing by `pidoc.observations.convolve_to_seeing`, whose noise is smoothed
    by the same kernel as its light. The field wraps at the map's edges (noise has no edges).
    """
    flux = 10.0 ** np.asarray(log_flux, dtype=np.float64)
    noise = rng.normal(0.0, 1.0, flux.shape)
    if correlation_fwhm_arcsec is not None:
        sigma_pixels = correlation_fwhm_arcsec / (2.0 * np.sqrt(2.0 * np.log(2.0))) / PIXEL_SCALE_ARCSEC
        noise = ndimage.gaussian_filter(noise, sigma_pixels, mode="wrap")
        noise = noise / noise.std()
    flux = flux + sky_residual_lsun_per_kpc2 + noise_sigma_lsun_per_kpc2 * noise
    return np.log10(np.maximum(flux, FLUX_FLOOR_LSUN_PER_KPC2)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Nuisance:
    """The per-cluster parameters of a nuisance family; every other field keeps its nominal value.

    `family` is one of `NUISANCE_FAMILIES`. The per-map parameters of the observation families
    (seeing, noise, centring) are drawn in `make_cluster_maps` from `nuisance_view_generator`.
    """

    family: str
    imf_low_mass_slope: float = KROUPA_LOW_SLOPE
    imf_high_mass_slope: float = KROUPA_HIGH_SLOPE
    binary_fraction: float = 0.0
    primordial_segregation_delta: float = 0.0
    orbital_eccentricity: float = 0.0
    track_metallicity_feh: float = None

    def metadata(self, parameters):
        """The metadata columns of this family's per-cluster parameters (`nuisance_family` first)."""
        columns = {"nuisance_family": self.family}
        if self.family == "imf":
            columns.update(imf_low_mass_slope=self.imf_low_mass_slope, imf_high_mass_slope=self.imf_high_mass_slope)
        elif self.family == "binaries":
            columns["binary_fraction"] = self.binary_fraction
        elif self.family == "segregation":
            columns["primordial_segregation_delta"] = self.primordial_segregation_delta
        elif self.family == "tidal":
            columns.update(orbital_eccentricity=self.orbital_eccentricity,
                           effective_galactocentric_radius_kpc=parameters.galactocentric_radius_kpc * (1.0 - self.orbital_eccentricity))
        elif self.family == "stellar-evolution":
            columns["track_metallicity_feh"] = self.track_metallicity_feh
        return columns


def check_nuisance_family(family):
    """Raise ValueError unless `family` is one of `NUISANCE_FAMILIES`."""
    if family not in NUISANCE_FAMILY_CODES:
        raise ValueError(f"unknown nuisance family {family!r}; choose from {', '.join(NUISANCE_FAMILIES)}")


def nuisance_generator(seed, family, *indices):
    """The seeded generator of one family's draws for one cluster (and snapshot or view, by `indices`)."""
    return np.random.default_rng([int(seed), NUISANCE_STREAM, NUISANCE_FAMILY_CODES[family], *map(int, indices)])


def track_metallicity_options(metallicity_feh):
    """The track metallicities the "stellar-evolution" family may give a cluster of `metallicity_feh`."""
    options = [metallicity_feh + offset for offset in TRACK_METALLICITY_OFFSETS_DEX
               if stellar_evolution.MINIMUM_METALLICITY_FEH - 1e-9 <= metallicity_feh + offset
               <= stellar_evolution.MAXIMUM_METALLICITY_FEH + 1e-9]
    if not options:
        raise ValueError(f"no track metallicity within SSE's range for [Fe/H] = {metallicity_feh}")
    return [round(value, 4) for value in options]


def draw_nuisance(family, parameters, priors):
    """Draw one cluster's parameters of a nuisance family.

    Parameters
    ----------
    family : str
        One of `NUISANCE_FAMILIES`.
    parameters : ClusterParameters
        The cluster's nominal initial conditions.
    priors : Priors
        The priors they were drawn from (the "tidal" family widens their Galactocentric radii).

    Returns
    -------
    parameters : ClusterParameters
        The initial conditions, with the orbit's semi-major axis as Galactocentric radius for "tidal"
        and unchanged otherwise.
    nuisance : Nuisance
    """
    check_nuisance_family(family)
    rng = nuisance_generator(parameters.seed, family)
    if family == "imf":
        return parameters, Nuisance(family, imf_low_mass_slope=float(rng.uniform(*IMF_LOW_MASS_SLOPE_RANGE)),
                                    imf_high_mass_slope=float(rng.uniform(*IMF_HIGH_MASS_SLOPE_RANGE)))
    if family == "binaries":
        return parameters, Nuisance(family, binary_fraction=float(rng.uniform(*BINARY_FRACTION_RANGE)))
    if family == "segregation":
        return parameters, Nuisance(family, primordial_segregation_delta=float(rng.uniform(*PRIMORDIAL_SEGREGATION_DELTA_RANGE)))
    if family == "tidal":
        low_kpc = min(priors.galactocentric_radius_kpc) * TIDAL_SEMI_MAJOR_AXIS_FACTORS[0]
        high_kpc = max(priors.galactocentric_radius_kpc) * TIDAL_SEMI_MAJOR_AXIS_FACTORS[1]
        semi_major_axis_kpc = float(np.exp(rng.uniform(np.log(low_kpc), np.log(high_kpc))))
        eccentricity = float(rng.uniform(*ORBITAL_ECCENTRICITY_RANGE))
        return (dataclasses.replace(parameters, galactocentric_radius_kpc=semi_major_axis_kpc),
                Nuisance(family, orbital_eccentricity=eccentricity))
    if family == "stellar-evolution":
        return parameters, Nuisance(family, track_metallicity_feh=float(rng.choice(track_metallicity_options(parameters.metallicity_feh))))
    # The observation families draw per map (make_cluster_maps).
    return parameters, Nuisance(family)


def random_rotation(rng):
    """A uniformly random 3-D rotation (a random projection of the cluster on the sky)."""
    return Rotation.random(random_state=rng)


# --- One cluster, several snapshots and views -----------------------------------------------------
def make_cluster_maps(parameters, views, seeing_fwhm_arcsec, centre_offset_arcsec, stellar_table_loader, nuisance=None):
    """Make all maps of one cluster.

    Parameters
    ----------
    parameters : ClusterParameters
    views : list of (age_gyr, list of distance_kpc)
        One entry per snapshot; each snapshot is observed once per listed distance, each time from
        a new random direction and centre offset.
    seeing_fwhm_arcsec, centre_offset_arcsec : float
        Gaussian seeing FWHM, and the standard deviation of the centre offset per axis.
    stellar_table_loader : callable
        metallicity_feh -> stellar table (see `stellar_evolution.load_stellar_table`).
    nuisance : Nuisance, optional
        A nuisance family's per-cluster parameters (`draw_nuisance`); its per-map parameters are
        drawn here from `nuisance_generator(seed, family, snapshot, view)`, and its columns join the
        metadata. None: the nominal chain, byte for byte.

    Returns
    -------
    log_flux, log_mass : numpy.ndarray, shape (n_maps, 160, 160, 1), float32
    distance_age : numpy.ndarray, shape (n_maps, 2), float32
    metadata : list of dict, one per map
    """
    rng = np.random.default_rng([parameters.seed, 1])
    family = None if nuisance is None else nuisance.family
    if family is not None:
        check_nuisance_family(family)
    track_metallicity_feh = parameters.metallicity_feh if family != "stellar-evolution" else nuisance.track_metallicity_feh
    stellar_table = stellar_table_loader(track_metallicity_feh)
    if family == "imf":
        initial_masses_msun = kroupa_initial_masses(parameters.initial_stars, rng, nuisance.imf_low_mass_slope,
                                                    nuisance.imf_high_mass_slope)
    else:
        initial_masses_msun = kroupa_initial_masses(parameters.initial_stars, rng)
    track = cluster_evolution_track(parameters) if family is None else cluster_evolution_track(parameters, nuisance)
    log_flux, log_mass, distance_age, metadata = [], [], [], []
    for snapshot_index, (age_gyr, distances_kpc) in enumerate(views):
        check_age(age_gyr)
        population = evolve_population(initial_masses_msun, age_gyr, track, stellar_table, rng)
        relaxation_times = track_at(track, "relaxation_times_elapsed", age_gyr)
        if family == "segregation":
            delta = float(mass_segregation_delta(relaxation_times, nuisance.primordial_segregation_delta))
        else:
            delta = float(mass_segregation_delta(relaxation_times))
        half_mass_radius_pc = track_at(track, "half_mass_radius_pc", age_gyr)
        positions_pc, model = sample_positions(population, parameters.concentration_w0, delta, half_mass_radius_pc, rng)
        delta = float(model.delta)
        extra_columns = {} if family is None else nuisance.metadata(parameters)
        if family == "binaries":
            positions_pc, number_of_pairs = merge_unresolved_binaries(
                positions_pc, population["mass_msun"], population["stellar_type"], nuisance.binary_fraction,
                nuisance_generator(parameters.seed, family, snapshot_index))
            extra_columns["binary_pairs"] = number_of_pairs
        total_mass_msun = float(population["mass_msun"].sum())
        total_luminosity_v_lsun = float(population["luminosity_v_lsun"].sum())
        for view_index, distance_kpc in enumerate(distances_kpc):
            rotation = random_rotation(rng)
            offset_arcsec = rng.normal(0.0, centre_offset_arcsec, 2)
            map_seeing_fwhm_arcsec, mass_smoothing_fwhm_arcsec, view_columns = seeing_fwhm_arcsec, None, {}
            if family in ("seeing", "noise", "centring"):
                view_rng = nuisance_generator(parameters.seed, family, snapshot_index, view_index)
            if family == "seeing":
                map_seeing_fwhm_arcsec = float(view_rng.uniform(*SEEING_FWHM_RANGE_ARCSEC))
                mass_smoothing_fwhm_arcsec = seeing_fwhm_arcsec
                view_columns["mass_smoothing_fwhm_arcsec"] = seeing_fwhm_arcsec
            elif family == "centring":
                error_arcsec = CENTRING_ERROR_MAXIMUM_ARCSEC * view_rng.uniform()
                direction = view_rng.uniform(0.0, 2.0 * np.pi)
                centring_error_arcsec = error_arcsec * np.array([np.cos(direction), np.sin(direction)])
                offset_arcsec = offset_arcsec + centring_error_arcsec
                view_columns.update(centring_error_x_arcsec=centring_error_arcsec[0], centring_error_y_arcsec=centring_error_arcsec[1])
            if mass_smoothing_fwhm_arcsec is None:
                flux_map, mass_map, field = observe(
                    positions_pc, population["mass_msun"], population["luminosity_v_lsun"],
                    distance_kpc, rotation, offset_arcsec, seeing_fwhm_arcsec,
                )
            else:
                flux_map, mass_map, field = observe(
                    positions_pc, population["mass_msun"], population["luminosity_v_lsun"],
                    distance_kpc, rotation, offset_arcsec, map_seeing_fwhm_arcsec, mass_smoothing_fwhm_arcsec,
                )
            if family == "noise":
                noise_mag_arcsec2 = float(view_rng.uniform(*NOISE_SURFACE_BRIGHTNESS_RANGE_MAG_ARCSEC2))
                sky_residual_fraction = float(view_rng.uniform(*SKY_RESIDUAL_FRACTION_RANGE))
                noise_sigma = float(surface_brightness_to_pixel_flux(noise_mag_arcsec2))
                sky_residual = sky_residual_fraction * float(surface_brightness_to_pixel_flux(SKY_SURFACE_BRIGHTNESS_MAG_ARCSEC2))
                flux_map = add_photometric_noise(flux_map, noise_sigma, sky_residual, view_rng)
                view_columns.update(noise_surface_brightness_mag_arcsec2=noise_mag_arcsec2,
                                    noise_sigma_lsun_per_kpc2=noise_sigma, sky_residual_fraction=sky_residual_fraction,
                                    sky_residual_lsun_per_kpc2=sky_residual)
            log_flux.append(flux_map)
            log_mass.append(mass_map)
            distance_age.append((distance_kpc, age_gyr))
            rotation_vector = rotation.as_rotvec()
            metadata.append({
                **dataclasses.asdict(parameters),
                "snapshot": snapshot_index,
                "age_gyr": age_gyr,
                "distance_kpc": distance_kpc,
                "rotation_vector_x": rotation_vector[0],
                "rotation_vector_y": rotation_vector[1],
                "rotation_vector_z": rotation_vector[2],
                "centre_offset_x_arcsec": offset_arcsec[0],
                "centre_offset_y_arcsec": offset_arcsec[1],
                "seeing_fwhm_arcsec": map_seeing_fwhm_arcsec,
                "half_mass_radius_pc": half_mass_radius_pc,
                "segregation_delta": delta,
                "relaxation_times_elapsed": relaxation_times,
                "limepy_converged": bool(model.converged),
                "tidal_radius_pc": float(model.rt),
                "retained_black_holes": population["retained_black_holes"],
                "total_mass_msun": total_mass_msun,
                "total_luminosity_v_lsun": total_luminosity_v_lsun,
                "total_mass_to_light_v": total_mass_msun / max(total_luminosity_v_lsun, 1e-30),
                "mass_in_field_msun": field["mass_in_field_msun"],
                "luminosity_v_in_field_lsun": field["luminosity_v_in_field_lsun"],
                "field_mass_to_light_v": field["mass_in_field_msun"] / max(field["luminosity_v_in_field_lsun"], 1e-30),
                **extra_columns, **view_columns,
            })
    stack = lambda maps: np.stack(maps)[..., None].astype(np.float32)  # noqa: E731
    return stack(log_flux), stack(log_mass), np.asarray(distance_age, dtype=np.float32), metadata
