"""MirroredStrategy on 2 logical CPUs with model.fit, and the 2-worker MultiWorkerMirroredStrategy loop."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from seg4reg_tf.training.callbacks import read_history
from seg4reg_tf.training.strategies import is_chief

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _summary(out: str) -> dict:
    line = [ln for ln in out.splitlines() if ln.startswith("SUMMARY ")]
    assert line, out[-3000:]
    return json.loads(line[-1][len("SUMMARY "):])


@pytest.mark.slow
def test_mirrored_two_logical_cpus_fit(tmp_path, tiny_data):
    run = tmp_path / "run"
    p = subprocess.run([sys.executable, os.path.join(HERE, "_worker.py"), "mirrored", tiny_data, str(run), "2"],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    s = _summary(p.stdout)
    assert (s["replicas"], s["global_batch"], s["epochs_run"]) == (2, 4, 1)
    assert os.path.isfile(run / "model.keras") and len(read_history(str(run / "history.csv"))) == 1


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multiworker_two_workers_custom_loop(tmp_path, tiny_data):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        run = tmp_path / ("run" if i == 0 else "run_worker1")  # a private dir proves worker 1 writes nothing
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "_worker.py"), "multiworker", tiny_data,
                                       str(run)], env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]
        s = _summary(out)
        assert (s["replicas"], s["global_batch"], s["epochs_run"], s["strategy"]) == (2, 4, 1, "multiworker")
    chief = tmp_path / "run"
    for name in ("model.keras", "last.keras", "history.csv", "config.yaml", "train_summary.json"):
        assert os.path.exists(chief / name), name
    rows = read_history(str(chief / "history.csv"))
    assert len(rows) == 1 and rows[0]["val_smape"] > 0 and rows[0]["loss"] > 0
    assert not os.path.exists(tmp_path / "run_worker1" / "model.keras")
    assert not os.path.exists(chief / "backup")


def test_is_chief_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief()
    cl = {"worker": ["a:1", "b:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cl, "task": {"type": "worker", "index": 0}}))
    assert is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cl, "task": {"type": "worker", "index": 1}}))
    assert not is_chief()
    cl = {"chief": ["c:0"], "worker": ["a:1"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cl, "task": {"type": "worker", "index": 0}}))
    assert not is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cl, "task": {"type": "chief", "index": 0}}))
    assert is_chief()
