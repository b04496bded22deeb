"""tf.Examples of the ExampleGen splits -> an AASCE-format root, the input `seg4reg_tf` trains and evaluates on.

The Trainer and the Evaluator read only the Examples artifact; they lay its splits out in the
documented AASCE layout (README, "Data layout") so the package's `train()` and `evaluate_saved_model()` run
unchanged: train and eval examples are interleaved so that the fixed rule (index % 5 == 4
validates) gives back exactly the eval split. Landmarks are written as float64 `p2` (exact).
"""
from __future__ import annotations

import io
import os
from typing import Iterable, Sequence

import numpy as np

SPLIT = "training"


def read_examples(patterns: Iterable[str]) -> list[dict]:
    """Parsed examples (the `seg4reg_tf.data.tfrecords` features) of the files matching `patterns`
    (GZIP TFRecords as ExampleGen writes them), sorted by file name for a deterministic order."""
    import tensorflow as tf
    from seg4reg_tf.data.tfrecords import FEATURES

    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise FileNotFoundError(f"no example files match {list(patterns)}")
    out = []
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    for raw in ds.as_numpy_iterator():
        d = tf.io.parse_single_example(raw, FEATURES)
        name = d["image/filename"].numpy().decode("utf-8")
        out.append({"filename": name, "image": d["image/encoded"].numpy(),
                    "height": int(d["image/height"]), "width": int(d["image/width"]),
                    "landmarks": d["landmarks"].numpy().astype(np.float64).reshape(68, 2),
                    "angles": d["angles"].numpy().astype(np.float64)})
    out.sort(key=lambda e: e["filename"])
    return out


def interleave(train: Sequence[dict], evals: Sequence[dict]) -> list[dict]:
    """One list whose rows at index % 5 == 4 are `evals` (in order) and the others `train`.

    Raises ValueError unless len(evals) == (len(train) + len(evals)) // 5 (splits made by the fixed rule).
    """
    n = len(train) + len(evals)
    if len(evals) != n // 5 or not train or not evals:
        raise ValueError(f"examples: train {len(train)}, eval {len(evals)}: not a fixed split (every 5th of "
                         f"{n} images, i.e. {n // 5}, should be eval); make them with seg4reg_pipeline.example_gen")
    ti, ei = iter(train), iter(evals)
    return [next(ei) if i % 5 == 4 else next(ti) for i in range(n)]


def write_aasce_root(examples: Sequence[dict], root: str) -> str:
    """Write `examples` as split "training" of an AASCE-format root (filenames.csv order = list order)."""
    import scipy.io

    image_dir = os.path.join(root, "data", SPLIT)
    label_dir = os.path.join(root, "labels", SPLIT)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    seen = set()
    lm_rows, an_rows = [], []
    for e in examples:
        name = e["filename"]
        if not name or "/" in name or "\\" in name or name in (".", "..") or name in seen:
            raise ValueError(f"image/filename {name!r}: expected a unique plain file name")
        seen.add(name)
        with open(os.path.join(image_dir, name), "wb") as f:
            f.write(e["image"])
        buf = io.BytesIO()
        scipy.io.savemat(buf, {"p2": np.asarray(e["landmarks"], np.float64)}, format="5", do_compression=False)
        with open(os.path.join(label_dir, name + ".mat"), "wb") as f:
            f.write(buf.getvalue())
        p = e["landmarks"]
        lm_rows.append(np.concatenate([p[:, 0] / e["width"], p[:, 1] / e["height"]]))
        an_rows.append(e["angles"])
    with open(os.path.join(label_dir, "filenames.csv"), "w", newline="") as f:
        f.write("".join(f"{e['filename']}\r\n" for e in examples))
    for path, rows in ((os.path.join(label_dir, "landmarks.csv"), lm_rows),
                       (os.path.join(label_dir, "angles.csv"), an_rows)):
        with open(path, "w") as f:
            f.write("".join(",".join(repr(float(v)) for v in r) + "\n" for r in rows))
    return root


def stage_splits(train_patterns: Iterable[str], eval_patterns: Iterable[str], root: str) -> tuple[int, int]:
    """Write the train + eval examples as one AASCE root whose fixed split is exactly them; (n_train, n_eval)."""
    train, evals = read_examples(train_patterns), read_examples(eval_patterns)
    write_aasce_root(interleave(train, evals), root)
    return len(train), len(evals)
