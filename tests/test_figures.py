"""The figures, tables and summaries on predictions outside their intervals, without intervals, at D ≤ 0.

Out-of-domain maps are when a user most needs every output, and they are when π-DOC predicts what
the paper's code never met: an age beyond the 0–14 Gyr its intervals are cut to (a predicted 15 Gyr
against [14, 14]), a distance ≤ 0 (no log10 D, no luminosity), no interval at all (a model folder
without calibration.json). The driver must run to the end on them and write nothing as "nan".

The end-to-end test makes such maps from the committed test maps, without mocks: the committed
networks in trained_piDOC/ predict ages above 14 Gyr for maps made 1000 times fainter, a negative
distance for one made 100 times brighter, and a negative age for one whose log flux is stretched.
The other tests call the figure and table routines on hand-made arrays.
"""
import csv
import re
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import functions
import piDOC_predictions
from pidoc.calibration import uncertainty

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAINED_DIRECTORY = PROJECT_ROOT / "trained_piDOC"
INPUT_DIRECTORY = PROJECT_ROOT / "input_files"
# "nan" as a word, in any case: what numpy, tabulate and f-strings write for NaN.
NAN_WORD = re.compile(r"\bnan\b", re.IGNORECASE)
DRIVER_OUTPUTS = (
    "predictionM.npy", "predictiondistance_age.npy", "predictionM_intervals.npy",
    "predictions_summary.csv", "predictions_summary.txt", "mosaic_predictions_maps_0-1-2-3.png",
    "Mass_map_true_vs_predicted.png", "Total_mass_map_true_vs_predicted.png", "Age_true_vs_predicted.png",
    "Pdf_distances.png", "Mass_to_light_true_vs_predicted.png",
    "predicted_vs_true_mass.txt", "predicted_vs_true_total_mass.txt", "predicted_vs_true_age.txt",
    "distance_predictions_stats.txt", "mass_to_light_stats.txt",
)


def assert_no_nan_in_text_outputs(directory):
    """Every .txt and .csv of `directory` is free of the word "nan"."""
    texts = sorted(Path(directory).glob("*.txt")) + sorted(Path(directory).glob("*.csv"))
    assert texts, f"no text output in {directory}"
    for path in texts:
        match = NAN_WORD.search(path.read_text(encoding="utf-8"))
        assert match is None, f"{path.name} contains 'nan': …{path.read_text(encoding='utf-8')[max(match.start() - 80, 0):match.end() + 20]}…"


# --- The driver, end to end, on maps the committed networks predict outside their intervals ---------
def out_of_domain_input_folder(directory):
    """An input folder of four committed test maps, changed so that π-DOC's predictions leave their intervals.

    Map 0 and 3: the 60 and 80 kpc maps 1000 times fainter (log F − 3); π-DOC predicts ages of about
    15 Gyr, beyond the 0–14 Gyr its intervals are cut to, and distances beyond the calibrated range.
    Map 1: the 15 kpc map 100 times brighter (log F + 2); π-DOC predicts a distance ≤ 0.
    Map 2: the 30 kpc map with its log flux stretched (2 log F + 5); π-DOC predicts an age < 0.
    The truths are those of the unchanged maps.
    """
    log_flux = np.load(INPUT_DIRECTORY / "luminosity_V_testset.npy")
    chosen = [2, 0, 1, 3]
    changed = np.stack([log_flux[2] - 3.0, log_flux[0] + 2.0, 2.0 * log_flux[1] + 5.0, log_flux[3] - 3.0]).astype(np.float32)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "luminosity_V_testset.npy", changed)
    np.save(directory / "mass_testset.npy", np.load(INPUT_DIRECTORY / "mass_testset.npy")[chosen])
    np.save(directory / "distance_age_testset.npy", np.load(INPUT_DIRECTORY / "distance_age_testset.npy")[chosen])
    shutil.copytree(INPUT_DIRECTORY / functions.STANDARDIZATION_SUBDIRECTORY, directory / functions.STANDARDIZATION_SUBDIRECTORY)
    return directory


