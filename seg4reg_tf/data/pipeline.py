"""The tf.data input pipeline: decode + preprocess -> label maps -> cache -> shuffle + augment -> batch.

Elements (docs/architecture.md): `(features, targets)` with
    features = {"image": float32 [B, H, W, 1] in [0, 1]}
    targets  = {"angles": float32 [B, 3] degrees [PT, MT, TL], "labels": int32 [B, H, W] in 0..17,
                "landmarks": float32 [B, 68, 2] model-frame pixels (x, y), after augmentation}
and, with `with_metadata=True`, a third dict
    meta = {"filename": string [B], "transform": float32 [B, 5] (scale, pad_top, pad_left, h, w),
            "landmarks": float32 [B, 68, 2] original pixels, "landmarks_model": float32 [B, 68, 2]
            model-frame pixels (after augmentation, if any), "angles_original": float32 [B, 3]}.

Images are cached and carried as uint8 (steps of 1/255) between the deterministic stage and the
batch, so cached and uncached pipelines give identical values; the SavedModel's `preprocess` output
differs from them by at most 0.5/255.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from seg4reg_tf import fileio
from seg4reg_tf.data.aasce import AasceRecord
from seg4reg_tf.data.config import DataConfig
from seg4reg_tf.data.preprocess import decode_image, letterbox_points, preprocess
from seg4reg_tf.data.tfrecords import compression_of, expand_patterns, parse_example
from seg4reg_tf.geometry import cobb_angles, landmarks_to_label_map

# Corner order within a vertebra is TL, TR, BL, BR: a horizontal flip swaps TL<->TR and BL<->BR.
_FLIP_ORDER = np.array([4 * v + c for v in range(17) for c in (1, 0, 3, 2)], dtype=np.int32)


# ----------------------------------------------------------------------------------------- sources
def _records_dataset(records: Sequence[AasceRecord]) -> tf.data.Dataset:
    if len(records) == 0:
        raise ValueError("records: expected at least one AasceRecord, got an empty list")
    for r in records:
        if not isinstance(r, AasceRecord):
            raise ValueError(f"records: expected AasceRecord items, got {type(r).__name__}")
    lm = np.stack([np.asarray(r.landmarks, np.float32).reshape(68, 2) for r in records])
    ang = np.stack([np.asarray(r.angles, np.float32).reshape(3) for r in records])
    in_memory = [r.image_bytes is not None for r in records]
    if any(in_memory) and not all(in_memory):
        raise ValueError("records: expected all or none of them to carry image_bytes (records read from TFRecords "
                         "or from an AASCE root), got a mixture")
    ds = tf.data.Dataset.from_tensor_slices({
        "path": [r.image_path for r in records],
        "filename": [r.filename for r in records],
        "landmarks": lm,
        "angles": ang,
        **({"image_bytes": [r.image_bytes for r in records]} if all(in_memory) else {}),
    })

    def load(d):
        data = d["image_bytes"] if all(in_memory) else tf.io.read_file(d["path"])  # any TensorFlow filesystem
        return {"image_bytes": data, "filename": d["filename"], "landmarks": d["landmarks"], "angles": d["angles"]}

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _tfrecord_dataset(paths: Sequence[str]) -> tf.data.Dataset:
    # Shards are written round-robin; interleaving them in sorted order restores the record order.
    paths = list(paths)
    files = tf.data.Dataset.from_tensor_slices((paths, [compression_of(p) for p in paths]))
    ds = files.interleave(lambda path, compression: tf.data.TFRecordDataset(path, compression_type=compression),
                          cycle_length=len(paths), block_length=1, num_parallel_calls=min(len(paths), 8),
                          deterministic=True)

    def load(s):
        d = parse_example(s)
        return {"image_bytes": d["image/encoded"], "filename": d["image/filename"],
                "landmarks": d["landmarks"], "angles": d["angles"]}

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def _is_tfrecord_spec(s: str) -> bool:
    return s.endswith(".tfrecord") or any(c in s for c in "*?[")


def _expand_tfrecords(specs: Sequence[str]) -> list[str]:
    return expand_patterns(specs, "source")


def raw_dataset(source, *, split: str = "training", records=None) -> tf.data.Dataset:
    """Undecoded elements {image_bytes, filename, landmarks float32 [68, 2], angles float32 [3]}.

    `source`: an AASCE root directory (with `split`), a `(root, split)` pair, a list of `AasceRecord`,
    or TFRecord file paths / globs (a string or a list; `*.gz` read as GZIP, `tfrecords.compression_of`),
    on any TensorFlow filesystem. `records` (a list of `AasceRecord`) may be given instead of `source`.
    """
    if records is not None:
        return _records_dataset(list(records))
    if isinstance(source, (list, tuple)) and source and all(isinstance(r, AasceRecord) for r in source):
        return _records_dataset(list(source))
    if (isinstance(source, tuple) and len(source) == 2 and all(isinstance(s, (str, os.PathLike)) for s in source)
            and not _is_tfrecord_spec(os.fspath(source[1]))):
        if not fileio.isdir(source[0]):
            raise ValueError(f"source: AASCE root {os.fspath(source[0])!r} is not a directory")
        source, split = os.fspath(source[0]), str(source[1])
    if isinstance(source, (str, os.PathLike)):
        s = os.fspath(source)
        if not _is_tfrecord_spec(s) and fileio.isdir(s):
            from seg4reg_tf.data.aasce import load_split

            return _records_dataset(load_split(s, split))
        return _tfrecord_dataset(_expand_tfrecords([s]))
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return _tfrecord_dataset(_expand_tfrecords([os.fspath(s) for s in source]))
    raise ValueError(
        "source: expected an AASCE root directory, a (root, split) pair, a list of AasceRecord or "
        f"TFRecord paths / globs, got {source!r:.200}")


# ------------------------------------------------------------------------------ deterministic stage
def _label_map_fn(height: int, width: int):
    def fn(lm):
        return landmarks_to_label_map(lm.astype(np.float64), height, width)

    return fn


def prepare_example(raw: dict, cfg: DataConfig) -> dict:
    """Decode + preprocess one raw element; map landmarks to the model frame; rasterise the label map.

    Returns {"image": uint8 [H, W, 1], "labels": uint8 [H, W], "landmarks_model": float32 [68, 2],
    "angles": float32 [3] (the record's), "filename", "transform": float32 [5],
    "landmarks": float32 [68, 2] original}.
    """
    H, W = cfg.image_size
    image, t = preprocess(decode_image(raw["image_bytes"]), cfg)
    lm = raw["landmarks"]
    lm_model = letterbox_points(lm, t)
    labels = tf.numpy_function(_label_map_fn(H, W), [lm_model], tf.uint8, stateful=False)
    labels.set_shape([H, W])
    image_u8 = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)
    return {"image": image_u8, "labels": labels, "landmarks_model": lm_model, "angles": raw["angles"],
            "filename": raw["filename"], "transform": t, "landmarks": lm}


# ------------------------------------------------------------------------------------- augmentation
def _batch_targets_fn(height: int, width: int):
    """numpy: moved landmarks [B, 68, 2] -> (angles float32 [B, 3], label maps uint8 [B, H, W])."""

    def fn(lm):
        lm = lm.astype(np.float64)
        angles = np.zeros((len(lm), 3), np.float32)
        labels = np.zeros((len(lm), height, width), np.uint8)
        for i, p in enumerate(lm):
            angles[i] = cobb_angles(p, float(height))
            labels[i] = landmarks_to_label_map(p, height, width)
        return angles, labels

    return fn


def affine_matrices(size, rotation_rad, scale, shift_xy, flip) -> tf.Tensor:
    """Forward affines [B, 2, 3] in model-frame continuous pixels: p' = c + shift + scale * R(rot) * F * (p - c).

    Args: size (H, W); rotation_rad, scale, flip: [B]; shift_xy: [B, 2] pixels. c = (W / 2, H / 2) is
    the image centre, F = diag(-1, 1) when flipping (mirror about the centre), R rotates by the angle
    (clockwise on screen, since y points down).
    """
    H, W = float(size[0]), float(size[1])
    cos, sin = tf.cos(rotation_rad), tf.sin(rotation_rad)
    fx = tf.where(flip, -1.0, 1.0)
    m = scale[:, None, None] * tf.reshape(tf.stack([cos * fx, -sin, sin * fx, cos], axis=-1), [-1, 2, 2])
    c = tf.constant([W / 2.0, H / 2.0], tf.float32)
    b = c + shift_xy - tf.linalg.matvec(m, c)
    return tf.concat([m, b[:, :, tf.newaxis]], axis=2)


def _warp_batch(images, forward, interpolation: str):
    """Warp [B, H, W, C] with per-image forward [B, 2, 3] affines (continuous-pixel convention)."""
    m, b = forward[:, :, :2], forward[:, :, 2]
    b_idx = tf.linalg.matvec(m, tf.constant([0.5, 0.5])) + b - 0.5
    inv = tf.linalg.inv(m)
    c = -tf.linalg.matvec(inv, b_idx)
    zeros = tf.zeros_like(c[:, 0])
    transforms = tf.stack([inv[:, 0, 0], inv[:, 0, 1], c[:, 0], inv[:, 1, 0], inv[:, 1, 1], c[:, 1], zeros, zeros],
                          axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation=interpolation, fill_mode="CONSTANT")
    out.set_shape(images.shape)
    return out


def augment_batch(batch: dict, seed, cfg: DataConfig) -> dict:
    """Random augmentation of a batch (each example gets its own parameters).

    One random affine per example (rotation, isotropic scale, translation, horizontal flip about the
    image centre) moves the image (bilinear, zero fill) and the landmarks (same matrix; on a flip
    TL<->TR and BL<->BR are swapped so vertebra vectors keep pointing right). The label map is then
    re-rasterised from the moved landmarks (`geometry.landmarks_to_label_map`; exactly aligned and
    cheaper than a nearest-neighbour warp) and the three angles are recomputed from them with the
    model-frame height (official semantics). Photometric jitter on the image only: gamma (as a
    256-entry LUT on the uint8 image, before the warp), contrast about the image mean, brightness,
    zero-mean noise of standard deviation `noise_std` (triangular: a cheap Gaussian stand-in), clip to [0, 1];
    then the film's export degradations, when configured (`_degrade`: fewer grey levels, JPEG).

    Args:
        batch: the dict of `prepare_example` with a leading batch dimension ("image" uint8
            [B, H, W, 1] or float in [0, 1]).
        seed: int [2] for the stateless random ops.
        cfg: `DataConfig` (image_size, augment).
    Returns:
        the same dict with "image" float32 [B, H, W, 1], "labels" uint8 [B, H, W], "landmarks_model"
        float32 [B, 68, 2] and "angles" float32 [B, 3] replaced.
    """
    a = cfg.augment
    H, W = cfg.image_size
    n = tf.shape(batch["landmarks_model"])[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 9)

    def u(i, lo, hi):
        return tf.random.stateless_uniform([n], seeds[i], float(lo), float(hi))

    def per_image(x):
        return x[:, None, None, None]

    rot = u(0, -a.rotation_deg, a.rotation_deg) * (math.pi / 180.0)
    scale = u(1, a.scale_range[0], a.scale_range[1])
    shift = tf.stack([u(2, -a.translate_frac, a.translate_frac) * W,
                      u(3, -a.translate_frac, a.translate_frac) * H], axis=1)
    flip = u(4, 0.0, 1.0) < a.hflip_prob
    forward = affine_matrices((H, W), rot, scale, shift, flip)

    gamma = u(5, a.gamma[0], a.gamma[1])
    image = batch["image"]
    if image.dtype == tf.uint8:  # gamma as a per-image LUT: far cheaper than pow on every pixel
        lut = tf.pow(tf.range(256, dtype=tf.float32)[tf.newaxis, :] / 255.0, gamma[:, tf.newaxis])  # [B, 256]
        idx = tf.reshape(tf.cast(image, tf.int32), [n, -1])
        image = tf.reshape(tf.gather(lut, idx, batch_dims=1), tf.shape(image))
    else:
        image = tf.pow(tf.clip_by_value(tf.cast(image, tf.float32), 0.0, 1.0), per_image(gamma))
    image = _warp_batch(image, forward, "BILINEAR")
    lm = tf.matmul(batch["landmarks_model"], forward[:, :, :2], transpose_b=True) + forward[:, tf.newaxis, :, 2]
    lm = tf.where(flip[:, None, None], tf.gather(lm, _FLIP_ORDER, axis=1), lm)

    mean = tf.reduce_mean(image, axis=[1, 2, 3], keepdims=True)
    image = (image - mean) * per_image(u(6, 1.0 - a.contrast, 1.0 + a.contrast)) + mean
    image = image + per_image(u(7, -a.brightness, a.brightness))
    if a.noise_std > 0:
        # Zero-mean triangular noise (sum of two uniforms) with standard deviation noise_std: a cheap
        # stand-in for Gaussian noise (stateless_normal costs ~5x more here).
        two = tf.random.stateless_uniform(tf.concat([[2], tf.shape(image)], 0), seeds[8])
        image = image + (a.noise_std * math.sqrt(6.0)) * (two[0] + two[1] - 1.0)
    image = _degrade(tf.clip_by_value(image, 0.0, 1.0), tf.random.experimental.stateless_fold_in(
        tf.cast(seed, tf.int64), 1), a)  # its own stream: the draws above do not depend on it

    angles, labels = tf.numpy_function(_batch_targets_fn(H, W), [lm], (tf.float32, tf.uint8), stateful=False)
    angles.set_shape([None, 3])
    labels.set_shape([None, H, W])
    image.set_shape([None, H, W, 1])
    out = dict(batch)
    out.update(image=image, labels=labels, landmarks_model=lm, angles=angles)
    return out


def _degrade(image, seed, a) -> tf.Tensor:
    """The degradations films arrive with (`AugmentConfig.bit_depth_prob`, `jpeg_prob`): fewer grey levels,
    then lossy compression, each per image with its probability. image float32 [B, H, W, 1] in [0, 1]."""
    if a.bit_depth_prob <= 0 and a.jpeg_prob <= 0:
        return image
    n = tf.shape(image)[0]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    if a.bit_depth_prob > 0:
        bits = tf.random.stateless_uniform([n], seeds[0], a.bit_depth[0], a.bit_depth[1] + 1, tf.int32)
        levels = tf.cast(2 ** bits - 1, tf.float32)[:, None, None, None]
        apply = tf.random.stateless_uniform([n], seeds[1]) < a.bit_depth_prob
        image = tf.where(apply[:, None, None, None], tf.round(image * levels) / levels, image)
    if a.jpeg_prob > 0:
        quality = tf.random.stateless_uniform([n], seeds[2], a.jpeg_quality[0], a.jpeg_quality[1] + 1, tf.int32)
        apply = tf.random.stateless_uniform([n], seeds[3]) < a.jpeg_prob

        def one(args):
            x, q, on = args
            return tf.cond(on, lambda: tf.image.adjust_jpeg_quality(x, q), lambda: x)

        image = tf.map_fn(one, (image, quality, apply), fn_output_signature=tf.float32)
    return image


def augment_example(ex: dict, seed, cfg: DataConfig) -> dict:
    """`augment_batch` on a single example (no batch dimension)."""
    batch = {k: tf.convert_to_tensor(v)[tf.newaxis] for k, v in ex.items()}
    out = augment_batch(batch, seed, cfg)
    return {k: v[0] for k, v in out.items()}


# --------------------------------------------------------------------------------------- the builder
def _finalize(ex: dict, with_metadata: bool):
    image = ex["image"]
    if image.dtype == tf.uint8:
        image = tf.cast(image, tf.float32) / 255.0
    features = {"image": image}
    targets = {"angles": tf.cast(ex["angles"], tf.float32), "labels": tf.cast(ex["labels"], tf.int32),
               "landmarks": tf.cast(ex["landmarks_model"], tf.float32)}
    if not with_metadata:
        return features, targets
    meta = {"filename": ex["filename"], "transform": ex["transform"], "landmarks": ex["landmarks"],
            "landmarks_model": ex["landmarks_model"], "angles_original": ex["angles_original"]}
    return features, targets, meta


def build_dataset(source, cfg: DataConfig, *, training: bool, records=None, batch_size: int | None = None,
                  repeat: bool = False, seed: int | None = None, split: str = "training",
                  with_metadata: bool = False, augment: bool | None = None) -> tf.data.Dataset:
    """Batched `(features, targets)` (or `(features, targets, meta)`) for `model.fit` / evaluation.

    Args:
        source: AASCE root directory (with `split`), `(root, split)`, list of `AasceRecord`, or TFRecord
            paths / globs (see `raw_dataset`). May be None when `records` is given.
        cfg: `DataConfig`.
        training: shuffle, and augment when `cfg.augment.enabled` (override with `augment`).
        records: list of `AasceRecord` to use instead of `source` (e.g. from `aasce.train_val_split`).
        batch_size: overrides `cfg.batch_size`.
        repeat: repeat indefinitely (reshuffled and re-augmented each pass).
        seed: makes shuffling and augmentation reproducible.
        split: the split name when `source` is an AASCE root.
        with_metadata: also yield the `meta` dict (module docstring).
        augment: force augmentation on/off (default: `training and cfg.augment.enabled`).
    Without augmentation, `angles` are the record's (angles.csv); they equal the angles recomputed in
    the model frame within the CSV rounding because letterboxing is isotropic and centre-padded.
    With augmentation they are recomputed from the moved landmarks and the model-frame height.
    """
    if not isinstance(cfg, DataConfig):
        raise ValueError(f"cfg: expected a DataConfig, got {type(cfg).__name__}")
    bs = cfg.batch_size if batch_size is None else int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    do_augment = (training and cfg.augment.enabled) if augment is None else bool(augment)
    par = tf.data.AUTOTUNE if cfg.num_parallel_calls == -1 else cfg.num_parallel_calls

    ds = raw_dataset(source, split=split, records=records)
    if training and not cfg.cache:  # shuffle the cheap raw elements instead of decoded images
        ds = ds.shuffle(cfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    def prep(raw):
        ex = prepare_example(raw, cfg)
        ex["angles_original"] = ex["angles"]
        return ex

    ds = ds.map(prep, num_parallel_calls=par, deterministic=True)
    if cfg.cache:
        ds = ds.cache()
        if training:
            ds = ds.shuffle(cfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(bs, drop_remainder=False, num_parallel_calls=par, deterministic=True)
    if do_augment:  # vectorised over the batch: one op / numpy call per batch
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))
        ds = ds.map(lambda b, s: augment_batch(b, s, cfg), num_parallel_calls=par, deterministic=True)
    ds = ds.map(lambda b: _finalize(b, with_metadata), num_parallel_calls=par, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def build_eval_dataset(source, cfg: DataConfig, *, records=None, batch_size: int | None = None,
                       split: str = "training") -> tf.data.Dataset:
    """Deterministic, unaugmented `(features, targets, meta)` batches in source order (for evaluation/export)."""
    return build_dataset(source, cfg, training=False, records=records, batch_size=batch_size, split=split,
                         with_metadata=True)
