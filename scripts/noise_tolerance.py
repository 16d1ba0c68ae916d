"""How faint must the noise of a map be for π-DOC's intervals to hold?

The networks were trained on noise-free maps. This script adds Gaussian noise of a given 1σ per
0.25″ pixel (as a surface brightness, mag arcsec⁻² in V) to the linear flux of a labelled split,
predicts the noisy maps, and scores them with the model's committed calibration file: coverage of
the 68 % and 95 % intervals (counted by cluster) and the percentage of maps the verdict flags.

Two kinds of noise, each at the same 1σ per pixel:
- "white": independent from pixel to pixel, as in an image taken at π-DOC's 2.5″ seeing and used as
  it is (the `--nuisance noise` family of make_mock_clusters.py);
- "correlated": smoothed by π-DOC's 2.5″ seeing, as in an image taken with a much sharper PSF (HST)
  and convolved to 2.5″ by the image path, where the noise is smoothed by the same kernel as the
  light (`pidoc.mocks.clusters.add_photometric_noise`).
The tolerances it gives are `pidoc.observations.CORRELATED_NOISE_TOLERANCE_MAG_ARCSEC2` and
`WHITE_NOISE_TOLERANCE_MAG_ARCSEC2`, which the image path compares with the noise it measures in
its map (docs/uncertainty.md, "Observing conditions").

The default split is the nominal nuisance family's calibration split of the preset, which the
committed calibration files were not fitted on (`bash scripts/nuisance_families.sh`).

    python3 scripts/noise_tolerance.py [--trained-directory trained_piDOC] [--split SPLIT]
        [--levels-mag-arcsec2 27 28 29 30 31] [--kinds white correlated] [--seed 2027] [--output FILE]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from tabulate import tabulate
from tqdm import tqdm

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from pidoc.calibration import coverage, domain, mixture  # noqa: E402
from pidoc.mocks.clusters import add_photometric_noise, surface_brightness_to_pixel_flux  # noqa: E402
from pidoc.model import PAPER_ARCHITECTURE, open_model  # noqa: E402
from pidoc.observations import TARGET_SEEING_FWHM_ARCSEC  # noqa: E402
from pidoc.splits import load_cluster_ids, load_split  # noqa: E402

NOISE_KINDS = {"white": None, "correlated": TARGET_SEEING_FWHM_ARCSEC}
LEVELS_MAG_ARCSEC2 = (27.0, 28.0, 29.0, 30.0, 31.0)


def noisy_maps(log_flux_maps, noise_mag_arcsec2, correlation_fwhm_arcsec, rng):
    """The maps with noise of 1σ = `noise_mag_arcsec2` per pixel added, one map after the other."""
    noise_sigma = float(surface_brightness_to_pixel_flux(noise_mag_arcsec2))
    return np.stack([add_photometric_noise(log_flux[..., 0], noise_sigma, 0.0, rng, correlation_fwhm_arcsec)[..., None]
                     for log_flux in log_flux_maps])


def score(model, calibration, log_flux_maps, true_log_mass_maps, true_distance_age, cluster_ids):
    """Coverage report and flag percentage of one set of maps."""
    predicted_log_mass_maps, predicted_distance_age, _ = model.predict(log_flux_maps)
    report = coverage.coverage_report(calibration, log_flux_maps, true_log_mass_maps, true_distance_age,
                                      predicted_log_mass_maps, predicted_distance_age, cluster_ids)
    flags = domain.flag_fraction(calibration, log_flux_maps, predicted_log_mass_maps, predicted_distance_age)
    return report, flags["percent_outside"]


def main(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trained-directory", type=Path, default=PROJECT_ROOT / "trained_piDOC")
    # The reproduction keeps its constants in input_files/ (a model folder's own constants win).
    parser.add_argument("--standardization-directory", type=Path,
                        default=PROJECT_ROOT / "input_files" / "standardization_files")
    parser.add_argument("--split", type=Path, default=None,
                        help="labelled split (default: data/nuisance/<preset>/nominal/calibration, "
                             "cb21 for the reproduction, milky-way for a general model)")
    parser.add_argument("--levels-mag-arcsec2", type=float, nargs="+", default=list(LEVELS_MAG_ARCSEC2))
    parser.add_argument("--kinds", nargs="+", choices=list(NOISE_KINDS), default=list(NOISE_KINDS))
    parser.add_argument("--seed", type=int, default=2027)
    parser.add_argument("--output", type=Path, default=None, help="also write the table to this text file")
    options = parser.parse_args(arguments)
    model = open_model(options.trained_directory, options.standardization_directory)
    calibration = model.require_calibration()
    if options.split is None:
        preset = "cb21" if model.architecture == PAPER_ARCHITECTURE else "milky-way"
        options.split = PROJECT_ROOT / "data" / "nuisance" / preset / "nominal" / "calibration"
    log_flux_maps, true_log_mass_maps, true_distance_age = load_split(options.split)
    cluster_ids = load_cluster_ids(options.split)
    log_flux_maps = np.asarray(log_flux_maps)

    cases = [("none", None, None)] + [(kind, level, fwhm) for level in options.levels_mag_arcsec2
                                      for kind, fwhm in NOISE_KINDS.items() if kind in options.kinds]
    rows = []
    for case_index, (kind, level, fwhm) in enumerate(tqdm(cases, desc="noise cases")):
        if kind == "none":
            maps = log_flux_maps
        else:
            # One generator per case, so that any case repeats alone from the same seed.
            maps = noisy_maps(log_flux_maps, level, fwhm, np.random.default_rng([options.seed, case_index]))
        report, percent_outside = score(model, calibration, maps, true_log_mass_maps, true_distance_age, cluster_ids)
        pooled = report["pooled"]
        rows.append([kind, "—" if level is None else f"{level:g}", f"{percent_outside:.1f}"]
                    + [f"{pooled[quantity][0.68]['coverage_percent']:.0f}" for quantity in mixture.COVERAGE_QUANTITIES]
                    + [f"{pooled[quantity][0.95]['coverage_percent']:.0f}" for quantity in mixture.COVERAGE_QUANTITIES])
    def shown(path):
        """A path relative to the project, as the docs quote it."""
        path = Path(path).resolve()
        return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path

    text = (f"{shown(options.trained_directory)} on {shown(options.split)} ({report['number_of_maps']} maps, "
            f"{report['number_of_clusters']} clusters), its committed calibration; noise 1σ per 0.25″ pixel; "
            "coverage in percent, counted by cluster, for distance / age / total mass / M/L_V / pixel mass\n"
            + tabulate(rows, headers=["noise", "mag/arcsec²", "% outside"]
                       + [f"68 % {quantity}" for quantity in mixture.COVERAGE_QUANTITIES]
                       + [f"95 % {quantity}" for quantity in mixture.COVERAGE_QUANTITIES]) + "\n")
    print(text)
    if options.output is not None:
        temporary = options.output.with_name(options.output.name + ".tmp")
        temporary.write_text(text)
        temporary.replace(options.output)
    return rows


if __name__ == "__main__":
    main()
