"""Issue 20 (8): the container image of the compiled Vertex / Kubeflow spec. It cannot be built here; these
check that pipelines/Dockerfile, `make pipeline-image` and `seg4reg-pipeline compile` agree on it (the
compiled spec itself: test_pipeline.py::test_compiled_spec_runs_the_image_and_gives_the_trainer_gpus)."""
from __future__ import annotations

import os
import re
import subprocess

from tests.pipelines.conftest import REPO

PIPELINES = os.path.join(REPO, "pipelines")


def package_constant(name: str) -> str:
    """A string constant of seg4reg_pipeline/__init__.py (the side environment's package, read as text)."""
    text = open(os.path.join(PIPELINES, "seg4reg_pipeline", "__init__.py")).read()
    m = re.search(rf'^{name} = "([^"]+)"$', text, re.M)
    assert m, f"seg4reg_pipeline.{name}: no string constant"
    return m.group(1)


def test_make_builds_the_dockerfile_under_the_image_name_compile_defaults_to():
    image = package_constant("IMAGE")
    assert re.fullmatch(r"[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+", image), image  # a pinned tag
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under `make test`
    res = subprocess.run(["make", "--no-print-directory", "-n", "pipeline-image"], capture_output=True, text=True,
                         cwd=REPO, timeout=60, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"docker build -f pipelines/Dockerfile -t {image} ."
    cli = open(os.path.join(PIPELINES, "seg4reg_pipeline", "cli.py")).read()
    assert re.search(r'"--image", default=IMAGE\b', cli)  # compile's default is the same constant


def test_dockerfile_installs_the_side_environment_where_the_spec_expects_it():
    docker = open(os.path.join(PIPELINES, "Dockerfile")).read()
    lines = [ln.strip() for ln in docker.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines[0].startswith("FROM python:3.10")  # the side environment's Python (TFX 1.16)
    assert f"WORKDIR {package_constant('IMAGE_WORKDIR')}" in lines
    assert package_constant("IMAGE_SCHEMA_FILE") == package_constant("IMAGE_WORKDIR") + "/pipelines/schema/schema.pbtxt"
    # the pins `make pipeline-install` uses
    assert any("pip install -r pipelines/requirements.txt" in ln for ln in lines)
    assert "-r pipelines/requirements.txt" in open(os.path.join(REPO, "Makefile")).read()
    for copied in ("COPY seg4reg_tf seg4reg_tf", "COPY configs configs", "COPY pipelines pipelines"):
        assert copied in lines, copied
    assert any(re.search(r"pip install --no-deps \. \./pipelines", ln) for ln in lines)
    # GPU builds get TensorFlow's CUDA libraries at the pinned TF version
    tf_pin = re.search(r"^tensorflow==(\S+)$", open(os.path.join(PIPELINES, "requirements.txt")).read(), re.M).group(1)
    assert f'"tensorflow[$TF_EXTRA]=={tf_pin}"' in docker and "ARG TF_EXTRA=and-cuda" in lines
    ignore = [ln.strip() for ln in open(os.path.join(PIPELINES, "Dockerfile.dockerignore"))
              if ln.strip() and not ln.startswith("#")]  # the build context is the repository root: not .venv
    assert ignore[0] == "*" and {"!seg4reg_tf", "!pipelines", "!setup.py", "!configs"} <= set(ignore)
