"""Evaluate a trained model on labelled records: report.json, cases.csv and plots.

Two front ends feed the same `evaluate`:
- `evaluate_run(run_dir, ...)`: the Keras model and config of a run directory (`training.run.load_run`),
  fed preprocessed images (`data.preprocess`, exactly as in training);
- `evaluate_saved_model(path, ...)`: a SavedModel directory or a TF Serving base path (the newest
  numeric version), called through `serving_default` with the raw image bytes, i.e. exactly what a
  TF Serving client sees.

The headline head is the one the config names (`model.head`, output `cobb_angles`), never chosen
after looking at the numbers; every other head is reported beside it.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from seg4reg_tf import fileio
from seg4reg_tf.evaluation import plots as plots_lib
from seg4reg_tf.evaluation.attention import attention_in_spine
from seg4reg_tf.evaluation.report import (
    head_metrics,
    interval_metrics,
    per_image_smape,
    severity_metrics,
    write_cases_csv,
    write_report,
)
from seg4reg_tf.export.layout import CONFIG_RELPATH, IMAGE_BYTES_INPUT, SERVING_DEFAULT, latest_version_dir
from seg4reg_tf.export.prediction import HEAD_OUTPUTS, Prediction
from seg4reg_tf.geometry import ANGLE_NAMES, Letterbox, landmarks_to_label_map, vertebra_dice
from seg4reg_tf.geometry.seg_angles import DEFAULT_MAX_MISSING

# Report head name of each `Prediction` head ("headline": the config's, output `cobb_angles`); "seg_angles"
# (the vertebrae fitted to the predicted labels) is computed here.
REPORT_HEADS = {"reported": "headline", "image": "image", "segmentation": "segmentation", "geometry": "geometry"}
SEG_ANGLES = "seg_angles"
INPUT_KINDS = ("image", "bytes")

PredictFn = Callable[[Any], Mapping[str, Any]]


def _read_bytes(record) -> bytes:
    """A record's encoded image (`AasceRecord.read_image`: its bytes, or its file on any filesystem)."""
    if getattr(record, "image_bytes", None) is None and not fileio.isfile(record.image_path):
        raise FileNotFoundError(f"image file not found: {record.image_path}")
    return record.read_image() if hasattr(record, "read_image") else fileio.read_bytes(record.image_path)


def _preprocess_fn(data_cfg) -> Callable[[bytes], tuple[np.ndarray, Letterbox]]:
    """bytes -> (float32 [H, W, 1] image, its Letterbox) through `seg4reg_tf.data.preprocess`."""
    from seg4reg_tf.data import preprocess as pp

    def fn(raw: bytes):
        image, transform = pp.preprocess(pp.decode_image(raw), data_cfg)
        return np.asarray(image, dtype=np.float32), Letterbox.from_vector(transform.numpy())

    return fn


def _labels_from_outputs(out: Mapping[str, Any]) -> np.ndarray | None:
    if "vertebra_labels" in out:
        return np.asarray(out["vertebra_labels"]).astype(np.uint8)
    if "segmentation" in out:
        seg = np.asarray(out["segmentation"])
        if seg.ndim != 4:
            raise ValueError(f"output 'segmentation': expected [B, H, W, 18] probabilities, got shape {seg.shape}")
        return np.argmax(seg, axis=-1).astype(np.uint8)
    return None


def _angles(out: Mapping[str, Any], key: str, n: int) -> np.ndarray | None:
    if key not in out:
        return None
    a = np.asarray(out[key], dtype=np.float64)
    if a.shape != (n, 3):
        raise ValueError(f"output {key!r}: expected shape [{n}, 3] degrees, got {a.shape}")
    return a


