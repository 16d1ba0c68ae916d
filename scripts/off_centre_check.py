"""Does the domain verdict see a frame cut around the wrong point, and does π-DOC read such a frame well?

Issue 14 asks that maps ≥ 5″ off-centre be flagged `outside` ≥ 95 % of the time, or that their truth
lie inside the 95 % intervals ≥ 95 % of the time. The maps come from the forward model with a large
centre offset, so the frame is filled by the cluster's own light (docs/uncertainty.md, "Off-centre
frames"):

    python3 make_mock_clusters.py --preset cb21 --splits test --test-clusters 20 --centre-offset-arcsec 6 \\
        --seed 32 --output-directory data/off_centre/cb21_seed32
    python3 scripts/off_centre_check.py data/off_centre/cb21_seed32/test --trained-directory trained_piDOC

For bins of the true offset (from the split's metadata.csv) it prints the number of maps, the
percentage the verdict flags, and, for the maps left `inside`, how often the 95 % intervals of
distance and age hold the truth; "flagged or held" counts a map that is flagged or has both held.
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pidoc.calibration import coverage, domain  # noqa: E402
from pidoc.model import open_model  # noqa: E402
from pidoc.splits import load_split  # noqa: E402

OFFSET_BINS_ARCSEC = ((0.0, 3.0), (3.0, 5.0), (5.0, 7.5), (7.5, np.inf), (5.0, np.inf))
LEVEL = 0.95


def true_offsets_arcsec(split_directory):
    """The radial offset of each map's cluster centre from the frame's centre, from metadata.csv."""
    path = Path(split_directory) / "metadata.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: the true centre offsets are read from it")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return np.array([np.hypot(float(row["centre_offset_x_arcsec"]), float(row["centre_offset_y_arcsec"])) for row in rows])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("split_directory", type=Path)
    parser.add_argument("--trained-directory", type=Path, required=True)
    # The reproduction keeps its constants in input_files/ (a model folder's own constants win).
    parser.add_argument("--standardization-directory", type=Path,
                        default=Path(__file__).resolve().parents[1] / "input_files" / "standardization_files")
    options = parser.parse_args(argv)
    model = open_model(options.trained_directory, options.standardization_directory)
    calibration = model.require_calibration()
    log_flux, true_log_mass, true_distance_age = load_split(options.split_directory)
    offsets_arcsec = true_offsets_arcsec(options.split_directory)
    if len(offsets_arcsec) != len(log_flux):
        raise ValueError(f"{options.split_directory}: {len(log_flux)} maps but {len(offsets_arcsec)} metadata rows")
    log_flux = np.asarray(log_flux, dtype=np.float32)
    predicted_log_mass, predicted_distance_age, _ = model.predict(log_flux)
    outside = np.array([verdict == "outside" for verdict, _ in
                        domain.verdicts(calibration, log_flux, predicted_log_mass, predicted_distance_age)])
    covered, _, _, _ = coverage.scalar_coverage(calibration, log_flux, np.asarray(true_log_mass), true_distance_age,
                                                predicted_log_mass, predicted_distance_age, levels=(LEVEL,))
    held = {quantity: covered[quantity][LEVEL] for quantity in ("distance", "age")}
    both_held = held["distance"] & held["age"]
    print(f"{options.trained_directory} on {options.split_directory} ({len(log_flux)} maps)")
    for low, high in OFFSET_BINS_ARCSEC:
        members = (offsets_arcsec >= low) & (offsets_arcsec < high)
        if not members.any():
            continue
        inside = members & ~outside
        held_text = (f"inside maps held in 95 %: D {100.0 * held['distance'][inside].mean():.0f} %, "
                     f"age {100.0 * held['age'][inside].mean():.0f} %" if inside.any() else "no map inside")
        print(f"offset {low:g}–{high:g}″: {members.sum()} maps, flagged {100.0 * outside[members].mean():.1f} %; "
              f"{held_text}; flagged or held {100.0 * (outside | both_held)[members].mean():.1f} %")


if __name__ == "__main__":
    main()
