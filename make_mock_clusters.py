"""Make π-DOC's training, validation and test sets of mock globular clusters.

Run `python3 make_mock_clusters.py` for the default data set (settings below, the same as the
`--help` flags). Each split is written incrementally into memory-mapped .npy files under
OUTPUT_DIRECTORY/<split>/, with a small progress record per finished cluster, so an interrupted
run resumes where it stopped when started again with the same settings. Splits are made of
different clusters (initial conditions), never of different views of one cluster. Beside training,
validation and test, the calibration split calibrates the intervals and the domain verdict, and the
boundary split (the same kind of clusters seen nearer and farther than the test distances) shows
the verdict where the calibrated distances end (`calibrate_piDOC.py`, docs/uncertainty.md).

Layout of a split folder (the conventions of CB21's input files):
    luminosity_V.npy   (N, 160, 160, 1) float32  log10 flux per pixel, L☉/kpc²
    mass.npy           (N, 160, 160, 1) float32  log10 mass per pixel, M☉, remnants included
    distance_age.npy   (N, 2) float32            [distance kpc, age Gyr]
    metadata.csv       one row per map: cluster id, seed, projection, physical parameters, M/L_V
OUTPUT_DIRECTORY/standardization_files/ holds the six scalar constants of the training split.

Presets (`--preset`): `cb21` (default) is CB21's domain, N0 = 5×10⁴ stars, with the settings below;
`milky-way` spans the masses, sizes and concentrations of real Milky Way globular clusters (N0
log-uniform 5×10⁴–3.5×10⁶, present-day masses ~10⁴–10⁶ M☉ at 10–14 Gyr; `PRESETS` cites the
catalogue values). A flag given on the command line overrides the preset's value.

Nuisance families (`--nuisance FAMILY`, with any preset): imf, binaries, segregation, tidal,
stellar-evolution, seeing, noise or centring varies one assumption of the mocks, drawn per cluster or
per map from seeded generators of its own and recorded in metadata.csv and settings.json
(`pidoc.mocks.clusters.NUISANCE_FAMILIES`, docs/mock_clusters.md). Without the flag the presets make
the same bytes as before it existed.

Engine: clusters run as tasks on dask.distributed, a LocalCluster of `--workers` processes by
default, or the workers of a running scheduler with `--scheduler ADDRESS` (for example one started
by dask-jobqueue on a batch system; its workers need this folder on their Python path and the stellar
table cache, `--stellar-table-cache`, on a shared file system). `--workers 1` without a scheduler runs
in this process. Each cluster draws from its own seed, so the bytes do not depend on the number of
workers or the order in which tasks finish, and the main process alone writes the output files.
"""
import argparse
import csv
import functools
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pidoc import standardization
from pidoc.mocks import clusters as mock_clusters
from pidoc.mocks import stellar_evolution

