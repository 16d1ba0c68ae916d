"""Inference speed of π-DOC's two networks: our batched graph call against plain `model.predict`.

`functions.make_predictions` runs each network through `pidoc.model.make_forward_pass`: a traced
`network(maps, training=False)` call on fixed-size batches. This script times that exact code path
and, in the same process on the same maps, the baseline a Keras user would write,
`model.predict(maps)` in float32 (batch size 32, Keras' default). Both are warmed up first (graph
tracing excluded), then timed alternately `--repeats` times each (so both see the same load if other
processes share the CPU); the median is reported, with the best.

It prints maps per second for the CED (mass maps) and the CNN (distance and age), the speed-up,
and the largest deviation between the two, in physical units: dex for the mass maps, kpc and Gyr
for distance and age. The goal: at least 2× faster, with mass maps within 0.01 dex and distances
and ages within 0.1 of the baseline. While make_predictions runs the CED in float32
(`pidoc.model.MASS_NETWORK_COMPUTE_DTYPE`), a third row measures the bfloat16 CED as a candidate: its
deviation on the trained weights decides whether that switch is allowed.

Usage:
    python benchmarks/inference.py [--maps input_files/luminosity_V_testset.npy]
        [--trained-directory trained_piDOC] [--standardization-directory input_files/standardization_files]
        [--repeats 5]
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

PROJECT_DIRECTORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIRECTORY))

import functions  # noqa: E402  (the project folder must be on the path first)
from pidoc import standardization  # noqa: E402
from pidoc import model as pidoc_model  # noqa: E402
from pidoc import io as pidoc_io  # noqa: E402

BASELINE_BATCH_MAPS = 32   # the default batch size of keras.Model.predict
MASS_TOLERANCE_DEX = 0.01
DISTANCE_AGE_TOLERANCE = 0.1


def time_interleaved(baseline_run, our_run, repeats):
    """Warm both runs up, then time them alternately `repeats` times each.

    Alternating makes both see the same load when other processes share the CPU.
    Returns both outputs and both lists of wall times in seconds.
    """
    baseline_output, our_output = baseline_run(), our_run()
    baseline_seconds, our_seconds = [], []
    for _ in range(repeats):
        for run, seconds in ((baseline_run, baseline_seconds), (our_run, our_seconds)):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
    return baseline_output, our_output, baseline_seconds, our_seconds


def benchmark(maps_path, trained_directory, standardization_directory, repeats):
    """Time both networks both ways; return one table row per network (and per CED precision)."""
    log_flux_maps = pidoc_io.check_flux_maps(np.load(maps_path))
    # Our side is exactly what make_predictions loads; the baseline is the same weights in float32.
    model = pidoc_model.open_model(trained_directory, standardization_directory)
    constants = model.constants
    float32_mass_network = pidoc_model.load_network(trained_directory, "CED")
    standardized_flux = standardization.standardize(log_flux_maps, constants["luminosity_mean"], constants["luminosity_std"])
    number_of_maps = len(standardized_flux)

    cases = [
        (f"CED ({pidoc_model.MASS_NETWORK_COMPUTE_DTYPE}, used)", float32_mass_network, model.networks["CED"],
         pidoc_model.MASS_NETWORK_BATCH_MAPS, constants["mass_std"]),
        ("CNN (float32, used)", model.networks["CNN"], model.networks["CNN"],
         pidoc_model.DISTANCE_AGE_NETWORK_BATCH_MAPS, constants["distance_age_std"]),
    ]
    if pidoc_model.MASS_NETWORK_COMPUTE_DTYPE == "float32":
        # The faster precision make_predictions does not use yet, measured for the record.
        cases.append(("CED (bfloat16, candidate)", float32_mass_network, pidoc_model.bfloat16_copy_of_mass_network(float32_mass_network),
                      pidoc_model.MASS_NETWORK_BATCH_MAPS, constants["mass_std"]))

    rows = []
    for label, baseline_network, our_network, batch_size_maps, output_std in cases:
        forward_pass = pidoc_model.make_forward_pass(our_network, batch_size_maps)
        baseline_output, our_output, baseline_seconds, our_seconds = time_interleaved(
            lambda: baseline_network.predict(standardized_flux, batch_size=BASELINE_BATCH_MAPS, verbose=0),
            lambda: forward_pass(standardized_flux), repeats)

        # A standardised difference times the std is the difference in physical units (CB21 §3).
        deviation = np.abs(our_output.astype(np.float64) - baseline_output) * output_std
        if label.startswith("CED"):
            largest_deviation = f"{deviation.max():.1e} dex"
            within_tolerance = deviation.max() <= MASS_TOLERANCE_DEX
        else:
            largest_deviation = f"{deviation[:, 0].max():.1e} kpc, {deviation[:, 1].max():.1e} Gyr"
            within_tolerance = deviation.max() <= DISTANCE_AGE_TOLERANCE
        baseline_median, our_median = statistics.median(baseline_seconds), statistics.median(our_seconds)
        rows.append([
            label, number_of_maps,
            number_of_maps / baseline_median, number_of_maps / min(baseline_seconds),
            number_of_maps / our_median, number_of_maps / min(our_seconds), batch_size_maps,
            baseline_median / our_median, min(baseline_seconds) / min(our_seconds),
            largest_deviation, "yes" if within_tolerance else "NO",
        ])
    return rows


def main(arguments=None):
    """Command-line entry point; prints and returns the table rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=Path, default=PROJECT_DIRECTORY / "input_files" / "luminosity_V_testset.npy")
    parser.add_argument("--trained-directory", type=Path, default=PROJECT_DIRECTORY / "trained_piDOC")
    parser.add_argument("--standardization-directory", type=Path,
                        default=PROJECT_DIRECTORY / "input_files" / functions.STANDARDIZATION_SUBDIRECTORY)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args(arguments)
    if options.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {options.repeats}")

    rows = benchmark(options.maps, options.trained_directory, options.standardization_directory, options.repeats)
    headers = ["network", "maps", "predict maps/s (median)", "predict best", "ours maps/s (median)", "ours best", "our batch",
               "speed-up (median)", "speed-up (best)", "max |ours - predict|", "within tolerance"]
    print(f"baseline: float32 model.predict (batch {BASELINE_BATCH_MAPS}); maps: {options.maps}; "
          f"{options.repeats} alternating timed runs after one warm-up each")
    print(tabulate(rows, headers=headers, floatfmt=".1f"))
    return rows


if __name__ == "__main__":
    main()
