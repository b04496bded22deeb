"""The examples training reads: an AASCE root's fixed split, or TFRecord files for each split.

`training_splits(data, val_data=None, fit_on="train") -> (train Split, validation Split)`:
- `data` an AASCE-format root (a directory holding data/training and labels/training) and no
  `val_data`: split "training" divided by the fixed rule (0-based index % 5 == 4 validates,
  `aasce.train_val_split`; `val_fold` 0-3 holds out another fifth); with `fit_on="all"` (a refit)
  training takes every image, validation stays the fixed split's (then inside the training set);
- `data` and `val_data` TFRecord files, each a path or glob pattern or a list of them (the
  `data.tfrecords` features; `*.gz` read as GZIP, as TFX's ExampleGen writes them): the training and
  the validation examples as they are.
Paths may be on any TensorFlow filesystem (gs://...). Every example is read once here, so a missing
or malformed file is named before training starts.
"""
from __future__ import annotations

import dataclasses
import os

from seg4reg_tf import fileio
from seg4reg_tf.data import aasce
from seg4reg_tf.data.tfrecords import count_examples, expand_patterns

SPLIT = "training"
VAL_EVERY = aasce.FOLDS  # the fixed split: 0-based index % 5 == 4 validates


class DataSourceError(ValueError):
    """Training data that cannot be used as given (the message names the argument, file or pattern)."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split's examples: AASCE `records` or TFRecord `files` (one of the two), `count` examples,
    `origin` (what the examples came from, for messages and the run summary)."""

    count: int
    origin: str
    records: tuple | None = None
    files: tuple[str, ...] | None = None

    def dataset_kwargs(self) -> dict:
        """The `source` / `records` arguments of `pipeline.build_dataset` that read this split."""
        if self.files is not None:
            return {"source": list(self.files), "records": None}
        return {"source": None, "records": list(self.records)}


def fixed_split(root, fold: int = aasce.VAL_FOLD) -> tuple[list, list]:
    """(train, val) `AasceRecord` lists of split "training" of the AASCE root (index % 5 == `fold`
    validates; 4 = the fixed split).

    Raises FileNotFoundError when `root` is not a directory, AasceFormatError naming the file for a
    malformed root or one with fewer than 5 images.
    """
    root = os.fspath(root)
    if not fileio.isdir(root):
        raise FileNotFoundError(f"data root: {root!r} is not a directory (expected an AASCE-format root "
                                "with data/training and labels/training)")
    records = aasce.load_split(root, SPLIT)
    train_recs, val_recs = aasce.train_val_split(records, fold)
    if not train_recs or not val_recs:
        raise aasce.AasceFormatError(
            f"data root {root!r}: split 'training' has {len(records)} images; need at least {VAL_EVERY} "
            f"for the fixed train/validation split (index % {VAL_EVERY} == {fold} validates)")
    return train_recs, val_recs


def tfrecord_split(patterns, what: str) -> Split:
    """The examples of TFRecord `patterns` (path / glob or a list); DataSourceError naming `what` and the
    pattern or file when nothing matches, a file is malformed, or there is no example."""
    try:
        files = expand_patterns(patterns, what)
        count = count_examples(files, what)
    except DataSourceError:
        raise
    except ValueError as err:
        raise DataSourceError(str(err)) from None
    if count == 0:
        raise DataSourceError(f"{what}: the files matching {patterns!r} hold no examples (expected at least one)")
    given = [patterns] if isinstance(patterns, (str, os.PathLike)) else list(patterns)
    origin = f"{', '.join(os.fspath(p) for p in given)} ({len(files)} TFRecord file{'s' if len(files) > 1 else ''})"
    return Split(count=count, origin=origin, files=tuple(files))


def _is_patterns(value) -> bool:
    return isinstance(value, (str, os.PathLike)) or (
        isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, (str, os.PathLike)) for v in value))


def training_splits(data, val_data=None, fit_on: str = "train", val_fold: int = aasce.VAL_FOLD) -> tuple[Split, Split]:
    """(train, validation) `Split`s of the module docstring's two kinds of source; `fit_on` "train" or
    "all" (`TrainConfig.fit_on`: an AASCE root's every image in training); `val_fold` the fifth of an
    AASCE root that validates (`TrainConfig.val_fold`).

    Raises:
        FileNotFoundError / AasceFormatError for a missing or malformed AASCE root; DataSourceError (a
        ValueError) naming `data` or `val_data` for anything else (TFRecords without `val_data`, an AASCE root with it,
        patterns matching no file, malformed records).
    """
    if val_data is None:
        if not _is_patterns(data) or not isinstance(data, (str, os.PathLike)):
            raise DataSourceError(f"data: expected an AASCE-format root directory, or TFRecord patterns together with "
                             f"val_data, got {data!r:.200}")
        root = os.fspath(data)
        if not fileio.isdir(root):
            if any(c in root for c in "*?[") or fileio.isfile(root):
                raise DataSourceError(f"data: {root!r} names TFRecord files; give the validation examples too "
                                 "(val_data / --eval-files), or an AASCE-format root for the fixed split")
            raise FileNotFoundError(f"data root: {root!r} is not a directory (expected an AASCE-format root "
                                    "with data/training and labels/training)")
        train_recs, val_recs = fixed_split(root, val_fold)
        origin = fileio.absolute(root)
        if fit_on == "all":
            every = train_recs + val_recs
            return (Split(len(every), f"{origin} (every labelled image: a refit)", records=tuple(every)),
                    Split(len(val_recs), f"{origin} (fixed split: validation, also trained on)",
                          records=tuple(val_recs)))
        split = "fixed split" if val_fold == aasce.VAL_FOLD else f"fold {val_fold} held out"
        return (Split(len(train_recs), f"{origin} ({split}: train)", records=tuple(train_recs)),
                Split(len(val_recs), f"{origin} ({split}: validation)", records=tuple(val_recs)))
    if val_fold != aasce.VAL_FOLD:
        raise DataSourceError(f"train.val_fold: {val_fold} holds out a fifth of an AASCE root; with TFRecord files "
                              "the validation examples are val_data's (keep val_fold 4)")
    if fit_on == "all":
        raise DataSourceError("train.fit_on: 'all' refits on an AASCE root's every labelled image; with TFRecord "
                              "files put every training example in data (and keep fit_on 'train')")
    for name, value in (("data", data), ("val_data", val_data)):
        if not _is_patterns(value):
            raise DataSourceError(f"{name}: expected TFRecord file paths or glob patterns (a string or a list), "
                             f"got {value!r:.200}")
        for pattern in [value] if isinstance(value, (str, os.PathLike)) else value:
            if fileio.isdir(pattern):
                raise DataSourceError(f"{name}: {os.fspath(pattern)!r} is a directory; with val_data both are TFRecord "
                                 "files or patterns (e.g. 'DIR/*.tfrecord'); an AASCE root goes alone as data")
    return tfrecord_split(data, "data"), tfrecord_split(val_data, "val_data")
