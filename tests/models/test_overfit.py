import keras
import numpy as np
import pytest

from seg4reg_tf.models import build_model
from tests.fixtures import TINY_SIZE, box_spine_dataset, tiny_model_config

H, W = TINY_SIZE


@pytest.mark.slow
def test_tiny_model_overfits_four_images():
    keras.utils.set_random_seed(0)
    model = build_model(tiny_model_config(reg_width=8, seg_width=8, warmup_epochs=0), (H, W))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    ds = box_spine_dataset(n=4, batch=4).repeat()
    val = box_spine_dataset(n=4, batch=2)
    hist = model.fit(ds, steps_per_epoch=10, epochs=4, verbose=0, validation_data=val).history
    assert {"val_loss", "val_smape", "val_dice", "val_seg_loss", "val_tri_loss"} <= set(hist)
    first, last = hist["loss"][0], hist["loss"][-1]
    assert np.isfinite(last) and last < 0.5 * first, hist["loss"]
    assert hist["dice"][-1] > hist["dice"][0]
    assert hist["reg_image_loss"][-1] < hist["reg_image_loss"][0]