# --- Settings (each is also a command-line flag) --------------------------------------------------
OUTPUT_DIRECTORY = "data"
SEED = 2021
STARS = 50_000                       # N0 of CB21's N-body runs
TRAINING_CLUSTERS = 500
VALIDATION_CLUSTERS = 40
TEST_CLUSTERS = 60
# The calibration split of the uncertainty module (`calibrate_piDOC.py`): clusters seen by neither
# network, observed like the test split (CB21's four distances, ages uniform in 0–14 Gyr), so that
# the calibration and test clusters are exchangeable, which is what conformal coverage rests on.
CALIBRATION_CLUSTERS = 300
CALIBRATION_SNAPSHOTS_PER_CLUSTER = 2
# The boundary split of the domain verdict (`domain.fit_distance_edges`): clusters drawn like the
# calibration clusters but observed nearer and farther than the test distances, where π-DOC's
# intervals are not calibrated. Each snapshot is seen once at a distance log-uniform in the "near"
# fractions of the smallest test distance and once in the "far" fractions of the largest. A cluster
# that breaks the training priors in size can look like a compact one seen nearer (an extended
# cluster at 15 kpc reads as ~10 kpc; docs/uncertainty.md), so these maps teach the verdict where
# the calibrated distances end. The gaps (0.8–1 and 1–1.2 times the edges) leave the edge maps of
# the calibration split to the calibration side.
BOUNDARY_CLUSTERS = 200
BOUNDARY_SNAPSHOTS_PER_CLUSTER = 2
BOUNDARY_NEAR_FRACTIONS = (0.25, 0.8)
BOUNDARY_FAR_FRACTIONS = (1.2, 2.0)
SNAPSHOTS_PER_CLUSTER = 3            # ages per cluster, each drawn uniformly in AGE_RANGE_GYR
TEST_SNAPSHOTS_PER_CLUSTER = 5
VIEWS_PER_SNAPSHOT = 8               # training/validation: random projection and distance per view
AGE_RANGE_GYR = (0.0, 14.0)          # CB21 §2: snapshots from 0 to 14 Gyr
TRAINING_DISTANCE_RANGE_KPC = (10.0, 90.0)   # continuous, so the CNN regresses between test distances
TEST_DISTANCES_KPC = (15.0, 30.0, 60.0, 80.0)  # CB21's test distances, exactly
SEEING_FWHM_ARCSEC = 2.5
CENTRE_OFFSET_ARCSEC = 1.0
WORKERS = os.cpu_count()
SPLITS = ("train", "validation", "test", "calibration", "boundary")
SCHEDULER = None                     # address of a running dask scheduler; None: a LocalCluster
PRESET = "cb21"
# A nuisance family (`--nuisance`, one of mock_clusters.NUISANCE_FAMILIES) varies one thing the mocks
# assume, drawn per cluster or per map from seeded generators and recorded in metadata.csv; None makes
# the preset's clusters byte for byte as before. Families, ranges and sources: docs/mock_clusters.md.
NUISANCE = None

# Priors of the initial conditions; CB21's (N0 = 5×10⁴) as in docs/mock_clusters.md.
STARS_RANGE = None                   # (N0 low, N0 high), log-uniform; None: every cluster has --stars
INITIAL_HALF_MASS_RADIUS_RANGE_PC = (0.5, 1.5)
GALACTOCENTRIC_RADIUS_RANGE_KPC = (10.0, 30.0)
METALLICITY_FEH_VALUES = (-2.0, -1.5)
CONCENTRATION_W0_RANGE = (5.0, 7.5)
LOG_UNIFORM_RADII = False
TEST_AGE_RANGE_GYR = None            # ages of the test and calibration snapshots; None: --age-range-gyr

