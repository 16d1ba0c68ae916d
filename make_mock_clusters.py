"""Make π-DOC's training, validation and test sets of mock globular clusters.

Run `python3 make_mock_clusters.py` for the default data set (settings below, the same as the
`--help` flags). Each split is written incrementally into memory-mapped .npy files under
OUTPUT_DIRECTORY/<split>/, with a small progress record per finished cluster, so an interrupted
run resumes where it stopped when started again with the same settings. Splits are made of
different clusters (initial conditions), never of different views of one cluster.

Layout of a split folder (the conventions of CB21's input files):
    luminosity_V.npy   (N, 160, 160, 1) float32  log10 flux per pixel, L☉/kpc²
    mass.npy           (N, 160, 160, 1) float32  log10 mass per pixel, M☉, remnants included
    distance_age.npy   (N, 2) float32            [distance kpc, age Gyr]
    metadata.csv       one row per map: cluster id, seed, projection, physical parameters, M/L_V
OUTPUT_DIRECTORY/standardization_files/ holds the six scalar constants of the training split.
"""
import argparse
import csv
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import mock_clusters
import standardization
import stellar_evolution

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
SNAPSHOTS_PER_CLUSTER = 3            # ages per cluster, each drawn uniformly in AGE_RANGE_GYR
TEST_SNAPSHOTS_PER_CLUSTER = 5
VIEWS_PER_SNAPSHOT = 8               # training/validation: random projection and distance per view
AGE_RANGE_GYR = (0.0, 14.0)          # CB21 §2: snapshots from 0 to 14 Gyr
TRAINING_DISTANCE_RANGE_KPC = (10.0, 90.0)   # continuous, so the CNN regresses between test distances
TEST_DISTANCES_KPC = (15.0, 30.0, 60.0, 80.0)  # CB21's test distances, exactly
SEEING_FWHM_ARCSEC = 2.5
CENTRE_OFFSET_ARCSEC = 1.0
WORKERS = os.cpu_count()
SPLITS = ("train", "validation", "test", "calibration")

SPLIT_CODES = {"train": 0, "validation": 1, "test": 2, "calibration": 3}
# Splits observed at the fixed test distances (CB21's test design) rather than at random distances.
FIXED_DISTANCE_SPLITS = ("test", "calibration")
# Cluster ids are unique across splits: the split's code times this offset plus the running index.
CLUSTER_ID_OFFSET = 1_000_000


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-directory", default=OUTPUT_DIRECTORY)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--stars", type=int, default=STARS, help="N0, stars at t = 0")
    parser.add_argument("--training-clusters", type=int, default=TRAINING_CLUSTERS)
    parser.add_argument("--validation-clusters", type=int, default=VALIDATION_CLUSTERS)
    parser.add_argument("--test-clusters", type=int, default=TEST_CLUSTERS)
    parser.add_argument("--calibration-clusters", type=int, default=CALIBRATION_CLUSTERS)
    parser.add_argument("--snapshots-per-cluster", type=int, default=SNAPSHOTS_PER_CLUSTER)
    parser.add_argument("--test-snapshots-per-cluster", type=int, default=TEST_SNAPSHOTS_PER_CLUSTER)
    parser.add_argument("--calibration-snapshots-per-cluster", type=int, default=CALIBRATION_SNAPSHOTS_PER_CLUSTER)
    parser.add_argument("--views-per-snapshot", type=int, default=VIEWS_PER_SNAPSHOT)
    parser.add_argument("--age-range-gyr", type=float, nargs=2, default=AGE_RANGE_GYR)
    parser.add_argument("--training-distance-range-kpc", type=float, nargs=2, default=TRAINING_DISTANCE_RANGE_KPC)
    parser.add_argument("--test-distances-kpc", type=float, nargs="+", default=TEST_DISTANCES_KPC)
    parser.add_argument("--seeing-fwhm-arcsec", type=float, default=SEEING_FWHM_ARCSEC)
    parser.add_argument("--centre-offset-arcsec", type=float, default=CENTRE_OFFSET_ARCSEC)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--splits", nargs="+", default=SPLITS)
    parser.add_argument("--stellar-table-cache", default=None, help="folder of cached stellar tables")
    parser.add_argument("--coarse-stellar-tables", action="store_true", help="small tables, for tests only")
    parser.add_argument("--preview", default=None, help="also write a PNG mosaic of one cluster here")
    return parser.parse_args(argv)


