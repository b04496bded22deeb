"""Evaluate a trained model on labelled records: report.json, cases.csv and plots.

Two front ends feed the same `evaluate`:
- `evaluate_run(run_dir, ...)`: the Keras model and config of a run directory (`training.run.load_run`),
  fed preprocessed images (`data.preprocess`, exactly as in training);
- `evaluate_saved_model(path, ...)`: a SavedModel directory or a TF Serving base path (the newest
  numeric version), called through `serving_default` with the raw image bytes, i.e. exactly what a
  TF Serving client sees.

The reported head is the one the config names (`model.head`, output `cobb_angles`), never chosen
after looking at the numbers; every other head is reported beside it.
"""
from __future__ import annotations

import dataclasses
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

# Report head name of each `Prediction` head (the glossary's, docs/architecture.md); FITTED (the vertebrae
# fitted to the predicted labels) is computed here.
REPORTED, FITTED = "reported", "fitted"
REPORT_HEADS = {"reported": REPORTED, "image": "image", "segmentation": "segmentation", "geometry": "geometry"}
# 2: the glossary's names (report heads "reported" / "fitted", was "headline" / "seg_angles"; "fitted_*" and
# "heads_disagreement_mean" keys, was "seg_angles_*" and "disagreement_mean"; cases.csv columns the same)
REPORT_SCHEMA_VERSION = 2
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


