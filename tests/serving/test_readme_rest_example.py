"""serving/README.md's REST example runs as written (issue 42): the request is read from a file, so a film of
any size fits (a command-line argument of its base64 failed with "Argument list too long" from ~130 KB)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from seg4reg_tf.serving.server import ModelServer, ServerConfig
from tests.serving.serving_testmodel import png, save_version

README = Path(__file__).resolve().parents[2] / "serving" / "README.md"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (shutil.which("curl") and shutil.which("base64")),
                                                   reason="needs curl and base64")]


def test_the_readme_rest_example_runs_on_a_large_film(tmp_path):
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text().split("REST, the request", 1)[1], flags=re.S)
    script = blocks[0]
    assert "-d @request.json" in script and "localhost:8501" in script
    rng = np.random.default_rng(0)
    film = png(rng.integers(0, 256, (600, 300)).astype(np.uint8))  # noise: incompressible, ~180 KB
    assert len(film) > 150_000
    (tmp_path / "xray.png").write_bytes(film)
    base = str(tmp_path / "models")
    save_version(base, 1, gain=1.0)
    with ModelServer(ServerConfig(model_base_path=base, port=0, rest_port=0, max_request_pixels=10**7)) as server:
        done = subprocess.run(["bash", "-c", script.replace("localhost:8501", f"127.0.0.1:{server.rest_port}")],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert np.asarray(answer["predictions"][0]["cobb_angles"]).shape == (3,)
