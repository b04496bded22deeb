"""The official AASCE Cobb angles: a faithful port of the organisers' MATLAB `angleCal`.

Semantics (README, "Exact where the field has a standard"): pairwise angles between the 17 vertebra vectors,
no clipping at 90 degrees,
cosines rounded to 8 decimals, MATLAB's first-maximum tie breaking, the S test on the 34 endplate
midpoints and the branch choice on the *bottom*-edge midpoints of the end vertebrae against the
image height. Everything is float64.
"""
from __future__ import annotations

import dataclasses

import numpy as np

N_VERTEBRAE = 17
N_LANDMARKS = 4 * N_VERTEBRAE
VERTEBRA_NAMES = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
ANGLE_NAMES = ("PT", "MT", "TL")

BRANCH_C = "C"
BRANCH_S_UPPER = "S-upper"
BRANCH_S_LOWER = "S-lower"


@dataclasses.dataclass(frozen=True)
class CobbDetails:
    """The three Cobb angles and how they were found.

    Attributes:
        angles: (3,) float64 degrees [PT, MT, TL].
        branch: "C", "S-upper" (main curve in the upper half) or "S-lower".
        end_vertebrae: ((upper, lower) for PT, MT, TL): 0-based vertebra indices (0 = T1, 16 = L5)
            of the two vertebrae whose vectors form each angle.
        pairwise: (17, 17) float64 degrees, the angle between every pair of vertebra vectors.
    """

    angles: np.ndarray
    branch: str
    end_vertebrae: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    pairwise: np.ndarray

    def end_vertebra_names(self) -> list[tuple[str, str]]:
        return [(VERTEBRA_NAMES[a], VERTEBRA_NAMES[b]) for a, b in self.end_vertebrae]


def _as_landmarks(landmarks) -> np.ndarray:
    p = np.asarray(landmarks, dtype=np.float64)
    if p.shape != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks: expected shape (68, 2) (x, y pixels), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("landmarks: expected finite coordinates, got NaN or inf")
    return p


def pairwise_angles(landmarks) -> np.ndarray:
    """(17, 17) float64 degrees between the vertebra vectors (right centre - left centre)."""
    p = _as_landmarks(landmarks)
    corners = p.reshape(N_VERTEBRAE, 4, 2)  # TL, TR, BL, BR
    left = (corners[:, 0] + corners[:, 2]) / 2.0
    right = (corners[:, 1] + corners[:, 3]) / 2.0
    vec = right - left
    dot = vec @ vec.T
    norm = np.sqrt(np.sum(vec * vec, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = dot / np.outer(norm, norm)
    # MATLAB: acos(round(cos * 1e8) / 1e8); MATLAB rounds half away from zero.
    cos = np.sign(cos) * np.floor(np.abs(cos) * 1e8 + 0.5) / 1e8
    return np.degrees(np.arccos(cos))


def _matlab_max(values: np.ndarray) -> tuple[float, int]:
    """MATLAB `max` of a vector: NaN ignored unless all NaN, first index of the maximum."""
    if np.all(np.isnan(values)):
        return float("nan"), 0
    idx = int(np.nanargmax(values))
    return float(values[idx]), idx


def _is_s_shape(mid: np.ndarray) -> bool:
    x, y = mid[:, 0], mid[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = (y[:32] - y[33]) / (y[0] - y[33]) - (x[:32] - x[33]) / (x[0] - x[33])
        prod = np.outer(ll, ll)
        # A vertical chord gives inf/NaN: the comparison is then False/NaN-unequal, which counts as S.
        return not bool(np.sum(prod) == np.sum(np.abs(prod)))


def cobb_angles_details(landmarks, image_height: float, min_span: int = 1) -> CobbDetails:
    """Official Cobb angles with the branch and end vertebrae.

    Args:
        landmarks: (68, 2) x, y pixel coordinates, 4 corners (TL, TR, BL, BR) per vertebra T1..L5.
        image_height: height H of the image the landmarks live in, pixels.
        min_span: 1 (default) is the official algorithm. A larger value zeroes the pairwise angles of
            vertebrae fewer than `min_span` apart before the official selection, so no curve ends on
            the same or adjacent vertebrae (for fitted, noisy vertebrae; not the official semantics).
    """
    p = _as_landmarks(landmarks)
    a = pairwise_angles(p)
    if min_span > 1:
        idx = np.arange(N_VERTEBRAE)
        a = np.where(np.abs(idx[:, None] - idx[None, :]) < min_span, 0.0, a)
    mid = (p[0::2] + p[1::2]) / 2.0  # (34, 2) endplate midpoints

    # [maxt, pos1] = max(A): column-wise; [pt, pos2] = max(maxt).
    col_max = np.empty(N_VERTEBRAE)
    col_arg = np.empty(N_VERTEBRAE, dtype=int)
    for c in range(N_VERTEBRAE):
        col_max[c], col_arg[c] = _matlab_max(a[:, c])
    pt, i = _matlab_max(col_max)
    j = int(col_arg[i])

    if not _is_s_shape(mid):
        branch = BRANCH_C
        mt, tl = a[0, i], a[N_VERTEBRAE - 1, j]
        ends = ((i, j), (0, i), (j, N_VERTEBRAE - 1))
    elif mid[2 * i + 1, 1] + mid[2 * j + 1, 1] < image_height:
        branch = BRANCH_S_UPPER
        mt, k_mt = _matlab_max(a[i, : i + 1])
        tl, k_tl = _matlab_max(a[j, j:])
        ends = ((i, j), (k_mt, i), (j, j + k_tl))
    else:
        branch = BRANCH_S_LOWER
        mt, k = _matlab_max(a[i, : i + 1])
        tl, k2 = _matlab_max(a[k, : k + 1])
        ends = ((i, j), (k, i), (k2, k))
    ends = tuple(tuple(sorted((int(u), int(v)))) for u, v in ends)
    return CobbDetails(np.array([pt, mt, tl], dtype=np.float64), branch, ends, a)


def cobb_angles(landmarks, image_height: float) -> np.ndarray:
    """(3,) float64 degrees [PT, MT, TL] by the official AASCE semantics (see `cobb_angles_details`)."""
    return cobb_angles_details(landmarks, image_height).angles
