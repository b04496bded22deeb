"""AASCE (SpineWeb Dataset 16, boostnet_labeldata) reader. OWNER: data-reader helper (stub)."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class AasceRecord:
    """One labelled X-ray.

    Attributes:
        filename: the name as in filenames.csv, e.g. "sunhl-1th-02-Jan-2017-162 A AP.jpg".
        image_path: absolute path of the image file.
        height, width: image size in pixels (read from the image).
        landmarks: (68, 2) float64 pixels (x, y) from the `.mat` (`p2`), unchanged.
        angles: (3,) float64 degrees [PT, MT, TL] from angles.csv.
    """

    filename: str
    image_path: str
    height: int
    width: int
    landmarks: np.ndarray
    angles: np.ndarray
