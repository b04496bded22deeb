"""`seg4reg predict`: JSON + overlay PNG per image (JPEG, PNG 8/16-bit, DICOM) from a SavedModel or a server."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from seg4reg_tf import fileio
from seg4reg_tf.client.dicom import is_dicom, read_dicom
from seg4reg_tf.client.overlay import render_overlay
from seg4reg_tf.export.layout import image_format
from seg4reg_tf.export.prediction import HEAD_OUTPUTS, Curve, Prediction, angle_text
from seg4reg_tf.geometry import ANGLE_NAMES, VERTEBRA_NAMES
from seg4reg_tf.geometry.curve_order import ORDER_TOLERANCE, curves_swapped

JSON_SCHEMA_VERSION = 4  # docs/architecture.md, "predict JSON"
# Keys of schema 3 and earlier -> the glossary's (docs/architecture.md); `read_result` reads both. Schema 4
# also added `curves_top_to_bottom`.
RENAMED_KEYS = {"segmentation_geometry": "fitted_vertebrae", "consistency": "heads_disagreement",
                "threshold": "heads_disagreement_threshold", "geometry_disagreement": "fitted_disagreement",
                "geometry_threshold": "fitted_disagreement_threshold"}
DEFAULT_DISAGREEMENT_THRESHOLD = 5.0
# The fitted vertebrae's angles are much noisier than the regression heads' (BENCHMARKS.md "Accuracy II":
# above 20 deg from the reported angles on 7 of 95 validation X-rays, their 90th percentile).
DEFAULT_FITTED_THRESHOLD = 20.0
SUMMARY_FIELDS = ["file", "status", "measurable", "reason", "PT", "MT", "TL", "PT_lower", "PT_upper", "MT_lower",
                  "MT_upper", "TL_lower", "TL_upper", "heads_disagreement",
                  "fitted_disagreement", "heads_disagree", "fitted_PT", "fitted_MT", "fitted_TL", "error"]


def read_result(source) -> dict:
    """A predict JSON (its text, or the parsed dict) in the current schema: the keys of schema 3 and earlier
    read under their new names (`RENAMED_KEYS`) with a DeprecationWarning (until the next release)."""
    result = json.loads(source) if isinstance(source, (str, bytes)) else dict(source)
    old = [k for k in RENAMED_KEYS if k in result]
    if old and result.get("schema_version", 1) < JSON_SCHEMA_VERSION:
        warnings.warn(f"predict JSON of schema {result.get('schema_version', 1)}: "
                      + ", ".join(f"{k!r} is read as {RENAMED_KEYS[k]!r}" for k in old)
                      + f" (renamed in schema {JSON_SCHEMA_VERSION})", DeprecationWarning, stacklevel=2)
        result = {RENAMED_KEYS.get(k, k): v for k, v in result.items()}
        result["schema_version"] = JSON_SCHEMA_VERSION
    return result


class BadInputError(ValueError):
    """An input file that is not a readable JPEG, PNG or DICOM image."""


@dataclasses.dataclass
class InputImage:
    """One input: the bytes sent to the model and what the outputs need.

    Attributes:
        name: file name as given (for messages, CSV); stem: output file stem.
        model_bytes: JPEG/PNG bytes for `image_bytes` (DICOM converted to a 16-bit PNG).
        display: [h, w] original grey pixels for the overlay.
        pixel_spacing_mm: (row, column) mm or None.
        kind: "jpeg", "png" or "dicom".
    """

    name: str
    stem: str
    model_bytes: bytes
    display: np.ndarray
    pixel_spacing_mm: tuple[float, float] | None
    kind: str


def load_input(path) -> InputImage:
    """Read a JPEG, PNG (8/16-bit) or DICOM file; BadInputError naming the file otherwise."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as err:
        raise BadInputError(f"{p.name}: cannot read ({err.strerror or type(err).__name__})") from None
    spacing = None
    if is_dicom(data) or p.suffix.lower() in (".dcm", ".dicom"):
        try:
            dcm = read_dicom(data, name=p.name)
        except ValueError as err:
            raise BadInputError(str(err)) from None
        data, spacing, kind = dcm.png_bytes, dcm.pixel_spacing_mm, "dicom"
    else:
        kind = image_format(data)
    if kind is None:
        raise BadInputError(f"{p.name}: not a JPEG, PNG or DICOM image (unrecognised header)")
    display = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if display is None:
        raise BadInputError(f"{p.name}: {kind.upper()} data could not be decoded (corrupt or truncated)")
    if display.ndim == 3:
        display = cv2.cvtColor(display[..., :3], cv2.COLOR_BGR2GRAY)
    return InputImage(p.name, p.stem, data, display, spacing, kind)


