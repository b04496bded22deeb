"""The shipped float16 versions, unpacked to .keras and exported again, answer exactly as shipped: the
unpacked members carry their input contract, and a member without one (unpacked before models carried
it) exports only when given its config's."""
from __future__ import annotations

import os
import pathlib

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf.export.layout import CONFIG_RELPATH, MEMBER_CONFIG_RELPATH
from seg4reg_tf.export.savedmodel import export_model
from seg4reg_tf.export.unpack import unpack_savedmodel
from seg4reg_tf.models import Preprocessing, Seg4RegEnsemble
from seg4reg_tf.training.config import load_config
from tests.fixtures import strip_preprocessing

BASE = pathlib.Path(__file__).resolve().parents[2] / "serving" / "models" / "seg4reg"


def _xrays() -> list[bytes]:
    from seg4reg_tf.data.synth import synth_example

    rng = np.random.default_rng(0)
    return [cv2.imencode(".jpg", synth_example(rng, height_range=(900, 1100))[0])[1].tobytes() for _ in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("version", ["2", "3"])
def test_unpacked_shipped_version_exports_to_the_same_answers(tmp_path, version):
    shipped = BASE / version
    paths = unpack_savedmodel(shipped, tmp_path / "members")
    members = [keras.models.load_model(p, compile=False) for p in paths]
    cfg = load_config(shipped / CONFIG_RELPATH)
    assert all(m.preprocessing == Preprocessing.of(cfg.data) for m in members)

    strip_preprocessing(paths[0])  # a member file unpacked before models carried their preprocessing
    old = keras.models.load_model(paths[0], compile=False)
    assert old.preprocessing is None
    with pytest.raises(ValueError, match=r"^preprocessing: .* carries no input contract"):
        export_model(old, tmp_path / "refused", 1)
    assert not os.path.exists(tmp_path / "refused" / "1")
    if len(members) == 1:  # the old file, given its config's contract explicitly
        model, kw = old, {"preprocessing": cfg.data}
    else:
        member_cfgs = [load_config(shipped / MEMBER_CONFIG_RELPATH.format(index=i)) for i in range(len(members))]
        model, kw = Seg4RegEnsemble(members), {"member_configs": member_cfgs}
    path = export_model(model, tmp_path / "again", 1, config=cfg, weights_dtype="float16", **kw)

    images = tf.constant(_xrays())
    want = tf.saved_model.load(str(shipped)).signatures["serving_default"](image_bytes=images)
    got = tf.saved_model.load(path).signatures["serving_default"](image_bytes=images)
    assert set(got) == set(want)
    for key in want:
        a, b = want[key].numpy(), got[key].numpy()
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, atol=1e-4, err_msg=key)
        else:
            np.testing.assert_array_equal(b, a, err_msg=key)
