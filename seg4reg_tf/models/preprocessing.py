"""`Preprocessing`: the input contract a model carries (saved in its config, read by the export).

A model is trained on images that went through `data.preprocess.preprocess` with its `DataConfig`:
decoded to gray in [0, 1], letterboxed to `image_size`, CLAHE or not. The SavedModel must do exactly
the same in its graph, so the model keeps those settings as a part of itself (`Seg4RegPlus.preprocessing`,
in `get_config`), like keras-hub's ImageConverter saved with its model; `export_model(model, base, version)`
reads them there and needs no data config.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping

from seg4reg_tf.config_machinery import ConfigError, check_fields, check_input_settings, from_dict, to_dict

FIELDS = ("image_size", "clahe", "clahe_clip", "clahe_tiles")  # what it shares with `data.config.DataConfig`


@dataclasses.dataclass
class Preprocessing:
    """The model's input contract (the defaults are `DataConfig`'s).

    Attributes:
        image_size: model input (H, W); images are letterboxed into it (aspect kept, centre padding).
        clahe: CLAHE after the letterbox; `clahe_clip` its clip limit, `clahe_tiles` its (rows, cols) grid.
        normalization: the pixel scale the network sees; "unit": gray in [0, 1] as
            `data.preprocess.decode_image` gives it (the only one so far; recorded so that a model
            expecting another scale is refused rather than fed the wrong one).
    """

    image_size: tuple[int, int] = (512, 256)
    clahe: bool = True
    clahe_clip: float = 3.0
    clahe_tiles: tuple[int, int] = (8, 8)
    normalization: Literal["unit"] = "unit"

    def __post_init__(self):
        check_fields(self, "preprocessing")
        check_input_settings(self, "preprocessing")

    @classmethod
    def of(cls, source: Any) -> Preprocessing:
        """The contract of `source`: a Preprocessing (returned as is), its dict (`to_dict`), or a
        `DataConfig`-like object (its image_size, clahe, clahe_clip, clahe_tiles)."""
        if isinstance(source, cls):
            return source
        if isinstance(source, Mapping):
            return from_dict(cls, dict(source), prefix="preprocessing")
        missing = [f for f in FIELDS if not hasattr(source, f)]
        if missing:
            raise ConfigError(f"preprocessing: expected a Preprocessing, its dict or a DataConfig, got "
                              f"{type(source).__name__} (no {', '.join(missing)})")
        return cls(**{f: getattr(source, f) for f in FIELDS})

    def to_dict(self) -> dict:
        """Plain data (lists for tuples): what `get_config` stores."""
        return to_dict(self)

    def differences(self, other: Preprocessing) -> list[str]:
        """"preprocessing.FIELD: A != B" for each field that differs."""
        return [f"preprocessing.{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
                for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]