@dataclasses.dataclass
class _Case:
    """What `evaluate` keeps of one image (angles in deg, [PT, MT, TL])."""

    true: np.ndarray
    heads: dict  # report head name -> (3,)
    end_vertebrae: str = ""
    bounds: np.ndarray | None = None  # (3, 2) interval (lower, upper)
    heads_disagreement: float = np.nan
    attention_share: float = np.nan
    attention_area: float = np.nan
    fitted: Any = None  # `geometry.seg_angles.SegAngles` of the vertebrae fitted to the predicted labels
    dice: float = np.nan
    labels_shape: tuple | None = None


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
    fitted_corners: str = "quad",
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
        head_name: the config's `model.head`, recorded as the reported head (output `cobb_angles`).
        batch_size: images per predict_fn call.
        max_missing: vertebrae that may be interpolated before the fitted vertebrae's angles become NaN.
        fitted_corners: vertebra corner fit of the fitted vertebrae, "quad" or "rect" (`geometry.seg_angles`).
        make_plots: write pred_vs_true.png and bland_altman.png for the reported head.
        extra: more keys for report.json (e.g. the source path and split).

    Returns:
        The report dict (also written as report.json, NaN as null).
    """
    records = list(records)
    _check_arguments(records, inputs, batch_size, fitted_corners)
    preprocess_fn = _preprocess_fn(data_cfg) if inputs == "image" else None
    fileio.makedirs(out_dir)

    cases: list[_Case] = []
    with tqdm(total=len(records), desc="evaluate", unit="img") as bar:
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            out, letterboxes, frame = _batch_outputs(predict_fn, inputs, preprocess_fn, batch)
            for i, rec in enumerate(batch):
                pred = Prediction.from_outputs(out, i, letterbox=letterboxes[i])
                cases.append(_case(pred, rec, frame, max_missing, fitted_corners))
            bar.update(len(batch))

    heads = _head_arrays(cases, head_name)
    true = np.stack([c.true for c in cases])
    bounds = np.stack([c.bounds for c in cases]) if cases[0].bounds is not None else None
    disagreement = _heads_disagreement(cases, heads)
    report = _report(cases, heads, true, bounds, disagreement, head_name, inputs, max_missing, fitted_corners)
    if extra:
        report.update(dict(extra))
    write_cases_csv(_rows(records, cases, heads, true, bounds, disagreement), fileio.join(out_dir, "cases.csv"))
    if make_plots:
        report["plots"] = _plots(heads[REPORTED], true, bounds, head_name, report["heads"][REPORTED], out_dir)
    write_report(report, fileio.join(out_dir, "report.json"))
    return report


def _check_arguments(records: list, inputs: str, batch_size: int, fitted_corners: str) -> None:
    if not records:
        raise ValueError("records: expected at least one labelled record, got none")
    if inputs not in INPUT_KINDS:
        raise ValueError(f"inputs: expected one of {INPUT_KINDS}, got {inputs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if fitted_corners not in ("quad", "rect"):
        raise ValueError(f"fitted_corners: expected 'quad' or 'rect', got {fitted_corners!r}")


def _batch_outputs(predict_fn: PredictFn, inputs: str, preprocess_fn, batch: list):
    """(numpy outputs of one batch, a Letterbox per image (None: the outputs carry it), the model frame
    (H, W) or None)."""
    raws = [_read_bytes(r) for r in batch]
    if inputs == "image":
        pre = [preprocess_fn(raw) for raw in raws]
        images = np.stack([p[0] for p in pre]).astype(np.float32)
        letterboxes = [p[1] for p in pre]
        out = predict_fn(images)
    else:
        out = predict_fn(raws)
        letterboxes = [None] * len(batch)
    out = {k: np.asarray(v) for k, v in out.items()}
    for key in HEAD_OUTPUTS.values():
        _angles(out, key, len(batch))  # a wrong shape is named here
    if "segmentation" in out and "vertebra_labels" not in out:  # a Keras model's softmax
        out["vertebra_labels"] = _labels_from_outputs(out)
    frame = (tuple(images.shape[1:3]) if inputs == "image"
             else tuple(out["vertebra_labels"].shape[1:3]) if "vertebra_labels" in out else None)
    return out, letterboxes, frame


def _case(pred: Prediction, rec, frame, max_missing: int, fitted_corners: str) -> _Case:
    true = np.asarray(rec.angles, dtype=np.float64).reshape(-1)
    if true.shape != (3,) or not np.all(np.isfinite(true)):
        raise ValueError(f"{rec.filename}: expected 3 finite true angles, got {rec.angles!r}")
    case = _Case(true=true, heads={REPORT_HEADS[name]: a for name, a in pred.heads.items()},
                 end_vertebrae=" ".join(f"{c.name}:{c.end_vertebrae}" for c in pred.curves),
                 bounds=pred.intervals)
    if pred.heads_disagreement is not None:
        case.heads_disagreement = pred.heads_disagreement
    lm = getattr(rec, "landmarks", None)
    lm_ok = lm is not None and np.all(np.isfinite(np.asarray(lm, dtype=np.float64)))
    if pred.attention is not None and lm_ok and frame is not None:
        case.attention_share, case.attention_area = attention_in_spine(pred.attention, pred.letterbox.to_model(lm),
                                                                       frame)
    if pred.labels is not None:
        case.labels_shape = tuple(int(s) for s in pred.labels.shape)
        case.fitted = pred.fitted_vertebrae(max_missing=max_missing, fit=fitted_corners)
        if lm_ok:
            true_lab = landmarks_to_label_map(pred.letterbox.to_model(lm), *pred.labels.shape)
            case.dice = vertebra_dice(pred.labels, true_lab)
    return case


def _head_arrays(cases: list[_Case], head_name: str) -> dict[str, np.ndarray]:
    """{report head: [N, 3]} (NaN where an image lacks the head), the fitted vertebrae's as FITTED."""
    n = len(cases)
    heads: dict[str, np.ndarray] = {}
    for k, case in enumerate(cases):
        for name, angles in case.heads.items():
            heads.setdefault(name, np.full((n, 3), np.nan))[k] = angles
    if REPORTED not in heads:
        raise ValueError(
            f"model outputs: expected 'cobb_angles' (the head named by model.head={head_name!r}); "
            f"none of {sorted(HEAD_OUTPUTS.values())} came back complete")
    if any(c.fitted is not None for c in cases):
        heads[FITTED] = np.stack([c.fitted.angles if c.fitted is not None else np.full(3, np.nan) for c in cases])
    return heads


