"""The numpy reader of legacy PyTorch state_dicts: real file, malicious globals, truncation."""
import pickle

import numpy as np
import pytest

from seg4reg_tf.models.efficientnet_lite import pretrained_weights_path
from seg4reg_tf.models.torch_pickle import load_legacy_state_dict

# torch.serialization's legacy (non-zip) format, written out from torch's source, not read from the reader
MAGIC_NUMBER, PROTOCOL_VERSION = 0x1950A86A20F9469CFC6C, 1001


def _header():
    sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return pickle.dumps(MAGIC_NUMBER) + pickle.dumps(PROTOCOL_VERSION) + pickle.dumps(sys_info)


def test_packaged_lite0_file_reads_to_the_documented_state_dict():
    sd = load_legacy_state_dict(pretrained_weights_path())
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3) and sd["_conv_stem.weight"].dtype == np.float32
    assert sd["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert sd["_bn1.num_batches_tracked"].dtype == np.int64
    # no squeeze-excitation in Lite
    assert not any("_se_" in k for k in sd)
    # BatchNorm variances are finite and >= 0: a byte-offset slip would not give that for all 49 of them
    assert all(np.all(np.isfinite(v) & (v >= 0)) for k, v in sd.items() if k.endswith("running_var"))


def test_a_global_outside_the_allow_list_is_refused_not_called(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    path = tmp_path / "evil.pth"
    path.write_bytes(_header() + payload)
    with pytest.raises(ValueError, match=r"evil\.pth.*refusing to load global os\.system"):
        load_legacy_state_dict(str(path))
    assert not marker.exists()


def test_not_a_legacy_file_is_named(tmp_path):
    path = tmp_path / "zip.pth"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(ValueError, match=r"zip\.pth"):
        load_legacy_state_dict(str(path))


def test_truncated_file_is_an_error_naming_it(tmp_path):
    data = open(pretrained_weights_path(), "rb").read()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.pth.*truncated"):
        load_legacy_state_dict(str(path))
