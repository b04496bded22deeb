"""TFRecord serialisation of AASCE records (one tf.train.Example per X-ray).

Features:
    image/encoded   bytes   the original image file bytes (JPEG or PNG, unchanged)
    image/height    int64   original height in pixels
    image/width     int64   original width in pixels
    image/filename  bytes   the name as in filenames.csv (UTF-8)
    landmarks       float[136]  pixels, row-major of the (68, 2) array: x0, y0, x1, y1, ...
    angles          float[3]    degrees [PT, MT, TL]

Files may be uncompressed (`seg4reg data convert`) or GZIP / ZLIB compressed, told by the name
(`*.gz`, as TFX's ExampleGen writes them; `compression_of`), on any TensorFlow filesystem.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from seg4reg_tf import fileio
from seg4reg_tf.data.aasce import AasceRecord

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "landmarks": tf.io.FixedLenFeature([136], tf.float32),
    "angles": tf.io.FixedLenFeature([3], tf.float32),
}


def _bytes(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _int(v: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))


def _floats(v) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in v]))


def record_to_example(record: AasceRecord, image_bytes: bytes | None = None) -> tf.train.Example:
    """`AasceRecord` -> tf.train.Example (reads `record.image_path` unless `image_bytes` is given)."""
    lm = np.asarray(record.landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"{record.filename}: landmarks expected shape (68, 2), got {lm.shape}")
    ang = np.asarray(record.angles, dtype=np.float64)
    if ang.shape != (3,):
        raise ValueError(f"{record.filename}: angles expected shape (3,), got {ang.shape}")
    if image_bytes is None:
        image_bytes = record.read_image()
    feature = {
        "image/encoded": _bytes(image_bytes),
        "image/height": _int(record.height),
        "image/width": _int(record.width),
        "image/filename": _bytes(record.filename.encode("utf-8")),
        "landmarks": _floats(lm.reshape(-1)),
        "angles": _floats(ang),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_paths(out_dir: str, split: str, num_shards: int) -> list[str]:
    """`out_dir/<split>-00000-of-0000N.tfrecord`, ..."""
    return [fileio.join(out_dir, f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord") for i in range(num_shards)]


def write_records(records, paths: list[str], progress: bool = True, desc: str = "tfrecords") -> list[str]:
    """Write records round-robin into the given shard files; returns the paths."""
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    try:
        for i, rec in enumerate(tqdm(records, desc=desc, unit="img", disable=not progress)):
            writers[i % len(writers)].write(record_to_example(rec).SerializeToString())
    finally:
        for w in writers:
            w.close()
    return paths


def convert_split(root: str, out_dir: str, split: str = "training", num_shards: int = 4,
                  records: list[AasceRecord] | None = None, progress: bool = True) -> list[str]:
    """Convert an AASCE split (`aasce.load_split(root, split)`, or the given `records`) to sharded TFRecords.

    Records are assigned round-robin (record i -> shard i % num_shards), so reading the shards with
    `pipeline.build_dataset` interleaved in order restores the original order.
    Returns the shard paths `out_dir/<split>-0000i-of-0000N.tfrecord`.
    """
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards: expected a positive int, got {num_shards!r}")
    if records is None:
        from seg4reg_tf.data.aasce import load_split

        records = load_split(root, split)
    fileio.makedirs(out_dir)
    return write_records(records, shard_paths(out_dir, split, num_shards), progress, desc=f"{split} -> tfrecords")


def parse_example(serialized) -> dict[str, tf.Tensor]:
    """Serialized tf.Example -> dict: image/encoded string [], image/height int64 [], image/width int64 [],
    image/filename string [], landmarks float32 [68, 2] pixels, angles float32 [3] degrees."""
    d = tf.io.parse_single_example(serialized, FEATURES)
    d["landmarks"] = tf.reshape(d["landmarks"], [68, 2])
    return d


def parse_examples(serialized) -> dict[str, tf.Tensor]:
    """Batched `parse_example`: string [B] -> the same keys with a leading batch dimension."""
    d = tf.io.parse_example(serialized, FEATURES)
    d["landmarks"] = tf.reshape(d["landmarks"], [-1, 68, 2])
    return d


def read_records(patterns, what: str = "source") -> list[AasceRecord]:
    """The tf.Examples of TFRecord files (paths / globs, `expand_patterns`) as `AasceRecord`s carrying their
    image bytes (`image_bytes`; `image_path` = "FILE#i"), in file order then record order.

    Raises ValueError naming `what`, the file and the record index for a malformed record (as `count_examples`).
    """
    out = []
    for path in expand_patterns(patterns, what):
        ds = tf.data.TFRecordDataset(path, compression_type=compression_of(path)).map(parse_example)
        index = 0
        try:
            for d in ds.as_numpy_iterator():
                out.append(AasceRecord(
                    filename=d["image/filename"].decode("utf-8"), image_path=f"{path}#{index}",
                    height=int(d["image/height"]), width=int(d["image/width"]),
                    landmarks=d["landmarks"].astype(np.float64), angles=d["angles"].astype(np.float64),
                    image_bytes=bytes(d["image/encoded"])))
                index += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            raise ValueError(_bad_record(what, path, index, err)) from None
    return out


def _bad_record(what: str, path: str, index: int, err) -> str:
    detail = str(getattr(err, "message", err)).strip().splitlines()[0][:300]
    return (f"{what}: {path}: record {index} is not a seg4reg tf.Example or the file is corrupt (expected the "
            f"features of seg4reg_tf.data.tfrecords, compression {compression_of(path) or 'none'}): {detail}")


def compression_of(path: str) -> str:
    """The `tf.data.TFRecordDataset` compression of a file, from its name: "GZIP" for `*.gz` / `*.gzip`
    (TFX's ExampleGen output), "ZLIB" for `*.zlib`, else "" (uncompressed)."""
    name = os.fspath(path).lower()
    if name.endswith((".gz", ".gzip")):
        return "GZIP"
    return "ZLIB" if name.endswith(".zlib") else ""


def expand_patterns(patterns, what: str = "source") -> list[str]:
    """The TFRecord files of one or more paths / glob patterns (`*`, `?`, `[...]`), each pattern's matches
    sorted, directories skipped. ValueError naming `what` and the pattern that matches no file."""
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    patterns = [os.fspath(p) for p in patterns]
    if not patterns:
        raise ValueError(f"{what}: expected TFRecord file paths or glob patterns, got none")
    files: list[str] = []
    for pattern in patterns:
        matches = [p for p in fileio.glob(pattern) if not fileio.isdir(p)]
        if not matches:
            raise ValueError(f"{what}: no TFRecord files match {pattern!r}")
        files.extend(matches)
    return files


def count_examples(files, what: str = "source") -> int:
    """Number of tf.Examples in TFRecord `files`, each parsed with `parse_example` on the way.

    Raises ValueError naming `what`, the file and the record index when a file is corrupt, compressed
    otherwise than its name says, or holds a record that is not a seg4reg tf.Example (module docstring).
    """
    total = 0
    for path in files:
        ds = tf.data.TFRecordDataset(path, compression_type=compression_of(path)).map(parse_example)
        index = 0
        try:
            for _ in ds:
                index += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            raise ValueError(_bad_record(what, path, index, err)) from None
        total += index
    return total
