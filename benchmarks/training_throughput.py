"""Training and inference throughput of π-DOC's networks on this machine, against its measured conv rate.

Run `python3 benchmarks/training_throughput.py` (about 3 minutes on 2 free cores). For each
architecture (the paper's CED and CNN, and the fast network of `pidoc.fast_network`) and precision
policy (float32, mixed_bfloat16), a fresh child process:

1. builds the network and compiles it as `train_piDOC.py` does (`build_compiled_network`: Adam,
   the MSE loss, for the fast network MSE on both of its outputs "mass" and "distance_age");
2. trains on random standardised maps the trainer's way: the trainer's own `MapBatches` (a random
   dihedral transform per map, applied to the mass map too) prepared one batch ahead in a thread
   (`batches_ahead`) and fed to `model.train_on_batch`, so the tf.data autotune stalls of
   tf-stack.md §4 cannot occur. After warm-up steps (tracing), `--steps` steps are timed and the
   median step is reported;
3. times inference, `model(x, training=False)` in a `tf.function` on batches of the same size
   (best of 3 passes over 4 batches);
4. measures, in the same process and right after, the reference rates of TensorFlow on this CPU:
   a 3×3 convolution (32 → 32 channels, 160×160 pixels, batch 32, 'same' padding) and a 2048²
   matrix product, each in bfloat16 and float32 (median of 5 calls);
5. for the fast network under mixed_bfloat16 only: the weights after the timed steps are copied
   into a float32 build of the same network, and both predict the same maps; the largest
   |bf16 − float32| difference of the mass output is reported in dex, i.e. in standardised units
   times 0.8 (`MASS_STD_DEX`), the standard deviation of log10 pixel mass assumed for the general
   model's training set (CB21's constants give 0.45, so for the paper's data the figure errs on the
   large side). It is a difference after a few steps on random targets, not of a trained network.

Training FLOP: about 3 × the forward FLOP (the forward pass, and two products of the same size in
the backward pass), the forward counted from the layer shapes as 2 × multiply-accumulates of every
convolution and dense layer (`pidoc.fast_network.forward_gflop_per_map`; tf-stack.md §4: CED 5.06, CNN 0.65 GFLOP per map). The table gives the
training GFLOP/s as a fraction of the bfloat16 conv rate measured in the same process, and of the
rate of the run's own precision. The machine's 2 cores are shared with other work: compare ratios
measured in one run, and read the "busy cores" column (CPU seconds per wall second of the timed
steps; below about 1.8 means another process took CPU time) and the maps per CPU second, which
contention affects much less. The last column, "steal", is the share of the machine's CPU time that
the hypervisor gave to other virtual machines during the timed steps (/proc/stat): the same code ran
at 161 training maps/s on one machine and 77–100 on another with 10–55 % steal, while its fraction of
the same process's conv rate stayed at 94–96 %.
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

ARCHITECTURES = ("ced", "cnn", "fast")
POLICIES = ("float32", "mixed_bfloat16")
BATCH_SIZE = 32
WARM_UP_STEPS = 2
TIMED_STEPS = 5
INFERENCE_BATCHES = 4
INFERENCE_PASSES = 3
REFERENCE_CALLS = 5
# Reference operations: the conv of the issue-13 measurements and a square matrix product.
REFERENCE_CONVOLUTION = dict(batch=32, pixels=160, channels=32, kernel=3)
REFERENCE_MATRIX_SIZE = 2048
# Assumed standard deviation of log10 pixel mass, to express standardised mass differences in dex.
MASS_STD_DEX = 0.8


def reference_rates():
    """GFLOP/s of TensorFlow's 3×3 conv and 2048² matmul in bfloat16 and float32 (child process).

    Each rate is the median over `REFERENCE_CALLS` calls, per wall second and (`*_per_cpu_second`)
    per CPU second of this process.
    """
    import tensorflow as tf
    rates = {}
    batch, pixels, channels, kernel = (REFERENCE_CONVOLUTION[key] for key in ("batch", "pixels", "channels", "kernel"))
    size = REFERENCE_MATRIX_SIZE
    for dtype in (tf.bfloat16, tf.float32):
        images = tf.cast(tf.random.stateless_normal((batch, pixels, pixels, channels), seed=(0, 1)), dtype)
        kernels = tf.cast(tf.random.stateless_normal((kernel, kernel, channels, channels), seed=(0, 2)), dtype)
        left = tf.cast(tf.random.stateless_normal((size, size), seed=(0, 3)), dtype)
        right = tf.cast(tf.random.stateless_normal((size, size), seed=(0, 4)), dtype)
        operations = {
            "conv": (tf.function(lambda: tf.nn.conv2d(images, kernels, 1, "SAME")),
                     2 * kernel * kernel * channels * channels * pixels * pixels * batch),
            "matmul": (tf.function(lambda: tf.linalg.matmul(left, right)), 2 * size**3),
        }
        for name, (operation, flop) in operations.items():
            operation().numpy()
            seconds, cpu_seconds = [], []
            for _ in range(REFERENCE_CALLS):
                start, cpu_start = time.perf_counter(), time.process_time()
                operation().numpy()
                seconds.append(time.perf_counter() - start)
                cpu_seconds.append(time.process_time() - cpu_start)
            rates[f"{name}_{dtype.name}"] = flop / np.median(seconds) / 1e9
            rates[f"{name}_{dtype.name}_per_cpu_second"] = flop / np.median(cpu_seconds) / 1e9
    return rates


def cpu_counters():
    """Jiffies of all CPUs from /proc/stat as (steal, total), or None where there is no /proc/stat.

    On a virtual machine the hypervisor can give a core's time to another guest ("steal"). On this
    project's 2-core machine steal was 9-55 % of the time during training (vmstat, 2026-12-03), which
    slows every rate here by as much, so the table prints it beside them.
    """
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(field) for field in fields]
    # user nice system idle iowait irq softirq steal (guest time is already counted in user).
    return values[7] if len(values) > 7 else 0, sum(values[:8])


def steal_fraction(start, end):
    """Fraction of CPU time taken by the hypervisor between two `cpu_counters` readings (nan if unknown)."""
    if start is None or end is None or end[1] == start[1]:
        return float("nan")
    return (end[0] - start[0]) / (end[1] - start[1])


def _import_trainer():
    """The trainer module, imported only in the child process (it imports Keras and sets nothing global)."""
    import train_piDOC
    return train_piDOC


def measure_one(architecture, policy, batch_size, timed_steps):
    """Train and run `architecture` under `policy` on random maps; return the timings as a dict (child process)."""
    import keras
    import tensorflow as tf

    from pidoc import fast_network

    train_piDOC = _import_trainer()
    keras.config.set_dtype_policy(policy)
    model = train_piDOC.build_compiled_network(architecture, 1e-3, seed=0)
    generator = np.random.default_rng(0)
    maps = batch_size * (WARM_UP_STEPS + timed_steps)
    flux = generator.standard_normal((maps, 160, 160, 1), dtype=np.float32)
    # One random target per output of the network (`TARGETS[architecture]`: file, shape, key, output).
    specifications = train_piDOC.TARGETS[architecture]
    targets = tuple(generator.standard_normal((maps,) + tuple(specification[1]), dtype=np.float32)
                    for specification in specifications)
    constants = {"luminosity_mean": 0.0, "luminosity_std": 1.0}
    for specification in specifications:
        constants.update({f"{specification[2]}_mean": 0.0, f"{specification[2]}_std": 1.0})
    batches = train_piDOC.batches_ahead(
        train_piDOC.MapBatches(flux, targets, constants, architecture, batch_size, generator))

    step_seconds, cpu_start, wall_start = [], None, None
    step_start = time.perf_counter()
    for step, (inputs, targets) in enumerate(batches):
        if step == WARM_UP_STEPS:
            cpu_start, wall_start, counters_start = time.process_time(), time.perf_counter(), cpu_counters()
            step_start = wall_start
        model.train_on_batch(inputs, targets)
        now = time.perf_counter()
        if step >= WARM_UP_STEPS:
            step_seconds.append(now - step_start)
        step_start = now
    busy_cores = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    steal = steal_fraction(counters_start, cpu_counters())

    infer = tf.function(lambda images: model(images, training=False))
    inference_maps = tf.constant(flux[:INFERENCE_BATCHES * batch_size])
    splits = tf.split(inference_maps, INFERENCE_BATCHES)
    tf.nest.map_structure(lambda tensor: tensor.numpy(), infer(splits[0]))
    best = np.inf
    for _ in range(INFERENCE_PASSES):
        start = time.perf_counter()
        for images in splits:
            tf.nest.map_structure(lambda tensor: tensor.numpy(), infer(images))
        best = min(best, time.perf_counter() - start)

    result = {"seconds_per_step": float(np.median(step_seconds)), "busy_cores": busy_cores, "steal": steal,
              "forward_gflop": fast_network.forward_gflop_per_map(model), "inference_maps_per_second": len(inference_maps) / best}
    if architecture == "fast" and policy == "mixed_bfloat16":
        keras.config.set_dtype_policy("float32")
        float32_model = fast_network.build_fast_network(seed=0)
        float32_model.set_weights(model.get_weights())
        keras.config.set_dtype_policy(policy)
        images = flux[:batch_size]
        difference = np.abs(model.predict_on_batch(images)["mass"] - float32_model.predict_on_batch(images)["mass"])
        result["mass_bf16_difference_dex"] = float(difference.max()) * MASS_STD_DEX
    result.update(reference_rates())
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architectures", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES))
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--steps", type=int, default=TIMED_STEPS, help="timed training steps per run")
    parser.add_argument("--child", nargs=2, metavar=("ARCHITECTURE", "POLICY"), help=argparse.SUPPRESS)
    settings = parser.parse_args(argv)
    if settings.steps < 1 or settings.batch_size < 1:
        parser.error("--steps and --batch-size must be positive")
    if settings.child:
        print("RESULT " + json.dumps(measure_one(*settings.child, settings.batch_size, settings.steps)))
        return

    print(f"{os.cpu_count()} cores; batch size {settings.batch_size}; median of {settings.steps} training steps after "
          f"{WARM_UP_STEPS} warm-up steps; inference best of {INFERENCE_PASSES} passes over {INFERENCE_BATCHES} batches")
    print("conv: 3×3, 32→32 channels, 160×160 px, batch 32; matmul: 2048²; both measured by TensorFlow in each child")
    print("of bf16 conv: training GFLOP/s over the bf16 conv rate, both per wall second, then both per CPU second")
    print("(the CPU-second ratio is the one that contention from other processes changes least)\n")
    print(f"{'network':8}{'policy':16}{'fwd GFLOP':>10}{'train maps/s':>13}{'train GFLOP/s':>14}{'of bf16 conv':>14}"
          f"{'of own conv':>12}{'infer maps/s':>13}{'busy cores':>11}{'maps/CPU-s':>11}"
          f"{'conv bf16/fp32':>16}{'matmul bf16/fp32':>18}{'bf16 Δmass dex':>15}{'steal':>7}")
    for architecture in settings.architectures:
        for policy in settings.policies:
            command = [sys.executable, __file__, "--child", architecture, policy,
                       "--batch-size", str(settings.batch_size), "--steps", str(settings.steps)]
            completed = subprocess.run(command, capture_output=True, text=True)
            lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
            if completed.returncode != 0 or not lines:
                print(f"{architecture.upper():8}{policy:16} failed:\n{completed.stderr[-2000:]}")
                continue
            result = json.loads(lines[-1][len("RESULT "):])
            maps_per_second = settings.batch_size / result["seconds_per_step"]
            training_gflops = 3 * result["forward_gflop"] * maps_per_second
            own_conv = result["conv_bfloat16" if policy == "mixed_bfloat16" else "conv_float32"]
            cpu_fraction = 3 * result["forward_gflop"] * maps_per_second / result["busy_cores"] / result[
                "conv_bfloat16_per_cpu_second"]
            difference = result.get("mass_bf16_difference_dex")
            print(f"{architecture.upper():8}{policy:16}{result['forward_gflop']:10.3f}{maps_per_second:13.1f}"
                  f"{training_gflops:14.0f}{training_gflops / result['conv_bfloat16']:8.0%}/{cpu_fraction:<5.0%}"
                  f"{training_gflops / own_conv:12.0%}"
                  f"{result['inference_maps_per_second']:13.1f}{result['busy_cores']:11.2f}"
                  f"{maps_per_second / result['busy_cores']:11.1f}"
                  f"{result['conv_bfloat16']:9.0f}/{result['conv_float32']:<6.0f}"
                  f"{result['matmul_bfloat16']:11.0f}/{result['matmul_float32']:<6.0f}"
                  f"{'-' if difference is None else f'{difference:.4f}':>15}{result['steal']:7.0%}")


if __name__ == "__main__":
    main()