# The values of every preset-dependent setting. `cb21` repeats the settings above. `milky-way` is
# made to look like the Milky Way's globular clusters today, at 10–14 Gyr:
# - N0 log-uniform 5×10⁴–3.5×10⁶: with cBHBd (measured here, r_h0 0.3–1 pc, r_g 4–30 kpc) a cluster
#   keeps ≈ 0.5 of its initial mass (0.574 M☉ per star) when it survives, so present-day masses run
#   from ~4×10³ (N0 = 5×10⁴ near the bulge) to ~10⁶ M☉, the range of Baumgardt & Hilker (2018,
#   MNRAS 478, 1520; 10⁴–10⁶ M☉, median ≈ 10⁵ M☉); the low end overlaps CB21's domain.
# - r_h0 log-uniform 0.3–1 pc: cBHBd's BH-driven expansion takes them to r_h ≈ 2–6 pc (3-D half-mass)
#   at 12 Gyr, as the Milky Way's (Harris 1996, 2010 edition: projected half-light radius median
#   ≈ 3 pc, i.e. ≈ 4 pc in 3-D; Baumgardt & Hilker 2018 half-mass radii mostly 2–10 pc). Larger r_h0
#   give 8–20 pc for massive clusters, larger than any massive Milky Way cluster.
# - r_g log-uniform 4–30 kpc: the bulk of the halo clusters' Galactocentric radii in Harris (2010);
#   inside 4 kpc low-N0 clusters dissolve before 12 Gyr in cBHBd.
# - W0 uniform 5–8: King concentrations c = log10(r_t / r_c) ≈ 1.0–1.8, the bulk of Harris (2010)
#   (median c ≈ 1.5, W0 ≈ 7); core-collapsed clusters (c = 2.5) are left out because a lowered
#   isothermal model does not describe them.
# - [Fe/H] ∈ {−2.2, −2.0, −1.75, −1.5}: the metal-poor half of Harris (2010) (peak at −1.6, lowest
#   −2.4). Excluded: [Fe/H] ≥ −1.0 (the metal-rich, bulge/disc peak at −0.6), because SSE turns
#   [Fe/H] = −1.0 giants into naked helium stars after 13.3 Gyr and L_V drops by 34 %
#   (docs/mock_clusters.md), and below −2.3, outside SSE's range (Z ≥ 10⁻⁴).
# - Ages 0–14 Gyr for training (the CNN must know young clusters too), 10–14 Gyr for the test and
#   calibration snapshots, the ages of real globular clusters (Marín-Franch et al. 2009), where the
#   mass decades are present-day masses.
# - Distances: training continuous 5–90 kpc (Milky Way clusters lie at 2–120 kpc from the Sun,
#   Harris 2010, most within 5–90); test at 10, 15, 30, 60 and 80 kpc (CB21's four plus 10 kpc).
# - One snapshot of 20 views per cluster (≥ 1,000 clusters → ≥ 20,000 maps): many initial conditions
#   teach more than many views of few clusters, and the cost of a cluster is mostly per snapshot.
PRESETS = {
    "cb21": {
        "stars": STARS, "stars_range": STARS_RANGE,
        "initial_half_mass_radius_range_pc": INITIAL_HALF_MASS_RADIUS_RANGE_PC,
        "galactocentric_radius_range_kpc": GALACTOCENTRIC_RADIUS_RANGE_KPC,
        "metallicity_feh_values": METALLICITY_FEH_VALUES, "concentration_w0_range": CONCENTRATION_W0_RANGE,
        "log_uniform_radii": LOG_UNIFORM_RADII,
        "training_clusters": TRAINING_CLUSTERS, "validation_clusters": VALIDATION_CLUSTERS,
        "test_clusters": TEST_CLUSTERS, "calibration_clusters": CALIBRATION_CLUSTERS,
        "snapshots_per_cluster": SNAPSHOTS_PER_CLUSTER, "test_snapshots_per_cluster": TEST_SNAPSHOTS_PER_CLUSTER,
        "calibration_snapshots_per_cluster": CALIBRATION_SNAPSHOTS_PER_CLUSTER,
        "boundary_clusters": BOUNDARY_CLUSTERS, "boundary_snapshots_per_cluster": BOUNDARY_SNAPSHOTS_PER_CLUSTER,
        "views_per_snapshot": VIEWS_PER_SNAPSHOT, "age_range_gyr": AGE_RANGE_GYR,
        "test_age_range_gyr": TEST_AGE_RANGE_GYR,
        "training_distance_range_kpc": TRAINING_DISTANCE_RANGE_KPC, "test_distances_kpc": TEST_DISTANCES_KPC,
    },
    "milky-way": {
        "stars": STARS, "stars_range": (50_000, 3_500_000),
        "initial_half_mass_radius_range_pc": (0.3, 1.0),
        "galactocentric_radius_range_kpc": (4.0, 30.0),
        "metallicity_feh_values": (-2.2, -2.0, -1.75, -1.5), "concentration_w0_range": (5.0, 8.0),
        "log_uniform_radii": True,
        "training_clusters": 1000, "validation_clusters": 50, "test_clusters": 130, "calibration_clusters": 300,
        "snapshots_per_cluster": 1, "test_snapshots_per_cluster": 1, "calibration_snapshots_per_cluster": 1,
        "boundary_clusters": BOUNDARY_CLUSTERS, "boundary_snapshots_per_cluster": BOUNDARY_SNAPSHOTS_PER_CLUSTER,
        "views_per_snapshot": 20, "age_range_gyr": (0.0, 14.0), "test_age_range_gyr": (10.0, 14.0),
        "training_distance_range_kpc": (5.0, 90.0), "test_distances_kpc": (10.0, 15.0, 30.0, 60.0, 80.0),
    },
}

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2, "calibration": 3, "boundary": 4}
# Splits observed at the fixed test distances (CB21's test design) rather than at random distances.
FIXED_DISTANCE_SPLITS = ("test", "calibration")
# Cluster ids are unique across splits: the split's code times this offset plus the running index.
CLUSTER_ID_OFFSET = 1_000_000


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default=PRESET, help=f"priors and split sizes: {', '.join(PRESETS)}")
    parser.add_argument("--output-directory", default=OUTPUT_DIRECTORY)
    parser.add_argument("--seed", type=int, default=SEED)
    # Flags whose default comes from the preset (None here, filled in by `apply_preset`).
    parser.add_argument("--stars", type=int, help="N0, stars at t = 0")
    parser.add_argument("--stars-range", type=int, nargs=2, help="N0 log-uniform between these (overrides --stars)")
    parser.add_argument("--initial-half-mass-radius-range-pc", type=float, nargs=2)
    parser.add_argument("--galactocentric-radius-range-kpc", type=float, nargs=2)
    parser.add_argument("--metallicity-feh-values", type=float, nargs="+")
    parser.add_argument("--concentration-w0-range", type=float, nargs=2)
    parser.add_argument("--log-uniform-radii", action="store_const", const=True, help="r_h0 and r_g log-uniform")
    parser.add_argument("--training-clusters", type=int)
    parser.add_argument("--validation-clusters", type=int)
    parser.add_argument("--test-clusters", type=int)
    parser.add_argument("--calibration-clusters", type=int)
    parser.add_argument("--snapshots-per-cluster", type=int)
    parser.add_argument("--test-snapshots-per-cluster", type=int)
    parser.add_argument("--calibration-snapshots-per-cluster", type=int)
    parser.add_argument("--boundary-clusters", type=int)
    parser.add_argument("--boundary-snapshots-per-cluster", type=int)
    parser.add_argument("--views-per-snapshot", type=int)
    parser.add_argument("--age-range-gyr", type=float, nargs=2)
    parser.add_argument("--test-age-range-gyr", type=float, nargs=2, help="ages of test/calibration snapshots")
    parser.add_argument("--training-distance-range-kpc", type=float, nargs=2)
    parser.add_argument("--test-distances-kpc", type=float, nargs="+")
    parser.add_argument("--seeing-fwhm-arcsec", type=float, default=SEEING_FWHM_ARCSEC)
    parser.add_argument("--centre-offset-arcsec", type=float, default=CENTRE_OFFSET_ARCSEC)
    parser.add_argument("--workers", type=int, default=WORKERS, help="LocalCluster processes; 1: in this process")
    parser.add_argument("--scheduler", default=SCHEDULER, help="address of a running dask scheduler to join")
    parser.add_argument("--splits", nargs="+", default=SPLITS)
    parser.add_argument("--stellar-table-cache", default=None, help="folder of cached stellar tables")
    parser.add_argument("--coarse-stellar-tables", action="store_true", help="small tables, for tests only")
    parser.add_argument("--preview", default=None, help="also write a PNG mosaic of one cluster here")
    parser.add_argument("--nuisance", default=NUISANCE, metavar="FAMILY",
                        help=f"vary one assumption per cluster or map: {', '.join(mock_clusters.NUISANCE_FAMILIES)} "
                             "(docs/mock_clusters.md, 'Nuisance families'); default none")
    return apply_preset(parser.parse_args(argv))


