"""EfficientNet-Lite0 in Keras against torch reference numbers (tests/models/fixtures), and its weights file."""
import json
import os
import shutil

import numpy as np
import pytest

from seg4reg_tf.models.efficientnet_lite import (
    WEIGHTS_SHA256,
    build_efficientnet_lite0,
    check_sha256,
    load_pretrained,
    load_torch_weights,
    pretrained_weights_path,
)
from seg4reg_tf.models.torch_pickle import load_legacy_state_dict

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "efficientnet_lite0_torch_reference.json")


@pytest.fixture(scope="module")
def reference():
    with open(FIXTURE) as f:
        return json.load(f)["taps"]


def _grey(h=96, w=64):
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return (0.5 + 0.4 * np.sin(0.3 * i) * np.cos(0.2 * j)).astype(np.float32)[None, :, :, None]


@pytest.mark.numeric
def test_converted_lite0_matches_torch_at_every_stride(reference):
    model = build_efficientnet_lite0((96, 64, 1))
    load_pretrained(model)
    out = model(_grey(), training=False)
    for tap, ref in reference.items():
        v = np.asarray(out[tap])
        n, c, h, w = ref["shape"]
        assert v.shape == (n, h, w, c), tap
        # values are O(1..10): 1e-4 absolute is float32 round-off, a mis-mapped layer is off by O(1)
        np.testing.assert_allclose(v.mean(axis=(1, 2))[0, :8], ref["gap_first8"], atol=1e-4, err_msg=tap)
        np.testing.assert_allclose(v[0, 0, 0, :4], ref["pixel_0_0_first4"], atol=1e-4, err_msg=tap)
        np.testing.assert_allclose(v[0, -1, -1, :4], ref["pixel_last_first4"], atol=1e-4, err_msg=tap)
        assert abs(np.abs(v).mean() - ref["abs_mean"]) < 1e-4 * max(1.0, ref["abs_mean"])


def test_a_swapped_tensor_is_caught_by_the_reference(reference):
    sd = load_legacy_state_dict(pretrained_weights_path())
    # blocks 6 and 7 have the same shapes (480 channels): only the reference can tell them apart
    sd["_blocks.6._bn1.running_mean"], sd["_blocks.7._bn1.running_mean"] = (
        sd["_blocks.7._bn1.running_mean"], sd["_blocks.6._bn1.running_mean"])
    model = build_efficientnet_lite0((96, 64, 1))
    load_torch_weights(model, sd)
    v = np.asarray(model(_grey(), training=False)["s16"])
    assert np.abs(v.mean(axis=(1, 2))[0, :8] - reference["s16"]["gap_first8"]).max() > 1e-2


def test_a_tensor_of_the_wrong_shape_is_named():
    sd = load_legacy_state_dict(pretrained_weights_path())
    sd["_blocks.3._project_conv.weight"] = sd["_blocks.3._project_conv.weight"][:10]
    with pytest.raises(ValueError, match=r"_blocks\.3\._project_conv.*shape"):
        load_torch_weights(build_efficientnet_lite0((64, 32, 1)), sd)


def test_sha256_mismatch_and_missing_file_are_clear(tmp_path):
    copy = tmp_path / "w.pth"
    shutil.copy(pretrained_weights_path(), copy)
    check_sha256(str(copy), WEIGHTS_SHA256)
    with open(copy, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ValueError, match=r"w\.pth: sha256 .* differs"):
        check_sha256(str(copy), WEIGHTS_SHA256)
    with pytest.raises(FileNotFoundError, match=r"missing"):
        check_sha256(str(tmp_path / "nope.pth"), WEIGHTS_SHA256)
