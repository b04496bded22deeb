"""Read a legacy (non-zip) PyTorch `state_dict` file with numpy alone, safely.

The legacy serialisation (torch < 1.6, `_use_new_zipfile_serialization=False`) is a sequence of
pickles: magic number, protocol version, sys info, the object (tensors refer to storages through
persistent ids), the list of storage keys; then each storage as a little-endian int64 element count
followed by its raw bytes. The unpickler here resolves only `collections.OrderedDict`,
`torch._utils._rebuild_tensor_v2` and the typed storage classes, and refuses every other global, so
a downloaded file cannot run code. No torch import.
"""
from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass
class _Storage:
    key: str
    dtype: type
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


class _StorageType:
    def __init__(self, name):
        self.name, self.dtype = name, _STORAGE_DTYPES[name]


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, path, storages):
        super().__init__(f)
        self.path, self.storages = path, storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"{self.path}: refusing to load global {module}.{name} "
                                     "(only a plain PyTorch state_dict of tensors is accepted)")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) < 5:
            raise pickle.UnpicklingError(f"{self.path}: unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"{self.path}: storage {key!r} has no known storage type")
        if key not in self.storages:
            self.storages[key] = _Storage(str(key), storage_type.dtype, int(numel))
        return self.storages[key]


def load_legacy_state_dict(path: str) -> "collections.OrderedDict[str, np.ndarray]":
    """`path` (a legacy-format .pth file) -> OrderedDict name -> numpy array (shapes as in torch).

    Raises ValueError naming the file when it is not a legacy PyTorch file, is truncated, or holds
    anything but a dict of tensors.
    """
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        try:
            if _RestrictedUnpickler(f, path, storages).load() != LEGACY_MAGIC:
                raise ValueError(f"{path}: not a legacy PyTorch file (bad magic number; zip-format "
                                 "files are not supported)")
            protocol = _RestrictedUnpickler(f, path, storages).load()
            if protocol != LEGACY_PROTOCOL:
                raise ValueError(f"{path}: unsupported PyTorch protocol version {protocol!r}")
            sys_info = _RestrictedUnpickler(f, path, storages).load()
            if not sys_info.get("little_endian", False):
                raise ValueError(f"{path}: big-endian PyTorch files are not supported")
            obj = _RestrictedUnpickler(f, path, storages).load()
            keys = _RestrictedUnpickler(f, path, storages).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as exc:
            raise ValueError(f"{path}: cannot read as a PyTorch state_dict: {exc}") from exc
        for key in keys:
            st = storages.get(key)
            if st is None:
                raise ValueError(f"{path}: storage {key!r} is listed but no tensor uses it")
            head = f.read(8)
            if len(head) != 8:
                raise ValueError(f"{path}: truncated before storage {key!r}")
            numel = int(np.frombuffer(head, "<i8")[0])
            if numel != st.numel:
                raise ValueError(f"{path}: storage {key!r} holds {numel} elements, expected {st.numel}")
            nbytes = numel * np.dtype(st.dtype).itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ValueError(f"{path}: truncated inside storage {key!r}")
            st.data = np.frombuffer(raw, dtype=np.dtype(st.dtype).newbyteorder("<")).copy()
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    out = collections.OrderedDict()
    for name, t in obj.items():
        if not isinstance(t, _TensorRef) or t.storage.data is None:
            raise ValueError(f"{path}: entry {name!r} is not a tensor with stored data")
        item = t.storage.data.itemsize
        end = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride)) + 1 if t.size else t.offset + 1
        if t.offset < 0 or end > t.storage.data.size:
            raise ValueError(f"{path}: entry {name!r} reaches past its storage")
        view = np.lib.stride_tricks.as_strided(t.storage.data[t.offset:], shape=t.size,
                                               strides=tuple(s * item for s in t.stride))
        out[name] = np.array(view)
    return out
