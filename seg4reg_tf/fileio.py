"""Files on any TensorFlow filesystem: local paths, `gs://`, `s3://`, `hdfs://`, `ram://` ..., through `tf.io.gfile`.

Every file the package reads or writes goes through these functions (or through TensorFlow / Keras
calls that take such paths themselves: tf.data readers, `tf.saved_model`, `tf.summary`,
`keras.saving`). Local paths behave as with `os` (renames are atomic on POSIX); on object stores a
"directory" is a name prefix and a rename is a copy and a delete, so `move_tree` moves the file that
marks a complete directory (e.g. `saved_model.pb`) last.

Errors are Python's: TensorFlow's NotFoundError becomes FileNotFoundError, PermissionDeniedError
PermissionError, ResourceExhaustedError (a full disk or quota) OSError(ENOSPC), any other
`tf.errors.OpError` OSError; each names the path.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import tempfile
import uuid
from typing import Any, Iterator, Mapping

_SCHEME = "://"


def _gfile():
    import tensorflow as tf  # lazily: importing this module must not start TensorFlow

    return tf.io.gfile


def is_url(path) -> bool:
    """True for a path with a scheme (`gs://b/x`, `ram://x`): not a local path."""
    return _SCHEME in os.fspath(path)


def absolute(path) -> str:
    """`os.path.abspath` for local paths; a URL unchanged (abspath would mangle `gs://b` to `<cwd>/gs:/b`)."""
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def join(path, *parts) -> str:
    """`os.path.join` on strings (URLs too: `join("gs://b/run", "model.keras")`)."""
    return os.path.join(os.fspath(path), *(os.fspath(p) for p in parts))


@contextlib.contextmanager
def os_errors(path) -> Iterator[None]:
    """Re-raise TensorFlow's file errors inside the block as the matching OSError naming `path`."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.NotFoundError as err:
        raise FileNotFoundError(errno.ENOENT, f"no such file or directory ({_first_line(err)})",
                                os.fspath(path)) from err
    except tf.errors.PermissionDeniedError as err:
        raise PermissionError(errno.EACCES, f"permission denied ({_first_line(err)})", os.fspath(path)) from err
    except tf.errors.ResourceExhaustedError as err:
        raise OSError(errno.ENOSPC, f"no space left on device ({_first_line(err)})", os.fspath(path)) from err
    except tf.errors.OpError as err:
        raise OSError(errno.EIO, _first_line(err) or type(err).__name__, os.fspath(path)) from err


def _first_line(err) -> str:
    text = getattr(err, "message", None) or str(err)
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def exists(path) -> bool:
    with os_errors(path):
        return _gfile().exists(os.fspath(path))


def isdir(path) -> bool:
    with os_errors(path):
        return _gfile().isdir(os.fspath(path))


def isfile(path) -> bool:
    """An existing path that is not a directory."""
    path = os.fspath(path)
    with os_errors(path):
        return _gfile().exists(path) and not _gfile().isdir(path)


def makedirs(path) -> None:
    """Create `path` and its parents (no error when it exists)."""
    with os_errors(path):
        _gfile().makedirs(os.fspath(path))


def listdir(path) -> list[str]:
    """Entry names of a directory (sorted; no trailing slashes). FileNotFoundError when missing."""
    with os_errors(path):
        return sorted(name.rstrip("/") for name in _gfile().listdir(os.fspath(path)))


def glob(pattern) -> list[str]:
    """Sorted paths matching a glob pattern (`*`, `?`, `[...]`)."""
    with os_errors(pattern):
        return sorted(_gfile().glob(os.fspath(pattern)))


def getsize(path) -> int:
    """Size of a file in bytes."""
    return stat(path)[0]


def stat(path) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of a file."""
    with os_errors(path):
        st = _gfile().stat(os.fspath(path))
    return int(st.length), int(st.mtime_nsec)


def remove(path, *, missing_ok: bool = False) -> None:
    """Delete a file (FileNotFoundError when missing, unless `missing_ok`)."""
    if missing_ok and not exists(path):
        return
    with os_errors(path):
        _gfile().remove(os.fspath(path))


def rmtree(path, *, ignore_errors: bool = False) -> None:
    """Delete a directory tree (a missing one is not an error)."""
    try:
        if exists(path):
            with os_errors(path):
                _gfile().rmtree(os.fspath(path))
    except OSError:
        if not ignore_errors:
            raise


@contextlib.contextmanager
def open(path, mode: str = "r"):  # noqa: A001 - the file-object opener of this module
    """A file object (`tf.io.gfile.GFile`): modes r, rb, w, wb, a, ab; text is UTF-8 and newlines are not
    translated (as `open(..., newline="")`). Use it in a `with` block; errors are OSErrors naming `path`."""
    with os_errors(path):
        with _gfile().GFile(os.fspath(path), mode) as f:
            yield f


def read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def read_text(path) -> str:
    """The file decoded as UTF-8 (UnicodeDecodeError for other bytes)."""
    return read_bytes(path).decode("utf-8")


def replace(src, dst) -> None:
    """Rename the file `src` to `dst`, replacing `dst` (atomic on a local POSIX filesystem)."""
    with os_errors(src):
        _gfile().rename(os.fspath(src), os.fspath(dst), overwrite=True)


def copy(src, dst, *, overwrite: bool = True) -> None:
    """Copy the file `src` to `dst` (any two filesystems)."""
    with os_errors(src):
        _gfile().copy(os.fspath(src), os.fspath(dst), overwrite=overwrite)


def incoming_path(path) -> str:
    """The temporary name a file is written under before `replace` puts it at `path` (same directory)."""
    path = os.fspath(path)
    return join(os.path.dirname(path), f".incoming.{os.path.basename(path)}")


def write_atomic(path, data: bytes | str) -> None:
    """Write `data` (str: UTF-8) to `path` through a temporary file renamed into place: readers see the
    old content or the new one, never a part (on object stores a single object write is all-or-nothing).
    The temporary file is removed when the write fails."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        makedirs(parent)
    tmp = incoming_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else bytes(data))
        replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            remove(tmp, missing_ok=True)
        raise


