"""The exported model's folder layout and names, shared by export, serving and evaluation (no TF).

TF Serving layout: `BASE/N/` with N a positive integer version holding `saved_model.pb`,
`variables/` and `assets.extra/` (`tf_serving_warmup_requests`, the run's `config.yaml`).
"""
from __future__ import annotations

import os
from pathlib import Path

SERVING_DEFAULT = "serving_default"  # image_bytes tf.string [B] -> outputs
PREDICT_IMAGE = "predict_image"  # image float32 [B, H, W, 1] (preprocessed) -> outputs
PREDICT_EXAMPLE = "predict_example"  # examples tf.string [B] (tf.Example) -> outputs
SIGNATURES = (SERVING_DEFAULT, PREDICT_IMAGE, PREDICT_EXAMPLE)
IMAGE_BYTES_INPUT = "image_bytes"
EXAMPLE_IMAGE_KEY = "image/encoded"  # the `data.tfrecords` feature `predict_example` reads

WARMUP_RELPATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
CONFIG_RELPATH = os.path.join("assets.extra", "config.yaml")
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
    for entry in os.listdir(base):
        path = os.path.join(base, entry)
        if entry.isdigit() and os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
            found[int(entry)] = path
    return found


def latest_version_dir(path) -> Path:
    """A SavedModel dir itself, or the newest numeric version under a TF Serving base path."""
    p = Path(path)
    if (p / SAVED_MODEL_FILE).is_file():
        return p
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such model directory")
    versions = version_dirs(p)
    if not versions:
        raise FileNotFoundError(f"{p}: no SavedModel ({SAVED_MODEL_FILE}) and no numeric version directories")
    return Path(versions[max(versions)])
