"""Drawing the procedural faces of :mod:`compound_fer.data.synthetic`: :func:`render_face` draws an
identity with given action units, one helper per face part (head, hair, eyes, brows, nose, mouth), then
the region masks and the nuisance (pose, lighting, blur, noise).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from compound_fer import taxonomy

__all__ = ["render_face"]

_AUS = taxonomy.ACTION_UNITS
_SHIFT = 4  # cv2 sub-pixel bits
_ONE = float(1 << _SHIFT)
_T7 = np.linspace(0.0, 1.0, 7)
_BEZ7 = np.stack([(1 - _T7) ** 2, 2 * _T7 * (1 - _T7), _T7**2], axis=1)  # (7, 3)
_ARC13 = np.stack([np.cos(np.linspace(math.pi, 2 * math.pi, 13)), np.sin(np.linspace(math.pi, 2 * math.pi, 13))], 1)
_T11 = np.linspace(0.0, 1.0, 11)
_BEZ11 = np.stack([(1 - _T11) ** 2, 2 * _T11 * (1 - _T11), _T11**2], axis=1)


def _shade(color, k: float) -> tuple[float, float, float]:
    """``color`` darkened (k <= 1)."""
    return (color[0] * k, color[1] * k, color[2] * k)


def _mix(a, b, t: float) -> tuple[float, float, float]:
    u = 1 - t
    return (a[0] * u + b[0] * t, a[1] * u + b[1] * t, a[2] * u + b[2] * t)


class _Pen:
    """cv2 drawing in face units with sub-pixel precision and anti-aliasing."""

    def __init__(self, img: np.ndarray, size: int, antialias: bool = True) -> None:
        self.img, self.k, self.size = img, size * _ONE, size
        self.lt = cv2.LINE_AA if antialias else cv2.LINE_8

    def pts(self, p: np.ndarray) -> np.ndarray:
        return (p * self.k + 0.5).astype(np.int32)

    def poly(self, p: np.ndarray, color) -> None:
        cv2.fillPoly(self.img, [self.pts(p)], color, self.lt, _SHIFT)

    def line(self, p: np.ndarray, color, width: float) -> None:
        th = max(1, int(round(width * self.size)))
        cv2.polylines(self.img, [self.pts(p)], False, color, th, self.lt, _SHIFT)

    def ellipse(self, c, ax, color, start=0, end=360, angle=0.0, thick=-1) -> None:
        k = self.k
        cc = (int(c[0] * k + 0.5), int(c[1] * k + 0.5))
        aa = (int(ax[0] * k + 0.5) or 1, int(ax[1] * k + 0.5) or 1)
        cv2.ellipse(self.img, cc, aa, angle, start, end, color, thick, self.lt, _SHIFT)


def _curve(p0, mid, p2, bez=_BEZ7) -> np.ndarray:
    """Quadratic Bezier from p0 to p2 passing through ``mid`` at t = 0.5: (n, 2) points."""
    x0, y0 = float(p0[0]), float(p0[1])
    x2, y2 = float(p2[0]), float(p2[1])
    ctrl = (2 * mid[0] - (x0 + x2) / 2, 2 * mid[1] - (y0 + y2) / 2)
    return bez @ np.array([[x0, y0], ctrl, [x2, y2]])


class _Face:
    """One face being drawn: identity, AU intensities, the pen, and the geometry later parts reuse."""

    def __init__(self, identity: Any, aus: np.ndarray, img: np.ndarray, size: int) -> None:
        self.idn, self.S = identity, size
        self.a = dict(zip(_AUS, np.asarray(aus, dtype=np.float64).tolist()))
        self.pen = _Pen(img, size)
        self.cx, self.cy, self.fw = identity.cx, identity.cy, identity.face_w
        self.skin, self.hair = identity.skin, identity.hair
        self.skin_dark = _shade(self.skin, 0.82)
        self.jaw = 0.065 * self.a[26]
        self.rest = identity.eye_y - identity.brow_gap  # brow line at rest
        # nose (AU9, AU10 lift it)
        self.ny = identity.nose_y - (0.014 * self.a[9] + 0.008 * self.a[10])
        self.nw = identity.nose_w * (1 + 0.25 * self.a[9])


class _Mouth:
    """Mouth geometry (AU10, 12, 15, 17, 20, 23, 24, 25, 26) in face units."""

    def __init__(self, f: _Face) -> None:
        a, idn = f.a, f.idn
        a10, a12, a15, a17 = a[10], a[12], a[15], a[17]
        a20, a23, a24, a25, a26 = a[20], a[23], a[24], a[25], a[26]
        self.mx, self.my = f.cx, idn.mouth_y
        self.w = idn.mouth_w * (1 + 0.28 * a12 + 0.4 * a20 - 0.22 * a23 - 0.12 * a24 - 0.25 * a26)
        self.cdy = -0.07 * a12 + 0.055 * a15 + 0.008 * a20
        self.L, self.R = (
            np.array([self.mx - self.w, self.my + self.cdy]),
            np.array([self.mx + self.w, self.my + self.cdy]),
        )
        self.up_in = self.my - 0.022 * a10
        opening = (0.02 * a25 + 0.075 * a26) if a25 > 0 else 0.012 * a26
        self.lo_in = max(self.up_in, self.my + opening - 0.012 * a17)
        thin = (1 - 0.45 * a23 - 0.6 * a24) * (1 - 0.3 * a20)
        self.tu, self.tl = idn.lip_up * thin, idn.lip_low * thin * (1 + 0.25 * a17)
        self.lip_bottom = self.lo_in + self.tl


def _nasolabial(f: _Face, m: _Mouth, s: int) -> np.ndarray:
    """The nasolabial fold on side ``s`` (-1 left, 1 right): nose wing to mouth corner."""
    return _curve((f.cx + s * (f.nw + 0.012), f.ny - 0.01), (f.cx + s * (f.nw + 0.045), (f.ny + m.my) / 2),
                  (m.mx + s * (m.w + 0.02), m.my + m.cdy + 0.01))


def _draw_head(f: _Face) -> None:
    """Back hair, neck, ears and the head."""
    pen, idn, cx, cy, fw = f.pen, f.idn, f.cx, f.cy, f.fw
    if idn.hair_style == 1:  # long hair behind the head
        pen.ellipse((cx, cy - 0.02), (fw + 0.055, idn.face_top + 0.04), _shade(f.hair, 0.9))
        pen.poly(np.array([[cx - fw - 0.055, cy - 0.02], [cx + fw + 0.055, cy - 0.02],
                           [cx + fw + 0.07, cy + 0.36], [cx - fw - 0.07, cy + 0.36]]), _shade(f.hair, 0.9))
    pen.poly(np.array([[cx - 0.55 * fw, cy + 0.2], [cx + 0.55 * fw, cy + 0.2],
                       [cx + 0.62 * fw, 1.05], [cx - 0.62 * fw, 1.05]]), _shade(f.skin, 0.75))
    for s in (-1, 1):
        pen.ellipse((cx + s * fw, idn.eye_y + 0.06), (0.028, 0.05), f.skin_dark)
    pen.ellipse((cx, cy), (fw, idn.face_top), f.skin, 180, 360)
    pen.ellipse((cx, cy), (fw, idn.face_bot + f.jaw), f.skin, 0, 180)


def _draw_hair(f: _Face) -> None:
    """Hair on top of the head, down to the fringe."""
    idn, cx, cy, fw = f.idn, f.cx, f.cy, f.fw
    thick = 0.012 if idn.hair_style == 2 else 0.03
    outer = _ARC13 * (fw + thick, idn.face_top + thick) + (cx, cy)
    hl = idn.hairline if idn.hair_style != 2 else idn.hairline - 0.03
    fringe = _curve((cx + fw * 0.97, cy - 0.06), (cx, hl), (cx - fw * 0.97, cy - 0.06))
    f.pen.poly(np.concatenate([outer, [[cx + fw, cy], [cx + fw * 0.97, cy - 0.06]], fringe[1:-1],
                               [[cx - fw * 0.97, cy - 0.06], [cx - fw, cy]]]), f.hair)


def _draw_eye(f: _Face, s: int, hu: float, hl: float) -> None:
    """One eye (side ``s``): lids opened by ``hu`` / ``hl``, iris, lid lines, crease, AU6 cheek and crow's feet."""
    pen, idn, skin, a5, a6, a7 = f.pen, f.idn, f.skin, f.a[5], f.a[6], f.a[7]
    iris_r = idn.eye_h * 1.12
    ex, ey = f.cx + s * idn.eye_dx, idn.eye_y
    pin, pout = (ex - s * idn.eye_w, ey), (ex + s * idn.eye_w, ey - idn.eye_tilt)
    up = _curve(pin, (ex, ey - hu), pout)
    lo = _curve(pin, (ex, ey + hl), pout)
    pen.poly(np.concatenate([up, lo[::-1]]), (242, 242, 236))
    pen.ellipse((ex, ey + 0.1 * idn.eye_h), (iris_r, iris_r), idn.iris)
    pen.ellipse((ex, ey + 0.1 * idn.eye_h), (iris_r * 0.45, iris_r * 0.45), (15, 12, 12))
    band = iris_r * 1.4
    pen.poly(np.concatenate([up, (up - [0, band])[::-1]]), skin)
    pen.poly(np.concatenate([lo, (lo + [0, band])[::-1]]), skin)
    pen.line(up, (35, 25, 22), 0.016)
    pen.line(lo, _shade(skin, 0.62 - 0.2 * a7), 0.008 + 0.01 * a7)
    if a5 < 0.3:  # lid crease, hidden when the upper lid is raised
        pen.line(_curve(pin, (ex, ey - hu - 0.014), pout)[1:-1], _shade(skin, 0.8), 0.008)
    if a6 > 0:
        pen.ellipse((ex + s * 0.01, ey + 0.078 - 0.012 * a6), (0.045, 0.028), _mix(skin, (225, 110, 110), 0.35 * a6))
        col = _shade(skin, 1 - 0.4 * a6)
        ox, oy = pout
        for dy in (-0.012, 0.0, 0.014):
            pen.line(np.array([[ox + s * 0.01, oy + dy * 0.4], [ox + s * 0.03, oy + dy]]), col, 0.009)