def apply_preset(settings):
    """Fill every preset-dependent setting the command line left unset from `PRESETS[--preset]`."""
    if settings.preset not in PRESETS:
        raise ValueError(f"unknown --preset '{settings.preset}'; choose from {sorted(PRESETS)}")
    for key, value in PRESETS[settings.preset].items():
        if getattr(settings, key) is None:
            setattr(settings, key, list(value) if isinstance(value, tuple) else value)
    return settings


def check_settings(settings):
    """Refuse settings that make no physical sense, naming the setting."""
    for split in settings.splits:
        if split not in SPLIT_CODES:
            raise ValueError(f"unknown split '{split}' in --splits; choose from {sorted(SPLIT_CODES)}")
    if settings.stars < 1:
        raise ValueError(f"--stars (N0) must be at least 1, got {settings.stars}")
    if settings.stars_range is not None and not 1 <= settings.stars_range[0] <= settings.stars_range[1]:
        raise ValueError(f"--stars-range (N0) must be ordered and at least 1, got {settings.stars_range}")
    ranges = {"--initial-half-mass-radius-range-pc": settings.initial_half_mass_radius_range_pc,
              "--galactocentric-radius-range-kpc": settings.galactocentric_radius_range_kpc}
    for flag, (low, high) in ranges.items():
        if not 0 < low <= high:
            raise ValueError(f"{flag} must be positive and ordered, got {[low, high]}")
    low_w0, high_w0 = settings.concentration_w0_range
    # limepy's lowered isothermal models need W0 > 0; above ~12 they are near-isothermal and the
    # multimass iteration fails to converge.
    if not 0 < low_w0 <= high_w0 <= 12:
        raise ValueError(f"--concentration-w0-range must lie in (0, 12] and be ordered, got {settings.concentration_w0_range}")
    for metallicity_feh in settings.metallicity_feh_values:
        if not stellar_evolution.MINIMUM_METALLICITY_FEH - 1e-9 <= metallicity_feh <= stellar_evolution.MAXIMUM_METALLICITY_FEH + 1e-9:
            raise ValueError(f"--metallicity-feh-values: {metallicity_feh} is outside SSE's range "
                             f"[{stellar_evolution.MINIMUM_METALLICITY_FEH:.2f}, {stellar_evolution.MAXIMUM_METALLICITY_FEH:.2f}]")
    for name in ("training_clusters", "validation_clusters", "test_clusters", "calibration_clusters", "boundary_clusters"):
        if getattr(settings, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be non-negative, got {getattr(settings, name)}")
    for name in ("snapshots_per_cluster", "test_snapshots_per_cluster", "calibration_snapshots_per_cluster",
                 "boundary_snapshots_per_cluster",
                 "views_per_snapshot", "workers"):
        if getattr(settings, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(settings, name)}")
    for flag, age_range in (("--age-range-gyr", settings.age_range_gyr), ("--test-age-range-gyr", settings.test_age_range_gyr)):
        if age_range is not None and not 0.0 <= age_range[0] <= age_range[1] <= mock_clusters.MAXIMUM_AGE_GYR:
            raise ValueError(f"{flag} must lie within [0, 14] Gyr and be ordered, got {age_range}")
    distances = list(settings.training_distance_range_kpc) + list(settings.test_distances_kpc)
    if min(distances) <= 0:
        raise ValueError(f"distances must be positive: --training-distance-range-kpc "
                         f"{settings.training_distance_range_kpc}, --test-distances-kpc {settings.test_distances_kpc}")
    if settings.training_distance_range_kpc[0] > settings.training_distance_range_kpc[1]:
        raise ValueError(f"--training-distance-range-kpc must be ordered, got {settings.training_distance_range_kpc}")
    mock_clusters.seeing_sigma_pixels(settings.seeing_fwhm_arcsec)
    if getattr(settings, "nuisance", None) is not None:
        try:
            mock_clusters.check_nuisance_family(settings.nuisance)
        except ValueError as error:
            raise ValueError(f"--nuisance: {error}") from error
        if settings.nuisance == "stellar-evolution":
            for metallicity_feh in settings.metallicity_feh_values:
                mock_clusters.track_metallicity_options(metallicity_feh)


def priors_from(settings):
    return mock_clusters.Priors(
        initial_stars=settings.stars, seeing_fwhm_arcsec=settings.seeing_fwhm_arcsec,
        centre_offset_arcsec=settings.centre_offset_arcsec,
        initial_stars_range=None if settings.stars_range is None else tuple(settings.stars_range),
        initial_half_mass_radius_pc=tuple(settings.initial_half_mass_radius_range_pc),
        galactocentric_radius_kpc=tuple(settings.galactocentric_radius_range_kpc),
        metallicity_feh_values=tuple(settings.metallicity_feh_values),
        concentration_w0=tuple(settings.concentration_w0_range),
        log_uniform_radii=bool(settings.log_uniform_radii),
    )


def test_age_range(settings):
    """Ages of the fixed-distance (test, calibration) snapshots: their own range, else the training one."""
    return settings.age_range_gyr if settings.test_age_range_gyr is None else settings.test_age_range_gyr


def cluster_plan(settings, split, cluster_index):
    """Initial conditions and views (ages × distances) of one cluster, from its own seeded draws."""
    split_code = SPLIT_CODES[split]
    seed = int(np.random.SeedSequence([settings.seed, split_code, cluster_index]).generate_state(1)[0])
    parameters = mock_clusters.draw_cluster_parameters(split_code * CLUSTER_ID_OFFSET + cluster_index, seed, priors_from(settings))
    rng = np.random.default_rng([seed, 2])
    if split in FIXED_DISTANCE_SPLITS:
        ages = rng.uniform(*test_age_range(settings), fixed_distance_snapshots(settings, split))
        views = [(float(age), [float(distance) for distance in settings.test_distances_kpc]) for age in ages]
    elif split == "boundary":
        ages = rng.uniform(*test_age_range(settings), settings.boundary_snapshots_per_cluster)
        views = [(float(age), [float(distance) for distance in boundary_distances_kpc(settings, rng)]) for age in ages]
    else:
        ages = rng.uniform(*settings.age_range_gyr, settings.snapshots_per_cluster)
        views = [(float(age), [float(d) for d in rng.uniform(*settings.training_distance_range_kpc, settings.views_per_snapshot)])
                 for age in ages]
    return parameters, views


def boundary_distances_kpc(settings, rng):
    """One "near" and one "far" distance, log-uniform beyond the test distances (BOUNDARY_* settings)."""
    near_kpc = np.exp(rng.uniform(*np.log(np.multiply(BOUNDARY_NEAR_FRACTIONS, min(settings.test_distances_kpc)))))
    far_kpc = np.exp(rng.uniform(*np.log(np.multiply(BOUNDARY_FAR_FRACTIONS, max(settings.test_distances_kpc)))))
    return near_kpc, far_kpc


def fixed_distance_snapshots(settings, split):
    return {"test": settings.test_snapshots_per_cluster, "calibration": settings.calibration_snapshots_per_cluster}[split]


def maps_per_cluster(settings, split):
    if split in FIXED_DISTANCE_SPLITS:
        return fixed_distance_snapshots(settings, split) * len(settings.test_distances_kpc)
    if split == "boundary":
        return settings.boundary_snapshots_per_cluster * 2
    return settings.snapshots_per_cluster * settings.views_per_snapshot


def clusters_in(settings, split):
    return {"train": settings.training_clusters, "validation": settings.validation_clusters,
            "test": settings.test_clusters, "calibration": settings.calibration_clusters,
            "boundary": settings.boundary_clusters}[split]


# --- Tasks: one cluster each; a process loads each stellar table once ------------------------------
_STELLAR_TABLES = {}


def stellar_table_settings(settings):
    return stellar_evolution.COARSE_GRID if settings.coarse_stellar_tables else {}


def load_stellar_table(settings, metallicity_feh):
    """The stellar table of `metallicity_feh`, read once per process (from the cache once built)."""
    key = (metallicity_feh, settings.stellar_table_cache, settings.coarse_stellar_tables)
    if key not in _STELLAR_TABLES:
        _STELLAR_TABLES[key] = stellar_evolution.load_stellar_table(
            metallicity_feh, cache_directory=settings.stellar_table_cache, **stellar_table_settings(settings))
    return _STELLAR_TABLES[key]


def make_one_cluster(settings, task):
    """All maps of one cluster, `task` = (split, cluster index); a pure function of its arguments."""
    split, cluster_index = task
    parameters, views = cluster_plan(settings, split, cluster_index)
    family = getattr(settings, "nuisance", None)
    if family is None:
        maps = mock_clusters.make_cluster_maps(parameters, views, settings.seeing_fwhm_arcsec, settings.centre_offset_arcsec,
                                               functools.partial(load_stellar_table, settings))
    else:
        # The family's draws come from their own seeded streams, after the nominal plan.
        parameters, nuisance = mock_clusters.draw_nuisance(family, parameters, priors_from(settings))
        maps = mock_clusters.make_cluster_maps(parameters, views, settings.seeing_fwhm_arcsec, settings.centre_offset_arcsec,
                                               functools.partial(load_stellar_table, settings), nuisance)
    return split, cluster_index, maps


def stellar_table_metallicities(settings):
    """Every [Fe/H] whose stellar table the clusters may read: the priors', and for the
    "stellar-evolution" nuisance family the shifted track metallicities too."""
    metallicities = [float(value) for value in settings.metallicity_feh_values]
    if getattr(settings, "nuisance", None) == "stellar-evolution":
        for metallicity_feh in settings.metallicity_feh_values:
            metallicities += [value for value in mock_clusters.track_metallicity_options(metallicity_feh) if value not in metallicities]
    return metallicities


def finished_clusters(settings, tasks):
    """Run the tasks and yield (split, cluster index, maps) as each cluster finishes, in any order.

    With one worker and no scheduler the clusters run here, one after the other. Otherwise they run
    as dask.distributed tasks: on the workers of `settings.scheduler`, or on a LocalCluster of
    `settings.workers` single-threaded processes (the forward model is numpy and scipy code that holds
    the GIL much of the time, so processes, not threads). A result is released on the workers as soon
    as it has been handed over, so memory stays bounded by the clusters in flight.
    """
    if settings.workers == 1 and settings.scheduler is None:
        yield from (make_one_cluster(settings, task) for task in tasks)
        return
    if not tasks:
        return
    from dask.distributed import Client, LocalCluster, as_completed

    # The task function is taken from the importable module, not from __main__, so that the workers
    # import it rather than receive a pickled copy of this script.
    import make_mock_clusters

    cluster = None
    if settings.scheduler is None:
        cluster = LocalCluster(n_workers=settings.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(settings.scheduler or cluster)
    try:
        futures = client.map(make_mock_clusters.make_one_cluster, [settings] * len(tasks), tasks, pure=False)
        for future in as_completed(futures):
            result = future.result()
            future.release()
            yield result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --- Writing a split incrementally ----------------------------------------------------------------
def open_split_arrays(split_directory, number_of_maps):
    """Open (or create) the memory-mapped output arrays of a split."""
    split_directory.mkdir(parents=True, exist_ok=True)
    shapes = {"luminosity_V.npy": (number_of_maps, 160, 160, 1), "mass.npy": (number_of_maps, 160, 160, 1),
              "distance_age.npy": (number_of_maps, 2)}
    arrays = {}
    for file_name, shape in shapes.items():
        path = split_directory / file_name
        mode = "r+" if path.exists() else "w+"
        arrays[file_name] = np.lib.format.open_memmap(path, mode=mode, dtype=np.float32, shape=None if mode == "r+" else shape)
        if arrays[file_name].shape != shape:
            raise ValueError(f"{path} has shape {arrays[file_name].shape}, the settings need {shape}; "
                             f"remove {split_directory} or use the settings it was made with")
    return arrays


# Settings that do not change the bytes of a data set, left out of its settings.json.
ENGINE_SETTINGS = ("workers", "scheduler", "preview", "splits", "stellar_table_cache")


# Settings recorded only when they differ from their default, so that folders made before they existed
# (and every folder made without them) keep their settings.json byte for byte.
OPTIONAL_SETTINGS = {"nuisance": NUISANCE}


def settings_record(settings):
    record = {key: value for key, value in vars(settings).items() if key not in ENGINE_SETTINGS
              and not (key in OPTIONAL_SETTINGS and value == OPTIONAL_SETTINGS[key])}
    return json.loads(json.dumps(record))


def saved_value(saved, key):
    """A setting of a saved settings.json; folders made before a setting existed had CB21's value."""
    if key in saved:
        return saved[key]
    legacy = {"preset": PRESET, **PRESETS["cb21"]}
    return json.loads(json.dumps(legacy.get(key)))


def check_or_write_settings(directory, settings):
    """Resuming is only safe with the settings the folder was started with."""
    path = directory / "settings.json"
    record = settings_record(settings)
    if path.exists():
        saved = json.loads(path.read_text())
        changed = sorted(key for key in set(saved) | set(record) if saved_value(saved, key) != record.get(key))
        if changed:
            raise ValueError(f"{directory} was made with other settings ({', '.join(changed)}); "
                             f"remove it or rerun with the settings in {path}")
    else:
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(record, indent=1))


def write_atomically(path, text):
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_metadata_csv(split_directory, number_of_clusters):
    rows = []
    for cluster_index in range(number_of_clusters):
        rows += json.loads((split_directory / "progress" / f"cluster_{cluster_index:06d}.json").read_text())
    temporary = split_directory / "metadata.csv.tmp"
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["map_index"] + list(rows[0]))
        writer.writeheader()
        for map_index, row in enumerate(rows):
            writer.writerow({"map_index": map_index, **row})
    os.replace(temporary, split_directory / "metadata.csv")


