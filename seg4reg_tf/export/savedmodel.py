"""Export a trained model as a TF Serving SavedModel (`BASE/N/`) with in-graph preprocessing.

Signatures (method `tensorflow/serving/predict`), as docs/architecture.md fixes them:
- `serving_default`: `image_bytes` tf.string [B] (JPEG/PNG, 8/16-bit) -> model outputs + mapping
  outputs `original_size` int32 [B, 2] (h, w), `scale` float32 [B], `padding` float32 [B, 2] (top, left).
- `predict_image`: `image` float32 [B, H, W, 1] (preprocessed) -> model outputs.
- `predict_example`: `examples` tf.string [B] (serialized tf.Example) -> as `serving_default`.
Model outputs: `cobb_angles`, `cobb_angles_image`, `cobb_angles_segmentation`, `cobb_angles_geometry`
float32 [B, 3] deg, `consistency` float32 [B] deg, with a geometry head `end_vertebrae` int32 [B, 3, 2]
(0 = T1 .. 16 = L5, upper and lower of PT, MT, TL), `vertebra_landmarks` float32 [B, 68, 2] (model-frame
px), `vertebra_tilts` [B, 17] deg, `vertebra_visible` [B, 17] (0/1), `vertebra_labels` uint8 [B, H, W] (argmax of `segmentation`),
`attention_map` float32 [B, h, w]; heads the model lacks are absent; and every signature adds
`measurable_score` float32 [B] in (0, 1) (>= 0.5: measurable) and `measurable_reason` tf.string [B]
("" or why not: `export.measurable`). `predict_image` refuses non-finite pixels (InvalidArgument).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import tensorflow as tf

from seg4reg_tf.export import measurable
from seg4reg_tf.export.half_precision import HalfPrecisionWeights
from seg4reg_tf.export.layout import (CONFIG_RELPATH, EXAMPLE_IMAGE_KEY, IMAGE_BYTES_INPUT, JPEG_SOI,
                                      MEMBER_CONFIG_RELPATH, PNG_SIGNATURE, PREDICT_EXAMPLE, PREDICT_IMAGE,
                                      SERVING_DEFAULT, WARMUP_RELPATH)
from seg4reg_tf.data import preprocess as pp
from seg4reg_tf.data.tfrecords import FEATURES as EXAMPLE_FEATURES

MIN_SIDE = 64
MAX_SIDE = 16384
MAX_PIXELS = 50_000_000
ANGLE_OUTPUTS = ("cobb_angles", "cobb_angles_image", "cobb_angles_segmentation", "cobb_angles_geometry")
# the geometry head's vertebrae (model frame, before the letterbox is undone): float32 outputs
VERTEBRA_OUTPUTS = ("vertebra_landmarks", "vertebra_tilts", "vertebra_visible")


def image_size_of(data_cfg) -> tuple[int, int]:
    """(H, W) model input size from a DataConfig-like object (`image_size` = (H, W))."""
    size = getattr(data_cfg, "image_size", None)
    if size is None or len(tuple(size)) != 2 or any(int(s) <= 0 for s in size):
        raise ValueError(f"data.image_size: expected (height, width) positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def header_shape(data: tf.Tensor) -> tf.Tensor:
    """int32 [2] (height, width) of a scalar JPEG/PNG byte string, read from the header only.

    Raises InvalidArgumentError (at run time) for bytes that are neither PNG nor JPEG.
    """
    n = tf.strings.length(data)
    is_png = tf.logical_and(n >= 24, tf.equal(tf.strings.substr(data, 0, 8), PNG_SIGNATURE))
    is_jpeg = tf.logical_and(n >= 4, tf.equal(tf.strings.substr(data, 0, 3), JPEG_SOI))
    check = tf.debugging.Assert(
        tf.logical_or(is_png, is_jpeg),
        ["image_bytes: not a JPEG or PNG image (unrecognised header); got", n, "bytes"],
    )
    with tf.control_dependencies([check]):

        def png_shape():
            # IHDR: width, height as big-endian uint32 at bytes 16..23.
            wh = tf.io.decode_raw(tf.strings.substr(data, 16, 8), tf.int32, little_endian=False)
            return tf.reshape(tf.stack([wh[1], wh[0]]), [2])

        def jpeg_shape():
            return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int32)

        return tf.cond(is_png, png_shape, jpeg_shape)


def check_image_size(hw: tf.Tensor) -> tf.Operation:
    """Assert op: both sides in [MIN_SIDE, MAX_SIDE] px and at most MAX_PIXELS pixels."""
    h, w = hw[0], hw[1]
    ok = tf.reduce_all(
        tf.stack(
            [
                h >= MIN_SIDE,
                w >= MIN_SIDE,
                h <= MAX_SIDE,
                w <= MAX_SIDE,
                tf.cast(h, tf.int64) * tf.cast(w, tf.int64) <= MAX_PIXELS,
            ]
        )
    )
    return tf.debugging.Assert(
        ok,
        [
            f"image_bytes: image size out of range: each side must be in {MIN_SIDE}..{MAX_SIDE} px "
            f"and at most {MAX_PIXELS} pixels in all; got height, width =",
            h,
            w,
        ],
    )


class _Graph:
    """The in-graph functions shared by the three signatures (`half`: the model's float16 weights, or None)."""

    def __init__(self, model, data_cfg, half: HalfPrecisionWeights | None = None):
        self.model = model
        self.data_cfg = data_cfg
        self.size = image_size_of(data_cfg)
        self.half = half
        # one traced function for the three signatures: saved_model.pb holds the network's graph once
        self.model_outputs = tf.function(self._model_outputs, input_signature=[
            tf.TensorSpec([None, *self.size, 1], tf.float32)])

    def _model_outputs(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        if self.half is None:
            raw = self.model({"image": images}, training=False)
        else:
            with self.half.scope():
                raw = self.model({"image": images}, training=False)
        if not isinstance(raw, dict):
            raise TypeError(f"model: expected a dict of outputs, got {type(raw).__name__}")
        out = {}
        for key in ANGLE_OUTPUTS:
            if key in raw:
                out[key] = tf.identity(tf.cast(raw[key], tf.float32), name=key)
        if "consistency" in raw:
            out["consistency"] = tf.reshape(tf.cast(raw["consistency"], tf.float32), [-1])
        for key in VERTEBRA_OUTPUTS:
            if key in raw:
                out[key] = tf.cast(raw[key], tf.float32)
        if "end_vertebrae" in raw:
            out["end_vertebrae"] = tf.cast(raw["end_vertebrae"], tf.int32)
        if "segmentation" in raw:
            out["vertebra_labels"] = tf.cast(tf.argmax(raw["segmentation"], axis=-1), tf.uint8)
        if "attention_map" in raw:
            att = tf.cast(raw["attention_map"], tf.float32)
            if att.shape.rank == 4:
                att = att[..., 0]
            out["attention_map"] = att
        if not out:
            raise ValueError(f"model: none of the expected outputs found; got keys {sorted(raw)}")
        return out

    def one_image(self, data: tf.Tensor):
        hw = header_shape(data)
        with tf.control_dependencies([check_image_size(hw)]):
            image = pp.decode_image(data)
        image = tf.ensure_shape(tf.cast(image, tf.float32), [None, None, 1])
        stats = measurable.image_statistics(image)
        image, transform = pp.preprocess(image, self.data_cfg)
        h, w = self.size
        return tf.ensure_shape(image, [h, w, 1]), tf.ensure_shape(tf.cast(transform, tf.float32), [5]), stats

    def from_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """`predict_image`: finite pixels only (InvalidArgument naming the tensor otherwise)."""
        images = tf.debugging.assert_all_finite(
            images, "image: pixel values must be finite (the input holds NaN or Inf)")
        out = self.model_outputs(images)
        out.update(measurable.assess(measurable.model_input_statistics(images), out))
        return out

    def from_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        h, w = self.size
        images, transforms, stats = tf.map_fn(
            self.one_image,
            image_bytes,
            fn_output_signature=(tf.TensorSpec([h, w, 1], tf.float32), tf.TensorSpec([5], tf.float32),
                                 tf.TensorSpec([2], tf.float32)),
        )
        out = self.model_outputs(images)
        out.update(measurable.assess(measurable.statistics_dict(stats), out))
        out["original_size"] = tf.cast(tf.round(transforms[:, 3:5]), tf.int32)
        out["scale"] = transforms[:, 0]
        out["padding"] = transforms[:, 1:3]
        return out


def export_model(
    model,
    data_cfg,
    base_path,
    version: int,
    *,
    warmup_images: Sequence[bytes] | None = None,
    config=None,
    member_configs: Sequence | None = None,
    weights_dtype: str = "float32",
) -> str:
    """Write `base_path/version/` (saved_model.pb, variables/, assets.extra/) and return its path.

    Args:
        model: keras.Model called on {"image": float32 [B, H, W, 1]} returning the output dict.
        data_cfg: DataConfig (`image_size` = (H, W), preprocessing switches of `data.preprocess`).
        base_path: the TF Serving model base path; created if missing.
        version: positive int; an existing `base_path/version` is never overwritten (FileExistsError).
        warmup_images: JPEG/PNG byte strings for the warmup requests (default: synthetic images).
        config: an `ExperimentConfig` to write as `assets.extra/config.yaml` (provenance; its
            model.head names the headline head for `seg4reg evaluate --model`).
        member_configs: an ensemble's member configs, written as `assets.extra/ensemble/member_<i>.yaml`.
        weights_dtype: "float32", or "float16" to store the variables at half the size (`HalfPrecisionWeights`;
            the graph still computes in float32).
    """
    import keras

    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version: expected a positive int, got {version!r}")
    h, w = image_size_of(data_cfg)
    base = Path(base_path)
    base.mkdir(parents=True, exist_ok=True)
    final = base / str(version)
    if final.exists():
        raise FileExistsError(f"{final}: version {version} already exists; refusing to overwrite")

    if weights_dtype not in ("float32", "float16"):
        raise ValueError(f"weights_dtype: expected 'float32' or 'float16', got {weights_dtype!r}")
    half = HalfPrecisionWeights(model) if weights_dtype == "float16" else None
    graph = _Graph(model, data_cfg, half)

    def serving_default(image_bytes):
        return graph.from_bytes(image_bytes)

    def predict_image(image):
        return graph.from_images(image)

    def predict_example(examples):
        parsed = tf.io.parse_example(examples, {EXAMPLE_IMAGE_KEY: EXAMPLE_FEATURES[EXAMPLE_IMAGE_KEY]})
        return graph.from_bytes(parsed[EXAMPLE_IMAGE_KEY])

    archive = keras.export.ExportArchive()
    # variables are tracked through the endpoints; track(model) would store every variable twice
    if half is not None:
        archive.add_variable_collection("weights_float16", half.weights)
    archive.add_endpoint(
        SERVING_DEFAULT, serving_default, input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)]
    )
    archive.add_endpoint(
        PREDICT_IMAGE, predict_image, input_signature=[tf.TensorSpec([None, h, w, 1], tf.float32, name="image")]
    )
    archive.add_endpoint(
        PREDICT_EXAMPLE, predict_example, input_signature=[tf.TensorSpec([None], tf.string, name="examples")]
    )

    tmp_root = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base))
    try:
        staged = tmp_root / str(version)
        archive.write_out(str(staged), verbose=False)
        from seg4reg_tf.export.warmup import synthetic_images, write_warmup_requests

        images = list(warmup_images) if warmup_images is not None else synthetic_images()
        write_warmup_requests(staged / WARMUP_RELPATH, images)
        from seg4reg_tf.training.config import save_config

        if config is not None:
            save_config(config, staged / CONFIG_RELPATH)
        for index, member in enumerate(member_configs or ()):
            save_config(member, staged / MEMBER_CONFIG_RELPATH.format(index=index))
        if final.exists():
            raise FileExistsError(f"{final}: version {version} appeared while exporting; refusing to overwrite")
        os.rename(staged, final)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return str(final)


