"""Joint-model training throughput (images/s) and its share of the machine's measured fp32 matmul peak.

    python benchmarks/training_throughput.py  # configs/aasce_cpu.yaml at 256x128 and 512x256
    python benchmarks/training_throughput.py --config configs/aasce_cpu.yaml --sizes 256x128 --steps 20
    python benchmarks/training_throughput.py --sizes 256x128 --set train.mixed_precision=mixed_bfloat16

For each input size: the config's model is compiled exactly as `seg4reg train` compiles it
(`training.train.compile_model`) and `fit` runs on one in-memory batch of spine-like images and label
maps repeated (no input pipeline: this is what the model can consume; `input_pipeline.py` measures
what the data side delivers). After `--warmup` steps, `--steps` steps are timed.

FLOPs: TensorFlow's graph profiler counts the float ops of one forward pass of the training
computation (model call with training=True plus every loss term, so R(x), S(x), R(s_hat) and R(m));
a training step is taken as 3x that (forward + the two backward products). The peak is the best of
`--peak-repeats` float32 [N, N] x [N, N] `tf.matmul` runs in the same process (2 N^3 flops each).
Prints a markdown table with the machine, the date and the exact command.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from serving_latency import machine_info, parse_sizes  # noqa: E402 - a sibling script (benchmarks/ is sys.path[0])

from seg4reg_tf.shipped_configs import config_dir  # noqa: E402


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best-of-`repeats` fp32 GFLOP/s of an [n, n] x [n, n] matmul (2 n^3 flops)."""
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    b = tf.random.uniform((n, n), dtype=tf.float32)
    mm = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    mm(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def spine_batch(batch: int, size: tuple[int, int], seed: int = 0):
    """(features, targets) of `batch` synthetic spines (`data.synth`) at `size`, as training expects."""
    import cv2
    import numpy as np

    from seg4reg_tf.data.synth import synth_example
    from seg4reg_tf.geometry.cobb import cobb_angles
    from seg4reg_tf.geometry.masks import landmarks_to_label_map

    h, w = size
    rng = np.random.default_rng(seed)
    images, labels, angles, landmarks = [], [], [], []
    for _ in range(batch):
        img, p2 = synth_example(rng, height_range=(1000, 1000))
        sy, sx = h / img.shape[0], w / img.shape[1]
        images.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)[..., None] / 255.0)
        lm = p2.astype(np.float64) * [sx, sy]
        labels.append(landmarks_to_label_map(lm, h, w).astype(np.int32))
        angles.append(np.asarray(cobb_angles(lm, h), np.float32))
        landmarks.append(lm.astype(np.float32))
    return {"image": np.stack(images)}, {"angles": np.stack(angles), "labels": np.stack(labels),
                                         "landmarks": np.stack(landmarks)}


def forward_flops(model, features, targets) -> float:
    """Float ops of one forward pass of the training computation (model + loss terms), per batch."""
    import tensorflow as tf

    spec_x = {k: tf.TensorSpec(v.shape, tf.float32) for k, v in features.items()}
    spec_y = {"angles": tf.TensorSpec(targets["angles"].shape, tf.float32),
              "labels": tf.TensorSpec(targets["labels"].shape, tf.int32),
              "landmarks": tf.TensorSpec(targets["landmarks"].shape, tf.float32)}

    @tf.function
    def step(x, y):
        _, total = model.loss_terms(y, model(x, training=True), training=True)
        return total

    graph = step.get_concrete_function(spec_x, spec_y).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph=graph, options=opts)
    return float(prof.total_float_ops)


def measure(cfg, size, batch: int, warmup: int, steps: int) -> dict:
    import dataclasses

    import tensorflow as tf

    from seg4reg_tf.training.train import compile_model

    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=tuple(size), batch_size=batch))
    model = compile_model(cfg, steps_per_epoch=max(steps, 1))
    x, y = spine_batch(batch, size)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    dt = time.perf_counter() - t0
    flops_fwd = forward_flops(model, x, y)
    return {"size": size, "ms_per_step": 1e3 * dt / steps, "img_per_s": batch * steps / dt,
            "train_gflop_per_img": 3 * flops_fwd / batch / 1e9, "params": model.count_params()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=os.path.join(config_dir(), "aasce_cpu.yaml"),
                   help="experiment YAML (default: the shipped configs/aasce_cpu.yaml)")
    p.add_argument("--sizes", default="256x128,512x256", help="model input sizes HxW[,HxW...]")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the config's data.batch_size)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. train.mixed_precision=mixed_bfloat16")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (tracing, first allocations)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--matmul-n", type=int, default=2048, help="N of the fp32 peak matmul")
    p.add_argument("--peak-repeats", type=int, default=10, help="matmul runs; the best counts")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        p.error("--steps and --warmup must be >= 1")

    from seg4reg_tf.training.config import load_config

    try:
        sizes = parse_sizes(args.sizes, "--sizes")
    except ValueError as err:
        p.error(str(err))
    cfg = load_config(args.config, args.set)
    batch = args.batch or cfg.data.batch_size
    info = machine_info()
    print(f"# training throughput: {datetime.date.today()}, {info['nproc']} cores ({info['cpu']}), "
          f"load at start {info['load']}", flush=True)
    peak = matmul_peak_gflops(args.matmul_n, args.peak_repeats)
    print(f"fp32 matmul peak ({args.matmul_n}^2): {peak:.1f} GFLOP/s", flush=True)
    rows = []
    for size in sizes:
        r = measure(cfg, size, batch, args.warmup, args.steps)
        achieved = r["img_per_s"] * r["train_gflop_per_img"]
        rows.append((r, achieved))
        print(f"{size[0]}x{size[1]}: {r['img_per_s']:.2f} img/s, {r['ms_per_step']:.0f} ms/step, "
              f"{achieved:.1f} GFLOP/s", flush=True)
    print()
    print("command: `" + " ".join(shlex.quote(a) for a in ["python", "benchmarks/training_throughput.py",
                                                           *(argv if argv is not None else sys.argv[1:])]) + "`")
    print(f"config: `{os.path.relpath(args.config)}` (variant {cfg.model.variant}, dtype policy "
          f"{cfg.train.mixed_precision}), batch {batch}, "
          f"{args.steps} timed steps after {args.warmup}; fp32 matmul peak {peak:.1f} GFLOP/s")
    print()
    print("| model input | train img/s | ms/step | GFLOP per image (train step) | achieved GFLOP/s | share of peak |")
    print("|---|---|---|---|---|---|")
    for r, achieved in rows:
        print(f"| {r['size'][0]} x {r['size'][1]} | {r['img_per_s']:.2f} | {r['ms_per_step']:.0f} | "
              f"{r['train_gflop_per_img']:.2f} | {achieved:.1f} | {100 * achieved / peak:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
