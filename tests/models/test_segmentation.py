import numpy as np
import pytest

from seg4reg_tf.models.segmentation import SegmentationNet
from tests.fixtures import TINY_SIZE

H, W = TINY_SIZE


def test_softmax_output_and_gate():
    s = SegmentationNet((H, W, 1), width=4, depth=2, gate=True)
    x = np.random.default_rng(0).random((2, H, W, 1)).astype("float32")
    p0 = np.asarray(s(x, attention=np.zeros((2, 8, 4), "float32")))
    assert p0.shape == (2, H, W, 18)
    np.testing.assert_allclose(p0.sum(-1), 1.0, rtol=1e-5)
    p1 = np.asarray(s(x, attention=np.ones((2, 8, 4), "float32")))
    assert np.abs(p1 - p0).max() > 1e-6  # the gate reaches the head
    with pytest.raises(ValueError, match="gate=True needs an attention map"):
        s(x)
    assert SegmentationNet.from_config(s.get_config()).get_config() == s.get_config()
