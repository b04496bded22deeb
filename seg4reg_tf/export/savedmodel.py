"""Export a trained model as a TF Serving SavedModel (`BASE/N/`) with in-graph preprocessing.

Signatures (method `tensorflow/serving/predict`), as docs/architecture.md fixes them:
- `serving_default`: `image_bytes` tf.string [B] (JPEG/PNG, 8/16-bit) -> model outputs + mapping
  outputs `original_size` int32 [B, 2] (h, w), `scale` float32 [B], `padding` float32 [B, 2] (top, left).
- `predict_image`: `image` float32 [B, H, W, 1] (preprocessed) -> model outputs.
- `predict_example`: `examples` tf.string [B] (serialized tf.Example) -> as `serving_default`.
Model outputs: `cobb_angles`, `cobb_angles_image`, `cobb_angles_segmentation`, `cobb_angles_geometry`
float32 [B, 3] deg, `consistency` float32 [B] deg, with a geometry head `end_vertebrae` int32 [B, 3, 2]
(0 = T1 .. 16 = L5, upper and lower of PT, MT, TL), `vertebra_landmarks` float32 [B, 68, 2] (model-frame
px), `vertebra_tilts` [B, 17] deg, `vertebra_visible` [B, 17] (0/1), `vertebra_labels` uint8 [B, H, W] (argmax of
`segmentation`),
`attention_map` float32 [B, h, w], with an upright check `upright_margin` float32 [B] (< 0: upside
down); heads the model lacks are absent; and every signature adds
`measurable_score` float32 [B] in (0, 1) (>= 0.5: measurable) and `measurable_reason` tf.string [B]
("" or why not: `export.measurable`); exported with intervals also `cobb_angles_lower`, `cobb_angles_upper`
float32 [B, 3] deg (`export.intervals`; NaN when not measurable). `predict_image` refuses non-finite pixels
(InvalidArgument).
"""
from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from seg4reg_tf import fileio
from seg4reg_tf.data import preprocess as pp
from seg4reg_tf.data.tfrecords import FEATURES as EXAMPLE_FEATURES
from seg4reg_tf.export import intervals as angle_intervals
from seg4reg_tf.export import measurable
from seg4reg_tf.export.half_precision import HalfPrecisionWeights
from seg4reg_tf.export.layout import (
    CONFIG_RELPATH,
    EXAMPLE_IMAGE_KEY,
    EXAMPLES_INPUT,
    IMAGE_BYTES_INPUT,
    INTERVALS_RELPATH,
    JPEG_SOI,
    MEMBER_CONFIG_RELPATH,
    PNG_SIGNATURE,
    PREDICT_EXAMPLE,
    PREDICT_IMAGE,
    SAVED_MODEL_FILE,
    SERVING_DEFAULT,
    WARMUP_RELPATH,
)

MIN_SIDE = 64
MAX_SIDE = 16384
MAX_PIXELS = 50_000_000
ANGLE_OUTPUTS = ("cobb_angles", "cobb_angles_image", "cobb_angles_segmentation", "cobb_angles_geometry")
# the geometry head's vertebrae (model frame, before the letterbox is undone): float32 outputs
VERTEBRA_OUTPUTS = ("vertebra_landmarks", "vertebra_tilts", "vertebra_visible")


