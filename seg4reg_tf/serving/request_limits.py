"""Per-request work limits and the split of a large request into batch-sized chunks.

A request's cost is its decoded pixels, known from the image headers alone (PNG IHDR, JPEG SOF via
Pillow's lazy open): no pixel data is decoded here. `plan_chunks` cuts a request into consecutive
pieces of at most `max_items` items and `max_pixels` decoded pixels (always >= 1 item), which the
server runs one after another so that other clients' requests interleave between them.
`example_image_bytes` reads the image out of a serialized tf.Example in Python (for the inputs a model's
`ModelOptions.example_image_keys` names), so a malformed one is refused before TensorFlow's parser (which
logs the raw bytes) ever sees it.
"""
from __future__ import annotations

import dataclasses
import io

from seg4reg_tf.export.layout import image_format
from seg4reg_tf.serving.checks import is_int

# the defaults of `RequestLimits`, `ServerConfig` and the `serve` flags (this module owns them and their check)
DEFAULT_MAX_IMAGES = 256
DEFAULT_MAX_REQUEST_PIXELS = 1_000_000_000
DEFAULT_MAX_CHUNK_PIXELS = 64_000_000


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """`max_images` items per request, `max_request_pixels` decoded pixels per request,
    `max_chunk_pixels` decoded pixels per chunk run at once (one image may exceed it alone)."""

    max_images: int = DEFAULT_MAX_IMAGES
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    max_chunk_pixels: int = DEFAULT_MAX_CHUNK_PIXELS

    def __post_init__(self) -> None:
        for key in ("max_images", "max_request_pixels", "max_chunk_pixels"):
            value = getattr(self, key)
            if not is_int(value) or value < 1:
                raise ValueError(f"{key}: expected a positive int, got {value!r}")


def image_pixels(data: bytes) -> int | None:
    """height x width from a PNG or JPEG header; None when the bytes are neither (the model refuses them)."""
    kind = image_format(data) if isinstance(data, (bytes, bytearray)) else None
    if kind is None:
        return None
    if kind == "png":
        if len(data) < 24:
            return None
        return int.from_bytes(data[16:20], "big") * int.from_bytes(data[20:24], "big")
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            w, h = im.size
        return int(w) * int(h)
    except Exception:  # noqa: BLE001 - a corrupt header: the model's own check names it
        return None


def example_image_bytes(serialized: bytes, index: int, key: str, input_name: str) -> bytes:
    """The `key` bytes feature of one serialized tf.Example, item `index` of input `input_name`; ValueError
    naming the input, the item and the field."""
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    try:
        example.ParseFromString(bytes(serialized))
    except Exception:  # noqa: BLE001 - protobuf DecodeError; the bytes are never echoed
        raise ValueError(f"input {input_name!r}: batch item {index} is not a serialized tf.Example "
                         f"({len(serialized)} bytes that do not parse)") from None
    feature = example.features.feature.get(key)
    if feature is None or feature.WhichOneof("kind") != "bytes_list" or len(feature.bytes_list.value) != 1:
        raise ValueError(f"input {input_name!r}: batch item {index} has no single bytes feature {key!r} "
                         f"(the encoded image); features present: {sorted(example.features.feature)[:10]}")
    return feature.bytes_list.value[0]


def plan_chunks(pixels: list[int], max_items: int, max_pixels: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) ranges covering all items, each <= max_items and <= max_pixels
    (an item alone may exceed max_pixels)."""
    chunks, start, total = [], 0, 0
    for i, p in enumerate(pixels):
        if i > start and (i - start >= max_items or total + p > max_pixels):
            chunks.append((start, i))
            start, total = i, 0
        total += p
    if start < len(pixels):
        chunks.append((start, len(pixels)))
    return chunks
