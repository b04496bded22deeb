"""The custom components: ValidationGate, Seg4RegEvaluator, LoadCheck and ServingPusher.

Each writes standard TFX artifacts (Schema, ModelEvaluation + ModelBlessing, InfraBlessing,
PushedModel) with the custom properties TFX's own components use (`blessed`, `current_model_id`,
`pushed`, `pushed_destination`, `pushed_version`), so `LatestBlessedModelStrategy` and lineage
queries work on them as on TFMA's Evaluator and TFX's Pusher. Artifact URIs and the serving base may be
on any TensorFlow filesystem (gs:// on Vertex): files go through `seg4reg_tf.fileio` (tf.io.gfile).
"""

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from tfx import v1 as tfx

log = logging.getLogger("seg4reg_pipeline")

A = tfx.types.standard_artifacts
InputArtifact, OutputArtifact, Parameter = (tfx.dsl.components.InputArtifact, tfx.dsl.components.OutputArtifact,
                                            tfx.dsl.components.Parameter)
SPLITS = ("train", "eval")
SERVING_DIR = "Format-Serving"  # where the Trainer writes the SavedModel inside a Model artifact


class DataValidationError(RuntimeError):
    """The examples violate the curated schema (the message names each anomaly)."""


def serving_model_dir(model) -> str:
    """The SavedModel directory of a Model artifact."""
    return os.path.join(model.uri, SERVING_DIR)


def _write_marker(uri: str, name: str) -> None:
    from seg4reg_tf import fileio

    fileio.write_atomic(os.path.join(uri, name), b"")


# ----------------------------------------------------------------------------------------- validation
def describe_anomalies(anomalies_uri: str, split: str) -> list[str]:
    """One line per anomaly in `anomalies_uri/Split-<split>/SchemaDiff.pb` (empty when clean)."""
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    path = os.path.join(anomalies_uri, f"Split-{split}", "SchemaDiff.pb")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path}: missing (ExampleValidator output for split {split!r})")
    anomalies = anomalies_pb2.Anomalies()
    anomalies.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = "; ".join(f"{r.description} [{anomalies_pb2.AnomalyInfo.Type.Name(r.type)}]" for r in info.reason)
        lines.append(f"split {split!r}: feature {feature!r}: {info.short_description}: {reasons or info.description}")
    if anomalies.HasField("dataset_anomaly_info") and anomalies.dataset_anomaly_info.reason:
        info = anomalies.dataset_anomaly_info
        lines.append(f"split {split!r}: dataset: {info.short_description}: {info.description}")
    return lines


def split_sizes(statistics_uri: str) -> dict[str, int]:
    """{split: num_examples} from StatisticsGen's FeatureStats.pb files."""
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import statistics_pb2

    out = {}
    for split in SPLITS:
        path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        stats.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
        out[split] = int(sum(d.num_examples for d in stats.datasets))
    return out


@tfx.dsl.components.component
def ValidationGate(statistics: InputArtifact[A.ExampleStatistics], anomalies: InputArtifact[A.ExampleAnomalies],
                   schema: InputArtifact[A.Schema], validated_schema: OutputArtifact[A.Schema]) -> None:
    """Stops the pipeline before training when ExampleValidator found anomalies or a split is empty;
    otherwise passes the curated schema on to the Trainer (`validated_schema`)."""
    import tensorflow as tf

    problems = []
    for split in SPLITS:
        problems += describe_anomalies(anomalies.uri, split)
    for split, n in split_sizes(statistics.uri).items():
        if n == 0:
            problems.append(f"split {split!r}: no examples (the fixed split needs at least 5 images)")
    if problems:
        raise DataValidationError("data validation failed against the curated schema:\n  " + "\n  ".join(problems))
    for name in tf.io.gfile.listdir(schema.uri):
        tf.io.gfile.copy(os.path.join(schema.uri, name), os.path.join(validated_schema.uri, name), overwrite=True)
    log.info("ValidationGate: no anomalies; examples conform to the curated schema")


# ----------------------------------------------------------------------------------------- evaluation
def _eval_records(examples) -> list:
    """The eval split's examples as records carrying their image bytes (`seg4reg_tf.data.tfrecords.read_records`)."""
    from seg4reg_tf.data.tfrecords import read_records

    return read_records([os.path.join(examples.uri, "Split-eval", "*")], "examples (split 'eval')")