def generate(settings):
    """Generate every requested split, resuming finished clusters, with both cores busy."""
    output_directory = Path(settings.output_directory)
    check_or_write_settings(output_directory, settings)
    # Build the stellar tables once in this process, so the workers only ever read the cache.
    for metallicity_feh in stellar_table_metallicities(settings):
        load_stellar_table(settings, metallicity_feh)

    tasks, arrays = [], {}
    for split in settings.splits:
        number_of_clusters = clusters_in(settings, split)
        if number_of_clusters == 0:
            continue
        split_directory = output_directory / split
        arrays[split] = open_split_arrays(split_directory, number_of_clusters * maps_per_cluster(settings, split))
        (split_directory / "progress").mkdir(exist_ok=True)
        tasks += [(split, index) for index in range(number_of_clusters)
                  if not (split_directory / "progress" / f"cluster_{index:06d}.json").exists()]

    start = time.perf_counter()
    results = finished_clusters(settings, tasks)
    maps_written = 0
    try:
        for split, cluster_index, (log_flux, log_mass, distance_age, metadata) in tqdm(results, total=len(tasks), desc="clusters",
                                                                                      smoothing=0.05):
            first = cluster_index * maps_per_cluster(settings, split)
            rows = slice(first, first + len(log_flux))
            arrays[split]["luminosity_V.npy"][rows] = log_flux
            arrays[split]["mass.npy"][rows] = log_mass
            arrays[split]["distance_age.npy"][rows] = distance_age
            for array in arrays[split].values():
                array.flush()
            # The progress record is written only after the maps are on disk: it marks the cluster done.
            write_atomically(output_directory / split / "progress" / f"cluster_{cluster_index:06d}.json",
                             json.dumps(metadata, default=float))
            maps_written += len(log_flux)
    finally:
        results.close()
    elapsed = time.perf_counter() - start

    for split in arrays:
        write_metadata_csv(output_directory / split, clusters_in(settings, split))
    if "train" in arrays:
        standardization.write_standardization(output_directory / "standardization_files",
                                              standardization.training_standardization(output_directory / "train"))
    if tasks:
        print(f"{len(tasks)} clusters, {maps_written} maps in {elapsed:.1f} s: "
              f"{len(tasks) / elapsed:.3f} clusters/s, {maps_written / elapsed:.2f} maps/s")