def input_contract(model, preprocessing=None):
    """The `models.preprocessing.Preprocessing` the SavedModel graph applies before `model`: the one the
    model carries (`model.preprocessing`), else `preprocessing` (a Preprocessing, its dict or a DataConfig).

    Raises:
        ValueError naming `preprocessing` when the model carries none and none is given (a plain Keras
        model, or a Seg4RegPlus saved without one: `training.run.load_run` supplies its run's), when both
        are given and differ, or when its image size is not the model's.
    """
    from seg4reg_tf.models.preprocessing import Preprocessing

    own = getattr(model, "preprocessing", None)
    given = None if preprocessing is None else Preprocessing.of(preprocessing)
    if own is None and given is None:
        raise ValueError(f"preprocessing: {type(model).__name__} {model.name!r} carries no input contract (a model "
                         "saved before models carried their preprocessing, or not a Seg4RegPlus): pass "
                         "preprocessing= (a models.preprocessing.Preprocessing or the DataConfig it was trained with)")
    if own is not None and given is not None and own != given:
        raise ValueError(f"preprocessing: differs from the model's own ({'; '.join(own.differences(given))}); "
                         "leave it out to export with the model's")
    contract = own if own is not None else given
    model_size = getattr(model, "image_size", None)
    if model_size is not None and tuple(model_size) != contract.image_size:
        raise ValueError(f"preprocessing.image_size: {contract.image_size} is not the model's input size "
                         f"{tuple(model_size)}")
    return contract


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
    """The in-graph functions shared by the three signatures (`half`: the model's float16 weights, or None;
    `intervals`: an `export.intervals.AngleIntervals`, or None)."""

    def __init__(self, model, preprocessing, half: HalfPrecisionWeights | None = None, intervals=None):
        self.model = model
        self.intervals = intervals
        self.preprocessing = preprocessing
        self.size = preprocessing.image_size
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
        if "upright_margin" in raw:
            out["upright_margin"] = tf.reshape(tf.cast(raw["upright_margin"], tf.float32), [-1])
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
        image, transform = pp.preprocess(image, self.preprocessing)
        h, w = self.size
        return tf.ensure_shape(image, [h, w, 1]), tf.ensure_shape(tf.cast(transform, tf.float32), [5]), stats

    def from_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """`predict_image`: finite pixels only (InvalidArgument naming the tensor otherwise)."""
        images = tf.debugging.assert_all_finite(
            images, "image: pixel values must be finite (the input holds NaN or Inf)")
        out = self.model_outputs(images)
        out.update(measurable.assess(measurable.model_input_statistics(images), out))
        return self.with_intervals(out)

    def with_intervals(self, out: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        if self.intervals is not None:
            out.update(angle_intervals.bounds(self.intervals, out))
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
        out = self.with_intervals(out)
        out["original_size"] = tf.cast(tf.round(transforms[:, 3:5]), tf.int32)
        out["scale"] = transforms[:, 0]
        out["padding"] = transforms[:, 1:3]
        return out


def export_model(
    model,
    base_path,
    version: int,
    *,
    preprocessing=None,
    warmup_images: Sequence[bytes] | None = None,
    config=None,
    member_configs: Sequence | None = None,
    weights_dtype: str = "float32",
    intervals=None,
) -> str:
    """Write `base_path/version/` (saved_model.pb, variables/, assets.extra/) and return its path.

    Args:
        model: keras.Model called on {"image": float32 [B, H, W, 1]} returning the output dict; its
            `preprocessing` (what `build_model` / `train` give it) is what the graph applies to image bytes.
        base_path: the TF Serving model base path; created if missing.
        version: positive int; an existing `base_path/version` is never overwritten (FileExistsError).
        warmup_images: JPEG/PNG byte strings for the warmup requests (default: synthetic images).
        config: an `ExperimentConfig` to write as `assets.extra/config.yaml` (provenance; its
            model.head names the reported head for `seg4reg evaluate --model`).
        member_configs: an ensemble's member configs, written as `assets.extra/ensemble/member_<i>.yaml`.
        weights_dtype: "float32", or "float16" to store the variables at half the size (`HalfPrecisionWeights`;
            the graph still computes in float32).
        preprocessing: only for a model that carries no input contract (`input_contract`).
        intervals: an `export.intervals.AngleIntervals` (its JSON text, or a path to it) calibrated for this
            model: adds `cobb_angles_lower` / `cobb_angles_upper` and writes assets.extra/intervals.json.

    The data sections of `config` and `member_configs` must describe the same preprocessing (ValueError).
    """
    _check_target(base_path, version)
    contract = input_contract(model, preprocessing)
    _check_configs(contract, config, member_configs)
    base, final, created_base = _version_dir(base_path, version)
    if weights_dtype not in ("float32", "float16"):
        raise ValueError(f"weights_dtype: expected 'float32' or 'float16', got {weights_dtype!r}")
    if intervals is not None and not isinstance(intervals, angle_intervals.AngleIntervals):
        intervals = angle_intervals.read(intervals)
    half = HalfPrecisionWeights(model) if weights_dtype == "float16" else None
    archive = _archive(_Graph(model, contract, half, intervals), half)
    parts = _Parts(archive, warmup_images, intervals, config, member_configs or ())
    _write_version(parts, base, version, final, created_base)
    return final


def _check_target(base_path, version) -> None:
    """Refuse a base path that is not a path (TypeError) and a version that is not a positive int (ValueError)."""
    if not isinstance(base_path, (str, os.PathLike)):
        raise TypeError(f"base_path: expected a directory path, got {type(base_path).__name__} (export_model takes "
                        "no data config: the model carries its preprocessing)")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version: expected a positive int, got {version!r}")


def _check_configs(contract, config, member_configs) -> None:
    """Refuse a `config` or member config whose data section is not the model's preprocessing (ValueError)."""
    from seg4reg_tf.models.preprocessing import Preprocessing

    for key, c in [("config", config)] + [(f"member_configs[{i}]", m) for i, m in enumerate(member_configs or ())]:
        if c is not None and Preprocessing.of(c.data) != contract:
            raise ValueError(f"{key}.data: does not describe the model's preprocessing "
                             f"({'; '.join(contract.differences(Preprocessing.of(c.data)))})")


def _version_dir(base_path, version: int) -> tuple[str, str, bool]:
    """Create the base path if missing; (base, version dir, base created here); FileExistsError for a used version."""
    base = os.fspath(base_path)  # any TensorFlow filesystem (seg4reg_tf.fileio)
    created_base = not fileio.exists(base)
    fileio.makedirs(base)
    final = fileio.join(base, str(version))
    if fileio.exists(final):
        raise FileExistsError(f"{final}: version {version} already exists; refusing to overwrite")
    return base, final, created_base


def _archive(graph: _Graph, half: HalfPrecisionWeights | None):
    """The keras ExportArchive with the three signatures of `graph` (and the float16 weights, if any)."""
    import keras

    h, w = graph.size

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
        PREDICT_EXAMPLE, predict_example, input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)]
    )
    return archive


