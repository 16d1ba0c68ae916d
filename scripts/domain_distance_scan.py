"""Where the domain verdict's distance edges lie: the share of maps flagged, by true distance.

Clusters are drawn with the generator's default (CB21, N0 = 5×10⁴) priors, as the calibration
clusters are, and each snapshot is observed once in every distance range below (log-uniform
within it): ranges nearer than the calibrated 15–80 kpc, one between them, and ranges farther.
π-DOC predicts every map and `domain.verdicts` judges it with the model folder's calibration. The
table printed (and written to runs/domain_distance_scan/) gives, per range, the maps and the
percentage flagged `outside`: near 100 % far from the calibrated distances, near 0 between them.

The clusters come from `SeedSequence([seed, 5, cluster])` (split code 5, which no split of
`make_mock_clusters.py` uses), so they are neither calibration nor boundary clusters.

Usage:
    python3 scripts/domain_distance_scan.py [--trained-directory trained_piDOC] [--clusters 50]
        [--snapshots-per-cluster 2] [--seed 101]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from tabulate import tabulate
from tqdm import tqdm

PROJECT_DIRECTORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIRECTORY))

from pidoc.calibration import domain  # noqa: E402  (the project folder must be on the path first)
import functions  # noqa: E402
import make_mock_clusters  # noqa: E402
from pidoc.mocks import clusters as mock_clusters  # noqa: E402
from pidoc.mocks import stellar_evolution  # noqa: E402
from pidoc.model import open_model  # noqa: E402
from pidoc import io as pidoc_io  # noqa: E402

# --- Settings (each is also a command-line flag) --------------------------------------------------
TRAINED_DIRECTORY = PROJECT_DIRECTORY / "trained_piDOC"
STANDARDIZATION_DIRECTORY = PROJECT_DIRECTORY / "input_files" / functions.STANDARDIZATION_SUBDIRECTORY
CLUSTERS = 50
SNAPSHOTS_PER_CLUSTER = 2
SEED = 101
# Nearer than the calibrated 15–80 kpc, between them (not at the four test distances), and farther.
DISTANCE_RANGES_KPC = ((4.0, 8.0), (8.0, 10.0), (10.0, 12.5), (16.0, 75.0), (95.0, 110.0), (110.0, 130.0), (130.0, 150.0))
SCAN_SPLIT_CODE = 5
OUTPUT_DIRECTORY = PROJECT_DIRECTORY / "runs" / "domain_distance_scan"


def cluster_maps(cluster_index, seed, snapshots_per_cluster):
    """Flux maps (M, 160, 160, 1) and true [distance, age] of one cluster, one map per snapshot and range."""
    cluster_seed = int(np.random.SeedSequence([seed, SCAN_SPLIT_CODE, cluster_index]).generate_state(1)[0])
    priors = mock_clusters.Priors()
    parameters = mock_clusters.draw_cluster_parameters(SCAN_SPLIT_CODE * make_mock_clusters.CLUSTER_ID_OFFSET + cluster_index,
                                                       cluster_seed, priors)
    rng = np.random.default_rng([cluster_seed, 2])
    views = [(float(rng.uniform(*make_mock_clusters.AGE_RANGE_GYR)),
              [float(np.exp(rng.uniform(*np.log(distance_range)))) for distance_range in DISTANCE_RANGES_KPC])
             for _ in range(snapshots_per_cluster)]
    log_flux, _, distance_age, _ = mock_clusters.make_cluster_maps(parameters, views, priors.seeing_fwhm_arcsec,
                                                                   priors.centre_offset_arcsec,
                                                                   stellar_evolution.load_stellar_table)
    return log_flux, distance_age


def main(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trained-directory", type=Path, default=TRAINED_DIRECTORY)
    parser.add_argument("--standardization-directory", type=Path, default=STANDARDIZATION_DIRECTORY)
    parser.add_argument("--clusters", type=int, default=CLUSTERS)
    parser.add_argument("--snapshots-per-cluster", type=int, default=SNAPSHOTS_PER_CLUSTER)
    parser.add_argument("--seed", type=int, default=SEED)
    options = parser.parse_args(arguments)
    if options.clusters < 1 or options.snapshots_per_cluster < 1:
        raise ValueError(f"--clusters and --snapshots-per-cluster must be at least 1, got {options.clusters} "
                         f"and {options.snapshots_per_cluster}")

    model = open_model(options.trained_directory, options.standardization_directory)
    calibration = model.require_calibration()
    clusters = [cluster_maps(cluster_index, options.seed, options.snapshots_per_cluster)
                for cluster_index in tqdm(range(options.clusters), desc="clusters")]
    log_flux = np.concatenate([maps for maps, _ in clusters])
    true_distance_kpc = np.concatenate([distance_age[:, 0] for _, distance_age in clusters])
    predicted_log_mass, predicted_distance_age, _ = model.predict(log_flux)
    verdicts = domain.verdicts(calibration, log_flux, predicted_log_mass, predicted_distance_age)
    outside = np.array([verdict == "outside" for verdict, _ in verdicts])

    rows = []
    for low_kpc, high_kpc in DISTANCE_RANGES_KPC:
        in_range = (true_distance_kpc >= low_kpc) & (true_distance_kpc <= high_kpc)
        rows.append([f"{low_kpc:g}–{high_kpc:g}", int(in_range.sum()), f"{100.0 * outside[in_range].mean():.1f}"])
    text = (f"Domain verdict of {options.trained_directory} on {options.clusters} clusters of the default priors "
            f"(seed {options.seed}), each snapshot seen once per distance range\n"
            + tabulate(rows, headers=["true distance (kpc)", "maps", "% outside"]) + "\n")
    print(text)
    OUTPUT_DIRECTORY.mkdir(parents=True, exist_ok=True)
    path = pidoc_io.save_text(OUTPUT_DIRECTORY / f"{Path(options.trained_directory).resolve().name}.txt", text)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
