"""What the calibrated intervals and domain verdicts cost: the driver with and without them.

`piDOC_predictions.main` is run on the committed test maps into a temporary folder, alternately with
`intervals=False` (the original outputs only) and `intervals=True` (plus pidoc/calibration/uncertainty.py's summary,
per-pixel bounds, verdicts, error bars and the coverage figure), after one warm-up run of each, so
TensorFlow's graph tracing is not counted and both see the same load. It prints the median and best
wall time of each and their ratio, and the same for the interval step alone
(`pidoc.calibration.uncertainty.summarize`). The goal: the driver with intervals takes at most 1.5× the time without.

Usage: python3 benchmarks/intervals_overhead.py [--repeats 3]
"""
import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

PROJECT_DIRECTORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIRECTORY))

import piDOC_predictions  # noqa: E402  (the project folder must be on the path first)
from pidoc.calibration import uncertainty  # noqa: E402
from pidoc.model import open_model  # noqa: E402

GOAL_RATIO = 1.5


def timed(run):
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        run()
    return time.perf_counter() - start


def main(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args(arguments)
    if options.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {options.repeats}")

    seconds = {False: [], True: []}
    with tempfile.TemporaryDirectory() as directory:
        for intervals in (False, True):      # warm-up
            timed(lambda: piDOC_predictions.main(pathprediction=Path(directory), intervals=intervals))
        for _ in range(options.repeats):
            for intervals in (False, True):
                seconds[intervals].append(timed(lambda: piDOC_predictions.main(pathprediction=Path(directory),
                                                                               intervals=intervals)))
        log_flux = np.load(piDOC_predictions.pathinput / "luminosity_V_testset.npy")
        predicted_mass = np.load(Path(directory) / "predictionM.npy")
        predicted_distance_age = np.load(Path(directory) / "predictiondistance_age.npy")
        step = [timed(lambda: uncertainty.summarize(open_model(piDOC_predictions.pathtrained), log_flux, predicted_mass,
                                                    predicted_distance_age)) for _ in range(options.repeats)]

    without, with_intervals = statistics.median(seconds[False]), statistics.median(seconds[True])
    rows = [["driver without intervals", without, min(seconds[False])],
            ["driver with intervals", with_intervals, min(seconds[True])],
            ["uncertainty.summarize alone", statistics.median(step), min(step)]]
    print(f"{len(log_flux)} committed test maps, {options.repeats} alternating runs after one warm-up each")
    print(tabulate(rows, headers=["run", "median (s)", "best (s)"], floatfmt=".2f"))
    ratio = with_intervals / without
    print(f"ratio with/without (median): {ratio:.2f} (goal ≤ {GOAL_RATIO}): {'met' if ratio <= GOAL_RATIO else 'NOT met'}")
    return ratio


if __name__ == "__main__":
    main()
