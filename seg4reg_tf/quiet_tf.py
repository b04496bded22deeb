"""Keep TensorFlow's start-up lines off the terminal.

While it loads, TensorFlow's C++ code writes "All log messages before absl::InitializeLog() ...", the oneDNN
and "Could not find cuda drivers" notes, and (on finding devices) "failed call to cuInit" straight to file
descriptor 2, before absl logging reads TF_CPP_MIN_LOG_LEVEL: that variable alone cannot hide them. `install()`
makes the first `import tensorflow`, wherever it happens, run with fd 2 on /dev/null, so that commands which
never need TensorFlow do not pay for importing it. Base layer: imports nothing from seg4reg_tf.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys


def wanted(verbose: bool, environ=os.environ) -> bool:
    """Hide the lines unless `verbose` or the user set TF_CPP_MIN_LOG_LEVEL=0 (show everything)."""
    return not verbose and environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() != "0"


def _flush() -> None:
    if sys.stderr is not None:
        sys.stderr.flush()


@contextlib.contextmanager
def stderr_to_devnull():
    """File descriptor 2 (C++ writes included) on /dev/null; restored on exit, before an exception propagates."""
    try:
        saved = os.dup(2)
    except OSError:  # fd 2 closed: nothing to hide
        yield
        return
    _flush()
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        _flush()  # Python's buffered writes of the quiet part go to /dev/null too
        os.dup2(saved, 2)
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader, and lists the devices (the cuInit line), with fd 2 on /dev/null."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader  # leave no trace on the module
        with stderr_to_devnull():
            self.loader.exec_module(module)
            module.config.list_physical_devices()


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; the normal finders locate TensorFlow
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install(verbose: bool = False) -> bool:
    """Quiet the first TensorFlow import of this process unless `wanted(verbose)` says no; True if installed.

    Also sets TF_CPP_MIN_LOG_LEVEL=3 when the user did not set it: later C++ lines too (info, warnings and the
    errors TensorFlow logs without failing, such as oneDNN's "supports DT_INT32 only on platforms with AVX-512"
    at the first call); a real failure still comes back as a Python error, which the commands print.
    """
    if not wanted(verbose) or "tensorflow" in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.meta_path.insert(0, _Finder())
    return True
