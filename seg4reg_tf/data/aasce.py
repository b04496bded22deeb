"""AASCE (SpineWeb Dataset 16, boostnet_labeldata) reader, label checks and the fixed validation split.

Layout (the public release, SpineWeb Dataset 16; README "Data layout")::

    ROOT/data/<split>/<name>.jpg
    ROOT/labels/<split>/<name>.jpg.mat      MATLAB 5, variable p2: (68, 2) uint16 pixels (x, y)
    ROOT/labels/<split>/filenames.csv       one name a line, CRLF
    ROOT/labels/<split>/landmarks.csv       136 values a row: x_1/W .. x_68/W, y_1/H .. y_68/H
    ROOT/labels/<split>/angles.csv          PT, MT, TL degrees

Labels are returned exactly as released: quirks (swapped corners, out-of-order vertebrae, points
outside the image) are reported, never fixed. ROOT may be on any TensorFlow filesystem (gs://...):
files are read through `seg4reg_tf.fileio`.
"""
from __future__ import annotations

import dataclasses
import io
import struct
import warnings

import numpy as np

from seg4reg_tf import fileio

N_LANDMARKS = 68
N_ANGLES = 3
# 5 significant digits: |rounded - exact| <= 0.5e-4 * |value| (relative); a little slack for float parsing.
CSV_REL_TOL = 5e-5
CSV_ABS_TOL = 1e-9


class AasceFormatError(ValueError):
    """A file of an AASCE-layout dataset is missing or not in the expected format (message names the file)."""


class AasceQuirkWarning(UserWarning):
    """Labels with known quirks (kept unchanged): swapped corners, out-of-order vertebrae, points outside."""


@dataclasses.dataclass(frozen=True)
class AasceRecord:
    """One labelled X-ray.

    Attributes:
        filename: the name as in filenames.csv, e.g. "sunhl-1th-02-Jan-2017-162 A AP.jpg".
        image_path: absolute path (or URL) of the image file.
        height, width: image size in pixels (read from the image).
        landmarks: (68, 2) float64 pixels (x, y) from the `.mat` (`p2`), unchanged.
        angles: (3,) float64 degrees [PT, MT, TL] from angles.csv.
        image_bytes: the encoded image itself when the record was read from a TFRecord
            (`tfrecords.read_records`; `image_path` then names the file and record, "FILE#i"); else None.
    """

    filename: str
    image_path: str
    height: int
    width: int
    landmarks: np.ndarray
    angles: np.ndarray
    image_bytes: bytes | None = dataclasses.field(default=None, repr=False, compare=False)

    def read_image(self) -> bytes:
        """The encoded image: `image_bytes`, or the file at `image_path` (any TensorFlow filesystem)."""
        return self.image_bytes if self.image_bytes is not None else fileio.read_bytes(self.image_path)


# ----------------------------------------------------------------------------------------------
# Image size from the file header


def _jpeg_size(data: bytes, path: str) -> tuple[int, int]:
    """(height, width) from the first SOF marker of a JPEG."""
    i = 2
    n = len(data)
    while i < n:
        if data[i] != 0xFF:
            raise AasceFormatError(f"{path}: corrupt JPEG header (expected a marker at byte {i})")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            continue
        if marker == 0xD9 or i + 2 > n:
            break
        (length,) = struct.unpack(">H", data[i : i + 2])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 7 > n:
                break
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            if height == 0 or width == 0:
                raise AasceFormatError(f"{path}: JPEG header gives size {height}x{width}, expected positive")
            return int(height), int(width)
        i += length
    raise AasceFormatError(f"{path}: corrupt or truncated JPEG (no frame header with the image size)")


def read_image_size(path: str) -> tuple[int, int]:
    """(height, width) of a JPEG or PNG from its header (other formats: decoded with OpenCV).

    Raises AasceFormatError naming the file when it is missing or not a readable image.
    """
    if not fileio.isfile(path):
        raise AasceFormatError(f"{path}: image file not found")
    with fileio.open(path, "rb") as f:
        head = f.read(65536)
        if head[:2] == b"\xff\xd8":
            try:
                return _jpeg_size(head, path)
            except AasceFormatError:
                # Large APP segments may push the frame header beyond the first 64 KiB.
                f.seek(0)
                return _jpeg_size(f.read(), path)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise AasceFormatError(f"{path}: corrupt PNG header (expected an IHDR chunk)")
        width, height = struct.unpack(">II", head[16:24])
        return int(height), int(width)
    image = _decode(fileio.read_bytes(path), path)
    return int(image.shape[0]), int(image.shape[1])


