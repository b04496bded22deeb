"""Image preprocessing as pure TensorFlow ops (graph-compatible; also runs inside the SavedModel).

Pixel convention (shared with `geometry.landmarks_to_label_map`): coordinates are continuous,
pixel (row i, col j) covers [j, j+1) x [i, i+1) and its centre is (j + 0.5, i + 0.5). Under
`letterbox` a point (x, y) of the original image maps exactly to
(x * scale + pad_left, y * scale + pad_top) in the model frame (no rounding of the resized size).
"""
from __future__ import annotations

import tensorflow as tf

_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # ITU-R 601 luma, as tf.image.rgb_to_grayscale


def decode_image(image_bytes) -> tf.Tensor:
    """JPEG / PNG (8- or 16-bit, gray / gray+alpha / RGB / RGBA) bytes -> float32 [h, w, 1] in [0, 1].

    8-bit images give value / 255. A 16-bit PNG is scaled by the range its data use, 2^b - 1 with b
    the bit length of its largest value (at least 8): PACS exports and viewers store 10-, 12- or 14-bit
    X-rays in 16-bit PNGs, which divided by 65535 would arrive nearly black; full-range 16-bit data
    still decode exactly (value / 65535). Colour images are converted to gray with the ITU-R 601
    weights; an alpha channel is dropped.
    """
    image_bytes = tf.convert_to_tensor(image_bytes, dtype=tf.string)
    img = tf.cast(tf.io.decode_image(image_bytes, channels=0, dtype=tf.uint16, expand_animations=False),
                  tf.float32)
    # PNG: the IHDR bit depth is byte 24 (8 signature bytes, length, "IHDR", width, height)
    is_png16 = tf.logical_and(tf.equal(tf.strings.substr(image_bytes, 0, 8), b"\x89PNG\r\n\x1a\n"),
                              tf.equal(tf.strings.substr(image_bytes, 24, 1), b"\x10"))
    powers = tf.pow(2.0, tf.range(8, 16, dtype=tf.float32))  # exact integer comparisons, no log rounding
    bits = 8.0 + tf.reduce_sum(tf.cast(tf.reduce_max(img) >= powers, tf.float32))
    img = img / tf.where(is_png16, tf.pow(2.0, bits) - 1.0, 65535.0)
    channels = tf.shape(img)[-1]
    weights = tf.constant(_GRAY_WEIGHTS, tf.float32)
    gray = tf.cond(
        channels >= 3,
        lambda: tf.reduce_sum(img[..., :3] * weights, axis=-1, keepdims=True),
        lambda: img[..., :1],
    )
    gray = tf.clip_by_value(gray, 0.0, 1.0)
    gray.set_shape([None, None, 1])
    return gray


def letterbox_transform(height, width, size) -> tf.Tensor:
    """float32 [5] (scale, pad_top, pad_left, orig_h, orig_w) fitting an h x w image into size=(H, W).

    The in-graph form of `geometry.Letterbox` (`Letterbox.from_vector` reads it back in NumPy)."""
    H, W = float(size[0]), float(size[1])
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    scale = tf.minimum(H / h, W / w)
    pad_top = (H - h * scale) / 2.0
    pad_left = (W - w * scale) / 2.0
    return tf.stack([scale, pad_top, pad_left, h, w])


def letterbox_points(points, transform) -> tf.Tensor:
    """float32 [..., 2] original (x, y) -> model frame under `transform` (TF twin of
    `geometry.Letterbox.to_model`)."""
    t = tf.cast(transform, tf.float32)
    return tf.cast(points, tf.float32) * t[0] + tf.stack([t[2], t[1]])


def letterbox(image, size=(512, 256)):
    """Resize keeping the aspect ratio so the image fits `size`, centre-padded with 0.

    Args:
        image: float [h, w, 1] (or [h, w, C]).
        size: (H, W) output size in pixels.
    Returns:
        (image float32 [H, W, C], transform float32 [5] = (scale, pad_top, pad_left, orig_h, orig_w)).
        A point (x, y) maps to (x * scale + pad_left, y * scale + pad_top) exactly; padding may be
        fractional. Resampling is antialiased bilinear (triangle kernel widened when downscaling);
        output pixels whose centre lies outside the scaled image are 0.
    """
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"letterbox: image expected rank 3 [h, w, C], got shape {image.shape}")
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    t = letterbox_transform(shape[0], shape[1], size)
    scale = tf.stack([t[0], t[0]])
    translation = tf.stack([t[1], t[2]])
    out = tf.raw_ops.ScaleAndTranslate(
        images=image[tf.newaxis], size=tf.constant([int(size[0]), int(size[1])], tf.int32),
        scale=scale, translation=translation, kernel_type="triangle", antialias=True)[0]
    out.set_shape([int(size[0]), int(size[1]), image.shape[-1]])
    return out, t