def _draw_eyes(f: _Face) -> None:
    """Both eyes (AU5, AU6, AU7) and cheeks (AU6)."""
    a4, a5, a6, a7 = f.a[4], f.a[5], f.a[6], f.a[7]
    eh = f.idn.eye_h
    hu = eh * max(0.2, 1 + 1.1 * a5 - 0.5 * a7 - 0.3 * a6 - 0.15 * a4)
    hl = eh * 0.75 * max(0.15, 1 + 0.3 * a5 - 0.65 * a7 - 0.6 * a6)
    for s in (-1, 1):
        _draw_eye(f, s, hu, hl)


def _draw_brows(f: _Face) -> None:
    """Brows (AU1, AU2, AU4; AU9 lowers them a little), forehead wrinkles and glabella furrows."""
    pen, idn, cx, rest = f.pen, f.idn, f.cx, f.rest
    a1, a2, a4, a9 = f.a[1], f.a[2], f.a[4], f.a[9]
    brow_col = _mix(f.hair, (30, 22, 18), 0.55)
    wrinkle = max(a1, a2)
    if wrinkle > 0:  # forehead wrinkles above the raised brows
        col = _shade(f.skin, 1 - 0.3 * wrinkle)
        span = 0.05 + 0.06 * a2
        top = rest - 0.045 * wrinkle
        for dy in (0.04, 0.062):
            pen.line(_curve((cx - span, top - dy + 0.006), (cx, top - dy), (cx + span, top - dy + 0.006)), col, 0.012)
    if a4 > 0:  # glabella furrows
        col = _shade(f.skin, 1 - 0.35 * a4)
        for s in (-1, 1):
            pen.line(np.array([[cx + s * 0.014, rest - 0.005], [cx + s * 0.011, rest + 0.03]]), col, 0.012)
    for s in (-1, 1):
        bx = cx + s * idn.eye_dx
        inner_x = bx - s * idn.brow_len + s * 0.025 * a4
        inner_y = rest + 0.004 - 0.058 * a1 + 0.055 * a4 * (1 - 0.6 * a1) + 0.012 * a9 - 0.01 * a2
        outer_y = rest + 0.008 - 0.055 * a2 + 0.01 * a4 + 0.012 * a1 * (1 - a2)
        mid_y = rest - idn.brow_arch - 0.03 * a2 - 0.03 * a1 + 0.03 * a4 + 0.01 * a9
        pts = _curve((inner_x, inner_y), (bx + s * 0.004, mid_y), (bx + s * idn.brow_len, outer_y))
        pen.line(pts, brow_col, idn.brow_thick)


