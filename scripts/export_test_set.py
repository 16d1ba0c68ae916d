"""Export π-DOC's committed 100-map test set from a generated test split, and write the manifest.

The test split of `make_mock_clusters.py` holds clusters the networks never saw, each snapshot
observed at CB21's four distances. This script draws (with a seeded generator) 25 snapshots and
keeps all four distances of each, so the committed set has 25 maps at each of 15, 30, 60, 80 kpc
with ages across 0-14 Gyr, in the original's file names, shapes and units. It then writes
MANIFEST.sha256 for the committed weights, standardisation constants and test maps.

Usage: python3 scripts/export_test_set.py [TEST_SPLIT_DIRECTORY]
"""
import csv
import sys
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pidoc.io import replace_atomically, save_array  # noqa: E402
from write_manifest import write_manifest  # noqa: E402

TEST_SPLIT_DIRECTORY = PROJECT_ROOT / "data" / "test"
INPUT_DIRECTORY = PROJECT_ROOT / "input_files"
SNAPSHOTS = 25
SEED = 2021


def export_test_set(split_directory, output_directory):
    rows = list(csv.DictReader(open(split_directory / "metadata.csv")))
    snapshots = sorted({(row["cluster_id"], row["snapshot"]) for row in rows})
    chosen = np.random.default_rng(SEED).choice(len(snapshots), SNAPSHOTS, replace=False)
    chosen_snapshots = {snapshots[index] for index in chosen}
    indices = [int(row["map_index"]) for row in rows if (row["cluster_id"], row["snapshot"]) in chosen_snapshots]
    for source, target in (("luminosity_V.npy", "luminosity_V_testset.npy"), ("mass.npy", "mass_testset.npy"),
                           ("distance_age.npy", "distance_age_testset.npy")):
        save_array(output_directory / target, np.load(split_directory / source, mmap_mode="r")[indices])

    def write_metadata(temporary_path):
        with open(temporary_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows[index] for index in indices)

    replace_atomically(output_directory / "testset_metadata.csv", write_metadata)
    return len(indices)


if __name__ == "__main__":
    split_directory = Path(sys.argv[1]) if len(sys.argv) > 1 else TEST_SPLIT_DIRECTORY
    print(f"exported {export_test_set(split_directory, INPUT_DIRECTORY)} maps to {INPUT_DIRECTORY}")
    print(f"manifest: {write_manifest(PROJECT_ROOT)} files in MANIFEST.sha256")