def mkdtemp(parent, prefix: str) -> str:
    """A new, empty directory `parent/<prefix><random>` (created with its parents)."""
    parent = os.fspath(parent)
    makedirs(parent)
    if not is_url(parent):
        return tempfile.mkdtemp(prefix=prefix, dir=parent)
    path = join(parent, prefix + uuid.uuid4().hex[:12])
    makedirs(path)
    return path


def walk_files(root) -> list[str]:
    """Paths relative to `root` of every file under it, sorted."""
    root = os.fspath(root)
    out = []
    with os_errors(root):
        for dirpath, _, files in _gfile().walk(root):
            rel = os.path.relpath(dirpath, root) if not is_url(root) else dirpath[len(root):].strip("/")
            # each checked: TF's ram:// lists by bare name prefix (`assets` also "holds" `.extra` of `assets.extra`)
            out += [os.path.normpath(os.path.join(rel, f)) for f in files
                    if not is_url(root) or _gfile().exists(join(dirpath, f))]
    return sorted(out)


def move_tree(src, dst, *, last: tuple[str, ...] = ()) -> None:
    """Move the directory `src` to `dst`, which must not exist (FileExistsError otherwise).

    Local: one rename (atomic). Elsewhere: every file is moved on its own, the relative paths in `last`
    after all others (name there the file whose presence marks the directory complete), then `src` is
    deleted; a failure part-way deletes what reached `dst` and raises.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    if exists(dst):
        raise FileExistsError(errno.EEXIST, "already exists; refusing to overwrite", dst)
    if not is_url(src) and not is_url(dst):
        os.rename(src, dst)
        return
    files = walk_files(src)
    order = [f for f in files if f not in last] + [f for f in last if f in files]
    try:
        for rel in order:
            target = join(dst, rel)
            makedirs(os.path.dirname(target))
            replace(join(src, rel), target)
    except BaseException:
        rmtree(dst, ignore_errors=True)
        raise
    rmtree(src, ignore_errors=True)


def save_figure(fig, path, **kwargs) -> None:
    """`fig.savefig` to any filesystem (PNG bytes rendered in memory, then `write_atomic`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=kwargs.pop("format", os.path.splitext(os.fspath(path))[1][1:] or "png"), **kwargs)
    write_atomic(path, buf.getvalue())


@contextlib.contextmanager
def staged(final, *temporaries) -> Iterator[None]:
    """For a block writing `temporaries` that become `final`: when it fails they are removed (a full disk
    keeps no half file), and a full disk is re-raised as OSError(ENOSPC) naming `final`."""
    try:
        yield
    except BaseException as err:
        for tmp in temporaries:
            with contextlib.suppress(Exception):
                remove(tmp, missing_ok=True)
        if isinstance(err, Exception) and is_out_of_space(err):
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(final)) from err
        raise


class NoSpaceError(OSError):
    """The device (or quota) filled up while writing; the message says what was being written, where, and
    what to do (training and export both raise it, with nothing partial left as complete)."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror


def is_out_of_space(err: BaseException) -> bool:
    """True for a full disk or quota: OSError ENOSPC / EDQUOT, TensorFlow's ResourceExhaustedError of a file
    write (e.g. SaveV2; not an out-of-memory one), or a TensorFlow error saying "No space left on device"."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    import tensorflow as tf

    text = str(err).lower()
    if isinstance(err, tf.errors.ResourceExhaustedError) and "oom" not in text and "allocat" not in text:
        return True  # (an out-of-memory error is a ResourceExhaustedError too)
    return isinstance(err, tf.errors.OpError) and "no space left on device" in text


def copy_tree(src, dst) -> None:
    """Copy every file under the directory `src` to the same relative path under `dst` (any two filesystems)."""
    for rel in walk_files(src):
        target = join(dst, rel)
        makedirs(os.path.dirname(target))
        copy(join(src, rel), target)


def json_safe(value: Any) -> Any:
    """`value` for strict JSON: non-finite floats -> None, numpy scalars and arrays -> Python, keys -> str."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # arrays and scalars; numpy stays unimported
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def json_text(value: Any) -> str:
    """Indented strict JSON of `json_safe(value)`, with a final newline."""
    return json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n"
