"""The pipeline tests drive the side environment (.venv-tfx, `make pipeline-install`) by subprocess.

They fail (never skip) when it is missing: `make test` and CI build it first.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.fixtures import tiny_experiment

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIDE_ENV = os.path.join(REPO, ".venv-tfx")
SIDE_PYTHON = os.path.join(SIDE_ENV, "bin", "python")
PIPELINE = os.path.join(SIDE_ENV, "bin", "seg4reg-pipeline")
MAIN_SEG4REG = os.path.join(os.path.dirname(sys.executable), "seg4reg")
TINY_PIPELINE = tiny_experiment({"name": "tiny_pipeline", "train": {"learning_rate": 0.003},
                                 "pipeline": {"bless_smape": 90.0}})


def require_side_env() -> None:
    missing = [p for p in (SIDE_PYTHON, PIPELINE) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(f"the pipeline's side environment is missing ({', '.join(missing)}): run `make pipeline-install` "
                    "(`make test` and CI build it)", pytrace=False)


def side_env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    return env


def run_pipeline(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`seg4reg-pipeline ARGS` in the side environment (stdout + stderr captured)."""
    require_side_env()
    return subprocess.run([PIPELINE, *args], capture_output=True, text=True, timeout=timeout, env=side_env(),
                          cwd=REPO)


def versions(base: str) -> list[str]:
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


@pytest.fixture(scope="session")
def pipeline_data(tmp_path_factory):
    """A 10-image synthetic AASCE-format root and the tiny pipeline config."""
    from seg4reg_tf.data.synth import write_synthetic_dataset

    require_side_env()
    work = tmp_path_factory.mktemp("pipeline")
    root = str(work / "synth")
    write_synthetic_dataset(root, 10, 0, 0, height_range=(200, 260), progress=False)
    config = str(work / "tiny_pipeline.yaml")
    with open(config, "w") as f:
        yaml.safe_dump(TINY_PIPELINE, f, sort_keys=False)
    return {"work": str(work), "root": root, "config": config}


@pytest.fixture(scope="session")
def first_run(pipeline_data):
    """The pipeline run once on the synthetic root: pushes version 1 (shared by the e2e tests)."""
    work = pipeline_data["work"]
    proot, base = os.path.join(work, "proot"), os.path.join(work, "serving", "seg4reg")
    res = run_pipeline("run", "--data", pipeline_data["root"], "--config", pipeline_data["config"],
                       "--pipeline-root", proot, "--serving-base", base, "--serve-command", MAIN_SEG4REG)
    return {**pipeline_data, "proot": proot, "base": base, "result": res}