# Numerical warnings (empty means, invalid values) and matplotlib's (a legend without labels, a
# missing glyph) are errors here: they are how such cases used to break.
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.filterwarnings("error::UserWarning")
def test_the_driver_runs_to_the_end_on_predictions_outside_their_intervals(tmp_path):
    inputs = out_of_domain_input_folder(tmp_path / "input_files")
    outputs = tmp_path / "predictions"
    _, distance_age = piDOC_predictions.main(pathtrained=TRAINED_DIRECTORY, pathinput=inputs, pathprediction=outputs)

    # The maps do what they are made for: ages beyond 14 Gyr and below 0, a distance ≤ 0.
    assert distance_age[[0, 3], 1].min() > uncertainty.MAXIMUM_AGE_GYR
    assert distance_age[1, 0] <= 0 and distance_age[2, 1] < 0
    for file_name in DRIVER_OUTPUTS:
        assert (outputs / file_name).stat().st_size > 0, file_name
    assert not list(outputs.glob("*.tmp*")), "temporary files left behind"
    assert_no_nan_in_text_outputs(outputs)

    summary = (outputs / uncertainty.SUMMARY_TEXT_FILE).read_text(encoding="utf-8")
    assert f"{uncertainty.OUTSIDE_MARK} [14.0, 14.0]" in summary and uncertainty.OUTSIDE_NOTE in summary
    assert "undefined (D ≤ 0)" in summary and "[undefined: D ≤ 0]" in summary
    with open(outputs / uncertainty.SUMMARY_CSV_FILE, encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0])[-3:] == ["domain", "domain_reason", uncertainty.UNDEFINED_REASON_COLUMN]
    assert rows[1]["mass_to_light_v"] == "" and "predicted distance is ≤ 0" in rows[1][uncertainty.UNDEFINED_REASON_COLUMN]
    assert float(rows[0]["age_gyr"]) > float(rows[0]["age_gyr_hi68"]) and rows[0][uncertainty.UNDEFINED_REASON_COLUMN] == ""
    assert all(row["domain"] == "outside" for row in rows)


# --- Figures on hand-made arrays ------------------------------------------------------------------
def blob_maps(number_of_maps):
    """Smooth cluster-like log flux and log mass maps, (N, 160, 160, 1): a Plummer-like blob each."""
    pixel_centres_arcsec = (np.arange(160) + 0.5) * 0.25 - 20.0
    x_arcsec, y_arcsec = np.meshgrid(pixel_centres_arcsec, pixel_centres_arcsec)
    radius_squared = x_arcsec**2 + y_arcsec**2
    log_flux = np.stack([np.log10(1e-3 * (1.0 + radius_squared / (4.0 + index)) ** -2.5 + 1e-7) for index in range(number_of_maps)])
    log_mass = np.stack([np.log10(3.0 * (1.0 + radius_squared / (4.0 + index)) ** -2.5 + 3e-2) for index in range(number_of_maps)])
    return log_flux[..., None].astype(np.float32), log_mass[..., None].astype(np.float32)


# Four maps: an age above its interval cut at 14 Gyr, one below its interval, one without an interval
# at a distance ≤ 0, one inside its interval.
TRUE_DISTANCE_AGE = np.array([[60.0, 12.0], [15.0, 0.7], [15.0, 3.0], [80.0, 7.0]])
PREDICTED_DISTANCE_AGE = np.array([[136.5, 23.8], [30.3, -0.2], [-2.6, 1.3], [78.0, 7.5]])
DISTANCE_INTERVALS = (np.array([133.9, 23.4, np.nan, 70.0]), np.array([139.5, 36.8, np.nan, 85.0]))
AGE_INTERVALS = (np.array([14.0, 0.0, 0.0, 6.5]), np.array([14.0, 0.9, 5.0, 8.5]))