def _heads_disagreement(cases: list[_Case], heads: dict) -> np.ndarray:
    """[N] mean |image head - segmentation head| deg (the model's output, else computed here)."""
    given = np.array([c.heads_disagreement for c in cases], np.float64)
    if "image" in heads and "segmentation" in heads:
        given = np.where(np.isfinite(given), given, np.mean(np.abs(heads["image"] - heads["segmentation"]), axis=1))
    return given


def _nanmean(values) -> float | None:
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def _report(cases, heads, true, bounds, disagreement, head_name, inputs, max_missing,
            fitted_corners) -> dict[str, Any]:
    reported = head_metrics(heads[REPORTED], true)
    shapes = [c.labels_shape for c in cases if c.labels_shape]
    report: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "n_images": len(cases),
        "head": head_name,
        "smape": reported["smape"],
        "mae_pt": reported["mae_pt"],
        "mae_mt": reported["mae_mt"],
        "mae_tl": reported["mae_tl"],
        "dice_mean": _nanmean([c.dice for c in cases]),
        "heads": {name: head_metrics(pred, true) for name, pred in heads.items()},
        "severity": severity_metrics(heads[REPORTED], true),
        "fitted_failed_fraction": float(np.mean(~np.all(np.isfinite(heads[FITTED]), axis=1)))
        if FITTED in heads else None,
        "fitted_max_missing": max_missing,
        "fitted_corners": fitted_corners,
        "attention_in_spine": _nanmean([c.attention_share for c in cases]),
        "attention_area": _nanmean([c.attention_area for c in cases]),
        "heads_disagreement_mean": _nanmean(disagreement),
        "model_size": list(shapes[-1]) if shapes else None,
        "inputs": inputs,
    }
    if bounds is not None:
        report["intervals"] = interval_metrics(bounds[..., 0], bounds[..., 1], true)
    return report


def _rows(records, cases, heads, true, bounds, disagreement) -> list[dict[str, Any]]:
    """cases.csv: one row per image."""
    smapes = {name: per_image_smape(pred, true) for name, pred in heads.items()}
    rows = []
    for k, (rec, case) in enumerate(zip(records, cases)):
        row: dict[str, Any] = {"file": rec.filename}
        for prefix, values in (("true", true), *heads.items()):
            row.update({f"{prefix}_{a.lower()}": values[k, j] for j, a in enumerate(ANGLE_NAMES)})
        row["end_vertebrae"] = case.end_vertebrae
        if bounds is not None:
            for j, a in enumerate(ANGLE_NAMES):
                row[f"lower_{a.lower()}"], row[f"upper_{a.lower()}"] = bounds[k, j]
        row["heads_disagreement"] = disagreement[k]
        row["attention_in_spine"] = case.attention_share
        row.update({f"smape_{name}": smapes[name][k] for name in heads})
        if FITTED in heads:
            fitted = case.fitted
            row["dice"] = case.dice
            row["fitted_found"] = -1 if fitted is None else int(fitted.n_found)
            row["fitted_interpolated"] = "" if fitted is None else " ".join(fitted.interpolated)
            row["fitted_failure"] = "" if fitted is None else fitted.reason
        rows.append(row)
    return rows


def _plots(reported, true, bounds, head_name, metrics, out_dir) -> list[str]:
    """pred_vs_true.png, bland_altman.png (and interval_width.png) of the reported head; their names."""
    title = f"head {head_name}: SMAPE {metrics['smape']:.2f}%, n={metrics['n']}" if metrics["n"] else head_name
    plots_lib.plot_pred_vs_true(reported, true, fileio.join(out_dir, "pred_vs_true.png"), title)
    plots_lib.plot_bland_altman(reported, true, fileio.join(out_dir, "bland_altman.png"), title)
    names = ["pred_vs_true.png", "bland_altman.png"]
    if bounds is not None:
        plots_lib.plot_interval_width(bounds[..., 0], bounds[..., 1], reported, true,
                                      fileio.join(out_dir, "interval_width.png"), title)
        names.append("interval_width.png")
    return names


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
    """The reported head a ModelConfig names ("auto" resolved when the config can resolve it)."""
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
    """The reported head of the config exported beside the SavedModel, else "cobb_angles (exported)"."""
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
