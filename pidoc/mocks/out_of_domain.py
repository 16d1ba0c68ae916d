"""Maps π-DOC was not trained on, made with the project's own generator, to test the domain verdict.

The committed networks were trained on mock clusters of N0 = 5×10⁴ stars with compact initial
half-mass radii (0.5–1.5 pc) observed through 2.5″ seeing (docs/mock_clusters.md). Each family
below breaks one of those assumptions, the way real inputs did when π-DOC was tried on them
(../shared/notes/observations-and-uncertainty.md §1):

- "massive": N0 = 5×10⁵ stars, ten times the training clusters (real globular clusters);
- "extended": initial half-mass radii of 5–8 pc, observed at 15 kpc, where the 40″ field holds a
  sparse scatter of stars (the N-body cluster read as 20.7 Gyr old);
- "smooth": a limepy surface-brightness model without stars, the light of a cluster spread as a
  continuous profile (the smooth Monte-Carlo maps read as 1–9 Gyr);
- "flat": every pixel at one value.

Every draw comes from a generator seeded by (seed, family, index).
"""
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from pidoc.io import replace_atomically
from pidoc.mocks import clusters as mock_clusters
from pidoc.mocks import stellar_evolution

FAMILIES = ("massive", "extended", "smooth", "flat")
FAMILY_CODES = {name: code for code, name in enumerate(FAMILIES)}
TEST_DISTANCES_KPC = (15.0, 30.0, 60.0, 80.0)
MASSIVE_INITIAL_STARS = 500_000
EXTENDED_HALF_MASS_RADIUS_PC = (5.0, 8.0)
EXTENDED_DISTANCE_KPC = 15.0
# Smooth models: V luminosities and half-light radii of the training clusters' range, so that only
# the absence of stars sets them apart (the mock clusters' V light spans ~10³–3×10⁴ L☉).
SMOOTH_LOG_LUMINOSITY_LSUN = (3.3, 4.5)
SMOOTH_HALF_LIGHT_RADIUS_PC = (0.8, 3.0)
FLAT_LOG_FLUX_RANGE = (-7.0, -3.0)


def family_rng(seed, family, index):
    return np.random.default_rng([seed, FAMILY_CODES[family], index])


def smooth_map(luminosity_v_lsun, half_light_radius_pc, concentration_w0, distance_kpc, seeing_fwhm_arcsec=2.5):
    """log10 F map of a single-mass limepy model (g = 1.5) projected on π-DOC's grid, with seeing.

    The surface density Σ(R) of the projected model, scaled to the luminosity, is integrated over
    each pixel by 5×5 sub-sampling, then convolved with the Gaussian seeing, as the mocks are.
    """
    import limepy

    mock_clusters.check_distance(distance_kpc)
    model = limepy.limepy(concentration_w0, mock_clusters.LIMEPY_TRUNCATION_G, M=1.0, rh=half_light_radius_pc, project=True)
    subsampling = 5
    size = mock_clusters.MAP_PIXELS * subsampling
    step_arcsec = mock_clusters.PIXEL_SCALE_ARCSEC / subsampling
    axis_arcsec = (np.arange(size) + 0.5) * step_arcsec - 0.5 * mock_clusters.MAP_PIXELS * mock_clusters.PIXEL_SCALE_ARCSEC
    radius_pc = np.hypot(*np.meshgrid(axis_arcsec, axis_arcsec)) * distance_kpc * 1e3 / mock_clusters.ARCSEC_PER_RADIAN
    surface_density = np.interp(radius_pc, model.R, model.Sigma, right=0.0)        # fraction per pc²
    pixel_area_pc2 = (step_arcsec * distance_kpc * 1e3 / mock_clusters.ARCSEC_PER_RADIAN) ** 2
    luminosity_lsun = surface_density * pixel_area_pc2 * luminosity_v_lsun
    binned = luminosity_lsun.reshape(mock_clusters.MAP_PIXELS, subsampling, mock_clusters.MAP_PIXELS, subsampling).sum(axis=(1, 3))
    flux = ndimage.gaussian_filter(binned / (4.0 * np.pi * distance_kpc**2),
                                   mock_clusters.seeing_sigma_pixels(seeing_fwhm_arcsec), mode="constant")
    return np.log10(np.maximum(flux, mock_clusters.FLUX_FLOOR_LSUN_PER_KPC2)).astype(np.float32)


def star_cluster_maps(family, index, seed, ages_gyr, distances_kpc, stellar_table_loader, initial_stars=None):
    """Maps of one mock cluster of the "massive" or "extended" family, via `mock_clusters.make_cluster_maps`."""
    rng = family_rng(seed, family, index)
    priors = mock_clusters.Priors()
    parameters = mock_clusters.ClusterParameters(
        cluster_id=10_000_000 + 1000 * FAMILY_CODES[family] + index,
        seed=int(rng.integers(2**31)),
        initial_stars=int(initial_stars or (MASSIVE_INITIAL_STARS if family == "massive" else priors.initial_stars)),
        initial_half_mass_radius_pc=float(rng.uniform(*(EXTENDED_HALF_MASS_RADIUS_PC if family == "extended"
                                                         else priors.initial_half_mass_radius_pc))),
        galactocentric_radius_kpc=float(rng.uniform(*priors.galactocentric_radius_kpc)),
        metallicity_feh=float(rng.choice(priors.metallicity_feh_values)),
        concentration_w0=float(rng.uniform(*priors.concentration_w0)),
    )
    views = [(float(age), list(distances_kpc)) for age in ages_gyr]
    log_flux, _, distance_age, _ = mock_clusters.make_cluster_maps(parameters, views, priors.seeing_fwhm_arcsec,
                                                                   priors.centre_offset_arcsec, stellar_table_loader)
    return log_flux, distance_age


