"""The TFX pipeline end to end on a tiny synthetic set, in the side environment (.venv-tfx), with the
pushed SavedModel checked in this (main, TF 2.21) environment."""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import yaml

from tests.fixtures import TINY_SIZE, check_signatures
from tests.pipelines.conftest import (
    MAIN_SEG4REG,
    REPO,
    SIDE_PYTHON,
    TINY_PIPELINE,
    require_side_env,
    run_pipeline,
    side_env,
    versions,
)

ALL_NODES = ("FileBasedExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "ValidationGate",
             "Trainer", "latest_blessed_model_resolver", "Seg4RegEvaluator", "LoadCheck", "ServingPusher")

pytestmark = pytest.mark.slow  # drives the TFX pipeline in .venv-tfx by subprocess


def node_states(stderr: str) -> dict[str, str]:
    line = next((ln for ln in stderr.splitlines() if ln.startswith("components: ")), None)
    assert line is not None, f"no components summary in the output:\n{stderr[-3000:]}"
    return dict(item.rsplit(" ", 1) for item in line[len("components: "):].split(", "))


def lineage(run: dict) -> dict:
    res = run_pipeline("lineage", "--pipeline-root", run["proot"], "--serving-base", run["base"], "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def explain(res: subprocess.CompletedProcess) -> str:
    return f"exit {res.returncode}\n--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-6000:]}"


def test_pipeline_pushes_a_blessed_model(first_run):
    res = first_run["result"]
    assert res.returncode == 0, explain(res)
    base = first_run["base"]
    assert f"pushed: {os.path.join(base, '1')} (pushed)" in res.stdout
    assert versions(base) == ["1"]  # no staging leftovers beside the version
    assert os.path.isfile(os.path.join(base, "1", "saved_model.pb"))
    assert os.path.isfile(os.path.join(base, "1", "assets.extra", "tf_serving_warmup_requests"))
    # the TF 2.16 export keeps the signature contract (light encoder: attention at stride 8)
    check_signatures(os.path.join(base, "1"), TINY_SIZE, attention_size=(TINY_SIZE[0] // 8, TINY_SIZE[1] // 8))
    assert node_states(res.stderr) == {n: "COMPLETE" for n in ALL_NODES}
    for line in ("FileBasedExampleGen: finished", "ValidationGate: no anomalies", "Evaluator: SMAPE",
                 "LoadCheck: loaded in", "Pusher: pushed to"):
        assert line in res.stderr, line
    # the Trainer wrote its TensorBoard logs into the ModelRun artifact
    assert glob.glob(os.path.join(first_run["proot"], "Trainer", "model_run", "*", "tensorboard", "*"))


def test_example_gen_uses_the_fixed_split(first_run):
    import tensorflow as tf

    from seg4reg_tf.data import aasce

    assert first_run["result"].returncode == 0
    _, val = aasce.train_val_split(aasce.load_split(first_run["root"], "training", progress=False))
    split_names = {}
    for split in ("train", "eval"):
        files = glob.glob(os.path.join(first_run["proot"], "FileBasedExampleGen", "examples", "*", f"Split-{split}",
                                       "*"))
        assert files, split
        names = []
        for raw in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            ex = tf.train.Example.FromString(raw.numpy())
            names.append(ex.features.feature["image/filename"].bytes_list.value[0].decode())
        split_names[split] = sorted(names)
    assert split_names["eval"] == sorted(r.filename for r in val)
    assert len(split_names["train"]) == 8 and not set(split_names["train"]) & set(split_names["eval"])


def _start_server(base: str):
    proc = subprocess.Popen([MAIN_SEG4REG, "serve", "--model-base-path", base, "--port", "0", "--rest_api_port", "0",
                             "--poll-seconds", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    port, loaded, deadline, lines = None, False, time.monotonic() + 240, []
    while time.monotonic() < deadline:  # the first scan loads the model before gRPC reports its port
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"gRPC PredictionService/ModelService on [^\s]+:(\d+)", line)
        port = int(m.group(1)) if m else port
        loaded = loaded or "loaded model seg4reg version 1" in line
        if loaded and port is not None:
            return proc, port
        if "failed to load model" in line:
            break
    proc.kill()
    raise AssertionError("seg4reg serve did not load the pushed model:\n" + "".join(lines))


def test_pushed_model_serves_in_the_main_environment(first_run):
    from seg4reg_tf.client.client import PredictClient

    assert first_run["result"].returncode == 0
    image = sorted(glob.glob(os.path.join(first_run["root"], "data", "training", "*.jpg")))[0]
    proc, port = _start_server(first_run["base"])  # main env (TF 2.21) serving the TF 2.16 export
    try:
        with PredictClient(f"127.0.0.1:{port}") as client:
            with open(image, "rb") as f:
                out = client.predict({"image_bytes": [f.read()]})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert out["cobb_angles"].shape == (1, 3) and np.all(np.isfinite(out["cobb_angles"]))
    assert out["vertebra_labels"].shape == (1, 64, 32)


def test_main_environment_evaluates_the_pushed_model_as_the_pipeline_did(first_run, tmp_path):
    assert first_run["result"].returncode == 0
    res = subprocess.run([MAIN_SEG4REG, "evaluate", "--model", first_run["base"], "--data", first_run["root"],
                          "--split", "training", "--val", "--out", str(tmp_path), "--no-plots"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    info = lineage(first_run)
    assert report["n_images"] == info["evaluation"]["n_images"] == 2
    assert report["smape"] == pytest.approx(info["evaluation"]["smape"], abs=1e-3)  # TF 2.21 vs TF 2.16


def test_lineage_names_data_schema_config_metrics_and_blessing(first_run):
    assert first_run["result"].returncode == 0
    info = lineage(first_run)
    assert info["version"] == 1 and info["destination"] == os.path.join(first_run["base"], "1")
    assert info["data"]["input_base"] == first_run["root"]
    assert info["schema"]["schema_file"] == os.path.join(REPO, "pipelines", "schema", "schema.pbtxt")
    assert info["config"]["path"] == first_run["config"] and "tiny_pipeline" in info["config"]["resolved"]
    assert info["blessing"]["blessed"] == 1 and info["infra_blessing"]["blessed"] == 1
    assert 0 <= info["evaluation"]["smape"] <= 90
    assert {v["state"] for v in info["executions"].values()} == {"COMPLETE"}
    text = run_pipeline("lineage", "--pipeline-root", first_run["proot"], "--serving-base", first_run["base"])
    assert text.returncode == 0 and "blessing:   BLESSED" in text.stdout and first_run["root"] in text.stdout


def test_rerun_reuses_cached_outputs_and_pushes_nothing_new(first_run):
    assert first_run["result"].returncode == 0
    res = run_pipeline("run", "--data", first_run["root"], "--config", first_run["config"],
                       "--pipeline-root", first_run["proot"], "--serving-base", first_run["base"],
                       "--serve-command", MAIN_SEG4REG)
    assert res.returncode == 0, explain(res)
    states = node_states(res.stderr)
    for node in ("FileBasedExampleGen", "StatisticsGen", "ExampleValidator", "ValidationGate", "Trainer"):
        assert states[node] == "CACHED", states
    assert "already pushed as version 1" in res.stdout
    assert versions(first_run["base"]) == ["1"]


def test_worse_candidate_is_not_blessed_and_not_pushed(first_run):
    assert first_run["result"].returncode == 0
    # angle_scale 1 caps every predicted angle at 1 degree: far worse than version 1, yet under the
    # absolute threshold of 100, so only the comparison with the latest blessed model refuses it.
    res = run_pipeline("run", "--data", first_run["root"], "--config", first_run["config"],
                       "--pipeline-root", first_run["proot"], "--serving-base", first_run["base"],
                       "--serve-command", MAIN_SEG4REG, "--bless-smape", "100",
                       "--set", "model.angle_scale=1.0", "model.angle_prior=null", "train.epochs=1")
    assert res.returncode == 4, explain(res)
    assert "not blessed" in res.stderr and "regresses from the latest blessed model" in res.stderr
    assert "nothing pushed" in res.stderr
    assert node_states(res.stderr)["Trainer"] == "COMPLETE"
    assert versions(first_run["base"]) == ["1"]
    assert lineage(first_run)["version"] == 1


def test_corrupted_angles_stop_the_pipeline_at_validation(pipeline_data, tmp_path):
    root = str(tmp_path / "corrupt")
    shutil.copytree(pipeline_data["root"], root)
    path = os.path.join(root, "labels", "training", "angles.csv")
    rows = open(path).read().splitlines()
    rows[2] = "400.0," + rows[2].split(",", 1)[1]  # a PT angle out of range (train split)
    open(path, "w").write("\n".join(rows) + "\n")
    base = str(tmp_path / "serving")
    res = run_pipeline("run", "--data", root, "--config", pipeline_data["config"], "--pipeline-root",
                       str(tmp_path / "proot"), "--serving-base", base, "--serve-command", MAIN_SEG4REG)
    assert res.returncode == 3, explain(res)
    assert "stopped before training: data validation failed" in res.stderr
    assert re.search(r"split 'train': feature 'angles': .*FLOAT_TYPE_BIG_FLOAT", res.stderr), res.stderr[-3000:]
    states = node_states(res.stderr)
    assert states["ValidationGate"] == "FAILED" and "Trainer" not in states
    assert versions(base) == []


def test_malformed_tfrecords_stop_the_pipeline_at_validation(pipeline_data, tmp_path):
    import tensorflow as tf

    shards = str(tmp_path / "shards")
    res = subprocess.run([MAIN_SEG4REG, "data", "convert", pipeline_data["root"], shards, "--shards", "2"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    path = os.path.join(shards, "training-00000-of-00002.tfrecord")
    records = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    del records[0].features.feature["landmarks"].float_list.value[-2:]  # 134 values, not 136 (row 0: train)
    del records[2].features.feature["angles"]  # a missing field (row 4: eval)
    with tf.io.TFRecordWriter(path) as w:
        for ex in records:
            w.write(ex.SerializeToString())
    base = str(tmp_path / "serving")
    res = run_pipeline("run", "--data", shards, "--config", pipeline_data["config"], "--pipeline-root",
                       str(tmp_path / "proot"), "--serving-base", base, "--serve-command", MAIN_SEG4REG)
    assert res.returncode == 3, explain(res)
    assert re.search(r"split 'train': feature 'landmarks': .*FEATURE_TYPE_LOW_NUMBER_VALUES", res.stderr), \
        res.stderr[-3000:]
    assert re.search(r"split 'eval': feature 'angles': ", res.stderr), res.stderr[-3000:]
    assert "Trainer" not in node_states(res.stderr) and versions(base) == []


def test_kubeflow_v2_compile(pipeline_data, tmp_path):
    out = str(tmp_path / "seg4reg_pipeline.json")
    res = run_pipeline("compile", "--data", "gs://bucket/aasce", "--source-format", "aasce", "--config",
                       pipeline_data["config"], "--pipeline-root", "gs://bucket/root", "--serving-base",
                       "gs://bucket/serving/seg4reg", "--image", "example.com/seg4reg-pipeline:1", "--out", out)
    assert res.returncode == 0, explain(res)
    spec = json.load(open(out))
    pipeline_spec = spec.get("pipelineSpec", spec)
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    for node in ALL_NODES:
        assert any(name.startswith(node) for name in tasks), (node, sorted(tasks))
    text = json.dumps(spec)
    assert "seg4reg_pipeline.trainer.run_fn" in text and "example.com/seg4reg-pipeline:1" in text
    assert "gs://bucket/aasce" in text and "gs://bucket/root" in text
    assert pipeline_spec["pipelineInfo"]["name"] == "seg4reg"


def test_compiled_spec_runs_the_image_and_gives_the_trainer_gpus(pipeline_data, tmp_path):
    """Without --image every component runs the image pipelines/Dockerfile builds (`make pipeline-image`);
    --gpus/--gpu-type/--cpus/--memory become the Trainer's container resources, and only the Trainer's."""
    from tests.pipelines.test_pipeline_image import package_constant

    image = package_constant("IMAGE")
    out = str(tmp_path / "spec.json")
    res = run_pipeline("compile", "--data", "gs://bucket/aasce", "--source-format", "aasce", "--config",
                       pipeline_data["config"], "--pipeline-root", "gs://bucket/root", "--serving-base",
                       "gs://bucket/serving/seg4reg", "--out", out, "--gpus", "2", "--gpu-type", "NVIDIA_L4",
                       "--cpus", "8", "--memory", "30", "--set", "train.strategy=mirrored")
    assert res.returncode == 0, explain(res)
    assert "warning" not in res.stderr  # mirrored uses both GPUs
    spec = json.load(open(out))
    executors = spec.get("pipelineSpec", spec)["deploymentSpec"]["executors"]
    containers = {name: e["container"] for name, e in executors.items() if "container" in e}
    assert {c["image"] for c in containers.values()} == {image}
    trainer = [c for name, c in containers.items() if name.startswith("Trainer")]
    assert len(trainer) == 1 and trainer[0]["resources"] == {
        "accelerator": {"type": "NVIDIA_L4", "count": "2"}, "cpuLimit": 8.0, "memoryLimit": 30.0}
    assert all("resources" not in c for name, c in containers.items() if not name.startswith("Trainer"))
    assert package_constant("IMAGE_SCHEMA_FILE") in json.dumps(spec)  # the schema inside the image
    # one GPU by default type; more GPUs than the config's strategy uses is said; bad counts are usage errors
    res = run_pipeline("compile", "--data", "gs://b/d", "--source-format", "aasce", "--config", pipeline_data["config"],
                       "--pipeline-root", "gs://b/r", "--serving-base", "gs://b/s", "--out", out, "--gpus", "4")
    assert res.returncode == 0 and "train.strategy is 'default'" in res.stderr, explain(res)
    assert '"type": "NVIDIA_TESLA_T4"' in json.dumps(json.load(open(out)))
    for bad, msg in ((["--gpus", "-1"], "--gpus"), (["--gpu-type", "NVIDIA_L4"], "--gpu-type"),
                     (["--memory", "0"], "--memory")):
        res = run_pipeline("compile", "--data", "gs://b/d", "--source-format", "aasce", "--config",
                           pipeline_data["config"], "--pipeline-root", "gs://b/r", "--serving-base", "gs://b/s",
                           "--out", out, *bad)
        assert res.returncode == 2 and msg in res.stderr, explain(res)


def test_side_environment_helpers():
    """Fixed split, blessing rule and atomic push, run in the side environment."""
    require_side_env()
    script = os.path.join(os.path.dirname(__file__), "side_checks.py")
    res = subprocess.run([SIDE_PYTHON, script], capture_output=True, text=True, timeout=300, env=side_env(), cwd=REPO)
    assert res.returncode == 0 and "side checks passed" in res.stdout, explain(res)


def test_missing_threshold_is_a_usage_error(pipeline_data, tmp_path):
    config = tmp_path / "no_threshold.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in TINY_PIPELINE.items() if k != "pipeline"}))
    res = run_pipeline("run", "--data", pipeline_data["root"], "--config", str(config), "--pipeline-root",
                       str(tmp_path / "proot"), "--serving-base", str(tmp_path / "serving"))
    assert res.returncode == 2 and "--bless-smape" in res.stderr, explain(res)
    assert not os.path.exists(tmp_path / "serving")
