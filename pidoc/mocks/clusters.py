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
def kroupa_initial_masses(number_of_stars, rng):
    """Draw initial masses (M☉) from the Kroupa (2001) IMF by inverting its cumulative distribution.

    dN/dm ∝ m^-1.3 on [0.08, 0.5] M☉ and ∝ m^-2.3 on [0.5, 100] M☉, continuous at 0.5 M☉.
    """
    if number_of_stars < 1:
        raise ValueError(f"number_of_stars (N0) must be at least 1, got {number_of_stars}")

    def segment_integral(low, high, slope):
        exponent = 1.0 - slope
        return (high**exponent - low**exponent) / exponent

    def segment_inverse(fraction, low, high, slope):
        exponent = 1.0 - slope
        return (low**exponent + fraction * (high**exponent - low**exponent)) ** (1.0 / exponent)

    # Continuity at the break sets the relative normalisation of the high-mass segment.
    high_norm = KROUPA_BREAK_MSUN ** (KROUPA_HIGH_SLOPE - KROUPA_LOW_SLOPE)
    low_weight = segment_integral(MINIMUM_STELLAR_MASS_MSUN, KROUPA_BREAK_MSUN, KROUPA_LOW_SLOPE)
    high_weight = high_norm * segment_integral(KROUPA_BREAK_MSUN, MAXIMUM_STELLAR_MASS_MSUN, KROUPA_HIGH_SLOPE)
    in_low_segment = rng.random(number_of_stars) < low_weight / (low_weight + high_weight)
    fraction = rng.random(number_of_stars)
    return np.where(
        in_low_segment,
        segment_inverse(fraction, MINIMUM_STELLAR_MASS_MSUN, KROUPA_BREAK_MSUN, KROUPA_LOW_SLOPE),
        segment_inverse(fraction, KROUPA_BREAK_MSUN, MAXIMUM_STELLAR_MASS_MSUN, KROUPA_HIGH_SLOPE),
    )


