"""Benchmark: what a mock cluster costs `make_mock_clusters.py` on this machine, against N0.

Rows:
- CB21's default data set (`--preset cb21`: N0 = 5×10⁴, 3 snapshots × 8 views per cluster), with the
  time the default data set (600 clusters, 14,160 maps) would take at that rate;
- the Milky Way preset's clusters (`--preset milky-way`: 1 snapshot × 20 views) at fixed N0 = 5×10⁴,
  2.5×10⁵ and 10⁶ (`--stars-range N0 N0`), with the time its training split would take.

Each row generates CLUSTERS training clusters into a temporary folder on WORKERS dask workers
(`--workers 1`: in this process) after the stellar tables are built or read from the cache, and
prints wall seconds per cluster, core-seconds per cluster (wall × workers / clusters), clusters/s and
maps/s. Ages are drawn as in the presets (uniform 0–14 Gyr), so small CLUSTERS give noisy figures.

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
MILKY_WAY_STARS = (50_000, 250_000, 1_000_000)
ONLY_TRAINING = ["--validation-clusters", "0", "--test-clusters", "0", "--calibration-clusters", "0"]


def time_training_split(directory, preset_flags, clusters, workers):
    """Seconds to generate `clusters` training clusters with `preset_flags` (tables built beforehand)."""
    flags = preset_flags + ONLY_TRAINING + ["--seed", "12345"]
    make_mock_clusters.main(["--output-directory", directory + "/warm", "--training-clusters", "1", "--workers", "1"] + flags)
    start = time.perf_counter()
    make_mock_clusters.main(["--output-directory", directory + "/timed", "--training-clusters", str(clusters),
                             "--workers", str(workers)] + flags)
    return time.perf_counter() - start


def main():
    clusters = int(sys.argv[1]) if len(sys.argv) > 1 else CLUSTERS
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else WORKERS
    rows = []
    cases = [("cb21 defaults, N0 = 5e4", ["--preset", "cb21"], make_mock_clusters.PRESETS["cb21"])]
    cases += [(f"milky-way views, N0 = {stars:.2g}", ["--preset", "milky-way", "--stars-range", str(stars), str(stars)],
               make_mock_clusters.PRESETS["milky-way"]) for stars in MILKY_WAY_STARS]
    for label, flags, preset in cases:
        with tempfile.TemporaryDirectory() as directory:
            elapsed = time_training_split(directory, flags, clusters, workers)
        maps = clusters * preset["snapshots_per_cluster"] * preset["views_per_snapshot"]
        split_minutes = preset["training_clusters"] * elapsed / clusters / 60
        rows.append(f"{label:<32} {elapsed / clusters:7.2f} s/cluster  {elapsed * workers / clusters:7.2f} core-s/cluster  "
                    f"{clusters / elapsed:6.3f} clusters/s  {maps / elapsed:7.2f} maps/s  "
                    f"training split ({preset['training_clusters']} clusters) ≈ {split_minutes:.0f} min")
        print(rows[-1], flush=True)
    print(f"\n{clusters} clusters per row, {workers} workers:")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