def _evaluate(model_dir: str, records, out_dir: str, batch_size: int) -> dict:
    from seg4reg_tf.evaluation.evaluate import evaluate_saved_model

    return evaluate_saved_model(model_dir, records, out_dir, batch_size=batch_size, make_plots=True)


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def bless_decision(smape: float, threshold: float, baseline_smape: float | None, tolerance: float) -> list[str]:
    """Reasons not to bless (empty = blessed): SMAPE over the absolute threshold, or worse than the baseline."""
    reasons = []
    if not smape <= threshold:
        reasons.append(f"SMAPE {smape:.3f} is above the absolute threshold {threshold:g}")
    if baseline_smape is not None and not smape <= baseline_smape + tolerance:
        reasons.append(f"SMAPE {smape:.3f} regresses from the latest blessed model's {baseline_smape:.3f} "
                       f"(tolerance {tolerance:g})")
    return reasons


@tfx.dsl.components.component
def Seg4RegEvaluator(examples: InputArtifact[A.Examples], model: InputArtifact[A.Model],
                     evaluation: OutputArtifact[A.ModelEvaluation], blessing: OutputArtifact[A.ModelBlessing],
                     bless_smape: Parameter[float], regression_tolerance: Parameter[float] = 0.0,
                     batch_size: Parameter[int] = 8, baseline_model: InputArtifact[A.Model] = None) -> None:
    """SMAPE, per-angle MAE and Dice of the candidate (and of the latest blessed model, on the same eval
    split) through `serving_default`; blesses when SMAPE <= bless_smape and <= baseline + tolerance."""
    from seg4reg_tf import fileio

    records = _eval_records(examples)
    report = _evaluate(serving_model_dir(model), records, os.path.join(evaluation.uri, "candidate"), batch_size)
    base_report = None
    if baseline_model is not None and baseline_model.id != model.id:
        base_report = _evaluate(serving_model_dir(baseline_model), records,
                                os.path.join(evaluation.uri, "baseline"), batch_size)
    smape = _num(report.get("smape"))
    base_smape = None if base_report is None else _num(base_report.get("smape"))
    reasons = bless_decision(smape, bless_smape, base_smape, regression_tolerance)
    blessed = not reasons
    metrics = {"smape": smape, "mae_pt": _num(report.get("mae_pt")), "mae_mt": _num(report.get("mae_mt")),
               "mae_tl": _num(report.get("mae_tl")), "dice_mean": _num(report.get("dice_mean")),
               "n_images": int(report.get("n_images", len(records)))}
    for art in (evaluation, blessing):
        for k, v in metrics.items():
            art.set_float_custom_property(k, v) if isinstance(v, float) else art.set_int_custom_property(k, v)
    summary = {"metrics": metrics, "head": report.get("head"), "bless_smape": bless_smape,
               "regression_tolerance": regression_tolerance, "blessed": blessed, "reasons": reasons,
               "baseline_model_id": None if base_report is None else baseline_model.id, "baseline_smape": base_smape}
    fileio.write_atomic(os.path.join(evaluation.uri, "summary.json"), json.dumps(summary, indent=2, default=float))
    blessing.set_int_custom_property("blessed", int(blessed))
    blessing.set_int_custom_property("current_model_id", model.id)
    blessing.set_string_custom_property("current_model", model.uri)
    if base_report is not None:
        blessing.set_int_custom_property("baseline_model_id", baseline_model.id)
        blessing.set_string_custom_property("baseline_model", baseline_model.uri)
        blessing.set_float_custom_property("baseline_smape", base_smape)
    blessing.set_string_custom_property("reason", "; ".join(reasons) if reasons else "blessed")
    _write_marker(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED")
    if base_smape is not None:
        base_txt = f"latest blessed model #{baseline_model.id}: SMAPE {base_smape:.3f}"
    else:
        base_txt = "no other blessed model to compare with"
    log.info("Evaluator: SMAPE %.3f, MAE PT/MT/TL %.2f/%.2f/%.2f deg, Dice %.3f on %d eval images (%s): %s",
             smape, metrics["mae_pt"], metrics["mae_mt"], metrics["mae_tl"], metrics["dice_mean"],
             metrics["n_images"], base_txt, "BLESSED" if blessed else "NOT blessed: " + "; ".join(reasons))


# ----------------------------------------------------------------------------------------- load check
def default_serve_command() -> str:
    """`seg4reg` of the environment running the pipeline."""
    return os.path.join(os.path.dirname(sys.executable), "seg4reg")


def _send_warmup(port: int, model_dir: str, model_name: str) -> int:
    """Send the SavedModel's warmup requests to 127.0.0.1:port; returns how many answered sensibly."""
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from seg4reg_tf.export.layout import WARMUP_RELPATH
    from seg4reg_tf.export.warmup_records import read_warmup_records

    logs = read_warmup_records(os.path.join(model_dir, WARMUP_RELPATH))
    if not logs:
        raise RuntimeError(f"{os.path.join(model_dir, WARMUP_RELPATH)}: no warmup requests")
    opts = [("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=opts) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i, entry in enumerate(logs):
            request = entry.predict_log.request
            request.model_spec.name = model_name
            n = int(tf.make_ndarray(request.inputs["image_bytes"]).shape[0])
            response = stub.Predict(request, timeout=120)
            if "cobb_angles" not in response.outputs:
                raise RuntimeError(f"warmup request {i}: no 'cobb_angles' in the response "
                                   f"({sorted(response.outputs)})")
            angles = tf.make_ndarray(response.outputs["cobb_angles"])
            if angles.shape != (n, 3) or not np.all(np.isfinite(angles)):
                raise RuntimeError(f"warmup request {i}: cobb_angles {angles.shape} (expected ({n}, 3), finite): "
                                   f"{angles.tolist()}")
    return len(logs)


def load_check(model_dir: str, serve_command: str, model_name: str, timeout_s: float, log_path: str) -> str:
    """Serve `model_dir` as version 1 with `serve_command serve` on 127.0.0.1 (any free port), wait for it to
    load (the server replays the warmup requests itself), send the warmup requests, stop the server.

    Returns a one-line success note; raises RuntimeError with the reason otherwise.
    """
    from seg4reg_tf import fileio

    base = tempfile.mkdtemp(prefix="seg4reg-loadcheck-")  # a local base path for the local server
    if fileio.is_url(model_dir):
        fileio.copy_tree(model_dir, os.path.join(base, "1"))
    else:
        os.symlink(os.path.abspath(model_dir), os.path.join(base, "1"))
    cmd = [serve_command, "serve", "--model-base-path", base, "--model-name", model_name, "--host", "127.0.0.1",
           "--port", "0", "--rest_api_port", "0", "--poll-seconds", "0.5"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    except OSError as err:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"cannot start {' '.join(cmd)}: {err}") from err
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        port, state, deadline = None, None, time.monotonic() + timeout_s
        while time.monotonic() < deadline and state is None:
            text = "".join(lines)
            m = re.search(r"gRPC PredictionService/ModelService on [^\s]+:(\d+)", text)
            port = int(m.group(1)) if m else None
            if f"loaded model {model_name} version 1" in text and port is not None:  # loads before gRPC starts
                state = "loaded"
            elif "failed to load model" in text:
                state = "failed: " + next(ln.strip() for ln in text.splitlines() if "failed to load model" in ln)
            elif proc.poll() is not None:
                state = f"failed: the server exited with status {proc.returncode}"
            time.sleep(0.2)
        if state is None:
            raise RuntimeError(f"the model did not load within {timeout_s:g} s")
        if state != "loaded":
            raise RuntimeError(state[len("failed: "):])
        if port is None:
            raise RuntimeError("the server did not report its gRPC port")
        n = _send_warmup(port, model_dir, model_name)
        return f"loaded in `{serve_command} serve` and answered {n} warmup request(s)"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        fileio.write_atomic(log_path, " ".join(cmd) + "\n" + "".join(lines))
        shutil.rmtree(base, ignore_errors=True)


@tfx.dsl.components.component
def LoadCheck(model: InputArtifact[A.Model], blessing: InputArtifact[A.ModelBlessing],
              infra_blessing: OutputArtifact[A.InfraBlessing], serve_command: Parameter[str] = "",
              model_name: Parameter[str] = "seg4reg", timeout_s: Parameter[int] = 600) -> None:
    """InfraValidator's LOAD_AND_QUERY with `seg4reg serve` (TF Serving's protocol): a blessed candidate is
    loaded on 127.0.0.1 and sent its warmup requests. Writes INFRA_BLESSED or INFRA_NOT_BLESSED."""
    from seg4reg_tf import fileio

    fileio.makedirs(infra_blessing.uri)
    if blessing.get_int_custom_property("blessed") != 1:
        ok, note = False, "skipped: the model is not blessed"
    else:
        command = serve_command or default_serve_command()
        try:
            ok, note = True, load_check(serving_model_dir(model), command, model_name, timeout_s,
                                        os.path.join(infra_blessing.uri, "load_check.log"))
        except RuntimeError as err:
            ok, note = False, f"load check failed: {err}"
    infra_blessing.set_int_custom_property("blessed", int(ok))
    infra_blessing.set_string_custom_property("reason", note)
    _write_marker(infra_blessing.uri, "INFRA_BLESSED" if ok else "INFRA_NOT_BLESSED")
    log.info("LoadCheck: %s", note)


# ----------------------------------------------------------------------------------------- push
def tree_fingerprint(path: str) -> str:
    """sha256 over the relative paths and contents of every file under `path` (any filesystem)."""
    from seg4reg_tf import fileio

    h = hashlib.sha256()
    for rel in fileio.walk_files(path):
        h.update(rel.encode() + b"\0")
        with fileio.open(os.path.join(path, rel), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def numeric_versions(base: str) -> dict[int, str]:
    """{version: dir} of the complete (saved_model.pb) numeric version directories under `base`
    (`seg4reg_tf.export.layout.version_dirs`; {} when `base` does not exist)."""
    from seg4reg_tf import fileio
    from seg4reg_tf.export.layout import version_dirs

    return version_dirs(base) if fileio.isdir(base) else {}


def push(model_dir: str, base: str) -> tuple[int, bool]:
    """Copy `model_dir` to `base/N` (N = newest version + 1): a staged copy moved into place (one rename on a
    local disk; elsewhere file by file with saved_model.pb last, so TF Serving never loads a partial version).
    Returns (N, True); (K, False) when version K already holds exactly this model."""
    from seg4reg_tf import fileio
    from seg4reg_tf.export.layout import SAVED_MODEL_FILE

    fileio.makedirs(base)
    fingerprint = tree_fingerprint(model_dir)
    for version, path in sorted(numeric_versions(base).items()):
        if tree_fingerprint(path) == fingerprint:
            return version, False
    staging = fileio.mkdtemp(base, ".push-")  # same file system: a local rename is atomic
    try:
        staged = os.path.join(staging, "model")
        fileio.copy_tree(model_dir, staged)
        for _ in range(100):
            taken = [int(d) for d in fileio.listdir(base) if d.isdigit()]
            version = max(taken, default=0) + 1
            try:
                fileio.move_tree(staged, os.path.join(base, str(version)), last=(SAVED_MODEL_FILE,))
                return version, True
            except OSError:  # another pusher took that number first
                if not fileio.exists(os.path.join(base, str(version))):
                    raise
        raise RuntimeError(f"{base}: could not claim a new version number")
    finally:
        fileio.rmtree(staging, ignore_errors=True)


@tfx.dsl.components.component
def ServingPusher(model: InputArtifact[A.Model], model_blessing: InputArtifact[A.ModelBlessing],
                  infra_blessing: InputArtifact[A.InfraBlessing], pushed_model: OutputArtifact[A.PushedModel],
                  serving_base: Parameter[str]) -> None:
    """Pushes a blessed, load-checked model to the TF Serving base path as the next integer version."""
    reasons = []
    if model_blessing.get_int_custom_property("blessed") != 1:
        reasons.append("not blessed: " + model_blessing.get_string_custom_property("reason"))
    if infra_blessing.get_int_custom_property("blessed") != 1:
        reasons.append(infra_blessing.get_string_custom_property("reason"))
    if reasons:
        pushed_model.set_int_custom_property("pushed", 0)
        pushed_model.set_string_custom_property("reason", "; ".join(reasons))
        log.info("Pusher: nothing pushed (%s)", "; ".join(reasons))
        return
    version, new = push(serving_model_dir(model), serving_base)
    destination = os.path.join(serving_base, str(version))
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_string_custom_property("pushed_destination", destination)
    pushed_model.set_string_custom_property("pushed_version", str(version))
    pushed_model.set_int_custom_property("current_model_id", model.id)
    pushed_model.set_string_custom_property("reason", "pushed" if new else f"already pushed as version {version}")
    log.info("Pusher: %s %s", "pushed to" if new else "already serving as", destination)
