"""ExampleGen: an AASCE-format root or `seg4reg data convert` shards -> tf.Examples, split by the fixed rule.

Splits follow the project's fixed rule (README, "Data layout"), not a hash: the image at 0-based row `i` of
filenames.csv goes to `eval` when
`i % 5 == 4`, else to `train`. Convert shards restore that order: record `i` is in shard `i % N` at
position `i // N`. Examples from an AASCE root are `seg4reg_tf.data.tfrecords.record_to_example`;
convert shards are passed through byte for byte, so a malformed record reaches the ExampleValidator.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Any, Dict

import apache_beam as beam
from tfx.components import FileBasedExampleGen
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

TRAIN, EVAL = "train", "eval"
VAL_EVERY, VAL_REMAINDER = 5, 4  # the fixed split: index % 5 == 4 validates
_SHARD = re.compile(r"^(?P<split>.+)-(?P<k>\d{5})-of-(?P<n>\d{5})\.tfrecord$")


def is_eval_index(index: int) -> bool:
    """True for the rows of the fixed validation split."""
    return index % VAL_EVERY == VAL_REMAINDER


def input_pattern(data_root: str, split: str = "training", source_format: str | None = None) -> str:
    """The ExampleGen input pattern for `data_root` (it also fingerprints the input for caching).

    `source_format` ("aasce" | "tfrecords") skips looking at `data_root` (for remote roots).
    Raises ValueError naming what was expected when `data_root` is neither kind of source.
    """
    if source_format == "aasce":
        return f"*/{split}/*"
    if source_format == "tfrecords":
        return f"{split}-*-of-*.tfrecord"
    from seg4reg_tf import fileio

    if fileio.isfile(os.path.join(data_root, "labels", split, "filenames.csv")):
        return f"*/{split}/*"  # data/<split>/* and labels/<split>/*
    if _shard_paths(data_root, split):
        return f"{split}-*-of-*.tfrecord"
    raise ValueError(
        f"--data {data_root}: neither an AASCE-format root (no labels/{split}/filenames.csv) nor a directory of "
        f"`seg4reg data convert` shards ({split}-NNNNN-of-NNNNN.tfrecord)")


def _aasce_items(root: str, split: str) -> list:
    from seg4reg_tf.data import aasce

    records = aasce.load_split(root, split, progress=False)
    if len(records) < VAL_EVERY:
        raise ValueError(f"{root}: split {split!r} has {len(records)} images; the fixed split needs at least "
                         f"{VAL_EVERY} (index % {VAL_EVERY} == {VAL_REMAINDER} validates)")
    return list(enumerate(records))


def _to_example(item):
    from seg4reg_tf.data.tfrecords import record_to_example

    index, record = item
    return index, record_to_example(record).SerializeToString()


def _shard_paths(root: str, split: str) -> list[str]:
    """The `split-*-of-*.tfrecord` files in `root` (any TensorFlow filesystem), sorted."""
    from seg4reg_tf import fileio

    if fileio.is_url(root):
        return fileio.glob(os.path.join(root, f"{split}-*-of-*.tfrecord"))
    return sorted(glob.glob(os.path.join(glob.escape(root), f"{glob.escape(split)}-*-of-*.tfrecord")))


def _shards(root: str, split: str) -> list:
    paths = _shard_paths(root, split)
    parsed = [_SHARD.match(os.path.basename(p)) for p in paths]
    n = len(paths)
    for k, (p, m) in enumerate(zip(paths, parsed)):
        if m is None or int(m["k"]) != k or int(m["n"]) != n:
            raise ValueError(f"{p}: expected the shards {split}-00000-of-{n:05d} .. {split}-{n - 1:05d}-of-{n:05d}"
                             ".tfrecord of `seg4reg data convert` (record i in shard i % N)")
    return [(k, p, n) for k, p in enumerate(paths)]


def _read_shard(shard):
    import tensorflow as tf

    k, path, n = shard
    for pos, raw in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        yield pos * n + k, raw


def _split_of(item, _num_partitions) -> int:
    return 1 if is_eval_index(item[0]) else 0


class Executor(BaseExampleGenExecutor):
    """Reads the one input split and partitions it by the fixed rule into `train` and `eval`."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # noqa: N802 (TFX's name)
        raise NotImplementedError("GenerateExamplesByBeam is overridden (fixed split, not hash buckets)")

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]):  # noqa: N802
        from tfx.utils import proto_utils

        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties["input_config"], input_config)
        if len(input_config.splits) != 1:
            raise ValueError(f"input_config: expected one input split, got {len(input_config.splits)}")
        pattern = input_config.splits[0].pattern
        root = exec_properties["input_base"]
        if pattern.endswith(".tfrecord"):
            split = pattern.split("-*-of-*")[0]
            indexed = pipeline | "Shards" >> beam.Create(_shards(root, split)) | "Read" >> beam.FlatMap(_read_shard)
        else:
            split = pattern.split("/")[1]
            indexed = (pipeline | "Records" >> beam.Create(_aasce_items(root, split))
                       | "ToExample" >> beam.Map(_to_example))
        train, evals = indexed | "FixedSplit" >> beam.Partition(_split_of, 2)
        return {TRAIN: train | "TrainBytes" >> beam.Map(lambda kv: kv[1]),
                EVAL: evals | "EvalBytes" >> beam.Map(lambda kv: kv[1])}


def make_example_gen(data_root: str, split: str = "training", source_format: str | None = None
                     ) -> FileBasedExampleGen:
    """The ExampleGen of `data_root` (absolute path): outputs Examples with splits train and eval."""
    pattern = input_pattern(data_root, split, source_format)
    return FileBasedExampleGen(
        input_base=data_root,
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern=pattern)]),
        # hash buckets are not used (the executor applies the fixed rule); they name the splits, 4:1 as the rule
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name=TRAIN, hash_buckets=4),
            example_gen_pb2.SplitConfig.Split(name=EVAL, hash_buckets=1)])),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor),
    )
