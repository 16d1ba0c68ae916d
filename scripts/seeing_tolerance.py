"""How close to π-DOC's 2.5″ must a map's seeing be for the intervals to hold?

The seeing family of `make_mock_clusters.py --nuisance seeing` (FWHM 2.2–2.8″) is scored with the
intervals and verdict calibrated on the eight other nuisance families (as `evaluate_piDOC.py
--leave-one-family-out` does), in bins of |seeing − 2.5″|. The tolerance it gives is
`pidoc.observations.SEEING_TOLERANCE_ARCSEC` (docs/uncertainty.md, "Observing conditions"). The
families must exist (`bash scripts/nuisance_families.sh [PRESET] [MODEL]`); their predictions are
cached, so this costs one calibration fit. With `--calibration-splits` the intervals are calibrated
on those splits instead (e.g. the nominal family alone, as a shipped calibration file is), and only
the seeing family needs to exist.

    python3 scripts/seeing_tolerance.py [--preset cb21] [--trained-directory trained_piDOC]
        [--calibration-splits SPLIT ...]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from pidoc.calibration import mixture  # noqa: E402
from pidoc.model import open_model  # noqa: E402
from pidoc.observations import TARGET_SEEING_FWHM_ARCSEC  # noqa: E402

FAMILIES = ("nominal", "imf", "binaries", "segregation", "tidal", "stellar-evolution", "seeing", "noise", "centring")
DEPARTURE_EDGES_ARCSEC = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)


def main(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cb21")
    parser.add_argument("--trained-directory", type=Path, default=PROJECT_ROOT / "trained_piDOC")
    # The reproduction keeps its constants in input_files/ (a model folder's own constants win).
    parser.add_argument("--standardization-directory", type=Path,
                        default=PROJECT_ROOT / "input_files" / "standardization_files")
    parser.add_argument("--calibration-splits", type=Path, nargs="+", default=None, metavar="SPLIT",
                        help="calibrate on these splits (default: the eight other nuisance families of the preset)")
    options = parser.parse_args(arguments)
    model = open_model(options.trained_directory, options.standardization_directory)
    family_directory = PROJECT_ROOT / "data" / "nuisance" / options.preset
    seeing = mixture.load_family(family_directory / "seeing" / "calibration", model)
    # Each family's position offsets its cluster ids; the default keeps the positions of
    # `evaluate_piDOC.py --leave-one-family-out` (the order of FAMILIES), so its figures repeat exactly.
    if options.calibration_splits is None:
        seeing_position = FAMILIES.index("seeing")
        positions = [position for position, name in enumerate(FAMILIES) if name != "seeing"]
        others = [mixture.load_family(family_directory / FAMILIES[position] / "calibration", model) for position in positions]
        described = f"the eight other families of {options.preset}"
    else:
        seeing_position, positions = 0, list(range(1, len(options.calibration_splits) + 1))
        others = [mixture.load_family(split, model) for split in options.calibration_splits]
        described = ", ".join(str(split) for split in options.calibration_splits)
    mixture.check_families(others + [seeing])
    calibration = mixture.calibrate(others, positions)
    cluster_ids = mixture.family_cluster_ids(seeing, seeing_position)
    outside = mixture.family_flags(calibration, seeing)["outside"]
    seeing["conditions"]["seeing_departure_arcsec"] = np.abs(seeing["conditions"]["seeing_fwhm_arcsec"]
                                                              - TARGET_SEEING_FWHM_ARCSEC)
    rows = mixture.condition_breakdown(calibration, seeing, cluster_ids, outside, "seeing_departure_arcsec",
                                       DEPARTURE_EDGES_ARCSEC)
    print(f"{options.trained_directory}, seeing family of {options.preset} scored with intervals calibrated on "
          f"{described}; coverage in percent of maps, averaged per cluster: distance / age / total mass / M/L_V / "
          f"pixel mass")
    for row in rows:
        print(f"|seeing - 2.5″| {row['low']:.2f}–{row['high']:.2f}″: {row['number_of_maps']} maps, "
              f"{row['number_of_clusters']} clusters, {row['percent_outside']:.1f} % outside; 68 %: "
              + " / ".join(f"{row['pooled'][quantity][0.68]['coverage_percent']:.0f}" for quantity in mixture.COVERAGE_QUANTITIES)
              + "; 95 %: "
              + " / ".join(f"{row['pooled'][quantity][0.95]['coverage_percent']:.0f}" for quantity in mixture.COVERAGE_QUANTITIES))
    return rows


if __name__ == "__main__":
    main()