# --- 3. Evolution in the tidal field --------------------------------------------------------------
def cluster_evolution_track(parameters):
    """Run cBHBd for one cluster and return its global evolution on a time grid.

    Returns
    -------
    dict of numpy arrays
        time_gyr, stellar_mass_msun (all non-BH mass), black_hole_number, half_mass_radius_pc,
        relaxation_time_myr, relaxation_times_elapsed (∫dt/t_rh), escape_velocity_kms,
        and the scalar initial_mass_msun of cBHBd's own IMF integral.
    """
    import cbhbd.cbhbd

    model = cbhbd.cbhbd.CBHBD(
        N=parameters.initial_stars,
        rh0=parameters.initial_half_mass_radius_pc,
        rg=parameters.galactocentric_radius_kpc,
        FeH=parameters.metallicity_feh,
        # The same Kroupa IMF as our stars, so cBHBd's mass budget matches the sampled population.
        m_breaks=[MINIMUM_STELLAR_MASS_MSUN, KROUPA_BREAK_MSUN, 1.0, MAXIMUM_STELLAR_MASS_MSUN],
        tend=MAXIMUM_AGE_GYR * 1e3,
        compute_mergers=False,
        verbose=False,
        seed=parameters.seed % 2**31,
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


def mass_segregation_delta(relaxation_times_elapsed):
    """limepy's δ as a function of dynamical age: 0 at t = 0, saturating at 0.5 (see constants)."""
    return MAXIMUM_SEGREGATION_DELTA * (1.0 - np.exp(-relaxation_times_elapsed / SEGREGATION_RELAXATION_TIMES))


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


def observe(positions_pc, mass_msun, luminosity_v_lsun, distance_kpc, rotation, offset_arcsec, seeing_fwhm_arcsec):
    """Mock-observe a cluster: log10 flux map (L☉/kpc²) and log10 mass map (M☉) per pixel.

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
    padding_pixels = int(np.ceil(4.0 * sigma_pixels))
    arcsec_per_pc = ARCSEC_PER_RADIAN / (distance_kpc * 1e3)
    projected_pc = rotation.apply(positions_pc)[:, :2]
    x_arcsec = projected_pc[:, 0] * arcsec_per_pc + offset_arcsec[0]
    y_arcsec = projected_pc[:, 1] * arcsec_per_pc + offset_arcsec[1]
    flux_per_star = luminosity_v_lsun / (4.0 * np.pi * distance_kpc**2)
    # One pixel assignment serves both maps; only the objects that land on the padded grid are binned.
    flat_index, inside, size = pixel_indices(x_arcsec, y_arcsec, padding_pixels)

    crop = slice(padding_pixels, padding_pixels + MAP_PIXELS)
    maps, sums_in_field = [], []
    for weights, floor in ((flux_per_star, FLUX_FLOOR_LSUN_PER_KPC2), (mass_msun, MASS_FLOOR_MSUN)):
        padded = np.bincount(flat_index, weights=weights[inside], minlength=size * size).reshape(size, size)
        sums_in_field.append(float(padded[crop, crop].sum()))
        if sigma_pixels > 0:
            padded = ndimage.gaussian_filter(padded, sigma_pixels, mode="constant", truncate=4.0)
        maps.append(np.log10(np.maximum(padded[crop, crop], floor)).astype(np.float32))
    field = {
        "luminosity_v_in_field_lsun": sums_in_field[0] * 4.0 * np.pi * distance_kpc**2,
        "mass_in_field_msun": sums_in_field[1],
    }
    return maps[0], maps[1], field


def random_rotation(rng):
    """A uniformly random 3-D rotation (a random projection of the cluster on the sky)."""
    return Rotation.random(random_state=rng)


# --- One cluster, several snapshots and views -----------------------------------------------------
def make_cluster_maps(parameters, views, seeing_fwhm_arcsec, centre_offset_arcsec, stellar_table_loader):
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

    Returns
    -------
    log_flux, log_mass : numpy.ndarray, shape (n_maps, 160, 160, 1), float32
    distance_age : numpy.ndarray, shape (n_maps, 2), float32
    metadata : list of dict, one per map
    """
    rng = np.random.default_rng([parameters.seed, 1])
    stellar_table = stellar_table_loader(parameters.metallicity_feh)
    initial_masses_msun = kroupa_initial_masses(parameters.initial_stars, rng)
    track = cluster_evolution_track(parameters)
    log_flux, log_mass, distance_age, metadata = [], [], [], []
    for snapshot_index, (age_gyr, distances_kpc) in enumerate(views):
        check_age(age_gyr)
        population = evolve_population(initial_masses_msun, age_gyr, track, stellar_table, rng)
        relaxation_times = track_at(track, "relaxation_times_elapsed", age_gyr)
        delta = float(mass_segregation_delta(relaxation_times))
        half_mass_radius_pc = track_at(track, "half_mass_radius_pc", age_gyr)
        positions_pc, model = sample_positions(population, parameters.concentration_w0, delta, half_mass_radius_pc, rng)
        delta = float(model.delta)
        total_mass_msun = float(population["mass_msun"].sum())
        total_luminosity_v_lsun = float(population["luminosity_v_lsun"].sum())
        for distance_kpc in distances_kpc:
            rotation = random_rotation(rng)
            offset_arcsec = rng.normal(0.0, centre_offset_arcsec, 2)
            flux_map, mass_map, field = observe(
                positions_pc, population["mass_msun"], population["luminosity_v_lsun"],
                distance_kpc, rotation, offset_arcsec, seeing_fwhm_arcsec,
            )
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
                "seeing_fwhm_arcsec": seeing_fwhm_arcsec,
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
            })
    stack = lambda maps: np.stack(maps)[..., None].astype(np.float32)  # noqa: E731
    return stack(log_flux), stack(log_mass), np.asarray(distance_age, dtype=np.float32), metadata
