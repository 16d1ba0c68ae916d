"""Training throughput of π-DOC's networks on this machine, and the fraction of its peak it reaches.

Run `python3 benchmarks/training_throughput.py`. For each network (CED, CNN) and precision policy
(float32, mixed_bfloat16) a fresh process builds the network, compiles it as `train_piDOC.py`
does, and trains on random maps through the trainer's own input path (`MapBatches` with dihedral
augmentation, prepared one batch ahead in a thread, fed to `train_on_batch`): no tf.data is
involved, so the autotune stalls of tf-stack.md §4 cannot occur. After warm-up steps (tracing), it
times `--steps` steps and reports the median.

Fraction of peak: training costs about 3 × the forward FLOPs (forward, and two products of the
same size in the backward pass), with the forward FLOPs counted from the layer shapes (2 × MACs of
every Conv2D and Dense layer; tf-stack.md §4: CED 5.06, CNN 0.65 GFLOP per map). The float32 peak
is measured with a numpy float32 matrix product on all cores; the bfloat16 peak is taken as twice
that on CPUs with AVX512_BF16 (one bf16 dot-product instruction does the work of two float32 FMAs),
and equal to it otherwise. Other processes on the machine lower the numbers: the table reports how
many cores the benchmark process kept busy (CPU seconds per wall second), which flags contention,
and the maps trained per CPU second, which contention affects much less.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NETWORKS = ("ced", "cnn")
POLICIES = ("float32", "mixed_bfloat16")
BATCH_SIZE = 32
WARM_UP_STEPS = 2
TIMED_STEPS = 5


def forward_gflop_per_map(model):
    """Forward GFLOP of one map: 2 × multiply-accumulates of every Conv2D and Dense layer."""
    import keras
    flop = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel_height, kernel_width, input_channels, filters = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            flop += 2 * kernel_height * kernel_width * input_channels * filters * height * width
        elif isinstance(layer, keras.layers.Dense):
            flop += 2 * int(np.prod(layer.kernel.shape))
    return flop / 1e9


def float32_peak_gflops(size=2048, repeats=10):
    """Best float32 matrix-product speed of numpy (all cores), in GFLOP/s."""
    left, right = (np.random.default_rng(seed).standard_normal((size, size), dtype=np.float32) for seed in (0, 1))
    left @ right
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        left @ right
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def has_bfloat16_dot_product():
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def measure_one(network, policy, batch_size, timed_steps):
    """Train `network` under `policy` on random maps; return the timings as a dict (child process)."""
    import keras
    import train_piDOC

    keras.config.set_dtype_policy(policy)
    model = train_piDOC.build_compiled_network(network, 1e-3, seed=0)
    generator = np.random.default_rng(0)
    maps = batch_size * (WARM_UP_STEPS + timed_steps)
    flux = generator.standard_normal((maps, 160, 160, 1), dtype=np.float32)
    targets = generator.standard_normal((maps,) + train_piDOC.TARGETS[network][1], dtype=np.float32)
    constants = dict.fromkeys(("luminosity_mean", "mass_mean", "distance_age_mean"), 0.0)
    constants.update(dict.fromkeys(("luminosity_std", "mass_std", "distance_age_std"), 1.0))
    batches = train_piDOC.MapBatches(flux, targets, constants, network, batch_size, generator)
    step_seconds, cpu_start, wall_start = [], None, None
    step_start = time.perf_counter()
    for step, (x, y) in enumerate(train_piDOC.batches_ahead(batches)):
        if step == WARM_UP_STEPS:
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            step_start = wall_start
        model.train_on_batch(x, y)
        now = time.perf_counter()
        if step >= WARM_UP_STEPS:
            step_seconds.append(now - step_start)
        step_start = now
    busy_cores = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    return {"seconds_per_step": float(np.median(step_seconds)), "busy_cores": busy_cores,
            "forward_gflop": forward_gflop_per_map(model)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--steps", type=int, default=TIMED_STEPS)
    parser.add_argument("--child", nargs=2, metavar=("NETWORK", "POLICY"), help=argparse.SUPPRESS)
    settings = parser.parse_args(argv)
    if settings.child:
        print("RESULT " + json.dumps(measure_one(*settings.child, settings.batch_size, settings.steps)))
        return

    peak = {"float32": float32_peak_gflops()}
    peak["mixed_bfloat16"] = peak["float32"] * (2 if has_bfloat16_dot_product() else 1)
    import keras
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}, {os.cpu_count()} cores, "
          f"numpy float32 matmul peak {peak['float32']:.0f} GFLOP/s, bf16 peak taken as {peak['mixed_bfloat16']:.0f} GFLOP/s")
    print(f"batch size {settings.batch_size}, median of {settings.steps} steps after {WARM_UP_STEPS} warm-up steps\n")
    print(f"{'network':8}{'policy':16}{'s/step':>8}{'maps/s':>9}{'fwd GFLOP':>11}{'train GFLOP/s':>15}{'of peak':>9}"
          f"{'busy cores':>12}{'maps/CPU-s':>12}")
    for network in settings.networks:
        for policy in settings.policies:
            command = [sys.executable, __file__, "--child", network, policy,
                       "--batch-size", str(settings.batch_size), "--steps", str(settings.steps)]
            completed = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
            if completed.returncode != 0 or not lines:
                print(f"{network.upper():8}{policy:16} failed:\n{completed.stderr[-2000:]}")
                continue
            result = json.loads(lines[-1][len("RESULT "):])
            maps_per_second = settings.batch_size / result["seconds_per_step"]
            training_gflops = 3 * result["forward_gflop"] * maps_per_second
            print(f"{network.upper():8}{policy:16}{result['seconds_per_step']:8.3f}{maps_per_second:9.1f}"
                  f"{result['forward_gflop']:11.2f}{training_gflops:15.0f}{training_gflops / peak[policy]:9.0%}"
                  f"{result['busy_cores']:12.2f}{maps_per_second / result['busy_cores']:12.1f}")


if __name__ == "__main__":
    main()