@pytest.mark.filterwarnings("error")
def test_prediction_intervals_are_drawn_inside_outside_and_undefined():
    figure, axes = plt.subplots()
    lower, upper = (bound.copy() for bound in AGE_INTERVALS)
    lower[2] = upper[2] = np.nan
    functions.draw_prediction_intervals(axes, TRUE_DISTANCE_AGE[:, 1], PREDICTED_DISTANCE_AGE[:, 1], lower, upper, (0.0, 14.0))
    labels = axes.get_legend_handles_labels()[1]
    plt.close(figure)
    assert sorted(labels) == sorted(["68 % interval", "prediction outside its 68 % interval (red bar)", "68 % interval undefined",
                                     "prediction above the frame (at its edge)", "prediction below the frame (at its edge)"])


def test_interval_categories_allow_for_rounding():
    inside, outside, undefined = functions.interval_categories([5.0, 5.0 - 1e-12, 15.0, 1.0], [5.0, 5.0, 14.0, np.nan],
                                                               [6.0, 6.0, 14.0, np.nan])
    assert inside.tolist() == [True, True, False, False]
    assert outside.tolist() == [False, False, True, False] and undefined.tolist() == [False, False, False, True]


@pytest.mark.filterwarnings("error")
def test_the_age_figure_and_table_cope_with_ages_outside_intervals_and_bins(tmp_path):
    statistics = functions.display_predicted_vs_true_age(tmp_path, TRUE_DISTANCE_AGE, PREDICTED_DISTANCE_AGE, AGE_INTERVALS)
    assert (tmp_path / "Age_true_vs_predicted.png").stat().st_size > 0
    assert np.isfinite(statistics["paper"]["mean"])
    # Every prediction outside 0–14 Gyr: CB21's bin average has no bin to average over.
    all_outside = np.array([[60.0, 23.8], [15.0, -0.2], [15.0, 14.5], [80.0, -3.0]])
    statistics = functions.display_predicted_vs_true_age(tmp_path, TRUE_DISTANCE_AGE, all_outside, AGE_INTERVALS)
    assert np.isnan(statistics["paper"]["mean"])
    table = (tmp_path / "predicted_vs_true_age.txt").read_text(encoding="utf-8")
    assert "undefined (no prediction within the bins, 0 to 14 Gyr)" in table
    assert_no_nan_in_text_outputs(tmp_path)


@pytest.mark.filterwarnings("error")
def test_the_distance_pdfs_cope_with_missing_intervals_and_points_outside_them(tmp_path):
    lower, upper = (bound.copy() for bound in DISTANCE_INTERVALS)
    lower[1] = upper[1] = np.nan                 # no map at 15 kpc has an interval
    lower[3], upper[3] = 80.0, 85.0              # the 80 kpc prediction (78) lies below its interval
    functions.pdf_distances(tmp_path, TRUE_DISTANCE_AGE, PREDICTED_DISTANCE_AGE, (lower, upper))
    assert (tmp_path / "Pdf_distances.png").stat().st_size > 0
    assert_no_nan_in_text_outputs(tmp_path)
    # Every interval undefined (an uncalibrated model).
    nothing = np.full(4, np.nan)
    functions.pdf_distances(tmp_path, TRUE_DISTANCE_AGE, PREDICTED_DISTANCE_AGE, (nothing, nothing))


@pytest.mark.filterwarnings("error")
def test_the_mosaic_labels_predictions_outside_and_without_intervals(tmp_path):
    log_flux, log_mass = blob_maps(4)
    path = functions.display_mosaic_prediction(tmp_path, log_flux, log_mass, TRUE_DISTANCE_AGE, log_mass - 0.1,
                                               PREDICTED_DISTANCE_AGE, predicted_intervals=(DISTANCE_INTERVALS, AGE_INTERVALS))
    assert path.stat().st_size > 0
    # The older form, half widths, with a NaN one (a distance ≤ 0 has no interval).
    half_widths = np.column_stack([(upper - lower) / 2.0 for lower, upper in (DISTANCE_INTERVALS, AGE_INTERVALS)])
    assert functions.display_mosaic_prediction(tmp_path, log_flux, log_mass, TRUE_DISTANCE_AGE, log_mass - 0.1,
                                               PREDICTED_DISTANCE_AGE, predicted_half_widths=half_widths).stat().st_size > 0


