"""Out-of-fold outputs: what each fold's model said about the films it never saw, one CSV for a split.

A row per film: its 0-based `index` in the split (filenames.csv order), `filename`, the `fold` whose
model held it out (index % 5 == fold, `aasce.train_val_split`), and the `serving_default` outputs that
calibration and comparison need (`OUTPUTS`), flattened to columns `KEY` or `KEY_i`. Model outputs only:
no pixels, no labels (the truth is joined from the data root when the file is read for calibration).
The file grows a fold at a time (`append_rows`, atomically), so a stopped job resumes from the folds
it holds (`folds_in`).
"""
from __future__ import annotations

import csv
import io

import numpy as np

from seg4reg_tf import fileio

# output -> shape of one film's value (() for a scalar), as `serving_default` returns it
OUTPUTS = {
    "cobb_angles": (3,), "cobb_angles_image": (3,), "cobb_angles_segmentation": (3,),
    "cobb_angles_geometry": (3,), "consistency": (), "end_vertebrae": (3, 2), "vertebra_tilts": (17,),
    "vertebra_visible": (17,), "measurable_score": (), "upright_margin": (),
}
KEYS = ("index", "filename", "fold")


def _columns(key: str, shape: tuple) -> list[str]:
    n = int(np.prod(shape)) if shape else 0
    return [key] if n == 0 else [f"{key}_{i}" for i in range(n)]


COLUMNS = [*KEYS, *(c for key, shape in OUTPUTS.items() for c in _columns(key, shape))]


def fold_rows(outputs: dict[str, np.ndarray], indices, filenames, fold: int) -> list[dict]:
    """Rows of one fold: `outputs` [N, ...] per key of OUTPUTS (a model without the upright check has no
    `upright_margin`: NaN), `indices` and `filenames` [N] of the held-out films."""
    n = len(indices)
    if len(filenames) != n:
        raise ValueError(f"filenames: expected {n} (one per index), got {len(filenames)}")
    flat = {}
    for key, shape in OUTPUTS.items():
        if key in outputs:
            value = np.asarray(outputs[key], np.float64).reshape(n, -1)
        elif key == "upright_margin":
            value = np.full((n, 1), np.nan)
        else:
            raise KeyError(f"out-of-fold outputs need the model output {key!r} (got {sorted(outputs)})")
        if value.shape[1] != max(1, int(np.prod(shape))):
            raise ValueError(f"outputs[{key!r}]: expected [{n}, {', '.join(map(str, shape))}], got {value.shape}")
        for j, col in enumerate(_columns(key, shape)):
            flat[col] = value[:, j]
    return [{"index": int(indices[i]), "filename": filenames[i], "fold": int(fold),
             **{c: float(flat[c][i]) for c in COLUMNS[len(KEYS):]}} for i in range(n)]


def _read_rows(path) -> list[dict]:
    if not fileio.exists(path):
        return []
    reader = csv.DictReader(io.StringIO(fileio.read_text(path)))
    if reader.fieldnames != COLUMNS:
        raise ValueError(f"{path}: not an out-of-fold file of this version (columns {reader.fieldnames[:4]}..., "
                         f"expected {COLUMNS[:4]}...)")
    return list(reader)


def folds_in(path) -> set[int]:
    """The folds whose rows `path` holds (empty when it does not exist)."""
    return {int(r["fold"]) for r in _read_rows(path)}


def append_rows(path, rows: list[dict]) -> None:
    """Add `rows` (`fold_rows`) to the file at `path`, written anew atomically (a film already there is an
    error: ValueError naming it)."""
    old = _read_rows(path)
    have = {r["filename"] for r in old}
    clash = [r["filename"] for r in rows if r["filename"] in have]
    if clash:
        raise ValueError(f"{path}: already holds {clash[0]!r} (a fold is written once)")
    merged = sorted([*old, *rows], key=lambda r: int(r["index"]))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in merged:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    fileio.write_atomic(path, out.getvalue())


def read_out_of_fold(path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(keys, outputs) of the file: `keys` index int [N], filename str [N], fold int [N]; `outputs` float
    arrays [N, *shape] per OUTPUTS key (`end_vertebrae` int32), rows in index order."""
    rows = _read_rows(path)
    if not rows:
        raise ValueError(f"{path}: no out-of-fold rows (expected the file `benchmarks/out_of_fold.py` writes)")
    keys = {"index": np.array([int(r["index"]) for r in rows]), "filename": np.array([r["filename"] for r in rows]),
            "fold": np.array([int(r["fold"]) for r in rows])}
    outputs = {}
    for key, shape in OUTPUTS.items():
        value = np.array([[float(r[c]) for c in _columns(key, shape)] for r in rows]).reshape(len(rows), *shape)
        outputs[key] = value.astype(np.int32) if key == "end_vertebrae" else value
    return keys, outputs
