"""Experiment configs: errors name the key, overrides, base files, save/load round trip, shipped configs.

The generic converter is tested in tests/test_config_machinery.py.
"""
from __future__ import annotations

import glob
import os

import pytest
import yaml

from seg4reg_tf.data.config import DataConfig
from seg4reg_tf.models.config import ModelConfig
from seg4reg_tf.training.config import ExperimentConfig, SyntheticConfig, TrainConfig, load_config, save_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write(path, data):
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    return str(path)


def test_experiment_errors_name_dotted_key(tmp_path):
    path = _write(tmp_path / "c.yaml", {"name": "t", "train": {"epochs": 2}})
    with pytest.raises(ValueError, match=r"^train\.optimiser: unknown key.*optimizer"):
        load_config(path, ["train.optimiser=sgd"])
    with pytest.raises(ValueError, match=r"^train\.schedule: expected one of 'constant', 'step', 'cosine'"):
        load_config(path, ["train.schedule=linear"])
    with pytest.raises(ValueError, match=r"^train\.epochs: expected an int, got str"):
        load_config(path, ["train.epochs=many"])
    with pytest.raises(ValueError, match=r"^train\.epochs: expected a positive int"):
        load_config(path, ["train.epochs=0"])
    with pytest.raises(ValueError, match=r"^model\.variant"):
        load_config(path, ["model.variant=foo"])
    with pytest.raises(ValueError, match=r"^data\.augment\.hflip_prob"):
        load_config(path, ["data.augment.hflip_prob=2"])
    with pytest.raises(ValueError, match=r"^data\.image_size\[1\]: expected an int"):
        load_config(path, ["data.image_size=[64, abc]"])
    with pytest.raises(ValueError, match=r"^bogus: unknown key.*data, model, name, synthetic, train"):
        load_config(path, ["bogus=1"])
    with pytest.raises(ValueError, match=r"^train\.epochs: is a value, not a section"):
        load_config(path, ["train.epochs.x=1"])
    with pytest.raises(ValueError, match=r"expected 'section.key=value'"):
        load_config(path, ["train.epochs"])


def test_overrides_parse_yaml_values(tmp_path):
    path = _write(tmp_path / "c.yaml", {"name": "t", "train": {"epochs": 90, "clipnorm": 1.0},
                                        "data": {"image_size": [128, 64]}})
    cfg = load_config(path, ["train.epochs=1", "train.learning_rate=1e-2", "train.clipnorm=null",
                             "data.image_size=[64, 32]", "data.augment.enabled=false", "model.head=image",
                             "model.variant=reg_only", "name=short"])
    assert cfg.train.epochs == 1
    assert cfg.train.learning_rate == pytest.approx(0.01)
    assert cfg.train.clipnorm is None
    assert cfg.data.image_size == (64, 32)
    assert cfg.data.augment.enabled is False
    assert cfg.model.variant == "reg_only" and cfg.model.head == "image"
    assert cfg.name == "short"
    assert cfg.train.optimizer == TrainConfig().optimizer  # untouched default


def test_base_chain_and_cycle(tmp_path):
    _write(tmp_path / "a.yaml", {"name": "a", "train": {"epochs": 5, "optimizer": "sgd"},
                                 "data": {"image_size": [64, 32], "batch_size": 3}})
    _write(tmp_path / "b.yaml", {"base": "a.yaml", "name": "b", "train": {"epochs": 7}})
    cfg = load_config(tmp_path / "b.yaml")
    assert (cfg.name, cfg.train.epochs, cfg.train.optimizer) == ("b", 7, "sgd")
    assert cfg.data.image_size == (64, 32) and cfg.data.batch_size == 3
    _write(tmp_path / "x.yaml", {"base": "y.yaml"})
    _write(tmp_path / "y.yaml", {"base": "x.yaml"})
    with pytest.raises(ValueError, match="circular"):
        load_config(tmp_path / "x.yaml")
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_save_load_round_trip(tmp_path):
    path = _write(tmp_path / "c.yaml", {"name": "rt"})
    cfg = load_config(path, ["train.clipnorm=2", "train.steps_per_epoch=3", "model.angle_prior=null",
                             "data.image_size=[96, 48]", "train.schedule=step"])
    save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(tmp_path / "out" / "config.yaml")
    assert again == cfg
    assert again.train.clipnorm == 2.0 and again.model.angle_prior is None
    text = (tmp_path / "out" / "config.yaml").read_text()
    assert "base:" not in text and "steps_per_epoch: 3" in text


SHIPPED = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))


def test_configs_are_shipped():
    names = {os.path.basename(p) for p in SHIPPED}
    for n in ("demo.yaml", "aasce_cpu.yaml", "aasce_paper.yaml", "reg_only.yaml", "seg4reg.yaml",
              "seg4reg_plus_no_att.yaml", "seg4reg_plus_no_gate.yaml", "seg4reg_plus_no_tri.yaml"):
        assert n in names


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_config_loads_and_shortens(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    assert load_config(path, ["train.epochs=1"]).train.epochs == 1


def test_paper_and_ablation_settings():
    paper = load_config(os.path.join(REPO, "configs", "aasce_paper.yaml"))
    t = paper.train
    assert (paper.model.encoder, t.optimizer, t.learning_rate, t.momentum, t.weight_decay) == (
        "densenet169", "sgd", 0.01, 0.9, 1e-4)
    assert (t.epochs, t.schedule, t.step_epochs, t.step_factor, paper.data.batch_size) == (90, "step", 30, 0.1, 32)
    assert min(paper.data.image_size) >= 256 and paper.data.image_size[0] >= 512
    c = lambda n: load_config(os.path.join(REPO, "configs", n)).model  # noqa: E731
    assert c("reg_only.yaml").variant == "reg_only"
    assert c("seg4reg.yaml").variant == "seg4reg"
    assert (c("seg4reg_plus_no_att.yaml").attention_reg, c("seg4reg_plus_no_att.yaml").roi_gate) == (False, True)
    assert (c("seg4reg_plus_no_gate.yaml").roi_gate, c("seg4reg_plus_no_gate.yaml").triangle) == (False, True)
    assert (c("seg4reg_plus_no_tri.yaml").triangle, c("seg4reg_plus_no_tri.yaml").attention_reg) == (False, True)


def test_direct_construction_checks_types_and_values():
    cfg = ExperimentConfig(name="d", data={"image_size": [64, 32]}, model={"variant": "reg_only"},
                           train={"epochs": 2, "learning_rate": 1}, synthetic={"n_train": 5})
    assert cfg.data == DataConfig(image_size=(64, 32)) and cfg.model == ModelConfig(variant="reg_only")
    assert cfg.train.learning_rate == 1.0 and type(cfg.train.learning_rate) is float
    assert cfg.synthetic == SyntheticConfig(n_train=5)
    with pytest.raises(ValueError, match=r"^train\.epochs: expected an int, got str '3'"):
        TrainConfig(epochs="3")
    with pytest.raises(ValueError, match=r"^train\.optimizer: expected one of 'sgd', 'adam', 'adamw', got 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"^synthetic\.n_train: expected an int >= 5"):
        ExperimentConfig(synthetic={"n_train": 4})
    with pytest.raises(ValueError, match=r"^name: expected a non-empty name without '/'"):
        ExperimentConfig(name="a/b")