def write_preview(settings, png_path, ages_gyr=(0.5, 2.0, 6.0, 12.0)):
    """A mosaic of one training-prior cluster's flux and mass maps over ages × CB21's distances, in
    the paper's colour maps (flux: bone, -6…-3; mass: gist_heat, -1.5…0.75; paper-CB21.md §10b)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parameters, _ = cluster_plan(settings, "test", 0)
    views = [(age, list(settings.test_distances_kpc)) for age in ages_gyr]
    log_flux, log_mass, distance_age, _ = mock_clusters.make_cluster_maps(
        parameters, views, settings.seeing_fwhm_arcsec, settings.centre_offset_arcsec,
        functools.partial(load_stellar_table, settings))
    columns = len(settings.test_distances_kpc)
    figure, axes = plt.subplots(2 * len(ages_gyr), columns, figsize=(2.2 * columns, 4.4 * len(ages_gyr)))
    extent = [-20, 20, -20, 20]
    for index, (flux_map, mass_map, (distance_kpc, age_gyr)) in enumerate(zip(log_flux, log_mass, distance_age)):
        row, column = divmod(index, columns)
        for offset, image, colour_map, limits in ((0, flux_map, "bone", (-6, -3)), (1, mass_map, "gist_heat", (-1.5, 0.75))):
            axis = axes[2 * row + offset, column]
            axis.imshow(image[..., 0], origin="lower", cmap=colour_map, vmin=limits[0], vmax=limits[1], extent=extent)
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(f"{'flux' if offset == 0 else 'mass'}  D={distance_kpc:.0f} kpc  A={age_gyr:.1f} Gyr", fontsize=7)
    figure.suptitle(f"Mock cluster {parameters.cluster_id}: log10 flux (bone, -6…-3) and log10 mass (gist_heat, -1.5…0.75)",
                    fontsize=8)
    figure.tight_layout()
    temporary = Path(png_path).with_name(Path(png_path).stem + ".tmp.png")
    figure.savefig(temporary, dpi=90)
    plt.close(figure)
    os.replace(temporary, png_path)


def main(argv=None):
    settings = parse_arguments(sys.argv[1:] if argv is None else argv)
    check_settings(settings)
    if settings.preview:
        write_preview(settings, settings.preview)
    generate(settings)


if __name__ == "__main__":
    main()
