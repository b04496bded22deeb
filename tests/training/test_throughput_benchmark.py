"""benchmarks/training_throughput.py on a tiny config: FLOP counting and the printed table."""
from __future__ import annotations

import dataclasses
import os

import pytest

from tests.fixtures import load_benchmark

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bench(monkeypatch):
    """The script as `python benchmarks/training_throughput.py` sees it: benchmarks/ first on sys.path."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "benchmarks"))
    return load_benchmark("training_throughput")


def _tiny_config(tmp_path):
    from seg4reg_tf.training.config import load_config, save_config

    cfg = load_config(os.path.join(REPO, "configs", "aasce_cpu.yaml"),
                      ["model.reg_width=4", "model.reg_depth=3", "model.seg_width=4", "model.seg_depth=2"])
    path = tmp_path / "tiny.yaml"
    save_config(cfg, path)
    return cfg, str(path)


def test_training_flops_scale_with_pixels(tmp_path, monkeypatch):
    from seg4reg_tf.training.train import compile_model

    bench = _bench(monkeypatch)
    cfg, _ = _tiny_config(tmp_path)
    flops = {}
    for size in ((64, 32), (128, 64)):
        c = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=size))
        x, y = bench.spine_batch(2, size)
        assert x["image"].shape == (2, *size, 1) and y["labels"].max() > 0
        flops[size] = bench.forward_flops(compile_model(c, 1), x, y)
    assert flops[(64, 32)] > 1e6  # the convolutions are counted
    assert flops[(128, 64)] / flops[(64, 32)] == pytest.approx(4.0, rel=0.05)  # fully convolutional


@pytest.mark.slow  # fits warm-up + timed steps
def test_main_prints_the_table(tmp_path, capsys, monkeypatch):
    bench = _bench(monkeypatch)
    _, path = _tiny_config(tmp_path)
    assert bench.main(["--config", path, "--sizes", "64x32", "--steps", "1", "--warmup", "1",
                       "--matmul-n", "128", "--peak-repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "fp32 matmul peak" in out
    row = [line for line in out.splitlines() if line.startswith("| 64 x 32 |")]
    assert len(row) == 1 and row[0].rstrip().endswith("% |")
    with pytest.raises(SystemExit):
        bench.main(["--config", path, "--sizes", "64by32"])