def _decode(data: bytes, path: str) -> np.ndarray:
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if image is None:
        raise AasceFormatError(f"{path}: cannot decode the image (expected a JPEG or PNG X-ray)")
    return image


def verify_image(path: str) -> tuple[int, int]:
    """Decode the whole image; (height, width). Raises AasceFormatError for missing, truncated or undecodable files."""
    height, width = read_image_size(path)
    data = fileio.read_bytes(path)
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise AasceFormatError(f"{path}: truncated JPEG (expected the end-of-image marker FFD9 at the end)")
    image = _decode(data, path)
    if image.shape[:2] != (height, width):
        raise AasceFormatError(
            f"{path}: decoded size {image.shape[:2]} differs from the header size {(height, width)}"
        )
    return height, width


# ----------------------------------------------------------------------------------------------
# Labels


def read_p2(path: str) -> np.ndarray:
    """(68, 2) float64 pixels from the `p2` variable of a MATLAB 5 `.mat` file."""
    import scipy.io

    if not fileio.isfile(path):
        raise AasceFormatError(f"{path}: label file not found (expected a .mat with variable p2)")
    try:
        mat = scipy.io.loadmat(io.BytesIO(fileio.read_bytes(path)))
    except Exception as err:  # scipy raises several types for corrupt files
        raise AasceFormatError(f"{path}: cannot read as a MATLAB 5 .mat file ({err})") from err
    if "p2" not in mat:
        names = sorted(k for k in mat if not k.startswith("__"))
        raise AasceFormatError(f"{path}: no variable 'p2' (expected (68, 2) landmarks), found {names}")
    p2 = np.asarray(mat["p2"])
    if p2.shape != (N_LANDMARKS, 2):
        raise AasceFormatError(f"{path}: p2 has shape {p2.shape}, expected (68, 2)")
    if not np.issubdtype(p2.dtype, np.number):
        raise AasceFormatError(f"{path}: p2 has dtype {p2.dtype}, expected numbers (uint16)")
    out = p2.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise AasceFormatError(f"{path}: p2 contains NaN or inf, expected finite pixel coordinates")
    return out


def _read_lines(path: str, what: str) -> list[str]:
    if not fileio.isfile(path):
        raise AasceFormatError(f"{path}: {what} not found")
    raw = fileio.read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise AasceFormatError(f"{path}: not a UTF-8/ASCII text file ({err})") from err
    lines = text.split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and lines[-1].strip() == "":
        lines.pop()
    return lines


def read_filenames(path: str) -> list[str]:
    """Names from filenames.csv (CRLF or LF), kept verbatim (names contain spaces)."""
    names = _read_lines(path, "filenames.csv")
    for i, name in enumerate(names):
        if not name.strip():
            raise AasceFormatError(f"{path}: line {i + 1} is empty, expected an image file name")
    return names


def read_numeric_csv(path: str, n_cols: int, what: str) -> np.ndarray:
    """(rows, n_cols) float64 from a headerless comma-separated file."""
    rows = []
    for i, line in enumerate(_read_lines(path, what)):
        cells = line.split(",")
        if len(cells) != n_cols:
            raise AasceFormatError(f"{path}: line {i + 1} has {len(cells)} columns, expected {n_cols}")
        try:
            rows.append([float(c) for c in cells])
        except ValueError as err:
            raise AasceFormatError(f"{path}: line {i + 1} has a non-numeric value ({err})") from err
    out = np.asarray(rows, dtype=np.float64).reshape(len(rows), n_cols)
    if not np.all(np.isfinite(out)):
        bad = int(np.argwhere(~np.isfinite(out))[0, 0])
        raise AasceFormatError(f"{path}: line {bad + 1} has NaN or inf, expected finite numbers")
    return out


