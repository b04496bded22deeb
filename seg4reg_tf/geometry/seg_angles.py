"""The fitted vertebrae: Cobb angles measured on a predicted vertebra segmentation (not the geometry head,
which is a network head; docs/architecture.md, "Glossary").

Pipeline per label map: keep the largest connected component of each vertebra label (predicted
speckles are ignored) -> 4 corners per vertebra (TL, TR, BL, BR) -> fill a few missing vertebrae
from their neighbours -> undo the letterbox (`Letterbox.to_original`) -> the OFFICIAL
`geometry.cobb_angles` with the original image height.

Corner fits (`fit=`):
- "quad" (default): the vertebra's convex hull simplified to a quadrilateral (`cv2.approxPolyDP`,
  smallest tolerance giving 4 vertices; minimum-area rectangle if none does). Keeps the trapezoid
  shape, so the vertebra vector (right centre - left centre) follows both endplates.
- "rect": the minimum-area rectangle (`geometry.label_map_to_landmarks`).
Measured on the 481 real training labels rasterised at 512 x 256 (perfect segmentation, 120-image
sample): SMAPE vs angles.csv 3.5 with "quad", 7.3 with "rect" (MAE PT/MT/TL 1.3/1.6/2.3 vs
2.4/3.3/4.0 degrees): the rectangle's orientation is not the official vector of a wedge vertebra.

Missing-vertebra policy (at most `max_missing`, default 3, else the angles are NaN):
- a missing vertebra between two found ones gets its 4 corners linearly interpolated (per corner,
  by vertebra index) between the nearest found neighbours above and below;
- a missing vertebra at either end (T1.. or ..L5) is a copy of the nearest found vertebra, moved
  by the mean centre-to-centre step of the found vertebrae (its tilt is copied, not extrapolated);
- fewer than 2 found vertebrae always give NaN.

Robustness to predicted masks (on by default; `outlier_deg=0, min_span=1, reject=False` is the plain
fit above):
- `reject`: a fitted vertebra is dropped (then filled like a missing one) when its region touches the
  frame border (cut), its area is outside [1/3, 3] x the median, or its centre breaks the
  top-to-bottom order (the longest run of centres increasing in y is kept);
- `outlier_deg` (default 0 = off): a tilt (direction of right centre - left centre) more than
  `outlier_deg` off what its neighbours predict (local line) is replaced by that prediction and the
  vertebra redrawn as a rectangle of its own centre and size. Off because it measured worse on
  predicted masks, as did plain smoothing of the tilts, which on perfect masks of real labels costs
  0.9 SMAPE at sigma 1 vertebra and 3.5 at 1.5 (real tilts change sharply at end vertebrae);
  BENCHMARKS.md "Accuracy II";
- `min_span`: end vertebrae of a reported curve are at least this many vertebrae apart
  (`geometry.cobb_angles_details(min_span=...)`).
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from seg4reg_tf.geometry.cobb import N_LANDMARKS, N_VERTEBRAE, VERTEBRA_NAMES, CobbDetails, cobb_angles_details
from seg4reg_tf.geometry.letterbox import Letterbox
from seg4reg_tf.geometry.masks import label_map_to_landmarks

DEFAULT_MAX_MISSING = 3
DEFAULT_OUTLIER_DEG = 0.0  # off: measured no help on predicted masks (BENCHMARKS.md)
DEFAULT_MIN_SPAN = 2
FITS = ("quad", "rect")
AREA_RANGE = (1.0 / 3.0, 3.0)  # x the median vertebra area


@dataclasses.dataclass(frozen=True)
class SegAngles:
    """Result of `segmentation_angles_details`.

    Attributes:
        angles: (3,) float64 degrees [PT, MT, TL], all NaN when the segmentation was unusable.
        landmarks: (68, 2) float64 corners in ORIGINAL image pixels (NaN rows for vertebrae neither
            found nor filled).
        n_found: how many of the 17 vertebrae were found in the label map.
        interpolated: names (e.g. "T3") of the vertebrae filled from their neighbours.
        reason: "" on success, else why the angles are NaN.
        details: the `geometry.CobbDetails` (branch, end vertebrae) behind `angles`, None on failure.
        rejected: {vertebra name: why} of the fitted vertebrae `reject` dropped.
    """

    angles: np.ndarray
    landmarks: np.ndarray
    n_found: int
    interpolated: tuple[str, ...]
    reason: str = ""
    details: "CobbDetails | None" = None
    rejected: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.reason


def largest_components(label_map, min_pixels: int = 4) -> np.ndarray:
    """Copy of an [H, W] label map keeping, per label 1..17, only its largest 8-connected component.

    Components smaller than `min_pixels` are dropped as well.
    """
    lab = np.asarray(label_map)
    if lab.ndim != 2:
        raise ValueError(f"label_map: expected a 2-D [H, W] integer array, got shape {lab.shape}")
    out = np.zeros(lab.shape, dtype=np.uint8)
    for v in range(1, N_VERTEBRAE + 1):
        mask = (lab == v).astype(np.uint8)
        if not mask.any():
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n <= 1:
            continue
        areas = stats[1:, cv2.CC_STAT_AREA]
        best = int(np.argmax(areas)) + 1
        if areas[best - 1] >= min_pixels:
            out[comp == best] = v
    return out


def _order_quad(q: np.ndarray) -> np.ndarray:
    """4 corners (any order) -> TL, TR, BL, BR: the most horizontal pair of opposite sides are the endplates."""
    centre = q.mean(axis=0)
    q = q[np.argsort(np.arctan2(q[:, 1] - centre[1], q[:, 0] - centre[0]))]  # cyclic

    def slope(k):
        d = q[(k + 1) % 4] - q[k]
        return abs(d[1]) / (abs(d[0]) + 1e-12)
    # Sides (0,1)&(2,3) vs (1,2)&(3,0): the pair with the smaller mean slope holds the endplates.
    k = 0 if slope(0) + slope(2) <= slope(1) + slope(3) else 1
    side_a = q[[k, (k + 1) % 4]]
    side_b = q[[(k + 2) % 4, (k + 3) % 4]]
    top, bottom = sorted([side_a, side_b], key=lambda e: e[:, 1].mean())
    tl, tr = top[np.argsort(top[:, 0])]
    bl, br = bottom[np.argsort(bottom[:, 0])]
    return np.stack([tl, tr, bl, br])


def fit_quadrilaterals(label_map, min_pixels: int = 4) -> np.ndarray:
    """(68, 2) corners TL, TR, BL, BR per vertebra label of an [H, W] map (pixel-centre coordinates,
    as `geometry.label_map_to_landmarks`), NaN rows for absent vertebrae; see the module notes."""
    lab = np.asarray(label_map)
    if lab.ndim != 2:
        raise ValueError(f"label_map: expected a 2-D [H, W] integer array, got shape {lab.shape}")
    out = np.full((N_LANDMARKS, 2), np.nan)
    for v in range(N_VERTEBRAE):
        mask = (lab == v + 1).astype(np.uint8)
        if int(mask.sum()) < min_pixels:
            continue
        # Pad so contours of regions touching the border are closed; contour points are pixel indices.
        contours, _ = cv2.findContours(np.pad(mask, 1), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contour = max(contours, key=cv2.contourArea)
        hull = cv2.convexHull(contour)
        perimeter = cv2.arcLength(hull, True)
        quad = None
        for eps in np.linspace(0.01, 0.2, 39):
            approx = cv2.approxPolyDP(hull, eps * perimeter, True)
            if len(approx) == 4:
                quad = approx[:, 0, :].astype(np.float64)
                break
            if len(approx) < 4:
                break
        if quad is None:
            quad = cv2.boxPoints(cv2.minAreaRect(hull.astype(np.float32))).astype(np.float64)
        # Contour pixel indices (+1 pad) -> pixel-centre coordinates.
        out[4 * v : 4 * v + 4] = _order_quad(quad - 1.0 + 0.5)
    return out


def _vertebra_frames(corners: np.ndarray):
    """(centres (17, 2), tilts (17,) radians, widths (17,), heights (17,)) of (68, 2) corners (NaN where absent)."""
    c = np.asarray(corners, dtype=np.float64).reshape(N_VERTEBRAE, 4, 2)
    left, right = (c[:, 0] + c[:, 2]) / 2.0, (c[:, 1] + c[:, 3]) / 2.0
    top, bottom = (c[:, 0] + c[:, 1]) / 2.0, (c[:, 2] + c[:, 3]) / 2.0
    vec = right - left
    return (c.mean(axis=1), np.arctan2(vec[:, 1], vec[:, 0]), np.linalg.norm(vec, axis=1),
            np.linalg.norm(bottom - top, axis=1))


def _longest_increasing(idx: np.ndarray, y: np.ndarray) -> set[int]:
    """Indices of the longest subsequence of `idx` (in order) whose `y` strictly increases."""
    best_len, prev = [1] * len(idx), [-1] * len(idx)
    for a in range(len(idx)):
        for b in range(a):
            if y[b] < y[a] and best_len[b] + 1 > best_len[a]:
                best_len[a], prev[a] = best_len[b] + 1, b
    k = int(np.argmax(best_len)) if len(idx) else -1
    keep = set()
    while k >= 0:
        keep.add(int(idx[k]))
        k = prev[k]
    return keep


def reject_implausible(corners: np.ndarray, label_map) -> tuple[np.ndarray, dict[int, str]]:
    """Drop implausible fitted vertebrae (module notes): ((68, 2) corners with NaN rows for them,
    {vertebra index: reason})."""
    c = np.array(corners, dtype=np.float64).reshape(N_VERTEBRAE, 4, 2)
    lab = np.asarray(label_map)
    found = np.array([np.all(np.isfinite(c[v])) for v in range(N_VERTEBRAE)])
    centres = _vertebra_frames(c)[0]
    areas = np.array([float(np.sum(lab == v + 1)) for v in range(N_VERTEBRAE)])
    rejected: dict[int, str] = {}
    for v in np.flatnonzero(found):
        m = lab == v + 1
        if m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any():
            rejected[int(v)] = "cut by the frame border"
    ok = [v for v in np.flatnonzero(found) if v not in rejected]
    if ok:
        med = float(np.median(areas[ok]))
        for v in ok:
            if not AREA_RANGE[0] * med <= areas[v] <= AREA_RANGE[1] * med:
                rejected[int(v)] = f"area {areas[v]:.0f} px vs median {med:.0f}"
    ok = np.array([v for v in np.flatnonzero(found) if v not in rejected], dtype=int)
    keep = _longest_increasing(ok, centres[ok, 1])
    for v in ok:
        if int(v) not in keep:
            rejected[int(v)] = "out of top-to-bottom order"
    for v in rejected:
        c[v] = np.nan
    return c.reshape(N_LANDMARKS, 2), rejected


def _local_linear(idx: np.ndarray, values: np.ndarray, at: float, sigma: float) -> float:
    """Value at `at` of a line in the index fitted to (idx, values) with Gaussian weights (sigma)."""
    w = np.sqrt(np.exp(-0.5 * ((idx - at) / sigma) ** 2))
    design = np.stack([np.ones_like(idx), idx - at], axis=1)
    return float(np.linalg.lstsq(design * w[:, None], values * w, rcond=None)[0][0])


def robust_tilts(tilts: np.ndarray, outlier_deg: float, sigma: float = 1.5, reach: int = 3) -> np.ndarray:
    """(17,) radians with isolated outliers replaced: the tilt of each vertebra is predicted from its
    neighbours within `reach` (local line, weights sigma); the worst one off by more than
    `outlier_deg` is replaced by its prediction, and so on until none is. A smooth curve is unchanged."""
    t = np.array(tilts, dtype=np.float64)
    idx = np.arange(t.size, dtype=np.float64)
    limit = np.radians(outlier_deg)
    for _ in range(t.size):
        pred = np.empty_like(t)
        for v in range(t.size):
            nb = np.array([j for j in range(max(0, v - reach), min(t.size, v + reach + 1)) if j != v])
            pred[v] = _local_linear(idx[nb], t[nb], float(v), sigma) if nb.size >= 3 else t[v]
        resid = np.abs(t - pred)
        worst = int(np.argmax(resid))
        if resid[worst] <= limit:
            break
        t[worst] = pred[worst]
    return t


def rebuild_with_tilts(corners: np.ndarray, outlier_deg: float) -> np.ndarray:
    """Complete (68, 2) corners -> rectangles (own centre, width, height) at `robust_tilts` (0: unchanged)."""
    c = np.asarray(corners, dtype=np.float64)
    if outlier_deg <= 0:
        return c.copy()
    centres, tilts, widths, heights = _vertebra_frames(c)
    theta = robust_tilts(tilts, outlier_deg)
    changed = np.abs(theta - tilts) > 0
    if not changed.any():
        return c.copy()
    u = np.stack([np.cos(theta), np.sin(theta)], axis=1) * (widths / 2.0)[:, None]
    n = np.stack([-np.sin(theta), np.cos(theta)], axis=1) * (heights / 2.0)[:, None]
    rebuilt = np.stack([centres - u - n, centres + u - n, centres - u + n, centres + u + n], axis=1)
    out = c.reshape(N_VERTEBRAE, 4, 2).copy()
    out[changed] = rebuilt[changed]  # only the corrected vertebrae are redrawn
    return out.reshape(N_LANDMARKS, 2)


def fill_missing(corners: np.ndarray, max_missing: int = DEFAULT_MAX_MISSING) -> tuple[np.ndarray, list[int], str]:
    """Fill NaN vertebrae of (68, 2) corners by the module's policy.

    Returns (filled (68, 2), indices of filled vertebrae, reason) with reason "" on success.
    """
    c = np.array(corners, dtype=np.float64).reshape(N_VERTEBRAE, 4, 2)
    found = np.array([np.all(np.isfinite(c[v])) for v in range(N_VERTEBRAE)])
    idx_found = np.flatnonzero(found)
    missing = [int(v) for v in np.flatnonzero(~found)]
    if len(idx_found) < 2:
        return c.reshape(N_LANDMARKS, 2), [], f"only {len(idx_found)} vertebrae found"
    if len(missing) > max_missing:
        names = ",".join(VERTEBRA_NAMES[v] for v in missing)
        return c.reshape(N_LANDMARKS, 2), [], f"{len(missing)} vertebrae missing ({names}), more than {max_missing}"
    centres = c[idx_found].mean(axis=1)  # (n, 2)
    step = (centres[-1] - centres[0]) / float(idx_found[-1] - idx_found[0])
    for v in missing:
        above = idx_found[idx_found < v]
        below = idx_found[idx_found > v]
        if len(above) and len(below):
            a, b = int(above[-1]), int(below[0])
            w = (v - a) / float(b - a)
            c[v] = (1.0 - w) * c[a] + w * c[b]
        else:
            nearest = int(above[-1]) if len(above) else int(below[0])
            c[v] = c[nearest] + (v - nearest) * step
    return c.reshape(N_LANDMARKS, 2), missing, ""


def segmentation_angles_details(
    label_map,
    letterbox: Letterbox,
    *,
    max_missing: int = DEFAULT_MAX_MISSING,
    min_pixels: int = 4,
    fit: str = "quad",
    reject: bool = True,
    outlier_deg: float = DEFAULT_OUTLIER_DEG,
    min_span: int = DEFAULT_MIN_SPAN,
) -> SegAngles:
    """Official Cobb angles of a predicted [H, W] label map (0 background, 1..17 = T1..L5).

    Args:
        label_map: [H, W] integers in the model frame (letterboxed).
        letterbox: how the original was fitted into the model frame (its height is the Cobb one).
        max_missing: most vertebrae that may be filled from neighbours before giving NaN.
        min_pixels: smallest component kept as a vertebra.
        fit: "quad" (default) or "rect" corner fit (module notes).
        reject, outlier_deg, min_span: the robustness steps of the module notes (rejected vertebrae
            count as missing for `max_missing`).
    """
    if fit not in FITS:
        raise ValueError(f"fit: expected one of {FITS}, got {fit!r}")
    if not isinstance(letterbox, Letterbox):
        raise TypeError(f"letterbox: expected a geometry.Letterbox, got {type(letterbox).__name__}")
    clean = largest_components(label_map, min_pixels=min_pixels)
    if fit == "quad":
        corners = fit_quadrilaterals(clean, min_pixels=min_pixels)
    else:
        corners = label_map_to_landmarks(clean, min_pixels=min_pixels)
    n_found = int(sum(np.all(np.isfinite(corners[4 * v : 4 * v + 4])) for v in range(N_VERTEBRAE)))
    rejected = {}
    if reject:
        corners, rejected = reject_implausible(corners, clean)
        rejected = {VERTEBRA_NAMES[v]: why for v, why in sorted(rejected.items())}
    filled, filled_idx, reason = fill_missing(corners, max_missing=max_missing)
    if not reason:
        filled = rebuild_with_tilts(filled, outlier_deg)
    original = letterbox.to_original(filled)
    names = tuple(VERTEBRA_NAMES[v] for v in filled_idx)
    if reason:
        return SegAngles(np.full(3, np.nan), original, n_found, names, reason, rejected=rejected)
    details = cobb_angles_details(original, letterbox.orig_height, min_span=min_span)
    if not np.all(np.isfinite(details.angles)):
        return SegAngles(np.full(3, np.nan), original, n_found, names, "degenerate vertebra geometry",
                         rejected=rejected)
    return SegAngles(details.angles, original, n_found, names, "", details, rejected)


def segmentation_angles(label_map, letterbox: Letterbox, **kwargs):
    """(angles (3,) degrees or NaN, landmarks (68, 2) original pixels, n_found) of a label map.

    See `segmentation_angles_details` for the arguments and the missing-vertebra policy.
    """
    r = segmentation_angles_details(label_map, letterbox, **kwargs)
    return r.angles, r.landmarks, r.n_found