def test_prediction_labels_say_where_the_prediction_stands():
    assert functions.prediction_label("D", 27.2, "kpc", 0, (24.0, 30.0)) == "D = 27 ± 3 kpc"
    assert functions.prediction_label("D", 27.2, "kpc", 0, half_width=3.0) == "D = 27 ± 3 kpc"
    assert functions.prediction_label("A", 23.8, "Gyr", 1, (14.0, 14.0)) == "A = 23.8 Gyr ∉ [14.0, 14.0]"
    assert functions.prediction_label("D", -2.6, "kpc", 0, (np.nan, np.nan)) == "D = -2.6 kpc, no interval (D ≤ 0)"
    assert functions.prediction_label("A", 1.3, "Gyr", 1, half_width=np.nan) == "A = 1.3 Gyr, no interval"
    assert functions.prediction_label("D", 27.0, "kpc", 0) == "D = 27.0 kpc"


@pytest.mark.filterwarnings("error")
def test_mass_to_light_figure_and_table_cope_with_distances_not_positive(tmp_path):
    log_flux, log_mass = blob_maps(4)
    predicted = PREDICTED_DISTANCE_AGE.copy()
    statistics = functions.display_mass_to_light_profiles(tmp_path, log_flux, log_mass, TRUE_DISTANCE_AGE, log_mass - 0.1, predicted)
    assert statistics["predicted_distance"]["number_of_maps"] == 3
    predicted[:, 0] = [-2.6, 0.0, -1.0, -30.0]   # no map has a luminosity with its predicted distance
    statistics = functions.display_mass_to_light_profiles(tmp_path, log_flux, log_mass, TRUE_DISTANCE_AGE, log_mass - 0.1, predicted)
    assert statistics["predicted_distance"]["number_of_maps"] == 0
    table = (tmp_path / "mass_to_light_stats.txt").read_text(encoding="utf-8")
    assert "undefined (no map with a positive predicted distance)" in table
    assert (tmp_path / "Mass_to_light_true_vs_predicted.png").stat().st_size > 0
    assert_no_nan_in_text_outputs(tmp_path)


def test_a_statistics_table_without_undefined_values_is_unchanged(tmp_path):
    rows = [["a", 1.234, 5], ["b", 2.5, 6]]
    headers = ["label", "value", "count"]
    formats = ["", ".1f", "d"]
    plain = functions.write_table(tmp_path / "plain.txt", rows, headers, floatfmt=formats)
    assert functions.write_statistics_table(tmp_path / "same.txt", rows, headers, formats, "no reason") == plain
    text = functions.write_statistics_table(tmp_path / "undefined.txt", [["a", float("nan"), 5], ["b", 2.5, 6]], headers, formats,
                                            "no map left")
    assert "undefined (no map left)" in text and "2.5" in text and not NAN_WORD.search(text)


# --- The prediction summary ------------------------------------------------------------------------
def summary_row(map_name, distance_kpc, age_gyr, calibrated=True):
    """A summary row as `uncertainty.summarize` makes it; M/L_V and log D are undefined where D ≤ 0."""
    row = {"map": map_name}
    for column, point in (("distance_kpc", distance_kpc), ("age_gyr", age_gyr), ("log_total_mass_msun", 3.8),
                          ("mass_to_light_v", 0.2 if distance_kpc > 0 else np.nan)):
        row[column] = float(point)
        undefined = not calibrated or not np.isfinite(point) or (column == "distance_kpc" and distance_kpc <= 0)
        spread = {"median": 0.0, "lo68": -0.1, "hi68": 0.1, "lo95": -0.2, "hi95": 0.2}
        for key, offset in spread.items():
            value = np.nan if undefined else point + offset * abs(point)
            if column == "age_gyr" and not undefined:
                value = float(np.clip(value, 0.0, uncertainty.MAXIMUM_AGE_GYR))
            row[f"{column}_{key}"] = float(value)
    row["domain"], row["domain_reason"] = ("inside", "") if calibrated else ("unchecked", "")
    return row