def normalised_landmarks(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """(136,) the landmarks.csv row of (68, 2) pixel landmarks: x's / W then y's / H."""
    p = np.asarray(landmarks, dtype=np.float64)
    return np.concatenate([p[:, 0] / width, p[:, 1] / height])


def landmark_discrepancy(record: AasceRecord, csv_row: np.ndarray) -> float:
    """Largest |.mat - landmarks.csv| in normalised units, in excess of the 5-significant-digit rounding (0 = agree)."""
    exact = normalised_landmarks(record.landmarks, record.height, record.width)
    tol = CSV_REL_TOL * np.abs(csv_row) + CSV_ABS_TOL
    return float(np.max(np.maximum(np.abs(exact - csv_row) - tol, 0.0)))


# ----------------------------------------------------------------------------------------------
# Quirks


def find_quirks(record: AasceRecord) -> list[str]:
    """Human-readable findings about one record's labels (empty when clean). Labels are not changed.

    Checks: per vertebra, corners swapped left/right (TL.x > TR.x or BL.x > BR.x) or top/bottom
    (TL.y > BL.y or TR.y > BR.y); vertebra centres (mean of the 4 corners) not strictly increasing in
    y from T1 to L5; points outside the image ([0, W] x [0, H], pixels).
    """
    from seg4reg_tf.geometry import VERTEBRA_NAMES

    p = np.asarray(record.landmarks, dtype=np.float64)
    if p.shape != (N_LANDMARKS, 2):
        raise ValueError(f"{record.filename}: landmarks: expected shape (68, 2), got {p.shape}")
    c = p.reshape(17, 4, 2)  # TL, TR, BL, BR
    out = []
    for v in range(17):
        tl, tr, bl, br = c[v]
        if tl[0] > tr[0] or bl[0] > br[0]:
            out.append(f"swapped corners left/right: vertebra {VERTEBRA_NAMES[v]}")
        if tl[1] > bl[1] or tr[1] > br[1]:
            out.append(f"swapped corners top/bottom: vertebra {VERTEBRA_NAMES[v]}")
    cy = c[:, :, 1].mean(axis=1)
    for v in np.nonzero(~(np.diff(cy) > 0))[0]:
        out.append(
            f"centres out of order: {VERTEBRA_NAMES[v + 1]} centre y={cy[v + 1]:.1f} is not below "
            f"{VERTEBRA_NAMES[v]} centre y={cy[v]:.1f}"
        )
    outside = (p[:, 0] < 0) | (p[:, 0] > record.width) | (p[:, 1] < 0) | (p[:, 1] > record.height)
    for k in np.nonzero(outside)[0]:
        out.append(
            f"point outside the image: landmark {k} ({VERTEBRA_NAMES[k // 4]}) at "
            f"({p[k, 0]:.0f}, {p[k, 1]:.0f}), image {record.width}x{record.height} (WxH)"
        )
    return out


def quirk_kinds(findings: list[str]) -> set[str]:
    """The kinds of findings of `find_quirks`: subset of {"swapped_lr", "swapped_tb", "order", "outside"}."""
    kinds = set()
    for f in findings:
        if f.startswith("swapped corners left/right"):
            kinds.add("swapped_lr")
        elif f.startswith("swapped corners top/bottom"):
            kinds.add("swapped_tb")
        elif f.startswith("centres out of order"):
            kinds.add("order")
        elif f.startswith("point outside"):
            kinds.add("outside")
    return kinds


# ----------------------------------------------------------------------------------------------
# Splits


def _split_paths(root, split: str) -> tuple[str, str, str]:
    root = fileio.absolute(root)
    if not fileio.isdir(root):
        raise AasceFormatError(f"{root}: dataset root not found (expected data/<split> and labels/<split>)")
    image_dir = fileio.join(root, "data", split)
    label_dir = fileio.join(root, "labels", split)
    for d in (image_dir, label_dir):
        if not fileio.isdir(d):
            raise AasceFormatError(f"{d}: split folder not found (split {split!r})")
    return root, image_dir, label_dir


def _load(root, split: str, check_images: bool, progress: bool):
    from tqdm.auto import tqdm

    _, image_dir, label_dir = _split_paths(root, split)
    fn_path = fileio.join(label_dir, "filenames.csv")
    lm_path = fileio.join(label_dir, "landmarks.csv")
    an_path = fileio.join(label_dir, "angles.csv")
    names = read_filenames(fn_path)
    lms = read_numeric_csv(lm_path, 2 * N_LANDMARKS, "landmarks.csv")
    angles = read_numeric_csv(an_path, N_ANGLES, "angles.csv")
    for path, arr in ((lm_path, lms), (an_path, angles)):
        if len(arr) != len(names):
            raise AasceFormatError(f"{path}: {len(arr)} rows, expected {len(names)} (one per line of {fn_path})")
    records = []
    discrepancy = np.zeros(len(names))
    bar = tqdm(names, desc=f"reading {split}", unit="img", disable=not progress, leave=False)
    for i, name in enumerate(bar):
        image_path = fileio.join(image_dir, name)
        height, width = verify_image(image_path) if check_images else read_image_size(image_path)
        p2 = read_p2(fileio.join(label_dir, name + ".mat"))
        rec = AasceRecord(name, image_path, height, width, p2, angles[i].copy())
        discrepancy[i] = landmark_discrepancy(rec, lms[i])
        records.append(rec)
    return records, lms, discrepancy


def load_split(root, split: str, *, check_images: bool = True, progress: bool | None = None) -> list[AasceRecord]:
    """Records of one split in filenames.csv order.

    Args:
        root: dataset root (holding data/ and labels/).
        split: e.g. "training" or "test".
        check_images: decode every image fully (catches truncated/undecodable files; ~3 ms per real
            image); False reads only the JPEG/PNG headers for the size.
        progress: show a tqdm bar (default: when check_images).

    Raises AasceFormatError naming the file on any missing or malformed file. Emits one
    AasceQuirkWarning summarising label quirks and .mat/landmarks.csv disagreements (labels kept).
    """
    records, _, discrepancy = _load(root, split, check_images, check_images if progress is None else progress)
    quirky = [r.filename for r in records if find_quirks(r)]
    mismatched = [records[i].filename for i in np.nonzero(discrepancy > 0)[0]]
    if quirky:
        warnings.warn(
            f"{split}: {len(quirky)} of {len(records)} files have label quirks (kept unchanged; see "
            f"seg4reg_tf.data.aasce.find_quirks): {', '.join(quirky[:5])}{' ...' if len(quirky) > 5 else ''}",
            AasceQuirkWarning,
            stacklevel=2,
        )
    if mismatched:
        warnings.warn(
            f"{split}: {len(mismatched)} files whose .mat landmarks disagree with landmarks.csv beyond "
            f"5-significant-digit rounding (the .mat is used): {', '.join(mismatched[:5])}",
            AasceQuirkWarning,
            stacklevel=2,
        )
    return records


FOLDS = 5  # the folds of a split: 0-based index % 5; fold 4 is the fixed validation split
VAL_FOLD = 4


def train_val_split(records: list, fold: int = VAL_FOLD) -> tuple[list, list]:
    """The fixed rule: 0-based index % 5 == `fold` -> validation, the rest training (order kept).
    `fold` 4 is the fixed split; 0-3 the other folds of a cross-validation."""
    if fold not in range(FOLDS):
        raise ValueError(f"fold: expected an int in 0..{FOLDS - 1} (index % {FOLDS} == fold validates), got {fold!r}")
    records = list(records)
    train = [r for i, r in enumerate(records) if i % FOLDS != fold]
    val = [r for i, r in enumerate(records) if i % FOLDS == fold]
    return train, val


def check_split(root, split: str, *, check_images: bool = True, progress: bool | None = None) -> dict:
    """A report on one split (raises AasceFormatError on format errors).

    Returns a dict: root, split, count, height_range (min, max) px, width_range, quirks
    ({filename: [findings]} for quirky files only), quirk_counts (files per kind: swapped_lr,
    swapped_tb, swapped (either), order, outside), max_angle_error (max |cobb_angles(p2, H) -
    angles.csv| in degrees) with angle_error_file, max_landmark_discrepancy (max |.mat - csv| in
    normalised units beyond 5-digit rounding, 0 when they agree) with landmark_discrepancy_file, and
    max_landmark_difference (raw max |.mat/size - csv|, normalised).
    """
    from seg4reg_tf.geometry import cobb_angles

    records, lms, discrepancy = _load(root, split, check_images, check_images if progress is None else progress)
    quirks = {}
    counts = {"swapped_lr": 0, "swapped_tb": 0, "swapped": 0, "order": 0, "outside": 0}
    angle_err = np.zeros(len(records))
    raw_diff = np.zeros(len(records))
    for i, r in enumerate(records):
        found = find_quirks(r)
        if found:
            quirks[r.filename] = found
            kinds = quirk_kinds(found)
            for k in kinds:
                counts[k] += 1
            counts["swapped"] += bool(kinds & {"swapped_lr", "swapped_tb"})
        angle_err[i] = np.max(np.abs(cobb_angles(r.landmarks, r.height) - r.angles))
        raw_diff[i] = np.max(np.abs(normalised_landmarks(r.landmarks, r.height, r.width) - lms[i]))
    heights = [r.height for r in records]
    widths = [r.width for r in records]
    n = len(records)
    return {
        "root": fileio.absolute(root),
        "split": split,
        "count": n,
        "height_range": (min(heights), max(heights)) if n else (0, 0),
        "width_range": (min(widths), max(widths)) if n else (0, 0),
        "quirks": quirks,
        "quirk_counts": counts,
        "max_angle_error": float(np.nanmax(angle_err)) if n else 0.0,
        "angle_error_file": records[int(np.nanargmax(angle_err))].filename if n else None,
        "max_landmark_discrepancy": float(discrepancy.max()) if n else 0.0,
        "landmark_discrepancy_file": records[int(discrepancy.argmax())].filename if n else None,
        "max_landmark_difference": float(raw_diff.max()) if n else 0.0,
    }