def check_settings(settings):
    """Refuse settings that make no physical sense, naming the setting."""
    for split in settings.splits:
        if split not in SPLIT_CODES:
            raise ValueError(f"unknown split '{split}' in --splits; choose from {sorted(SPLIT_CODES)}")
    if settings.stars < 1:
        raise ValueError(f"--stars (N0) must be at least 1, got {settings.stars}")
    for name in ("training_clusters", "validation_clusters", "test_clusters", "calibration_clusters"):
        if getattr(settings, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be non-negative, got {getattr(settings, name)}")
    for name in ("snapshots_per_cluster", "test_snapshots_per_cluster", "calibration_snapshots_per_cluster",
                 "views_per_snapshot", "workers"):
        if getattr(settings, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(settings, name)}")
    low_age, high_age = settings.age_range_gyr
    if not 0.0 <= low_age <= high_age <= mock_clusters.MAXIMUM_AGE_GYR:
        raise ValueError(f"--age-range-gyr must lie within [0, 14] Gyr and be ordered, got {settings.age_range_gyr}")
    distances = list(settings.training_distance_range_kpc) + list(settings.test_distances_kpc)
    if min(distances) <= 0:
        raise ValueError(f"distances must be positive: --training-distance-range-kpc "
                         f"{settings.training_distance_range_kpc}, --test-distances-kpc {settings.test_distances_kpc}")
    if settings.training_distance_range_kpc[0] > settings.training_distance_range_kpc[1]:
        raise ValueError(f"--training-distance-range-kpc must be ordered, got {settings.training_distance_range_kpc}")
    mock_clusters.seeing_sigma_pixels(settings.seeing_fwhm_arcsec)


def priors_from(settings):
    return mock_clusters.Priors(initial_stars=settings.stars, seeing_fwhm_arcsec=settings.seeing_fwhm_arcsec,
                                centre_offset_arcsec=settings.centre_offset_arcsec)


def cluster_plan(settings, split, cluster_index):
    """Initial conditions and views (ages × distances) of one cluster, from its own seeded draws."""
    split_code = SPLIT_CODES[split]
    seed = int(np.random.SeedSequence([settings.seed, split_code, cluster_index]).generate_state(1)[0])
    parameters = mock_clusters.draw_cluster_parameters(split_code * CLUSTER_ID_OFFSET + cluster_index, seed, priors_from(settings))
    rng = np.random.default_rng([seed, 2])
    if split in FIXED_DISTANCE_SPLITS:
        ages = rng.uniform(*settings.age_range_gyr, fixed_distance_snapshots(settings, split))
        views = [(float(age), [float(distance) for distance in settings.test_distances_kpc]) for age in ages]
    else:
        ages = rng.uniform(*settings.age_range_gyr, settings.snapshots_per_cluster)
        views = [(float(age), [float(d) for d in rng.uniform(*settings.training_distance_range_kpc, settings.views_per_snapshot)])
                 for age in ages]
    return parameters, views


def fixed_distance_snapshots(settings, split):
    return {"test": settings.test_snapshots_per_cluster, "calibration": settings.calibration_snapshots_per_cluster}[split]


def maps_per_cluster(settings, split):
    if split in FIXED_DISTANCE_SPLITS:
        return fixed_distance_snapshots(settings, split) * len(settings.test_distances_kpc)
    return settings.snapshots_per_cluster * settings.views_per_snapshot


def clusters_in(settings, split):
    return {"train": settings.training_clusters, "validation": settings.validation_clusters,
            "test": settings.test_clusters, "calibration": settings.calibration_clusters}[split]


# --- Workers: each process loads a stellar table once per metallicity -----------------------------
_WORKER_SETTINGS = None
_STELLAR_TABLES = {}


def stellar_table_settings(settings):
    return stellar_evolution.COARSE_GRID if settings.coarse_stellar_tables else {}


def load_stellar_table(metallicity_feh):
    if metallicity_feh not in _STELLAR_TABLES:
        _STELLAR_TABLES[metallicity_feh] = stellar_evolution.load_stellar_table(
            metallicity_feh, cache_directory=_WORKER_SETTINGS.stellar_table_cache,
            **stellar_table_settings(_WORKER_SETTINGS))
    return _STELLAR_TABLES[metallicity_feh]


def initialise_worker(settings):
    global _WORKER_SETTINGS
    _WORKER_SETTINGS = settings


def make_one_cluster(task):
    split, cluster_index = task
    parameters, views = cluster_plan(_WORKER_SETTINGS, split, cluster_index)
    maps = mock_clusters.make_cluster_maps(parameters, views, _WORKER_SETTINGS.seeing_fwhm_arcsec,
                                           _WORKER_SETTINGS.centre_offset_arcsec, load_stellar_table)
    return split, cluster_index, maps


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


def settings_record(settings):
    record = {key: value for key, value in vars(settings).items() if key not in ("workers", "preview", "splits", "stellar_table_cache")}
    return json.loads(json.dumps(record))


def check_or_write_settings(directory, settings):
    """Resuming is only safe with the settings the folder was started with."""
    path = directory / "settings.json"
    record = settings_record(settings)
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != record:
            changed = sorted(key for key in set(saved) | set(record) if saved.get(key) != record.get(key))
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
    initialise_worker(settings)
    # Build the stellar tables once in this process, so workers only ever read the cache.
    for metallicity_feh in mock_clusters.Priors().metallicity_feh_values:
        load_stellar_table(metallicity_feh)

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
    pool = None if settings.workers == 1 else multiprocessing.get_context("fork").Pool(
        settings.workers, initialise_worker, (settings,))
    results = pool.imap_unordered(make_one_cluster, tasks) if pool else map(make_one_cluster, tasks)
    maps_written = 0
    try:
        for split, cluster_index, (log_flux, log_mass, distance_age, metadata) in tqdm(results, total=len(tasks), desc="clusters"):
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
        if pool:
            pool.close()
            pool.join()
    elapsed = time.perf_counter() - start

    for split in arrays:
        write_metadata_csv(output_directory / split, clusters_in(settings, split))
    if "train" in arrays:
        standardization.write_standardization(output_directory / "standardization_files",
                                              training_standardization(output_directory / "train"))
    if tasks:
        print(f"{len(tasks)} clusters, {maps_written} maps in {elapsed:.1f} s: "
              f"{len(tasks) / elapsed:.3f} clusters/s, {maps_written / elapsed:.2f} maps/s")


def training_standardization(train_directory, chunk=512):
    """The six scalar constants from the training split: pixel mean/std of log flux and log mass,
    and one mean/std shared by both [distance, age] columns, as in the original (CB21 §3)."""
    constants = {}
    for key, file_name in (("luminosity", "luminosity_V.npy"), ("mass", "mass.npy")):
        values = np.load(train_directory / file_name, mmap_mode="r")
        total = total_squares = 0.0
        for first in range(0, len(values), chunk):
            block = np.asarray(values[first:first + chunk], dtype=np.float64)
            total += block.sum()
            total_squares += np.square(block).sum()
        count = values.size
        mean = total / count
        constants[f"{key}_mean"] = mean
        constants[f"{key}_std"] = np.sqrt(max(total_squares / count - mean**2, 0.0))
    distance_age = np.load(train_directory / "distance_age.npy").astype(np.float64)
    constants["distance_age_mean"] = distance_age.mean()
    constants["distance_age_std"] = distance_age.std()
    return constants


def write_preview(settings, png_path, ages_gyr=(0.5, 2.0, 6.0, 12.0)):
    """A mosaic of one training-prior cluster's flux and mass maps over ages × CB21's distances, in
    the paper's colour maps (flux: bone, -6…-3; mass: gist_heat, -1.5…0.75; paper-CB21.md §10b)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    initialise_worker(settings)
    parameters, _ = cluster_plan(settings, "test", 0)
    views = [(age, list(settings.test_distances_kpc)) for age in ages_gyr]
    log_flux, log_mass, distance_age, _ = mock_clusters.make_cluster_maps(
        parameters, views, settings.seeing_fwhm_arcsec, settings.centre_offset_arcsec, load_stellar_table)
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