def family_cluster(family, index, seed, snapshots_per_cluster, loader, initial_stars, age_range_gyr):
    """The maps (K, 160, 160, 1) and true [distance kpc, age Gyr] (K, 2) of cluster `index` of a family."""
    rng = family_rng(seed, family, index)
    if family in ("massive", "extended"):
        ages_gyr = np.random.default_rng([seed, FAMILY_CODES[family], index, 1]).uniform(*age_range_gyr, snapshots_per_cluster)
        distances_kpc = (EXTENDED_DISTANCE_KPC,) if family == "extended" else TEST_DISTANCES_KPC
        log_flux, distance_age = star_cluster_maps(family, index, seed, ages_gyr, distances_kpc, loader, initial_stars)
        return np.asarray(log_flux, dtype=np.float32), np.asarray(distance_age, dtype=np.float64)
    labels = np.array([(distance_kpc, np.nan) for distance_kpc in TEST_DISTANCES_KPC])
    if family == "smooth":
        luminosity_v_lsun = 10.0 ** rng.uniform(*SMOOTH_LOG_LUMINOSITY_LSUN)
        half_light_radius_pc = rng.uniform(*SMOOTH_HALF_LIGHT_RADIUS_PC)
        concentration_w0 = rng.uniform(*mock_clusters.Priors().concentration_w0)
        maps = [smooth_map(luminosity_v_lsun, half_light_radius_pc, concentration_w0, distance_kpc)[..., None]
                for distance_kpc in TEST_DISTANCES_KPC]
    else:
        maps = [np.full((mock_clusters.MAP_PIXELS, mock_clusters.MAP_PIXELS, 1), rng.uniform(*FLAT_LOG_FLUX_RANGE),
                        dtype=np.float32) for _ in TEST_DISTANCES_KPC]
    return np.stack(maps).astype(np.float32), labels


def cluster_cache_path(cache_directory, family, index, seed, snapshots_per_cluster, age_range_gyr):
    """Where `make_family` keeps one cluster's maps: every setting that changes them is in the name."""
    ages = f"{age_range_gyr[0]:g}-{age_range_gyr[1]:g}"
    return (Path(cache_directory) / f"seed{seed}" / family
            / f"cluster{index:05d}_snapshots{snapshots_per_cluster}_ages{ages}gyr.npz")


def make_family(family, number_of_clusters, seed=2021, snapshots_per_cluster=1, stellar_table_loader=None,
                initial_stars=None, age_range_gyr=(0.0, 14.0), cache_directory=None, progress=False):
    """Flux maps (M, 160, 160, 1) of one out-of-domain family, the cluster index and the true
    [distance kpc, age Gyr] of each map (age NaN for the star-less "smooth" and "flat" maps).

    Star-cluster families ("massive", "extended") observe each snapshot at the test distances
    (only 15 kpc for "extended"); "smooth" and "flat" make one map per test distance per model.
    `initial_stars` overrides N0 (tests use small clusters); `stellar_table_loader` defaults to
    the cached SSE tables.

    Cluster `index` is drawn from (seed, family, index) alone, so the first n clusters are the same
    whatever `number_of_clusters` is. With `cache_directory`, each cluster is saved there once made
    (through a temporary name) and read back on later calls: an evaluation with 100 clusters per
    family, which takes tens of minutes for the star-cluster families, is made once per seed, can be
    stopped and resumed, and grows without redoing the clusters it has.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown out-of-domain family {family!r}; choose from {FAMILIES}")
    if number_of_clusters < 1:
        raise ValueError(f"number_of_clusters must be at least 1, got {number_of_clusters}")
    if cache_directory is not None and (stellar_table_loader is not None or initial_stars is not None):
        # A cached cluster's name cannot say which tables or N0 made it, so only the defaults are cached.
        raise ValueError("cache_directory needs the default stellar tables and N0 (stellar_table_loader and "
                         "initial_stars left at None)")
    loader = stellar_table_loader or (lambda metallicity_feh: stellar_evolution.load_stellar_table(metallicity_feh))
    maps, clusters, labels = [], [], []
    indices = range(number_of_clusters)
    if progress:
        indices = tqdm(indices, desc=f"out-of-domain family {family}", unit="cluster")
    for index in indices:
        path = None if cache_directory is None else cluster_cache_path(
            cache_directory, family, index, seed, snapshots_per_cluster, age_range_gyr)
        if path is not None and path.is_file():
            with np.load(path) as cached:
                log_flux, distance_age = cached["log_flux"], cached["distance_age"]
        else:
            log_flux, distance_age = family_cluster(family, index, seed, snapshots_per_cluster, loader, initial_stars,
                                                    age_range_gyr)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                replace_atomically(path, lambda temporary: np.savez(temporary, log_flux=log_flux, distance_age=distance_age))
        maps.extend(log_flux)
        labels.extend(distance_age)
        clusters.extend([index] * len(log_flux))
    return np.stack(maps).astype(np.float32), np.array(clusters), np.asarray(labels, dtype=np.float64)