def _draw_nose(f: _Face) -> None:
    """Nose (lifted and widened by AU9, AU10) and the wrinkles AU9 puts across its bridge."""
    pen, idn, cx, skin, a9, ny, nw = f.pen, f.idn, f.cx, f.skin, f.a[9], f.ny, f.nw
    pen.line(np.array([[cx + 0.012, idn.eye_y + 0.03], [cx + 0.016, ny - 0.03]]), _shade(skin, 0.9), 0.01)
    pen.ellipse((cx, ny - 0.004), (nw * 0.8, 0.022), _shade(skin, 0.93), 0, 180)
    for s in (-1, 1):
        pen.ellipse((cx + s * nw * 0.5, ny), (0.012 * (1 + 0.3 * a9), 0.006), (60, 35, 35))
        pen.ellipse((cx + s * nw * 0.85, ny - 0.008), (0.012, 0.018), f.skin_dark, -90 + s * 90, 90 + s * 90, thick=1)
    if a9 > 0:  # wrinkles across the bridge
        col = _shade(skin, 1 - 0.4 * a9)
        for dy in (0.035, 0.05, 0.065):
            pen.line(_curve((cx - 0.022, idn.eye_y + dy), (cx, idn.eye_y + dy - 0.006), (cx + 0.022, idn.eye_y + dy)),
                     col, 0.01)


