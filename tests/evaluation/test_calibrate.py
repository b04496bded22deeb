"""`seg4reg calibrate`: a version's intervals measured and refitted on a site's labelled films, written as a
new version of the same network; too few measurable films are refused and nothing is written."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.cli import main
from seg4reg_tf.data import aasce
from seg4reg_tf.data.synth import write_synthetic_dataset
from seg4reg_tf.export import measurable
from seg4reg_tf.export.intervals import FEATURES, AngleIntervals
from seg4reg_tf.export.layout import INTERVALS_RELPATH
from seg4reg_tf.export.savedmodel import export_model
from seg4reg_tf.models.seg4reg_plus import Seg4RegPlus
from seg4reg_tf.training.config import ExperimentConfig
from tests.fixtures import set_seed, tiny_data_config, tiny_model_config


def _export(base, monkeypatch=None) -> str:
    """A tiny untrained one-network version (float16, as shipped) whose intervals are far too narrow (q 0.5 on a
    constant score of 1 deg). With `monkeypatch` its spine check is lenient, so its films count as measurable."""
    set_seed(0)
    cfg = ExperimentConfig(name="tiny", data=tiny_data_config(),
                           model=tiny_model_config(geometry_head=True, head="fused"))
    model = Seg4RegPlus(cfg.model, preprocessing=cfg.data)
    if monkeypatch is not None:
        template = measurable.THRESHOLDS["vertebrae"][3]
        monkeypatch.setitem(measurable.THRESHOLDS, "vertebrae", (">", 0.5, 1.0, template))
    weights = np.zeros((3, 1 + len(FEATURES)))
    weights[:, 0] = 1.0
    narrow = AngleIntervals(weights=weights, floor=[0.1] * 3, q=[0.5] * 3)
    return export_model(model, base, 1, config=cfg, weights_dtype="float16", intervals=narrow)


def _site(path, n: int) -> str:
    write_synthetic_dataset(str(path), n, 0, 1, height_range=(200, 260), progress=False)
    return str(path)


def _serve(version_dir, records) -> dict:
    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    out = fn(image_bytes=tf.constant([r.read_image() for r in records]))
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.slow
def test_calibrate_measures_the_current_intervals_and_writes_the_same_network_with_refitted_ones(
        tmp_path, monkeypatch, capsys):
    base = tmp_path / "seg4reg"
    _export(base, monkeypatch)
    site = _site(tmp_path / "site", 24)
    assert main(["calibrate", "--model", str(base), "--data", site]) == 0
    out = capsys.readouterr().out
    assert "24 of 24 labelled films measurable" in out
    assert "current intervals" in out and "PT 0.0% at 1.0 deg" in out  # q 0.5 x 1 deg on each side: none hold
    records = aasce.load_split(site, "training", progress=False)
    truth = np.stack([r.angles for r in records])
    old, new = _serve(base / "1", records), _serve(base / "2", records)
    for key in ("cobb_angles", "cobb_angles_geometry", "cobb_angles_segmentation", "cobb_angles_image"):
        np.testing.assert_array_equal(new[key], old[key], err_msg=key)  # the same network
    inside = (truth >= new["cobb_angles_lower"]) & (truth <= new["cobb_angles_upper"])
    # the 23rd of 24 scores is q: in sample at least 90% hold (the film on the edge may round either way)
    assert inside.mean(axis=0).min() >= 0.9
    written = AngleIntervals.from_json((base / "2" / INTERVALS_RELPATH).read_text())
    assert "seg4reg calibrate on 24 measurable of 24" in written.fitted and min(written.q) > 0.5
    # the estimate for further films of the site is cross-fitted, near the nominal 90%
    after = out.split("cross-fitted on these films: ")[1].splitlines()[0]
    coverages = [float(part.split()[1].rstrip("%")) for part in after.split(", ")]
    assert all(85.0 <= c <= 99.0 for c in coverages), after
    assert out.strip().endswith(str(base / "2"))


@pytest.mark.slow
def test_too_few_measurable_films_are_refused_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    base = tmp_path / "seg4reg"
    _export(base)  # the real spine check: an untrained network finds no spine on any film
    assert main(["calibrate", "--model", str(base), "--data", _site(tmp_path / "site", 24)]) == 1
    err = capsys.readouterr().err
    assert "0 of 24 labelled films are measurable" in err and "at least 20" in err
    assert main(["calibrate", "--model", str(base), "--data", _site(tmp_path / "small", 12)]) == 1
    assert "12 labelled films" in capsys.readouterr().err
    assert sorted(p.name for p in base.iterdir()) == ["1"]
    assert json.loads((base / "1" / INTERVALS_RELPATH).read_text())["q"] == [0.5] * 3
