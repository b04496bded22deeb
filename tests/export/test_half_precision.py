"""Half-precision weight storage: float16 on disk, float32 arithmetic on the rounded weights."""
import numpy as np
import pytest
import tensorflow as tf

from seg4reg_tf import models
from seg4reg_tf.export.savedmodel import export_model
from tests.fixtures import TINY_SIZE as SIZE
from tests.fixtures import box_spine_batch, set_seed, tiny_data_config, tiny_model_config


def _model(seed=0):
    set_seed(seed)
    model = models.build_model(tiny_model_config(), tiny_data_config())
    model({"image": np.zeros((1, *SIZE, 1), np.float32)})
    return model


def _data_bytes(version_dir) -> int:
    return sum(f.stat().st_size for f in (version_dir / "variables").glob("variables.data-*"))


@pytest.mark.numeric
def test_float16_export_stores_half_and_computes_on_the_rounded_weights(tmp_path):
    model = _model()
    full = export_model(model, tmp_path / "m", 1)
    half = export_model(model, tmp_path / "m", 2, weights_dtype="float16")

    stored = tf.train.load_checkpoint(str(tmp_path / "m" / "2" / "variables" / "variables"))
    dtypes = [d for d in stored.get_variable_to_dtype_map().values() if d.is_floating]
    assert dtypes and set(dtypes) == {tf.float16}
    assert len(dtypes) == len([v for v in model.variables if v.dtype == "float32"])
    n_weights = sum(int(np.prod(v.shape)) for v in model.variables if v.dtype == "float32")
    saved = _data_bytes(tmp_path / "m" / "1") - _data_bytes(tmp_path / "m" / "2")
    assert 1.9 * n_weights < saved < 2.1 * n_weights  # 2 of the 4 bytes of every weight

    x = box_spine_batch(2)[0]
    got = tf.saved_model.load(half).signatures["predict_image"](image=tf.constant(x))
    unrounded = tf.saved_model.load(full).signatures["predict_image"](image=tf.constant(x))
    model.set_weights([w.astype(np.float16).astype(np.float32) if w.dtype == np.float32 else w
                       for w in model.get_weights()])
    want = model({"image": x}, training=False)
    for key in ("cobb_angles", "cobb_angles_image", "cobb_angles_segmentation", "attention_map"):
        np.testing.assert_allclose(got[key].numpy(), np.asarray(want[key]), atol=1e-4, err_msg=key)
    assert np.abs(got["cobb_angles"].numpy() - unrounded["cobb_angles"].numpy()).max() > 0  # really rounded


def test_float16_refuses_weights_out_of_its_range_and_unknown_dtypes(tmp_path):
    model = _model()
    kernel = model.regressor.kernel
    kernel.assign(np.full(kernel.shape, 1e5, np.float32))
    with pytest.raises(ValueError, match=f"{kernel.path}.*float16 range"):
        export_model(model, tmp_path / "m", 1, weights_dtype="float16")
    with pytest.raises(ValueError, match="weights_dtype"):
        export_model(model, tmp_path / "m", 1, weights_dtype="int8")
    assert not (tmp_path / "m" / "1").exists()
