"""How well could a map's M/L_V be known from what is true about its cluster? An oracle on metadata.

π-DOC's total mass is its flux times an M/L_V, so the total-mass target (10 %) asks how much of the
scatter of the field's M/L_V a reading of the map can explain. This script answers it from a split's
`metadata.csv` alone (no network): least squares of log10 of the true field M/L_V on exact,
true properties of each map, in three nested sets, and the mean |10^residual − 1| of each,
pooled and per decade of present-day mass. The fit is in-sample on the split it reads, so use a
calibration split, never the test split.

    python3 scripts/mass_to_light_oracle.py data/general/calibration
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pidoc.io import read_metadata_column  # noqa: E402

SPLIT_DIRECTORY = "data/general/calibration"
# The general model's domain (issue 13): present-day masses of 10⁴–10⁶ M☉.
MASS_RANGE_LOG_MSUN = (4.0, 6.0)
OLD_AGE_GYR = 10.0


# The metadata columns the oracle reads (make_mock_clusters.py writes them, one row per map).
COLUMNS = ("total_mass_msun", "field_mass_to_light_v", "age_gyr", "metallicity_feh", "retained_black_holes",
           "relaxation_times_elapsed", "segregation_delta", "distance_kpc", "half_mass_radius_pc")


def read_metadata(split_directory):
    """The oracle's metadata columns of a split as float arrays, keeping the maps inside MASS_RANGE_LOG_MSUN."""
    path = Path(split_directory) / "metadata.csv"
    columns = {column: read_metadata_column(path, column) for column in COLUMNS}
    log_mass = np.log10(columns["total_mass_msun"])
    keep = (log_mass >= MASS_RANGE_LOG_MSUN[0]) & (log_mass < MASS_RANGE_LOG_MSUN[1]) & (columns["field_mass_to_light_v"] > 0)
    if not keep.any():
        raise ValueError(f"{path}: no map of 10^{MASS_RANGE_LOG_MSUN[0]:g}–10^{MASS_RANGE_LOG_MSUN[1]:g} M☉")
    return {key: values[keep] for key, values in columns.items()}


def design_matrices(columns):
    """Three nested sets of exact properties: the stellar population; + dynamics; + what the field holds."""
    age = columns["age_gyr"] / 14.0
    metallicity = columns["metallicity_feh"]
    population = [age, age ** 2, age ** 3, metallicity, metallicity ** 2, age * metallicity]
    black_holes = np.log10(1.0 + columns["retained_black_holes"])
    dynamics = population + [black_holes, np.log10(columns["relaxation_times_elapsed"]), columns["segregation_delta"]]
    log_distance = np.log10(columns["distance_kpc"])
    log_radius = np.log10(columns["half_mass_radius_pc"])
    # The fraction of the cluster inside the 40″ field goes with its angular size, r_h / D.
    aperture = log_radius - log_distance
    field = dynamics + [log_distance, log_distance ** 2, log_radius, aperture, aperture ** 2, aperture * age,
                        columns["segregation_delta"] * aperture, black_holes * aperture]
    return {"age and [Fe/H]": population, "+ black holes, relaxation, segregation": dynamics,
            "+ distance, half-mass radius, their ratio": field}


def mean_relative_error(residual_dex):
    return 100.0 * float(np.mean(np.abs(10.0 ** residual_dex - 1.0)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split_directory", nargs="?", default=SPLIT_DIRECTORY, help="a split with metadata.csv")
    settings = parser.parse_args(argv)
    columns = read_metadata(settings.split_directory)
    target = np.log10(columns["field_mass_to_light_v"])
    log_mass = np.log10(columns["total_mass_msun"])
    groups = {"10^4–10^5 M☉": (log_mass >= 4) & (log_mass < 5), "10^5–10^6 M☉": (log_mass >= 5) & (log_mass < 6),
              f"{OLD_AGE_GYR:g}–14 Gyr": columns["age_gyr"] >= OLD_AGE_GYR}
    print(f"{settings.split_directory}: {len(target)} maps of 10^4–10^6 M☉; mean |ΔM/L|/M/L of the field's M/L_V")
    print(f"{'known exactly':45s} {'all':>7s} " + " ".join(f"{name:>14s}" for name in groups))
    for name, features in design_matrices(columns).items():
        matrix = np.column_stack([np.ones(len(target))] + features)
        coefficients, *_ = np.linalg.lstsq(matrix, target, rcond=None)
        residual = target - matrix @ coefficients
        cells = " ".join(f"{mean_relative_error(residual[rows]):13.1f}%" for rows in groups.values())
        print(f"{name:45s} {mean_relative_error(residual):6.1f}% {cells}")


if __name__ == "__main__":
    main()
