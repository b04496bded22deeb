"""scripts/demo.sh with IMAGE: the shipped model measures the film, nothing is retrained and an earlier demo's
outputs stay (issue 42); without IMAGE the whole demo runs (the seg4reg calls are recorded, not run)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fake_seg4reg(tmp_path) -> tuple[Path, Path]:
    """A stand-in for the seg4reg command: logs its arguments, writes what `predict` would."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "seg4reg"
    fake.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {log}
if [ "$1" = predict ]; then
  out=""; prev=""
  for a in "$@"; do [ "$prev" = --out ] && out="$a"; prev="$a"; done
  mkdir -p "$out" && touch "$out/film.json" "$out/film_overlay.png"
fi
if [ "$1" = data ] && [ "$2" = synth ]; then mkdir -p "$3/data/test" && touch "$3/data/test/x.jpg"; fi
""")
    fake.chmod(0o755)
    return fake, log


def test_demo_with_an_image_only_measures_it_and_keeps_the_demo(tmp_path):
    fake, log = _fake_seg4reg(tmp_path)
    out = tmp_path / "demo_out"
    (out / "eval").mkdir(parents=True)
    (out / "eval" / "report.json").write_text("{}")  # an earlier demo's output
    film = tmp_path / "film.jpg"
    film.write_bytes(b"\xff\xd8")
    done = subprocess.run(["bash", "scripts/demo.sh", str(fake), str(out), str(film)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls == [f"predict {film} --model serving/models/seg4reg --out {out}/reference"]
    assert (out / "eval" / "report.json").is_file() and (out / "reference" / "film.json").is_file()
    missing = subprocess.run(["bash", "scripts/demo.sh", str(fake), str(out), str(tmp_path / "nope.jpg")],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_demo_without_an_image_runs_every_step(tmp_path):
    fake, log = _fake_seg4reg(tmp_path)
    out = tmp_path / "demo_out"
    done = subprocess.run(["bash", "scripts/demo.sh", str(fake), str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    steps = [line.split()[0] + (" " + line.split()[1] if line.startswith("data") else "")
             for line in log.read_text().splitlines()]
    assert steps == ["data synth", "data check", "data convert", "train", "evaluate", "export", "predict"]
