"""The exported model's folder layout and names, shared by export, serving and evaluation (TF is imported
only to look at folders, through `seg4reg_tf.fileio`: any TensorFlow filesystem).

TF Serving layout: `BASE/N/` with N a positive integer version holding `saved_model.pb`,
`variables/` and `assets.extra/` (`tf_serving_warmup_requests`, the run's `config.yaml`).
"""
from __future__ import annotations

import os
from pathlib import Path

from seg4reg_tf import fileio

SERVING_DEFAULT = "serving_default"  # image_bytes tf.string [B] -> outputs
PREDICT_IMAGE = "predict_image"  # image float32 [B, H, W, 1] (preprocessed) -> outputs
PREDICT_EXAMPLE = "predict_example"  # examples tf.string [B] (tf.Example) -> outputs
SIGNATURES = (SERVING_DEFAULT, PREDICT_IMAGE, PREDICT_EXAMPLE)
IMAGE_BYTES_INPUT = "image_bytes"  # the input of SERVING_DEFAULT
EXAMPLES_INPUT = "examples"  # the input of PREDICT_EXAMPLE
EXAMPLE_IMAGE_KEY = "image/encoded"  # the `data.tfrecords` feature `predict_example` reads

WARMUP_RELPATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
CONFIG_RELPATH = os.path.join("assets.extra", "config.yaml")
INTERVALS_RELPATH = os.path.join("assets.extra", "intervals.json")  # the constants of `cobb_angles_lower/upper`
# outputs whose NaN is an answer ("no interval: not measurable"), not a fault; REST sends it as null
MAY_BE_NAN = ("cobb_angles_lower", "cobb_angles_upper")
MEMBER_CONFIG_RELPATH = os.path.join("assets.extra", "ensemble", "member_{index}.yaml")  # an ensemble's
SAVED_MODEL_FILE = "saved_model.pb"

# the headers `image_bytes` accepts (the rest of the bytes are decoded in the graph)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"


def image_format(data: bytes) -> str | None:
    """"png", "jpeg" or None from the first bytes."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SOI):
        return "jpeg"
    return None


def version_dirs(base) -> dict[int, str]:
    """{version: path} of the complete versions (numeric name, saved_model.pb present) under `base`;
    OSError if `base` cannot be listed."""
    found = {}
    for entry in fileio.listdir(base):
        path = os.path.join(base, entry)
        if entry.isdigit() and fileio.isfile(os.path.join(path, SAVED_MODEL_FILE)):
            found[int(entry)] = path
    return found


def latest_version_dir(path) -> Path | str:
    """A SavedModel dir itself, or the newest numeric version under a TF Serving base path: a `Path` for a
    local path, the URL string (`gs://...`; `pathlib` would mangle it) for another filesystem."""
    p = os.fspath(path)
    wrap = str if fileio.is_url(p) else Path
    if fileio.isfile(os.path.join(p, SAVED_MODEL_FILE)):
        return wrap(p)
    if not fileio.isdir(p):
        raise FileNotFoundError(f"{p}: no such model directory")
    versions = version_dirs(p)
    if not versions:
        raise FileNotFoundError(f"{p}: no SavedModel ({SAVED_MODEL_FILE}) and no numeric version directories")
    return wrap(versions[max(versions)])
