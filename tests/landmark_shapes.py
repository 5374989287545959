"""The CFEE 78-point landmark scheme drawn as a cartoon face, shared by tests that need landmark crops."""

from __future__ import annotations

import numpy as np


def cfee_points(*, contour_top: float = -10.0, contour_height: float = 90.0) -> np.ndarray:
    """78 points (eyes level, centred near the origin, inter-pupil distance 60) in the CFEE order:
    pupils 0 and 9, eyes, brows, nose, outer and inner lip, face contour 63-77 (70 the chin)."""
    def ring(x, y, rx, ry, n, start=0.0):
        t = start + np.arange(n) * 2 * np.pi / n
        return np.stack([x + rx * np.cos(t), y + ry * np.sin(t)], 1)

    p = np.zeros((78, 2))
    p[0], p[9] = (-30, -10), (30, -10)
    p[1:9], p[10:18] = ring(-30, -10, 11, 5, 8), ring(30, -10, 11, 5, 8)
    p[18:26], p[26:34] = ring(-30, -30, 16, 3, 8), ring(30, -30, 16, 3, 8)
    p[34:49] = np.stack([np.linspace(-10, 10, 15), np.linspace(-5, 30, 15)], 1)
    p[49:57], p[57:63] = ring(0, 55, 22, 9, 8, np.pi), ring(0, 55, 14, 3, 6, np.pi)
    t = np.linspace(np.pi, 0, 15)
    p[63:78] = np.stack([60 * np.cos(t), contour_top + contour_height * np.sin(t)], 1)
    return p