def _draw_mouth(f: _Face, m: _Mouth) -> None:
    """Nasolabial folds (AU11; before the lips so they tuck behind the corners), lips, teeth, chin (AU17)."""
    pen, idn = f.pen, f.idn
    if f.a[11] > 0:
        col = _shade(f.skin, 1 - 0.4 * f.a[11])
        for s in (-1, 1):
            pen.line(_nasolabial(f, m, s), col, 0.012)
    upper_outer = _curve(m.L, (m.mx, m.up_in - m.tu - 0.004), m.R, _BEZ11)
    lower_outer = _curve(m.L, (m.mx, m.lo_in + m.tl), m.R, _BEZ11)
    pen.poly(np.concatenate([upper_outer, lower_outer[::-1]]), idn.lips)
    upper_inner = _curve(m.L, (m.mx, m.up_in), m.R, _BEZ11)
    if m.lo_in - m.up_in > 0.004:
        lower_inner = _curve(m.L, (m.mx, m.lo_in), m.R, _BEZ11)
        pen.poly(np.concatenate([upper_inner, lower_inner[::-1]]), (55, 18, 24))
        teeth = min(0.4 * (m.lo_in - m.up_in), 0.016)
        pen.poly(np.concatenate([upper_inner, (upper_inner + [0, teeth])[::-1]]), (238, 234, 222))
        pen.line(upper_inner, _shade(idn.lips, 0.8), 0.008)
    else:
        pen.line(upper_inner, _shade(idn.lips, 0.55), 0.012)
    if f.a[17] > 0:  # chin boss and dimples
        col = _shade(f.skin, 1 - 0.4 * f.a[17])
        yb = m.lip_bottom + 0.035
        pen.line(_curve((m.mx - 0.035, yb + 0.012), (m.mx, yb), (m.mx + 0.035, yb + 0.012)), col, 0.01)
        for s in (-1, 1):
            pen.ellipse((m.mx + s * 0.012, yb + 0.022), (0.004, 0.004), col)


def _region_masks(f: _Face, m: _Mouth) -> np.ndarray:
    """The five regions as bits of one uint8 (S, S) map: brows, eyes, nose + folds, mouth, chin."""
    S, idn, cx = f.S, f.idn, f.cx
    regs = np.zeros((len(taxonomy.REGIONS), S, S), dtype=np.uint8)
    pens = [_Pen(regs[r], S, antialias=False) for r in range(len(taxonomy.REGIONS))]
    bit = [1 << r for r in range(len(taxonomy.REGIONS))]
    chin_y = f.cy + idn.face_bot + f.jaw
    mouth_top = min(m.up_in - m.tu, m.my + m.cdy)
    pens[0].ellipse((cx, f.rest - 0.022), (idn.eye_dx + idn.brow_len + 0.03, 0.07), bit[0])
    for s in (-1, 1):
        pens[1].ellipse((cx + s * idn.eye_dx, idn.eye_y + 0.03), (idn.eye_w + 0.04, 0.08), bit[1])
        pens[2].line(_nasolabial(f, m, s), bit[2], 0.04)
    pens[2].ellipse((cx, (idn.eye_y + f.ny) / 2 + 0.01), (f.nw + 0.03, (f.ny - idn.eye_y) / 2 + 0.03), bit[2])
    pens[3].ellipse((m.mx, (mouth_top + m.lip_bottom) / 2), (m.w + 0.04, (m.lip_bottom - mouth_top) / 2 + 0.03), bit[3])
    pens[4].ellipse((m.mx, (m.lip_bottom + chin_y) / 2), (0.085, (chin_y - m.lip_bottom) / 2 + 0.01), bit[4])
    return regs.sum(axis=0, dtype=np.uint8)


