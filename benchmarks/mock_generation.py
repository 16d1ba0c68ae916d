"""Benchmark: how fast `make_mock_clusters.py` makes full-size mock clusters on this machine.

Generates a small training split at the default settings (N0 = 5×10⁴, 3 snapshots × 8 views per
cluster, the full stellar tables) into a temporary folder with every core, and prints clusters/s,
maps/s and the time the default data set (600 clusters, 14,160 maps) would take at that rate.

Usage: python3 benchmarks/mock_generation.py [CLUSTERS] [WORKERS]
"""
import os
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import make_mock_clusters  # noqa: E402

CLUSTERS = 12
WORKERS = os.cpu_count()


def main():
    clusters = int(sys.argv[1]) if len(sys.argv) > 1 else CLUSTERS
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else WORKERS
    with tempfile.TemporaryDirectory() as directory:
        # The stellar tables are built (or read from the cache) before the clock starts.
        make_mock_clusters.main(["--output-directory", directory + "/warm", "--training-clusters", "1",
                                 "--validation-clusters", "0", "--test-clusters", "0", "--calibration-clusters", "0", "--workers", "1"])
        start = time.perf_counter()
        make_mock_clusters.main(["--output-directory", directory + "/timed", "--training-clusters", str(clusters),
                                 "--validation-clusters", "0", "--test-clusters", "0", "--calibration-clusters", "0",
                                 "--workers", str(workers),
                                 "--seed", "12345"])
        elapsed = time.perf_counter() - start
    maps = clusters * make_mock_clusters.SNAPSHOTS_PER_CLUSTER * make_mock_clusters.VIEWS_PER_SNAPSHOT
    default_clusters = (make_mock_clusters.TRAINING_CLUSTERS + make_mock_clusters.VALIDATION_CLUSTERS
                        + make_mock_clusters.TEST_CLUSTERS)
    print(f"{clusters} clusters ({maps} maps) with {workers} workers in {elapsed:.1f} s: "
          f"{clusters / elapsed:.3f} clusters/s, {maps / elapsed:.2f} maps/s")
    print(f"default data set ({default_clusters} clusters) at this rate: {default_clusters * elapsed / clusters / 60:.1f} min "
          f"(test clusters have 5 snapshots instead of 3, so this slightly underestimates)")


if __name__ == "__main__":
    main()
