"""`train.mixed_precision` and `train.jit_compile`: every variant trains, outputs and exports stay float32."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from seg4reg_tf.training.train import compile_model
from tests.fixtures import box_spine_batch, set_seed

VARIANTS = (["model.variant=reg_only"], ["model.variant=seg4reg"], [],
            ["model.attention_target=mask", "model.attention_centered=true"],
            ["model.geometry_head=true", "model.head=geometry"])


def _targets(n=4):
    x, labels, angles = box_spine_batch(n)
    landmarks = np.zeros((n, 68, 2), "float32") + np.linspace(4, 60, 68, dtype="float32")[None, :, None]
    return {"image": x}, {"angles": angles, "labels": labels, "landmarks": landmarks}


CASES = [("mixed_bfloat16", v) for v in VARIANTS] + [("mixed_float16", v) for v in VARIANTS[2:]]


@pytest.mark.parametrize("policy,overrides", CASES)
def test_every_variant_trains_under_the_policy_with_float32_outputs(tiny_cfg, policy, overrides):
    cfg = tiny_cfg([f"train.mixed_precision={policy}", *overrides])
    model = compile_model(cfg, steps_per_epoch=2)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert model.dtype_policy.name == policy
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    x, y = _targets()
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    for key, value in model(x).items():
        if key != "end_vertebrae":
            assert value.dtype == "float32", key


@pytest.mark.numeric
def test_xla_gives_the_same_loss(tiny_cfg):
    x, y = _targets()
    losses = []
    for jit in (False, True):
        set_seed(0)
        model = compile_model(tiny_cfg([f"train.jit_compile={str(jit).lower()}", "model.joint_warmup_epochs=0"]), 2)
        losses.append(model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)["loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_train_and_export_under_the_policy_serve_float32(tmp_path, tiny_data, tiny_cfg, policy):
    import tensorflow as tf

    from seg4reg_tf.export.savedmodel import export_run
    from seg4reg_tf.training.train import train

    run = str(tmp_path / "run")
    train(tiny_cfg([f"train.mixed_precision={policy}", "train.epochs=1"]), tiny_data, run, verbose=0)
    version = export_run(run, str(tmp_path / "serving"), 1)
    sig = tf.saved_model.load(version).signatures["predict_image"]
    out = sig(image=tf.zeros([1, 64, 32, 1]))
    assert out["cobb_angles"].dtype == tf.float32 and np.all(np.isfinite(out["cobb_angles"].numpy()))
    assert all(v.dtype in (tf.float32, tf.uint8, tf.string, tf.int32) for v in out.values())
