"""Write the results section of the general model's card from the pipeline's own outputs.

Run by `scripts/make_general_model.sh` (stage 5), or alone:

    python3 scripts/general_model_results.py --model-directory trained_piDOC/general_fast \
        --runs-directory runs/general_fast

It reads `evaluation.json` of the held-out general and original test splits (evaluate_piDOC.py) and
the training log, and writes `<model>/RESULTS.md`: each headline score per mass decade against its
target, beside the paper's figures, the reproduction's and the earlier general model's (quoted
with their sources below), then the intervals' coverage and widths and the verdict's flag rates.
A stage that has not run yet is said to be missing, never filled in.
"""
import argparse
import csv
import json
import sys
from pathlib import Path

from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import functions  # noqa: E402  (the project folder must be on the path first)
from pidoc.io import save_text  # noqa: E402

# Figures quoted for comparison. CB21 (MNRAS 504, 5656): pixel mass 27 %, age 1.5 Gyr, distance
# 6 kpc (≈ 13 % of their 15–80 kpc), global M/L_V 12 %; no total-mass figure is quoted. The
# reproduction on 1,200 held-out N0 = 5×10⁴ maps (trained_piDOC/MODEL_CARD.md). The earlier general
# model (CED + CNN fine-tuned on CPU) on its own held-out split (trained_piDOC/general/MODEL_CARD.md).
COMPARISON = {
    "CB21 (paper)": {"pixel_mass_percent": 27.0, "total_mass_percent": None, "mass_to_light_percent": 12.0,
                     "age_gyr": 1.5, "distance_relative_percent": None},
    "reproduction, N0 = 5×10⁴ test": {"pixel_mass_percent": 15.6, "total_mass_percent": 7.7, "mass_to_light_percent": 5.8,
                                      "age_gyr": 0.91, "distance_relative_percent": None},
    "earlier general model, on its own 10–14 Gyr split": {"pixel_mass_percent": 52.0, "total_mass_percent": 39.0, "mass_to_light_percent": 45.0,
                              "age_gyr": 1.87, "distance_relative_percent": 20.0},
}
SCORES = ("pixel_mass_percent", "total_mass_percent", "mass_to_light_percent", "age_gyr", "distance_relative_percent")
HEADERS = ("maps", "pixel mass %", "total mass %", "M/L_V % (true D)", "age Gyr", "distance |ΔD|/D %")


def read_json(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def format_score(value):
    return "—" if value is None else f"{value:.2f}"


def decade_rows(rows):
    """One table row per mass decade: the scores, each marked where it misses its target."""
    table = []
    for row in rows:
        cells = [row["label"], row["number_of_maps"]]
        for score in SCORES:
            target = functions.GENERAL_MODEL_TARGETS[score]
            cells.append(f"{row[score]:.2f}" + ("" if row[score] <= target else " ✗"))
        table.append(cells)
    return table


def coverage_rows(coverage):
    table = []
    for quantity, levels in coverage["pooled"].items():
        cells = [quantity]
        for level in ("0.68", "0.95"):
            entry = levels[level]
            cells += [f"{entry['coverage_percent']:.1f} ± {entry['standard_error_percent']:.1f}", f"{entry['mean_width']:.3f}"]
        table.append(cells)
    return table


def results_text(model_directory, runs_directory):
    runs_directory = Path(runs_directory)
    general = read_json(runs_directory / "evaluation" / "general_test" / "evaluation.json")
    original = read_json(runs_directory / "evaluation" / "original_test" / "evaluation.json")
    text = ["# Results of the general model (written by scripts/general_model_results.py)", ""]
    log_path = runs_directory / "fast" / "training_log.csv"
    if log_path.is_file():
        with open(log_path, newline="") as handle:
            log = list(csv.DictReader(handle))
        if log:
            best = min(log, key=lambda row: float(row["val_loss"]))
            text += [f"Training: {len(log)} epochs run, best validation loss {float(best['val_loss']):.4g} at epoch "
                     f"{best['epoch']}, last training speed {float(log[-1]['maps_per_second']):.0f} maps/s "
                     f"(`learning_curves.png`, `training_log.csv`).", ""]
    targets = [functions.GENERAL_MODEL_TARGETS[score] for score in SCORES]
    text += ["Targets (issue 13): " + ", ".join(f"{header} ≤ {target:g}" for header, target in zip(HEADERS[1:], targets)), ""]
    text += ["## Held-out general test split (10, 15, 30, 60, 80 kpc; ages 1–14 Gyr)", ""]
    if general is None:
        text += ["Not evaluated yet (stage 4 of scripts/make_general_model.sh).", ""]
    else:
        text += ["```", tabulate(decade_rows(general["mass_decades"]), headers=("decade",) + HEADERS), "```", ""]
        if "mass_decades_old" in general:
            text += ["Clusters of 10–14 Gyr only:", "", "```",
                     tabulate(decade_rows(general["mass_decades_old"]), headers=("decade",) + HEADERS), "```", ""]
        if "coverage" in general:
            text += ["Coverage of the intervals (pooled, counted by cluster) and mean widths (in the quantity's "
                     "calibrated variable: log10 D, Gyr, log10 M, log10 M/L, log10 M per pixel):", "", "```",
                     tabulate(coverage_rows(general["coverage"]), headers=("quantity", "68 %", "width", "95 %", "width")),
                     "```", ""]
        if "domain" in general:
            flags = general["domain"]
            text += [f"Domain verdict: {flags['percent_outside']:.1f} % of the test maps flagged."]
            if "by_mass_decade" in flags:
                text += ["By present-day mass: " + ", ".join(f"{group['label']} {group['percent_outside']:.1f} % "
                                                          f"of {group['number_of_maps']}" for group in flags["by_mass_decade"])
                         + " (the model's domain is 10⁴–10⁶ M☉; the test split reaches beyond it on purpose)."]
            text += [""]
        if "out_of_domain" in general:
            families = {family: result for family, result in general["out_of_domain"].items() if family != "thresholds"}
            text += ["Out-of-domain families flagged: " + ", ".join(
                f"{family} {result['percent_outside']:.0f} %" for family, result in families.items()), ""]
    text += ["## Original N0 = 5×10⁴ test split (the reproduction's held-out design)", ""]
    if original is None:
        text += ["Not evaluated yet.", ""]
    else:
        # The "all maps" row of the per-decade table: the cb21 clusters are a few 10³ M☉.
        row = original["mass_decades"][-1] if "mass_decades" in original else None
        if row is not None:
            text += ["```", tabulate([[row["label"], row["number_of_maps"]] + [format_score(row[score]) for score in SCORES]],
                                     headers=("",) + HEADERS), "```", "",
                     "(bins widened to the general range; CB21's own bins are in evaluation_original_test_maps.txt)", ""]
    text += ["## Beside earlier figures", "", "```",
             tabulate([[name] + [format_score(values[score]) for score in SCORES] for name, values in COMPARISON.items()],
                      headers=("model",) + HEADERS[1:]), "```", ""]
    return "\n".join(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-directory", type=Path, default=Path("trained_piDOC/general_fast"))
    parser.add_argument("--runs-directory", type=Path, default=Path("runs/general_fast"))
    options = parser.parse_args(argv)
    options.model_directory.mkdir(parents=True, exist_ok=True)
    path = save_text(options.model_directory / "RESULTS.md", results_text(options.model_directory, options.runs_directory))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
