"""DICOM X-ray -> 16-bit PNG bytes for the model, without ever touching patient identifiers.

Only pixel data and the display/geometry attributes below are read; no identifying attribute
(PatientName, PatientID, dates, institution, ...) is copied, returned or logged.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import cv2
import numpy as np

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"


@dataclasses.dataclass(frozen=True)
class DicomImage:
    """A decoded DICOM image.

    Attributes:
        png_bytes: 16-bit grayscale PNG (bone bright), the model's input.
        pixel_spacing_mm: (row spacing, column spacing) in mm, or None when the file has none.
        photometric: "MONOCHROME1" or "MONOCHROME2" as read (MONOCHROME1 has been inverted).
    """

    png_bytes: bytes
    pixel_spacing_mm: tuple[float, float] | None
    photometric: str


def is_dicom(data: bytes) -> bool:
    """True for a DICOM Part 10 file (the "DICM" preamble marker)."""
    return data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC


def to_uint16(pixels: np.ndarray, invert: bool) -> np.ndarray:
    """Min-max scale a 2-D array to the full uint16 range; optionally invert (MONOCHROME1)."""
    a = np.asarray(pixels, dtype=np.float64)
    lo, hi = float(np.min(a)), float(np.max(a))
    norm = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if invert:
        norm = 1.0 - norm
    return np.round(norm * 65535.0).astype(np.uint16)


def _pixel_spacing(ds) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(ds, keyword, None)
        if value is not None and len(value) == 2:
            try:
                spacing = (float(value[0]), float(value[1]))
            except (TypeError, ValueError):
                continue
            if all(np.isfinite(spacing)) and min(spacing) > 0:
                return spacing
    return None


def read_dicom(source, name: str = "DICOM") -> DicomImage:
    """Read a DICOM file (path or bytes): modality rescale, VOI (window/LUT) if present,
    MONOCHROME1 inverted, scaled to a 16-bit PNG.

    Args:
        source: a path or the file's bytes.
        name: how errors refer to the input (the file name; never a DICOM attribute).
    Raises:
        ValueError naming `name` for unreadable, non-grayscale or pixel-less files.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as err:  # pydicom raises many types; report without echoing attributes
        raise ValueError(f"{name}: not a readable DICOM file ({type(err).__name__})") from None
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"{name}: expected a grayscale DICOM (MONOCHROME1/2), "
                         f"got PhotometricInterpretation {photometric}")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ValueError(f"{name}: the DICOM file has no pixel data (no PixelData element: not an image, "
                         "e.g. a structured report or a header-only file)")
    try:
        pixels = ds.pixel_array
    except Exception as err:
        raise ValueError(f"{name}: DICOM pixel data could not be read ({type(err).__name__})") from None
    if pixels.ndim == 3 and int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]  # first frame
    if pixels.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D grayscale pixel array, got shape {pixels.shape}")
    values = apply_modality_lut(pixels, ds)
    values = apply_voi_lut(values, ds)  # no-op without a VOI LUT / window
    image16 = to_uint16(values, invert=photometric == "MONOCHROME1")
    ok, buf = cv2.imencode(".png", image16)
    if not ok:
        raise ValueError(f"{name}: could not encode the pixel data as PNG")
    return DicomImage(buf.tobytes(), _pixel_spacing(ds), photometric)
