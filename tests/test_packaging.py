"""A non-editable install (wheel) ships the configs: `seg4reg train --config NAME` works from anywhere."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.slow  # builds and installs a wheel (pip subprocesses)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "configs", "*.yaml")))


def _pip(*args: str, cwd: str) -> None:
    """pip offline (no index, no dependencies, the venv's setuptools): fails the test with pip's output."""
    proc = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-index", "--quiet",
                           "--disable-pip-version-check"], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory):
    """(wheel path, target dir): the package built as a wheel from a copy of the checkout, installed with --target."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"  # build from a copy: no build/ or egg-info in the checkout
    src.mkdir()
    for name in ("setup.py", "MANIFEST.in"):
        shutil.copy(os.path.join(REPO, name), src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(REPO, "seg4reg_tf"), src / "seg4reg_tf", ignore=ignore)
    shutil.copytree(os.path.join(REPO, "configs"), src / "configs", ignore=ignore)
    _pip("wheel", "--no-build-isolation", "--wheel-dir", str(tmp / "dist"), str(src), cwd=str(tmp))
    (wheel,) = glob.glob(str(tmp / "dist" / "seg4reg_tf-*.whl"))
    _pip("install", "--target", str(tmp / "site"), wheel, cwd=str(tmp))
    return wheel, str(tmp / "site")


def test_wheel_carries_every_repository_config(wheel_install):
    wheel, _ = wheel_install
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.split("/")[-1] for n in names if n.startswith("seg4reg_tf/configs/"))
    assert REPO_CONFIGS and shipped == REPO_CONFIGS


def test_installed_package_trains_from_a_shipped_config_name(wheel_install, tmp_path):
    _, site = wheel_install
    env = dict(os.environ, PYTHONPATH=site)  # the installed copy, ahead of the editable checkout
    code = ("import sys, seg4reg_tf; from seg4reg_tf.shipped_configs import resolve_config;"
            "print(seg4reg_tf.__file__); print(resolve_config('demo.yaml'))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    package_file, demo = proc.stdout.split()[-2:]
    assert package_file.startswith(site) and demo == os.path.join(site, "seg4reg_tf", "configs", "demo.yaml")
    # the real command line: seg4reg_plus extends aasce_cpu.yaml (`base:`), loads, then --data is refused
    proc = subprocess.run([sys.executable, "-m", "seg4reg_tf.cli", "train", "--config", "seg4reg_plus",
                           "--data", str(tmp_path / "no_data")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "not a directory" in proc.stderr, proc.stderr
    assert "config error" not in proc.stderr