def clahe(image, clip_limit: float = 3.0, tiles=(8, 8), bins: int = 256) -> tf.Tensor:
    """Contrast-limited adaptive histogram equalisation in TF ops, following OpenCV's algorithm.

    Args:
        image: float [H, W, 1] in [0, 1] (quantised to `bins` levels: round(x * (bins - 1))).
        clip_limit: OpenCV clip limit (relative: the per-bin cap is max(int(clip * tile_area / bins), 1)).
            0 disables clipping (plain tile-wise histogram equalisation).
        tiles: (rows, cols) tile grid.
        bins: histogram bins (256 = OpenCV's uint8 CLAHE).
    Returns:
        float32 [H, W, 1] in [0, 1]. As OpenCV: the image is reflect-101 padded at the bottom/right to
        a multiple of the grid, excess counts are redistributed evenly (remainder to every
        (bins // remainder)-th bin), the LUT is round(cdf * (bins - 1) / tile_area), and pixels are
        bilinearly interpolated between the four nearest tile LUTs. Unlike OpenCV the interpolated
        value is not rounded to an integer level (mean |diff| vs cv2.createCLAHE is < 0.5 / 255).
    """
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape.rank != 3 or (image.shape[-1] is not None and image.shape[-1] != 1):
        raise ValueError(f"clahe: image expected shape [H, W, 1], got {image.shape}")
    ty, tx = int(tiles[0]), int(tiles[1])
    n = ty * tx
    levels = float(bins - 1)
    q = tf.cast(tf.round(tf.clip_by_value(image[..., 0], 0.0, 1.0) * levels), tf.int32)  # [H, W]
    H = tf.shape(q)[0]
    W = tf.shape(q)[1]
    # Pad bottom / right (reflect-101, as cv2.copyMakeBorder BORDER_REFLECT_101) to a multiple of tiles.
    pad_y = (ty - H % ty) % ty
    pad_x = (tx - W % tx) % tx
    qp = tf.pad(q, [[0, pad_y], [0, pad_x]], mode="REFLECT")
    th = (H + pad_y) // ty
    tw = (W + pad_x) // tx
    area = th * tw
    t = tf.reshape(qp, [ty, th, tx, tw])
    t = tf.reshape(tf.transpose(t, [0, 2, 1, 3]), [n, area])
    hist = tf.math.bincount(t, minlength=bins, maxlength=bins, axis=-1)  # [n, bins] int32
    if clip_limit > 0:
        limit = tf.maximum(tf.cast(clip_limit * tf.cast(area, tf.float32) / bins, tf.int32), 1)
        excess = tf.reduce_sum(tf.maximum(hist - limit, 0), axis=1, keepdims=True)  # [n, 1]
        hist = tf.minimum(hist, limit)
        batch = excess // bins
        residual = excess - batch * bins
        hist = hist + batch
        step = tf.maximum(bins // tf.maximum(residual, 1), 1)
        idx = tf.range(bins)[tf.newaxis, :]
        extra = tf.logical_and(idx % step == 0, idx // step < residual)
        hist = hist + tf.cast(extra, tf.int32)
    cdf = tf.cast(tf.cumsum(hist, axis=1), tf.float32)
    lut = tf.round(cdf * (levels / tf.cast(area, tf.float32)))
    lut = tf.reshape(tf.clip_by_value(lut, 0.0, levels), [-1])  # [(ty * tx) * bins]

    # Bilinear interpolation between tile LUTs (OpenCV: txf = x / tile_w - 0.5 on pixel indices).
    def axis_coords(size, tile, count):
        f = tf.cast(tf.range(size), tf.float32) / tf.cast(tile, tf.float32) - 0.5
        i1 = tf.cast(tf.floor(f), tf.int32)
        a = f - tf.cast(i1, tf.float32)
        return tf.maximum(i1, 0), tf.minimum(i1 + 1, count - 1), a

    y1, y2, ya = axis_coords(H, th, ty)
    x1, x2, xa = axis_coords(W, tw, tx)

    def lookup(yi, xi):
        tile = yi[:, tf.newaxis] * tx + xi[tf.newaxis, :]  # [H, W]
        return tf.gather(lut, tile * bins + q)

    xa = xa[tf.newaxis, :]
    ya = ya[:, tf.newaxis]
    top = lookup(y1, x1) * (1.0 - xa) + lookup(y1, x2) * xa
    bottom = lookup(y2, x1) * (1.0 - xa) + lookup(y2, x2) * xa
    out = (top * (1.0 - ya) + bottom * ya) / levels
    out = out[..., tf.newaxis]
    out.set_shape(image.shape)
    return out


def preprocess(image, cfg):
    """The ONE preprocessing used by training, evaluation and the SavedModel.

    Args:
        image: float [h, w, 1] in [0, 1] (from `decode_image`).
        cfg: `DataConfig`, or a model's `models.preprocessing.Preprocessing` (uses image_size, clahe,
            clahe_clip, clahe_tiles).
    Returns:
        (image float32 [H, W, 1] in [0, 1], transform float32 [5] = (scale, pad_top, pad_left, h, w)).
    """
    out, transform = letterbox(image, cfg.image_size)
    if cfg.clahe:
        out = clahe(out, clip_limit=cfg.clahe_clip, tiles=cfg.clahe_tiles)
    return out, transform

