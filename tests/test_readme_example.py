"""The README's "Use from Python" code block runs as written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_example() -> str:
    section = README.read_text().split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "expected one python block in the README's 'Use from Python' section"
    return blocks[0]


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_python_example())
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validation SMAPE" in proc.stdout
    version_dir = proc.stdout.strip().splitlines()[-1]
    assert (Path(version_dir) / "saved_model.pb").is_file()
