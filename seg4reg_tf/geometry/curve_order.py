"""Which curve is which: AASCE's columns [PT, MT, TL] hold the main curve first, then two smaller curves
whose slots depend on the official algorithm's branch (MT: the curve above the main one; TL: the one below
it, or above MT when the main curve is low). A regression head can put the two smaller curves in the other
slots; averaged slot by slot with the geometry head's, both answers are then wrong. Plain arithmetic on
[..., 3] degrees, so NumPy arrays and tensors both work."""
from __future__ import annotations

ORDER_TOLERANCE = 2.0  # deg: the two orders differ by under half of this in a fused answer below it
SWAP = (0, 2, 1)  # the column order with MT and TL exchanged


def curves_swapped(reference, other, tolerance: float = 0.0):
    """bool [...]: `other` ranks its MT and TL the other way round from `reference`, each pair more than
    `tolerance` deg apart. Pairing by size (MT with MT where this is False, with TL where True) is the
    assignment with the smaller L1 distance between the two heads."""
    gap_ref = reference[..., 1] - reference[..., 2]
    gap_other = other[..., 1] - other[..., 2]
    return (gap_ref * gap_other < 0) & (abs(gap_ref) > tolerance) & (abs(gap_other) > tolerance)