def _nuisance(img: np.ndarray, packed: np.ndarray | None, rng: np.random.Generator,
              S: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotation, scale, shift (masks follow), lighting gradient, blur and noise drawn from ``rng``."""
    ang = rng.uniform(-7, 7)
    scale = rng.uniform(0.98, 1.14)
    sh = rng.uniform(-0.045, 0.045, 2) * S
    M = cv2.getRotationMatrix2D((S / 2, S / 2), ang, scale)
    M[:, 2] += sh
    img = cv2.warpAffine(img, M, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if packed is not None:
        packed = cv2.warpAffine(packed, M, (S, S), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    g = rng.uniform(0.0, 0.5)
    th = rng.uniform(0, 2 * math.pi)
    base = rng.uniform(0.8, 1.15)
    lin = _grid(S)
    gain = base * (1 + g * (math.cos(th) * lin[0] + math.sin(th) * lin[1]))
    sigma = rng.uniform(0.0, 0.7) * S / 64
    f = img.astype(np.float32)
    f *= gain[:, :, None]
    if sigma > 0.3:
        f = cv2.GaussianBlur(f, (0, 0), sigma)
    bank = _noise_bank()
    start = int(rng.integers(0, len(bank) - 3 * S * S))
    f = cv2.scaleAdd(bank[start:start + 3 * S * S].reshape(S, S, 3), float(rng.uniform(0, 7)), f)
    return np.clip(f, 0, 255, out=f).astype(np.uint8), packed


def render_face(
    identity: Any,
    aus: np.ndarray,
    *,
    image_size: int = 64,
    rng: np.random.Generator | None = None,
    nuisance: bool = True,
    masks: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw one face: RGB uint8 (S, S, 3) and, if ``masks``, bool (len(REGIONS), S, S) region masks.

    ``identity``: a :class:`compound_fer.data.synthetic.Identity`. ``aus`` is an intensity vector in
    ``taxonomy.ACTION_UNITS`` order; ``rng`` draws the nuisance
    (background, lighting gradient, rotation, scale, shift, blur, noise); without it the face is clean.
    Parts are drawn back to front, one helper each: head, hair, eyes, brows, nose, mouth.
    """
    S = int(image_size)
    rng = rng if rng is not None else np.random.default_rng(0)
    img = np.empty((S, S, 3), dtype=np.uint8)
    bg = rng.uniform(50, 210) + rng.normal(0, 18, 3) if nuisance else np.array([200.0, 205.0, 210.0])
    img[:] = np.clip(bg, 0, 255).astype(np.uint8)
    f = _Face(identity, aus, img, S)
    for draw in (_draw_head, _draw_hair, _draw_eyes, _draw_brows, _draw_nose):
        draw(f)
    mouth = _Mouth(f)
    _draw_mouth(f, mouth)
    packed = _region_masks(f, mouth) if masks else None
    if nuisance:
        img, packed = _nuisance(img, packed, rng, S)
    region = None
    if packed is not None:
        region = ((packed[None] >> np.arange(len(taxonomy.REGIONS), dtype=np.uint8)[:, None, None]) & 1).astype(bool)
    return img, region


_GRIDS: dict[int, np.ndarray] = {}
_NOISE: list[np.ndarray] = []


def _noise_bank() -> np.ndarray:
    """A fixed bank of standard normal noise; images take windows at random offsets (fast and deterministic)."""
    if not _NOISE:
        _NOISE.append(np.random.default_rng(20230806).standard_normal(1 << 20, dtype=np.float32))
    return _NOISE[0]


def _grid(S: int) -> np.ndarray:
    """(2, S, S) float32 x and y coordinates in [-0.5, 0.5], cached per size."""
    if S not in _GRIDS:
        v = (np.arange(S, dtype=np.float32) + 0.5) / S - 0.5
        _GRIDS[S] = np.stack(np.meshgrid(v, v, indexing="xy"))
    return _GRIDS[S]


# ----------------------------------------------------------------------------------------------
# Data sets
# ----------------------------------------------------------------------------------------------