def test_the_summary_writes_undefined_values_with_their_reason(tmp_path):
    rows = [summary_row("0", 30.0, 23.8), summary_row("1", -2.6, 1.3), summary_row("2", 30.0, 5.0)]
    uncertainty.write_prediction_summary(tmp_path, rows)
    assert_no_nan_in_text_outputs(tmp_path)
    with open(tmp_path / uncertainty.SUMMARY_CSV_FILE, encoding="utf-8", newline="") as stream:
        written = list(csv.DictReader(stream))
    assert list(written[0]) == list(rows[0]) + [uncertainty.UNDEFINED_REASON_COLUMN]
    assert written[1]["distance_kpc"] == "-2.6" and written[1]["distance_kpc_lo68"] == "" and written[1]["mass_to_light_v"] == ""
    assert written[1][uncertainty.UNDEFINED_REASON_COLUMN] == (
        "distance_kpc's median and intervals: the predicted distance is ≤ 0, so log10 D and its interval are undefined; "
        "mass_to_light_v with its median and intervals: the predicted distance is ≤ 0, so there is no luminosity L = 4π D² F")
    assert written[0][uncertainty.UNDEFINED_REASON_COLUMN] == written[2][uncertainty.UNDEFINED_REASON_COLUMN] == ""
    text = (tmp_path / uncertainty.SUMMARY_TEXT_FILE).read_text(encoding="utf-8")
    assert "23.8 ∉ [14.0, 14.0]" in text and "-2.6 [undefined: D ≤ 0]" in text and "undefined (D ≤ 0)" in text
    assert text.endswith(uncertainty.OUTSIDE_NOTE + "\n")


def test_the_summary_of_an_uncalibrated_model_says_so(tmp_path):
    rows = [summary_row("0", 30.0, 5.0, calibrated=False), summary_row("1", -2.6, 1.3, calibrated=False)]
    uncertainty.write_prediction_summary(tmp_path, rows)
    assert_no_nan_in_text_outputs(tmp_path)
    text = (tmp_path / uncertainty.SUMMARY_TEXT_FILE).read_text(encoding="utf-8")
    assert "5.0 [undefined: not calibrated]" in text and uncertainty.OUTSIDE_MARK not in text
    with open(tmp_path / uncertainty.SUMMARY_CSV_FILE, encoding="utf-8", newline="") as stream:
        written = list(csv.DictReader(stream))
    assert written[0][uncertainty.UNDEFINED_REASON_COLUMN] == "every median and interval: the model folder has no calibration.json"
    assert written[1][uncertainty.UNDEFINED_REASON_COLUMN].startswith("distance_kpc's median and intervals: the predicted distance is ≤ 0")
    assert "age_gyr's median and intervals, log_total_mass_msun's median and intervals: the model folder has no calibration.json" \
        in written[1][uncertainty.UNDEFINED_REASON_COLUMN]


def test_a_summary_without_undefined_values_keeps_its_columns(tmp_path):
    rows = [summary_row("0", 30.0, 5.0), summary_row("1", 60.0, 9.0)]
    uncertainty.write_prediction_summary(tmp_path, rows)
    header = (tmp_path / uncertainty.SUMMARY_CSV_FILE).read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == list(rows[0])
    text = (tmp_path / uncertainty.SUMMARY_TEXT_FILE).read_text(encoding="utf-8")
    assert uncertainty.OUTSIDE_MARK not in text and "undefined" not in text
