"""Hand-made spines with known Cobb angles for the geometry tests."""
import numpy as np


def make_spine(tilts_deg, centres_x, centres_y, half_w=20.0, half_h=10.0) -> np.ndarray:
    """(68, 2) landmarks: vertebra v is a rectangle centred at (centres_x[v], centres_y[v]) tilted by tilts_deg[v]."""
    out = np.zeros((68, 2))
    local = np.array([[-half_w, -half_h], [half_w, -half_h], [-half_w, half_h], [half_w, half_h]])  # TL TR BL BR
    for v in range(17):
        t = np.radians(tilts_deg[v])
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        out[4 * v : 4 * v + 4] = local @ rot.T + [centres_x[v], centres_y[v]]
    return out


def interp_tilts(knots_idx, knots_deg) -> np.ndarray:
    return np.interp(np.arange(17), knots_idx, knots_deg)


Y = 100.0 + 50.0 * np.arange(17)  # vertebra centres, 100 .. 900 px
C_X = 300.0 - 0.05 * Y + 120.0 * np.sin(np.pi * np.arange(17) / 16)  # one bump: all on one side of the chord
S_X = 200.0 + 0.05 * Y + 30.0 * np.sin(2 * np.pi * np.arange(17) / 16)  # both sides of the chord
