"""Which curve is which: AASCE's columns [PT, MT, TL] hold the main curve first, then two smaller curves
whose slots depend on the official algorithm's branch (MT: the curve above the main one; TL: the one below
it, or above MT when the main curve is low). Two heads can rank their MT and TL the other way round: one
put the curves in the other slots, or one found a curve the other did not. Plain arithmetic on [..., 3]
degrees, so NumPy arrays and tensors both work."""
from __future__ import annotations

ORDER_TOLERANCE = 2.0  # deg: the gap each head's MT and TL must have for their order to count


def curves_swapped(reference, other, tolerance: float = 0.0):
    """bool [...]: `other` ranks its MT and TL the other way round from `reference`, each pair more than
    `tolerance` deg apart."""
    gap_ref = reference[..., 1] - reference[..., 2]
    gap_other = other[..., 1] - other[..., 2]
    return (gap_ref * gap_other < 0) & (abs(gap_ref) > tolerance) & (abs(gap_other) > tolerance)