def evaluate(
    predict_fn: PredictFn,
    records: Sequence,
    data_cfg,
    out_dir: str,
    *,
    head_name: str,
    batch_size: int = 8,
    inputs: str = "image",
    max_missing: int = DEFAULT_MAX_MISSING,
    seg_fit: str = "quad",
    make_plots: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run `predict_fn` over `records` and write DIR/report.json, DIR/cases.csv and the PNG plots.

    Args:
        predict_fn: inputs="image": float32 [B, H, W, 1] preprocessed images -> output dict;
            inputs="bytes": list of B encoded images -> output dict (with `scale`, `padding`,
            `original_size`, as `serving_default`). Outputs per docs/architecture.md, numpy-convertible.
        records: `data.aasce.AasceRecord`s (image_path or image_bytes, height, landmarks (68, 2) or None,
            angles (3,)): from an AASCE root (`aasce.load_split`) or TFRecords (`tfrecords.read_records`).
        data_cfg: the preprocessing (inputs="image" only): the model's `preprocessing`, or a `DataConfig`.
        out_dir: output directory (created; any TensorFlow filesystem).
        head_name: the config's `model.head`, recorded as the headline head (output `cobb_angles`).
        batch_size: images per predict_fn call.
        max_missing: vertebrae that may be interpolated before seg-derived angles become NaN.
        seg_fit: vertebra corner fit for the seg-derived angles, "quad" or "rect" (`seg_angles`).
        make_plots: write pred_vs_true.png and bland_altman.png for the headline head.
        extra: more keys for report.json (e.g. the source path and split).

    Returns:
        The report dict (also written as report.json, NaN as null).
    """
    records = list(records)
    if not records:
        raise ValueError("records: expected at least one labelled record, got none")
    if inputs not in INPUT_KINDS:
        raise ValueError(f"inputs: expected one of {INPUT_KINDS}, got {inputs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if seg_fit not in ("quad", "rect"):
        raise ValueError(f"seg_fit: expected 'quad' or 'rect', got {seg_fit!r}")
    preprocess_fn = _preprocess_fn(data_cfg) if inputs == "image" else None
    fileio.makedirs(out_dir)

    n = len(records)
    true = np.full((n, 3), np.nan)
    heads: dict[str, np.ndarray] = {}
    seg_pred = np.full((n, 3), np.nan)
    consistency = np.full(n, np.nan)
    dice = np.full(n, np.nan)
    seg_found = np.full(n, -1)
    seg_reason = [""] * n
    seg_interp = [""] * n
    att_share = np.full(n, np.nan)
    att_area = np.full(n, np.nan)
    ends = [""] * n
    has_seg = False
    model_size = None
    bounds = None  # [n, 3, (lower, upper)] of a model with intervals

    with tqdm(total=n, desc="evaluate", unit="img") as bar:
        for start in range(0, n, batch_size):
            batch = records[start : start + batch_size]
            b = len(batch)
            raws = [_read_bytes(r) for r in batch]
            if inputs == "image":
                pre = [preprocess_fn(raw) for raw in raws]
                images = np.stack([p[0] for p in pre]).astype(np.float32)
                letterboxes = [p[1] for p in pre]
                out = predict_fn(images)
            else:
                out = predict_fn(raws)
                letterboxes = [None] * b  # the outputs carry it
            out = {k: np.asarray(v) for k, v in out.items()}
            for key in HEAD_OUTPUTS.values():
                _angles(out, key, b)  # a wrong shape is named here
            if "segmentation" in out and "vertebra_labels" not in out:  # a Keras model's softmax
                out["vertebra_labels"] = _labels_from_outputs(out)
            frame = (tuple(images.shape[1:3]) if inputs == "image"
                     else tuple(out["vertebra_labels"].shape[1:3]) if "vertebra_labels" in out else None)
            for i, rec in enumerate(batch):
                k = start + i
                pred = Prediction.from_outputs(out, i, letterbox=letterboxes[i])
                if pred.intervals is not None:
                    if bounds is None:
                        bounds = np.full((n, 3, 2), np.nan)
                    bounds[k] = pred.intervals
                for name, angles in pred.heads.items():
                    heads.setdefault(REPORT_HEADS[name], np.full((n, 3), np.nan))[k] = angles
                if pred.consistency is not None:
                    consistency[k] = pred.consistency
                ends[k] = " ".join(f"{c.name}:{c.end_vertebrae}" for c in pred.curves)
                t_ang = np.asarray(rec.angles, dtype=np.float64).reshape(-1)
                if t_ang.shape != (3,) or not np.all(np.isfinite(t_ang)):
                    raise ValueError(f"{rec.filename}: expected 3 finite true angles, got {rec.angles!r}")
                true[k] = t_ang
                lm = getattr(rec, "landmarks", None)
                lm_ok = lm is not None and np.all(np.isfinite(np.asarray(lm, dtype=np.float64)))
                if pred.attention is not None and lm_ok and frame is not None:
                    att_share[k], att_area[k] = attention_in_spine(pred.attention, pred.letterbox.to_model(lm), frame)
                if pred.labels is None:
                    continue
                has_seg = True
                lab = pred.labels
                model_size = tuple(int(s) for s in lab.shape)
                r = pred.fitted_vertebrae(max_missing=max_missing, fit=seg_fit)
                seg_pred[k], seg_found[k], seg_reason[k] = r.angles, r.n_found, r.reason
                seg_interp[k] = " ".join(r.interpolated)
                if lm_ok:
                    true_lab = landmarks_to_label_map(pred.letterbox.to_model(lm), *lab.shape)
                    dice[k] = vertebra_dice(lab, true_lab)
            bar.update(b)

    if "headline" not in heads:
        raise ValueError(
            f"model outputs: expected 'cobb_angles' (the head named by model.head={head_name!r}); "
            f"none of {sorted(HEAD_OUTPUTS.values())} came back complete")
    if "image" in heads and "segmentation" in heads:
        consistency = np.where(np.isfinite(consistency), consistency,
                               np.mean(np.abs(heads["image"] - heads["segmentation"]), axis=1))
    if has_seg:
        heads[SEG_ANGLES] = seg_pred

    headline = head_metrics(heads["headline"], true)
    report: dict[str, Any] = {
        "n_images": n,
        "head": head_name,
        "smape": headline["smape"],
        "mae_pt": headline["mae_pt"],
        "mae_mt": headline["mae_mt"],
        "mae_tl": headline["mae_tl"],
        "dice_mean": float(np.nanmean(dice)) if np.isfinite(dice).any() else None,
        "heads": {name: head_metrics(pred, true) for name, pred in heads.items()},
        "severity": severity_metrics(heads["headline"], true),
        "seg_angles_failed_fraction": float(np.mean(~np.all(np.isfinite(seg_pred), axis=1))) if has_seg else None,
        "seg_angles_max_missing": max_missing,
        "seg_angles_fit": seg_fit,
        "attention_in_spine": float(np.nanmean(att_share)) if np.isfinite(att_share).any() else None,
        "attention_area": float(np.nanmean(att_area)) if np.isfinite(att_area).any() else None,
        "disagreement_mean": float(np.nanmean(consistency)) if np.isfinite(consistency).any() else None,
        "model_size": list(model_size) if model_size else None,
        "inputs": inputs,
    }
    if bounds is not None:
        report["intervals"] = interval_metrics(bounds[..., 0], bounds[..., 1], true)
    if extra:
        report.update(dict(extra))

    smapes = {name: per_image_smape(pred, true) for name, pred in heads.items()}
    rows = []
    for k, rec in enumerate(records):
        row: dict[str, Any] = {"file": rec.filename}
        for j, a in enumerate(ANGLE_NAMES):
            row[f"true_{a.lower()}"] = true[k, j]
        for name, pred in heads.items():
            for j, a in enumerate(ANGLE_NAMES):
                row[f"{name}_{a.lower()}"] = pred[k, j]
        row["end_vertebrae"] = ends[k]
        if bounds is not None:
            for j, a in enumerate(ANGLE_NAMES):
                row[f"lower_{a.lower()}"], row[f"upper_{a.lower()}"] = bounds[k, j]
        row["disagreement"] = consistency[k]
        row["attention_in_spine"] = att_share[k]
        for name in heads:
            row[f"smape_{name}"] = smapes[name][k]
        if has_seg:
            row["dice"] = dice[k]
            row["seg_found"] = int(seg_found[k])
            row["seg_interpolated"] = seg_interp[k]
            row["seg_failure"] = seg_reason[k]
        rows.append(row)
    write_cases_csv(rows, fileio.join(out_dir, "cases.csv"))

    if make_plots:
        title = f"head {head_name}: SMAPE {headline['smape']:.2f}%, n={headline['n']}" if headline["n"] else head_name
        plots_lib.plot_pred_vs_true(heads["headline"], true, fileio.join(out_dir, "pred_vs_true.png"), title)
        plots_lib.plot_bland_altman(heads["headline"], true, fileio.join(out_dir, "bland_altman.png"), title)
        report["plots"] = ["pred_vs_true.png", "bland_altman.png"]
        if bounds is not None:
            plots_lib.plot_interval_width(bounds[..., 0], bounds[..., 1], heads["headline"], true,
                                          fileio.join(out_dir, "interval_width.png"), title)
            report["plots"].append("interval_width.png")
    write_report(report, fileio.join(out_dir, "report.json"))
    return report


# --------------------------------------------------------------------------------------------------
# front ends
# --------------------------------------------------------------------------------------------------
def keras_predict_fn(model) -> PredictFn:
    """float32 [B, H, W, 1] -> dict of numpy outputs of a Keras model called on {"image": ...}."""

    def fn(images):
        out = model.predict_on_batch({"image": np.asarray(images, dtype=np.float32)})
        if not isinstance(out, Mapping):
            raise ValueError(f"model output: expected a dict of named outputs, got {type(out).__name__}")
        return {k: np.asarray(v) for k, v in out.items()}

    return fn


def model_head_name(model_cfg) -> str:
    """The headline head a ModelConfig names ("auto" resolved when the config can resolve it)."""
    head = getattr(model_cfg, "resolved_head", None)
    if callable(head):
        head = head()
    return str(head or model_cfg.head)


def evaluate_run(run_dir: str, records: Sequence, out_dir: str, *, batch_size: int = 8, tta: str | None = None,
                 allow_unfinished: bool = False, **kwargs) -> dict[str, Any]:
    """Evaluate the model of a run directory (`training.run.load_run`, `tta` as there); head from its config.

    An unfinished or inconsistent run raises `training.run.RunStateError` (a ValueError) saying which;
    `allow_unfinished=True` evaluates an unfinished run's best checkpoint so far (report field `run_state`).
    """
    if not fileio.isdir(run_dir):
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    from seg4reg_tf.training.run import load_run, require_finished

    state = require_finished(run_dir, allow_unfinished=allow_unfinished)
    cfg, model = load_run(run_dir, tta=tta)
    extra = {"source": fileio.absolute(run_dir), "tta": cfg.model.tta, "run_state": state.status,
             **dict(kwargs.pop("extra", None) or {})}
    head = model_head_name(cfg.model)
    return evaluate(keras_predict_fn(model), records, model.preprocessing, out_dir, head_name=head,
                    batch_size=batch_size, inputs="image", extra=extra, **kwargs)


def resolve_saved_model_dir(path: str) -> str:
    """A SavedModel directory itself, or the newest numeric version `BASE/N/` of a TF Serving base path."""
    return str(latest_version_dir(path))


def _exported_head(version_dir: str) -> str:
    """The headline head of the config exported beside the SavedModel, else "cobb_angles (exported)"."""
    from seg4reg_tf.training.config import load_config

    path = os.path.join(version_dir, CONFIG_RELPATH)
    if not fileio.isfile(path):
        return "cobb_angles (exported)"
    return model_head_name(load_config(path).model)


def saved_model_predict_fn(path: str) -> tuple[PredictFn, str]:
    """(list of image bytes -> dict of numpy outputs via `serving_default`, the version dir used)."""
    import tensorflow as tf

    version_dir = resolve_saved_model_dir(path)
    loaded = tf.saved_model.load(version_dir)
    if SERVING_DEFAULT not in loaded.signatures:
        raise ValueError(f"{version_dir}: no {SERVING_DEFAULT!r} signature (has {sorted(loaded.signatures)})")
    sig = loaded.signatures[SERVING_DEFAULT]

    def fn(raws):
        out = sig(**{IMAGE_BYTES_INPUT: tf.constant(list(raws), dtype=tf.string)})
        return {k: v.numpy() for k, v in out.items()}

    fn.loaded = loaded  # keep the trackable alive
    return fn, version_dir


def saved_model_outputs(path: str, records: Sequence, keys: Sequence[str], *, optional: Sequence[str] = (),
                        batch_size: int = 8, desc: str = "serving_default") -> dict[str, np.ndarray]:
    """{key: [N, ...] numpy} of `serving_default` (image bytes in) over `records`, in their order, with a
    progress bar; KeyError naming a key of `keys` the model does not output (`optional` ones it may lack)."""
    fn, version_dir = saved_model_predict_fn(path)
    records = list(records)
    rows: dict[str, list] = {k: [] for k in (*keys, *optional)}
    with tqdm(total=len(records), desc=desc, unit="img") as bar:
        for start in range(0, len(records), batch_size):
            batch = records[start:start + batch_size]
            out = fn([_read_bytes(r) for r in batch])
            for k in keys:
                if k not in out:
                    raise KeyError(f"{version_dir}: serving_default has no output {k!r} (has {sorted(out)})")
            for k in rows:
                if k in out:
                    rows[k].append(out[k])
            bar.update(len(batch))
    return {k: np.concatenate(v) for k, v in rows.items() if v}


def evaluate_saved_model(path: str, records: Sequence, out_dir: str, *, batch_size: int = 8,
                         head_name: str | None = None, **kwargs) -> dict[str, Any]:
    """Evaluate a SavedModel / TF Serving base path through `serving_default` with image bytes."""
    fn, version_dir = saved_model_predict_fn(path)
    extra = {"source": fileio.absolute(version_dir), **dict(kwargs.pop("extra", None) or {})}
    return evaluate(fn, records, None, out_dir, head_name=head_name or _exported_head(version_dir),
                    batch_size=batch_size, inputs="bytes", extra=extra, **kwargs)
