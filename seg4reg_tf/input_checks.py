"""The rules of a model's input settings that `data.config.DataConfig` and `models.preprocessing.Preprocessing`
both check: one owner for the two, which sit on one layer and may not import each other.

Base layer: imports nothing from seg4reg_tf (not even `config_machinery`), so each rule comes back as the
arguments of `config_machinery.require` and the caller raises. The image size itself has its own one check,
`config_machinery.check_image_size`.
"""
from __future__ import annotations

from typing import Any, Iterator


def clahe_rules(settings: Any, prefix: str) -> Iterator[tuple[bool, str, str, Any]]:
    """Yield `require`'s (holds, key, expected, got) for each CLAHE rule of `settings` in turn, keys under `prefix`."""
    size, tiles = settings.image_size, settings.clahe_tiles
    yield settings.clahe_clip >= 0, f"{prefix}.clahe_clip", "a number >= 0", settings.clahe_clip
    yield min(tiles) >= 1, f"{prefix}.clahe_tiles", "positive ints", tiles
    yield (not settings.clahe or all(s >= 2 * t for s, t in zip(size, tiles)), f"{prefix}.clahe_tiles",
           f"tiles of at least 2 pixels for image_size {size}", tiles)
