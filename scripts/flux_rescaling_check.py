"""Can the domain verdict see a flux map rescaled by a constant, and does π-DOC read such a map well?

Issue 14 asks that maps shifted by ≥ 1 dex in flux with their structure unchanged be flagged
`outside`, or that their truth lie inside the 95 % intervals. Multiplying F by 10^−Δ leaves the
angular arrangement of the stars alone, so the map is exactly the image of the same stars in a
cluster 10^(Δ/2) times larger seen 10^(Δ/2) times farther (F = L / 4πD², docs/uncertainty.md): that
reading has the same mass per pixel, total mass, M/L_V and age, and a distance 10^(Δ/2) times the
original. This script measures, for one model folder and one labelled split:

1. the percentage of rescaled maps the verdict flags (Δ = ±0.5, ±1, ±3 dex);
2. for the maps it leaves `inside`, how often the 95 % intervals hold that physically consistent
   ("degenerate") truth, and how far π-DOC's distance moved;
3. with `--calibration-split`, the best a dedicated check could do: a quadratic logistic classifier
   on the verdict's nine edge features (`domain.edge_features`), fitted on one half of the
   calibration clusters against the same maps rescaled by 0.7–1.5 dex (random sign, seeded), its
   threshold at the held-out half's `EDGE_PERCENTILE`, then applied to the rescaled test maps. It
   is fitted on exactly the kind of change it is scored on, so it is an upper bound on what these
   features can tell, not a shipped check.

    python3 scripts/flux_rescaling_check.py data/general/test --trained-directory trained_piDOC/general_fast \
        --calibration-split data/general/calibration
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pidoc.calibration import coverage, domain, uncertainty  # noqa: E402
from pidoc.model import open_model  # noqa: E402
from pidoc.splits import load_cluster_ids, load_split  # noqa: E402

SHIFTS_DEX = (-0.5, 0.5, -1.0, 1.0, -3.0, 3.0)
TRAINING_SHIFT_DEX = (0.7, 1.5)
SEED = 2021


def rescaled(log_flux_maps, shift_dex):
    """Every pixel's log F plus `shift_dex` (a scalar or one value per map)."""
    shift = np.broadcast_to(np.asarray(shift_dex, dtype=np.float32), (len(log_flux_maps),))
    return np.asarray(log_flux_maps, dtype=np.float32) + shift[:, None, None, None]


def rescaling_classifier(model, calibration_split, seed=SEED):
    """Fit the dedicated classifier of step 3; return a function giving True for the maps it flags."""
    log_flux, _, _ = load_split(calibration_split)
    cluster_ids = load_cluster_ids(calibration_split)
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(*TRAINING_SHIFT_DEX, len(log_flux)) * rng.choice([-1.0, 1.0], len(log_flux))
    features = {}
    for name, maps in (("original", rescaled(log_flux, 0.0)), ("rescaled", rescaled(log_flux, shifts))):
        predicted_log_mass, predicted_distance_age, _ = model.predict(maps)
        features[name] = domain.edge_features(maps, predicted_log_mass, predicted_distance_age)
    fitting_half = uncertainty.split_clusters_in_halves(cluster_ids)
    usable = {name: np.all(np.isfinite(values), axis=1) for name, values in features.items()}
    negatives = features["original"][usable["original"] & fitting_half]
    positives = features["rescaled"][usable["rescaled"] & fitting_half]
    mean, scale = negatives.mean(axis=0), negatives.std(axis=0)
    coefficients = domain.fit_logistic(domain.quadratic_terms((np.vstack([negatives, positives]) - mean) / scale),
                                       np.r_[np.zeros(len(negatives)), np.ones(len(positives))])

    def scores(values):
        finite = np.all(np.isfinite(values), axis=1)
        terms = domain.quadratic_terms((np.where(finite[:, None], values, 0.0) - mean) / scale)
        return np.where(finite, terms @ coefficients, np.inf)

    threshold = np.percentile(scores(features["original"][usable["original"] & ~fitting_half]), domain.EDGE_PERCENTILE)
    return lambda values: scores(values) > threshold


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("split_directory", type=Path)
    parser.add_argument("--trained-directory", type=Path, required=True)
    # The reproduction keeps its constants in input_files/ (a model folder's own constants win).
    parser.add_argument("--standardization-directory", type=Path,
                        default=Path(__file__).resolve().parents[1] / "input_files" / "standardization_files")
    parser.add_argument("--calibration-split", type=Path, default=None)
    options = parser.parse_args(argv)
    model = open_model(options.trained_directory, options.standardization_directory)
    calibration = model.require_calibration()
    log_flux, true_log_mass, true_distance_age = load_split(options.split_directory)
    true_log_mass = np.asarray(true_log_mass)
    classifier = None if options.calibration_split is None else rescaling_classifier(model, options.calibration_split)
    print(f"{options.trained_directory} on {options.split_directory} ({len(log_flux)} maps, "
          f"{len(np.unique(load_cluster_ids(options.split_directory)))} clusters)")
    for shift_dex in (0.0,) + SHIFTS_DEX:
        maps = rescaled(log_flux, shift_dex)
        predicted_log_mass, predicted_distance_age, _ = model.predict(maps)
        inside = np.array([verdict != "outside" for verdict, _ in
                           domain.verdicts(calibration, maps, predicted_log_mass, predicted_distance_age)])
        degenerate = np.array(true_distance_age, dtype=np.float64)
        degenerate[:, 0] *= 10.0 ** (-shift_dex / 2.0)
        covered, _, _, _ = coverage.scalar_coverage(calibration, maps, true_log_mass, degenerate, predicted_log_mass,
                                                    predicted_distance_age, levels=(0.95,))
        held = [f"{quantity} {100.0 * covered[quantity][0.95][inside].mean():.0f}" if inside.any() else f"{quantity} -"
                for quantity in uncertainty.SCALAR_QUANTITIES]
        line = (f"Δ {shift_dex:+.1f} dex: verdict flags {100.0 * (~inside).mean():5.1f} %; median D_pred/D {np.median(predicted_distance_age[:, 0] / true_distance_age[:, 0]):.2f} "
                f"(consistent reading {10.0 ** (-shift_dex / 2.0):.2f}); inside maps, degenerate truth in 95 %: {', '.join(held)}")
        if classifier is not None:
            flagged = classifier(domain.edge_features(maps, predicted_log_mass, predicted_distance_age))
            line += f"; dedicated classifier flags {100.0 * flagged.mean():.1f} %"
        print(line, flush=True)


if __name__ == "__main__":
    main()