def export_run(run_dirs, base_path, version: int, *, tta: str | None = None, head: str | None = None,
               allow_unfinished: bool = False, weights_dtype: str = "float32") -> str:
    """Load one run directory, or several for an ensemble (`training.run.load_run`, `tta` and `head` as
    there, applied to every member) and export the model with its config in assets.extra; returns the
    version dir.

    Several runs export a `Seg4RegEnsemble` (the mean of their outputs); they must share the data config
    (the graph preprocesses once) and the headline head. config.yaml is the first run's; every member's
    is in assets.extra/ensemble/. Only finished, consistent runs are exported
    (`training.run.require_finished`; RunStateError, a ValueError, says what state a run is in);
    `allow_unfinished=True` exports an unfinished run's best checkpoint so far, with a warning."""
    from seg4reg_tf.models.ensemble import Seg4RegEnsemble
    from seg4reg_tf.training.run import load_run, require_finished

    run_dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    loaded = []
    for run_dir in run_dirs:
        if os.path.isdir(run_dir):  # a missing directory: load_run's FileNotFoundError names it
            require_finished(os.fspath(run_dir), allow_unfinished=allow_unfinished)
        loaded.append(load_run(run_dir, tta=tta, head=head))
    cfg, model = loaded[0]
    if len(loaded) == 1:
        return export_model(model, cfg.data, base_path, version, config=cfg, weights_dtype=weights_dtype)
    for run_dir, (other, _) in zip(run_dirs[1:], loaded[1:]):
        for field, want, got in (("data", cfg.data, other.data),
                                 ("model.head", cfg.model.resolved_head, other.model.resolved_head)):
            if got != want:
                raise ValueError(f"{os.path.join(run_dir, 'config.yaml')}: {field} differs from "
                                 f"{run_dirs[0]}'s; the members of an ensemble must share it")
    ensemble = Seg4RegEnsemble([m for _, m in loaded])
    return export_model(ensemble, cfg.data, base_path, version, config=cfg,
                        member_configs=[c for c, _ in loaded], weights_dtype=weights_dtype)