class _Parts:
    """What a version dir holds, each part written into the staged dir by its own method."""

    def __init__(self, archive, warmup_images, intervals, config, member_configs):
        self.archive, self.warmup_images, self.intervals = archive, warmup_images, intervals
        self.config, self.member_configs = config, member_configs

    def write_saved_model(self, staged: str) -> None:
        """Write saved_model.pb and variables/."""
        self.archive.write_out(staged, verbose=False)

    def write_warmup(self, staged: str) -> None:
        """Write the warm-up requests (`warmup_images`, default synthetic images)."""
        from seg4reg_tf.export.warmup_records import synthetic_images, write_warmup_requests

        images = list(self.warmup_images) if self.warmup_images is not None else synthetic_images()
        write_warmup_requests(fileio.join(staged, WARMUP_RELPATH), images)

    def write_configs(self, staged: str) -> None:
        """Write intervals.json, config.yaml and the ensemble members' configs into assets.extra."""
        from seg4reg_tf.training.config import save_config

        if self.intervals is not None:
            fileio.write_atomic(fileio.join(staged, INTERVALS_RELPATH), self.intervals.to_json())
        if self.config is not None:
            save_config(self.config, fileio.join(staged, CONFIG_RELPATH))
        for index, member in enumerate(self.member_configs):
            save_config(member, fileio.join(staged, MEMBER_CONFIG_RELPATH.format(index=index)))


def _write_version(parts: _Parts, base: str, version: int, final: str, created_base: bool) -> None:
    """Stage `parts` under `base` and move them to `final`; a failure leaves nothing (a full disk:
    `fileio.NoSpaceError`)."""
    tmp_root = fileio.mkdtemp(base, prefix=f".tmp-{version}-")
    staged = fileio.join(tmp_root, str(version))
    step = "the SavedModel (graph and variables)"
    try:
        parts.write_saved_model(staged)
        step = WARMUP_RELPATH
        parts.write_warmup(staged)
        step = "the configs in assets.extra"
        parts.write_configs(staged)
        if fileio.exists(final):
            raise FileExistsError(f"{final}: version {version} appeared while exporting; refusing to overwrite")
        step = f"the move into {final}"
        fileio.move_tree(staged, final, last=(SAVED_MODEL_FILE,))  # TF Serving loads a dir with saved_model.pb
    except Exception as err:
        if fileio.is_out_of_space(err):  # a short answer naming the step instead of TF's trace
            raise fileio.NoSpaceError(f"no space left on device while writing {step} of version {version} to {final} "
                                   f"(the disk or quota holding {base} is full); nothing was exported: the "
                                   "partial files were removed") from None
        raise
    finally:
        fileio.rmtree(tmp_root, ignore_errors=True)
        if created_base and not fileio.exists(final) and not fileio.listdir(base):
            fileio.rmtree(base, ignore_errors=True)  # a base path this failed export created


def export_run(run_dirs, base_path, version: int, *, tta: str | None = None, head: str | None = None,
               allow_unfinished: bool = False, weights_dtype: str = "float32", intervals=None) -> str:
    """Load one run directory, or several for an ensemble (`training.run.load_run`, `tta` and `head` as
    there, applied to every member) and export the model with its config in assets.extra; returns the
    version dir.

    Several runs export a `Seg4RegEnsemble` (the mean of their outputs); they must share the input contract
    (the graph preprocesses once) and the reported head (`models.ensemble.check_members`). config.yaml is
    the first run's; every member's is in assets.extra/ensemble/. Only finished, consistent runs are exported
    (`training.run.require_finished`; RunStateError, a ValueError, says what state a run is in);
    `allow_unfinished=True` exports an unfinished run's best checkpoint so far, with a warning; `intervals`
    as in `export_model`."""
    from seg4reg_tf.models.ensemble import Seg4RegEnsemble, check_members
    from seg4reg_tf.training.run import load_run, require_finished

    run_dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    loaded = []
    for run_dir in run_dirs:
        if fileio.isdir(run_dir):  # a missing directory: load_run's FileNotFoundError names it
            require_finished(os.fspath(run_dir), allow_unfinished=allow_unfinished)
        loaded.append(load_run(run_dir, tta=tta, head=head))
    cfg, model = loaded[0]
    if len(loaded) == 1:
        return export_model(model, base_path, version, config=cfg, weights_dtype=weights_dtype, intervals=intervals)
    models = [m for _, m in loaded]
    check_members(models, names=[os.fspath(r) for r in run_dirs], same_head=True)
    return export_model(Seg4RegEnsemble(models), base_path, version, config=cfg,
                        member_configs=[c for c, _ in loaded], weights_dtype=weights_dtype, intervals=intervals)