class LocalPredictor:
    """`serving_default` of a local SavedModel (a version dir, or the newest version of a base path)."""

    def __init__(self, path):
        import tensorflow as tf

        from seg4reg_tf.export.layout import latest_version_dir

        self.version_dir = latest_version_dir(path)
        self._tf = tf
        self._loaded = tf.saved_model.load(str(self.version_dir))
        self._fn = self._loaded.signatures["serving_default"]

    def predict(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        out = self._fn(image_bytes=self._tf.constant(list(images), dtype=self._tf.string))
        return {k: v.numpy() for k, v in out.items()}


class ServerPredictor:
    """A TF Serving (or the project's local) server through `client.client.PredictClient`."""

    def __init__(self, target: str, *, rest: bool = False, model_name: str = "seg4reg"):
        from seg4reg_tf.client.client import PredictClient

        self.client = PredictClient(target, rest=rest, model_name=model_name)

    def predict(self, images: Sequence[bytes]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.client.predict({"image_bytes": list(images)}).items()}


def _angles_dict(values) -> dict[str, float]:
    return {n: float(v) for n, v in zip(ANGLE_NAMES, np.asarray(values, np.float64).reshape(-1))}


def fitted_vertebrae_json(pred: Prediction) -> dict:
    """The fitted vertebrae for the JSON (`Prediction.fitted_vertebrae`: largest components,
    implausible fits rejected, a few missing vertebrae filled, curve ends at least two vertebrae apart)."""
    seg = pred.fitted_vertebrae()
    lm = seg.landmarks
    missing = [VERTEBRA_NAMES[v] for v in range(len(VERTEBRA_NAMES)) if not np.all(np.isfinite(lm[4 * v : 4 * v + 4]))]
    info = {"angles": None, "unit": "deg", "branch": None, "curves": None,
            "missing_vertebrae": missing, "interpolated_vertebrae": list(seg.interpolated),
            "rejected_vertebrae": seg.rejected, "failure": seg.reason or None}
    details = seg.details
    if details is not None:
        info.update(angles=_angles_dict(details.angles), branch=details.branch,
                    curves={n: Curve(n, float(a), int(u), int(lo)).to_json()
                            for n, a, (u, lo) in zip(ANGLE_NAMES, details.angles, details.end_vertebrae)})
    return info


def _write_all(out: str, files: dict[str, bytes]) -> bool:
    """Write every `OUT/name` atomically, all or none. On a full disk print where and how much, remove what
    was written of them and return False (the caller stops: later images would fail alike)."""
    written = []
    try:
        for name, data in files.items():
            fileio.write_atomic(fileio.join(out, name), data)
            written.append(name)
    except OSError as err:
        for name in written:
            fileio.remove(fileio.join(out, name), missing_ok=True)
        if not fileio.is_out_of_space(err):
            raise
        needed = sum(len(d) for d in files.values()) / 2**20
        print(f"predict: no space left on device while writing {fileio.join(out, name)} ({needed:.2f} MB "
              f"needed for {', '.join(files)}); stopped, nothing of it was left in {out}", file=sys.stderr)
        return False
    return True


def build_result(item: InputImage, outputs: dict[str, np.ndarray],
                 disagreement_threshold: float = DEFAULT_DISAGREEMENT_THRESHOLD,
                 fitted_threshold: float = DEFAULT_FITTED_THRESHOLD):
    """(JSON dict, overlay BGR image) for one image from the batch-of-one model outputs."""
    pred = Prediction.from_outputs(outputs)
    letterbox = pred.letterbox
    orig_h, orig_w = letterbox.original_size
    if item.display.shape[:2] != (orig_h, orig_w):
        raise ValueError(f"{item.name}: model reports original_size {(orig_h, orig_w)}, decoded image is "
                         f"{item.display.shape[:2]}")
    heads = {HEAD_OUTPUTS[name]: {**_angles_dict(a), "unit": "deg"} for name, a in pred.heads.items()}
    disagreement = pred.heads_disagreement
    disagreement = None if disagreement is None or not math.isfinite(disagreement) else disagreement

    labels_orig = attention_orig = fitted = None
    if pred.labels is not None:
        labels_orig = letterbox.mask_to_original(pred.labels)
        fitted = fitted_vertebrae_json(pred)
    if pred.attention is not None:
        attention_orig = letterbox.grid_to_original(pred.attention)

    score, reason = measurability(item, outputs)
    fitted_angles = (fitted or {}).get("angles")
    fitted_disagreement = None
    if fitted_angles:
        fitted_disagreement = float(np.mean([abs(fitted_angles[k] - v) for k, v in zip(ANGLE_NAMES, pred.angles)]))
    order = None
    if pred.reported_head == "fused":  # the mean of two heads, slot by slot (BENCHMARKS.md, "Which curve is which")
        order = bool(curves_swapped(pred.heads["geometry"], pred.heads["segmentation"], ORDER_TOLERANCE))
    disagree = [disagreement is not None and disagreement > disagreement_threshold,
                fitted_disagreement is not None and fitted_disagreement > fitted_threshold, bool(order)]
    result = {
        "schema_version": JSON_SCHEMA_VERSION,
        "file": item.name,
        "input_type": item.kind,
        "unit": "deg",
        "angles": _angles_dict(pred.angles),
        "intervals": None if pred.intervals is None else {
            n: [float(lo), float(hi)] if np.isfinite(lo) and np.isfinite(hi) else None
            for n, (lo, hi) in zip(ANGLE_NAMES, pred.intervals)},
        "reported_head": pred.reported_head,
        "curves": {c.name: c.to_json() for c in pred.curves} or None,
        "curves_top_to_bottom": [{"slot": c.name, **c.to_json()} for c in
                                 sorted(pred.curves, key=lambda c: (c.upper, c.lower)) if c.is_curve] or None,
        "vertebrae": None if pred.vertebrae is None else {
            "landmarks": np.round(pred.vertebrae, 2).tolist(), "not_found": pred.missing_vertebrae},
        "heads": heads,
        "fitted_vertebrae": fitted,
        "heads_disagreement": disagreement,
        "heads_disagreement_threshold": float(disagreement_threshold),
        "fitted_disagreement": fitted_disagreement,
        "fitted_disagreement_threshold": float(fitted_threshold),
        "curve_order_differs": order,
        "heads_disagree": None if disagreement is None and fitted_disagreement is None and order is None
        else any(disagree),
        "caution": _caution(disagreement, disagreement_threshold, fitted_disagreement, fitted_threshold,
                            pred.heads if order else None) or None,
        "measurable": bool(score >= 0.5),
        "measurable_score": round(score, 4),
        "reason": reason or None,
        "original_size": [orig_h, orig_w],
        "pixel_spacing_mm": list(item.pixel_spacing_mm) if item.pixel_spacing_mm else None,
    }

    title = [] if result["measurable"] else [f"NOT MEASURABLE: {reason}"]
    title.append("Cobb " + _angles_text(result) + " deg")
    if pred.curves:
        title.append("end vertebrae: " + "  ".join(f"{c.role} {c.end_vertebrae}" for c in pred.curves if c.is_curve)
                     + (f"  (not found: {' '.join(pred.missing_vertebrae)})" if pred.missing_vertebrae else ""))
        if any(c.lines_angle is not None for c in pred.curves):  # fused: the answer is not the drawn lines'
            title.append("lines drawn: the geometry head's end plates, whose angles are  "
                         + "  ".join(f"{c.role} {c.lines_angle:.1f}" for c in pred.curves if c.is_curve))
    else:
        title.append(f"end vertebrae: not given by the reported ({pred.reported_head}) head")
    if result["caution"]:
        title.append("CAUTION: " + result["caution"])
    overlay = render_overlay(item.display, labels_orig, attention_orig, pred.vertebrae, pred.curves, title,
                             outline=pred.vertebrae is not None)
    return result, overlay


def _caution(disagreement, disagreement_threshold, fitted_disagreement, fitted_threshold, swapped_heads=None) -> str:
    """Why the answer deserves a second look although the model measured the film ("" if it does not):
    the regression heads, or the vertebrae fitted to the segmentation, disagree with it past the
    thresholds; or (`swapped_heads`, the heads' angles) the fused heads put MT and TL the other way round.
    A caution, not a refusal: `measurable` stays the model's verdict, and the interval of a measurable film
    is given (it widens with the heads' disagreement where that predicts the error)."""
    parts = []
    if swapped_heads is not None:
        geo, seg = swapped_heads["geometry"], swapped_heads["segmentation"]
        parts.append(f"the geometry head (MT {geo[1]:.1f}, TL {geo[2]:.1f}) and the segmentation head "
                     f"(MT {seg[1]:.1f}, TL {seg[2]:.1f}) rank the two smaller curves the other way round: "
                     "which curve is which, and MT and TL, are uncertain")
    if disagreement is not None and disagreement > disagreement_threshold:
        parts.append(f"the regression heads differ by {disagreement:.1f} deg (> {disagreement_threshold:g})")
    if fitted_disagreement is not None and fitted_disagreement > fitted_threshold:
        parts.append(f"the vertebrae fitted to the segmentation give angles {fitted_disagreement:.1f} deg away "
                     f"(> {fitted_threshold:g})")
    return "; ".join(parts)


def _angles_text(result: dict) -> str:
    """"main 47.3 (43.1-52.0)  upper 20.1 (...)  lower ..." when the curves have roles, else by AASCE column;
    a curve the official algorithm found absent (role "none") reads "MT: no curve", not as an angle."""
    intervals = result.get("intervals") or {}
    curves = result.get("curves") or {}

    def one(name: str, angle: float) -> str:
        role = (curves.get(name) or {}).get("role")
        return f"{name}: no curve" if role == "none" else f"{role or name} {angle_text(angle, intervals.get(name))}"

    return "  ".join(one(k, v) for k, v in result["angles"].items())


def summary_line(name: str, result: dict) -> str:
    """One line of the table `predict` prints: angles with their intervals, end vertebrae, the verdict."""
    curves = result.get("curves") or {}
    ends = " ".join(f"{c['role'] or k} {c['end_vertebrae']}" for k, c in curves.items() if c["role"] != "none") or "-"
    verdict = "measurable" if result["measurable"] else f"NOT measurable: {result['reason']}"
    caution = f"  CAUTION: {result['caution']}" if result.get("caution") else ""
    return f"{name}  {_angles_text(result)} deg  ends {ends}  {verdict}{caution}"


def measurability(item: InputImage, outputs: dict[str, np.ndarray]) -> tuple[float, str]:
    """(score in (0, 1), reason or "") of the first image: the model's `measurable_score` /
    `measurable_reason` outputs, or `export.measurable.assess` here for a model exported without them."""
    if "measurable_score" in outputs and "measurable_reason" in outputs:
        score = float(np.asarray(outputs["measurable_score"]).reshape(-1)[0])
        reason = np.asarray(outputs["measurable_reason"]).reshape(-1)[0]
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    else:
        import tensorflow as tf

        from seg4reg_tf.export import measurable

        grey = item.display.astype(np.float32) / (65535.0 if item.display.dtype == np.uint16 else 255.0)
        stats = measurable.statistics_dict(tf.reshape(measurable.image_statistics(grey), [1, 2]))
        first = {k: np.asarray(v)[:1] for k, v in outputs.items()}
        verdict = measurable.assess(stats, first)
        score = float(verdict["measurable_score"].numpy()[0])
        reason = verdict["measurable_reason"].numpy()[0]
        reason = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    if not math.isfinite(score):
        return 0.0, reason or "the model's measurability score is not finite"
    return score, reason


def _unique_stem(stem: str, used: set[str], suffix: str) -> str:
    out = stem
    if out in used:
        out = f"{stem}_{suffix.lstrip('.')}" if suffix else f"{stem}_2"
        k = 2
        while out in used:
            out = f"{stem}_{k}"
            k += 1
    used.add(out)
    return out


def expand_inputs(paths: Iterable) -> tuple[list[Path], bool]:
    """Files to process (folders expanded to their non-hidden files, sorted) and whether a folder was given."""
    files, folder = [], False
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            folder = True
            files += sorted(c for c in p.iterdir() if c.is_file() and not c.name.startswith("."))
        else:
            files.append(p)
    return files, folder


def _summary_row(name: str, result: dict | None, error: str | None) -> dict:
    row = {k: "" for k in SUMMARY_FIELDS}
    row["file"] = name
    row["status"] = "ok" if result is not None else "error"
    row["error"] = error or ""
    if result is not None:
        for k, v in (result["angles"] or {}).items():
            row[k] = f"{v:.4f}"
        for k, span in (result["intervals"] or {}).items():
            if span is not None:
                row[f"{k}_lower"], row[f"{k}_upper"] = f"{span[0]:.4f}", f"{span[1]:.4f}"
        for k, v in ((result["fitted_vertebrae"] or {}).get("angles") or {}).items():
            row[f"fitted_{k}"] = f"{v:.4f}"
        for key in ("heads_disagreement", "fitted_disagreement"):
            row[key] = "" if result[key] is None else f"{result[key]:.4f}"
        row["heads_disagree"] = "" if result["heads_disagree"] is None else str(result["heads_disagree"]).lower()
        row["measurable"] = str(result["measurable"]).lower()
        row["reason"] = result["reason"] or ""
    return row


def run_predict(inputs: Sequence, out_dir, predictor, *,
                disagreement_threshold: float = DEFAULT_DISAGREEMENT_THRESHOLD,
                fitted_threshold: float = DEFAULT_FITTED_THRESHOLD,
                summary: bool | None = None, progress: bool = True) -> int:
    """Predict every input; write OUT/<stem>.json, OUT/<stem>_overlay.png (+ OUT/summary.csv).

    Bad files are reported on stderr by name and skipped. Returns 0 if all succeeded, else 1.
    """
    from tqdm import tqdm

    for key, value in (("disagreement_threshold", disagreement_threshold), ("fitted_threshold", fitted_threshold)):
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{key}: expected a non-negative number of degrees, got {value!r}")
    files, folder = expand_inputs(inputs)
    if not files:
        print("predict: no input files", file=sys.stderr)
        return 1
    out = fileio.absolute(out_dir)
    fileio.makedirs(out)
    rows, failed, used, lines = [], [], set(), []
    for path in tqdm(files, desc="predict", unit="img", disable=not progress or len(files) < 2):
        try:
            item = load_input(path)
            outputs = predictor.predict([item.model_bytes])
            result, overlay = build_result(item, outputs, disagreement_threshold, fitted_threshold)
            ok, png = cv2.imencode(".png", overlay)
            if not ok:
                raise ValueError(f"{path.name}: the overlay could not be encoded as PNG")
        except Exception as err:  # report by name, keep going
            msg = _error_message(err)
            tqdm.write(f"predict: skipped {path.name}: {msg}", file=sys.stderr)  # not under the progress bar
            failed.append(f"{path.name}: {msg}")
            rows.append(_summary_row(path.name, None, msg))
            continue
        stem = _unique_stem(item.stem, used, path.suffix)
        json_text = fileio.json_text(result)
        if not _write_all(out, {f"{stem}_overlay.png": png.tobytes(), f"{stem}.json": json_text.encode()}):
            return 1
        rows.append(_summary_row(path.name, result, None))
        lines.append(summary_line(path.name, result))
    for line in lines:  # after the progress bar: the answers, not only files
        print(line)
    if summary if summary is not None else (folder or len(files) > 1):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        if not _write_all(out, {"summary.csv": buf.getvalue().encode()}):
            return 1
    if failed:
        print(f"predict: {len(failed)} of {len(files)} file(s) failed:\n" + "\n".join(f"  {f}" for f in failed),
              file=sys.stderr)
        return 1
    return 0


def _error_message(err: Exception) -> str:
    if isinstance(err, BadInputError):
        msg = str(err).split(": ", 1)[-1]
    else:
        msg = getattr(err, "message", None) or str(err)
        # TF errors: keep the assertion text, drop the graph trace.
        for line in msg.splitlines():
            if "assertion failed" in line or "Invalid" in line:
                msg = line.strip()
                break
        msg = f"{type(err).__name__}: {msg.splitlines()[0] if msg else ''}"
    return msg[:500]
