"""Procedural FACS faces: the embedded default dataset, drawn by the package itself from no files.

A 2D cartoon face whose geometry the action units drive (brows, lids, cheeks, nose, lips, jaw). Each
category draws its prototypical AUs almost always and its variants at the rates of Du, Tao & Martinez
(2014, Table 1), so categories with identical prototypes separate only through their variants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch

from compound_fer import taxonomy
from compound_fer.data.faceset import FaceSet

#: Probability that a prototypical AU of the category is active in one image ("almost always").
PROTOTYPE_RATE: float = 0.95
#: Intensities of active AUs are uniform in this range (FACS A..E mapped to (0, 1]).
INTENSITY_RANGE: tuple[float, float] = (0.35, 1.0)

_AUS = taxonomy.ACTION_UNITS
_AU_INDEX = {au: i for i, au in enumerate(_AUS)}
_SHIFT = 4  # cv2 sub-pixel bits
_ONE = float(1 << _SHIFT)
_T7 = np.linspace(0.0, 1.0, 7)
_BEZ7 = np.stack([(1 - _T7) ** 2, 2 * _T7 * (1 - _T7), _T7**2], axis=1)  # (7, 3)
_ARC13 = np.stack([np.cos(np.linspace(math.pi, 2 * math.pi, 13)), np.sin(np.linspace(math.pi, 2 * math.pi, 13))], 1)
_T11 = np.linspace(0.0, 1.0, 11)
_BEZ11 = np.stack([(1 - _T11) ** 2, 2 * _T11 * (1 - _T11), _T11**2], axis=1)

# ----------------------------------------------------------------------------------------------
# Action units: the fast path that samples AUs without rendering
# ----------------------------------------------------------------------------------------------


def au_rates(category: str) -> np.ndarray:
    """Probability of each AU (in ``taxonomy.ACTION_UNITS`` order) being active in an image of ``category``."""
    cat = taxonomy.by_name(category)
    p = np.zeros(len(_AUS), dtype=np.float64)
    for au in cat.prototypical:
        p[_AU_INDEX[au]] = PROTOTYPE_RATE
    for au, rate in cat.variants.items():
        p[_AU_INDEX[au]] = rate
    return p


def sample_au_matrix(category: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """AU intensities of ``n`` images of ``category``: float32 (n, len(ACTION_UNITS)), 0 = inactive.

    The fast path: no rendering, so rate checks over thousands of samples take milliseconds.
    """
    p = au_rates(category)
    active = rng.random((n, len(_AUS))) < p
    lo, hi = INTENSITY_RANGE
    inten = rng.uniform(lo, hi, size=(n, len(_AUS)))
    return np.where(active, inten, 0.0).astype(np.float32)


def sample_aus(category: str, rng: np.random.Generator) -> dict[int, float]:
    """Active AUs of one image of ``category``: AU -> intensity in (0, 1]; prototypical with p = PROTOTYPE_RATE."""
    row = sample_au_matrix(category, 1, rng)[0]
    return {au: float(row[i]) for i, au in enumerate(_AUS) if row[i] > 0}


def active_regions(aus: np.ndarray | torch.Tensor) -> np.ndarray:
    """Which ``taxonomy.REGIONS`` the active AUs move: bool (..., len(REGIONS)) from AU vectors (..., len(ACTION_UNITS))."""
    a = np.asarray(aus) > 0
    table = np.zeros((len(_AUS), len(taxonomy.REGIONS)), dtype=bool)
    for au, regions in taxonomy.AU_REGIONS.items():
        for r in regions:
            table[_AU_INDEX[au], taxonomy.REGIONS.index(r)] = True
    return (a[..., :, None] & table).any(axis=-2)


def active_region_masks(faces: FaceSet) -> torch.Tensor:
    """Pixels moved by each image's active AUs: ``region_masks`` with the untouched regions zeroed, bool (N, R, H, W)."""
    if faces.region_masks is None or faces.aus is None:
        raise ValueError("active_region_masks needs a FaceSet with aus and region_masks (generate(masks=True))")
    keep = torch.from_numpy(active_regions(faces.aus.numpy()))
    return faces.region_masks & keep[:, :, None, None]


def active_mask(faces: FaceSet) -> torch.Tensor:
    """Union over regions of ``active_region_masks``: bool (N, H, W), the ground truth a CAM should light."""
    return active_region_masks(faces).any(dim=1)


# ----------------------------------------------------------------------------------------------
# Identities: a function of (seed, subject) only
# ----------------------------------------------------------------------------------------------

_HAIR = np.array([[25, 20, 18], [55, 38, 28], [105, 72, 45], [190, 160, 105], [150, 72, 38], [150, 148, 145]], float)
_IRIS = np.array([[70, 45, 25], [40, 30, 22], [60, 100, 150], [70, 110, 70]], float)


@dataclass(frozen=True)
class Identity:
    """Face shape, feature placement and colours of one synthetic subject (face units: 1 = image side)."""

    subject: int
    cx: float
    cy: float
    face_w: float
    face_top: float
    face_bot: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    eye_tilt: float
    brow_gap: float
    brow_len: float
    brow_arch: float
    brow_thick: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_low: float
    hairline: float
    hair_style: int
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]


def make_identity(seed: int, subject: int) -> Identity:
    """The identity of ``subject`` under ``seed``: the same in every category, image and call."""
    r = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(subject), 0x1D])
    u = r.uniform
    cy = 0.5 + u(-0.015, 0.015)
    face_top = u(0.38, 0.43)
    eye_y = cy - u(0.03, 0.065)
    t = u(0.0, 1.0)
    skin = np.array([92, 60, 42]) * (1 - t) + np.array([246, 214, 188]) * t + r.normal(0, 6, 3)
    hair = _HAIR[r.integers(len(_HAIR))] * u(0.85, 1.15)
    lips = skin * 0.55 + np.array([165, 45, 60]) * 0.45
    mouth_y = cy + u(0.19, 0.225)
    return Identity(
        subject=int(subject), cx=0.5 + u(-0.015, 0.015), cy=cy, face_w=u(0.29, 0.35), face_top=face_top,
        face_bot=u(0.37, 0.42), eye_y=eye_y, eye_dx=u(0.12, 0.142), eye_w=u(0.062, 0.074), eye_h=u(0.025, 0.032),
        eye_tilt=u(-0.004, 0.008), brow_gap=u(0.078, 0.092), brow_len=u(0.056, 0.07), brow_arch=u(0.0, 0.014),
        brow_thick=u(0.022, 0.032), nose_y=cy + u(0.085, 0.115), nose_w=u(0.032, 0.048), mouth_y=mouth_y,
        mouth_w=u(0.11, 0.13), lip_up=u(0.018, 0.026), lip_low=u(0.022, 0.032),
        hairline=cy - face_top + u(0.06, 0.13), hair_style=int(r.integers(3)),
        skin=tuple(np.clip(skin, 0, 255)), hair=tuple(np.clip(hair, 0, 255)),
        iris=tuple(_IRIS[r.integers(len(_IRIS))]), lips=tuple(np.clip(lips, 0, 255)),
    )


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


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


def render_face(
    identity: Identity,
    aus: np.ndarray,
    *,
    image_size: int = 64,
    rng: np.random.Generator | None = None,
    nuisance: bool = True,
    masks: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Draw one face: RGB uint8 (S, S, 3) and, if ``masks``, bool (len(REGIONS), S, S) region masks.

    ``aus`` is an intensity vector in ``taxonomy.ACTION_UNITS`` order; ``rng`` draws the nuisance
    (background, lighting gradient, rotation, scale, shift, blur, noise); without it the face is clean.
    """
    S = int(image_size)
    rng = rng if rng is not None else np.random.default_rng(0)
    idn = identity
    a = dict(zip(_AUS, np.asarray(aus, dtype=np.float64).tolist()))
    img = np.empty((S, S, 3), dtype=np.uint8)
    bg = rng.uniform(50, 210) + rng.normal(0, 18, 3) if nuisance else np.array([200.0, 205.0, 210.0])
    img[:] = np.clip(bg, 0, 255).astype(np.uint8)
    pen = _Pen(img, S)
    cx, cy, fw = idn.cx, idn.cy, idn.face_w
    skin, hair = idn.skin, idn.hair
    skin_dark = _shade(skin, 0.82)
    jaw = 0.065 * a[26]

    # --- back hair, neck, ears, head --------------------------------------------------------
    if idn.hair_style == 1:  # long hair behind the head
        pen.ellipse((cx, cy - 0.02), (fw + 0.055, idn.face_top + 0.04), _shade(hair, 0.9))
        pen.poly(np.array([[cx - fw - 0.055, cy - 0.02], [cx + fw + 0.055, cy - 0.02],
                           [cx + fw + 0.07, cy + 0.36], [cx - fw - 0.07, cy + 0.36]]), _shade(hair, 0.9))
    pen.poly(np.array([[cx - 0.55 * fw, cy + 0.2], [cx + 0.55 * fw, cy + 0.2],
                       [cx + 0.62 * fw, 1.05], [cx - 0.62 * fw, 1.05]]), _shade(skin, 0.75))
    for s in (-1, 1):
        pen.ellipse((cx + s * fw, idn.eye_y + 0.06), (0.028, 0.05), skin_dark)
    pen.ellipse((cx, cy), (fw, idn.face_top), skin, 180, 360)
    pen.ellipse((cx, cy), (fw, idn.face_bot + jaw), skin, 0, 180)

    # --- hair on top ------------------------------------------------------------------------
    thick = 0.012 if idn.hair_style == 2 else 0.03
    outer = _ARC13 * (fw + thick, idn.face_top + thick) + (cx, cy)
    hl = idn.hairline if idn.hair_style != 2 else idn.hairline - 0.03
    fringe = _curve((cx + fw * 0.97, cy - 0.06), (cx, hl), (cx - fw * 0.97, cy - 0.06))
    pen.poly(np.concatenate([outer, [[cx + fw, cy], [cx + fw * 0.97, cy - 0.06]], fringe[1:-1],
                             [[cx - fw * 0.97, cy - 0.06], [cx - fw, cy]]]), hair)

    a1, a2, a4, a9 = a[1], a[2], a[4], a[9]
    rest = idn.eye_y - idn.brow_gap

    # --- eyes (AU5, AU6, AU7) and cheeks (AU6) ----------------------------------------------
    a5, a6, a7 = a[5], a[6], a[7]
    eh = idn.eye_h
    hu = eh * max(0.2, 1 + 1.1 * a5 - 0.5 * a7 - 0.3 * a6 - 0.15 * a4)
    hl = eh * 0.75 * max(0.15, 1 + 0.3 * a5 - 0.65 * a7 - 0.6 * a6)
    iris_r = eh * 1.12
    white = (242, 242, 236)
    for s in (-1, 1):
        ex, ey = cx + s * idn.eye_dx, idn.eye_y
        pin, pout = (ex - s * idn.eye_w, ey), (ex + s * idn.eye_w, ey - idn.eye_tilt)
        up = _curve(pin, (ex, ey - hu), pout)
        lo = _curve(pin, (ex, ey + hl), pout)
        pen.poly(np.concatenate([up, lo[::-1]]), white)
        pen.ellipse((ex, ey + 0.1 * eh), (iris_r, iris_r), idn.iris)
        pen.ellipse((ex, ey + 0.1 * eh), (iris_r * 0.45, iris_r * 0.45), (15, 12, 12))
        band = iris_r * 1.4
        pen.poly(np.concatenate([up, (up - [0, band])[::-1]]), skin)
        pen.poly(np.concatenate([lo, (lo + [0, band])[::-1]]), skin)
        pen.line(up, (35, 25, 22), 0.016)
        pen.line(lo, _shade(skin, 0.62 - 0.2 * a7), 0.008 + 0.01 * a7)
        if a5 < 0.3:  # lid crease, hidden when the upper lid is raised
            pen.line(_curve(pin, (ex, ey - hu - 0.014), pout)[1:-1], _shade(skin, 0.8), 0.008)
        if a6 > 0:
            pen.ellipse((ex + s * 0.01, ey + 0.078 - 0.012 * a6), (0.045, 0.028),
                        _mix(skin, (225, 110, 110), 0.35 * a6))
            col = _shade(skin, 1 - 0.4 * a6)
            ox, oy = pout
            for dy in (-0.012, 0.0, 0.014):
                pen.line(np.array([[ox + s * 0.01, oy + dy * 0.4], [ox + s * 0.03, oy + dy]]), col, 0.009)

    # --- brows (AU1, AU2, AU4; AU9 lowers them a little) -----------------------------------
    brow_col = _mix(hair, (30, 22, 18), 0.55)
    wrinkle = max(a1, a2)
    if wrinkle > 0:  # forehead wrinkles above the raised brows
        col = _shade(skin, 1 - 0.3 * wrinkle)
        span = 0.05 + 0.06 * a2
        top = rest - 0.045 * wrinkle
        for dy in (0.04, 0.062):
            pen.line(_curve((cx - span, top - dy + 0.006), (cx, top - dy), (cx + span, top - dy + 0.006)), col, 0.012)
    if a4 > 0:  # glabella furrows
        col = _shade(skin, 1 - 0.35 * a4)
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

    # --- nose (AU9, AU10 lift it) and nasolabial folds (AU11) ---------------------------------
    lift = 0.014 * a9 + 0.008 * a[10]
    ny = idn.nose_y - lift
    nw = idn.nose_w * (1 + 0.25 * a9)
    pen.line(np.array([[cx + 0.012, idn.eye_y + 0.03], [cx + 0.016, ny - 0.03]]), _shade(skin, 0.9), 0.01)
    pen.ellipse((cx, ny - 0.004), (nw * 0.8, 0.022), _shade(skin, 0.93), 0, 180)
    for s in (-1, 1):
        pen.ellipse((cx + s * nw * 0.5, ny), (0.012 * (1 + 0.3 * a9), 0.006), (60, 35, 35))
        pen.ellipse((cx + s * nw * 0.85, ny - 0.008), (0.012, 0.018), skin_dark, -90 + s * 90, 90 + s * 90, thick=1)
    if a9 > 0:  # wrinkles across the bridge
        col = _shade(skin, 1 - 0.4 * a9)
        for dy in (0.035, 0.05, 0.065):
            pen.line(_curve((cx - 0.022, idn.eye_y + dy), (cx, idn.eye_y + dy - 0.006), (cx + 0.022, idn.eye_y + dy)),
                     col, 0.01)

    # --- mouth (AU10, 12, 15, 17, 20, 23, 24, 25, 26) ----------------------------------------
    a10, a12, a15, a17 = a[10], a[12], a[15], a[17]
    a20, a23, a24, a25, a26 = a[20], a[23], a[24], a[25], a[26]
    mx, my = cx, idn.mouth_y
    w = idn.mouth_w * (1 + 0.28 * a12 + 0.4 * a20 - 0.22 * a23 - 0.12 * a24 - 0.25 * a26)
    cdy = -0.07 * a12 + 0.055 * a15 + 0.008 * a20
    L, R = np.array([mx - w, my + cdy]), np.array([mx + w, my + cdy])
    up_in = my - 0.022 * a10
    opening = (0.02 * a25 + 0.075 * a26) if a25 > 0 else 0.012 * a26
    lo_in = max(up_in, my + opening - 0.012 * a17)
    thin = (1 - 0.45 * a23 - 0.6 * a24) * (1 - 0.3 * a20)
    tu, tl = idn.lip_up * thin, idn.lip_low * thin * (1 + 0.25 * a17)
    if a[11] > 0:  # nasolabial folds (before the lips so they tuck behind the corners)
        col = _shade(skin, 1 - 0.4 * a[11])
        for s in (-1, 1):
            pen.line(_curve((cx + s * (nw + 0.012), ny - 0.01), (cx + s * (nw + 0.045), (ny + my) / 2),
                            (mx + s * (w + 0.02), my + cdy + 0.01)), col, 0.012)
    upper_outer = _curve(L, (mx, up_in - tu - 0.004), R, _BEZ11)
    lower_outer = _curve(L, (mx, lo_in + tl), R, _BEZ11)
    pen.poly(np.concatenate([upper_outer, lower_outer[::-1]]), idn.lips)
    upper_inner = _curve(L, (mx, up_in), R, _BEZ11)
    if lo_in - up_in > 0.004:
        lower_inner = _curve(L, (mx, lo_in), R, _BEZ11)
        pen.poly(np.concatenate([upper_inner, lower_inner[::-1]]), (55, 18, 24))
        teeth = min(0.4 * (lo_in - up_in), 0.016)
        pen.poly(np.concatenate([upper_inner, (upper_inner + [0, teeth])[::-1]]), (238, 234, 222))
        pen.line(upper_inner, _shade(idn.lips, 0.8), 0.008)
    else:
        pen.line(upper_inner, _shade(idn.lips, 0.55), 0.012)
    lip_bottom = lo_in + tl
    if a17 > 0:  # chin boss and dimples
        col = _shade(skin, 1 - 0.4 * a17)
        yb = lip_bottom + 0.035
        pen.line(_curve((mx - 0.035, yb + 0.012), (mx, yb), (mx + 0.035, yb + 0.012)), col, 0.01)
        for s in (-1, 1):
            pen.ellipse((mx + s * 0.012, yb + 0.022), (0.004, 0.004), col)

    # --- region masks in face units ---------------------------------------------------------
    packed = None
    if masks:
        regs = np.zeros((len(taxonomy.REGIONS), S, S), dtype=np.uint8)
        pens = [_Pen(regs[r], S, antialias=False) for r in range(len(taxonomy.REGIONS))]
        bit = [1 << r for r in range(len(taxonomy.REGIONS))]
        chin_y = cy + idn.face_bot + jaw
        mouth_top = min(up_in - tu, my + cdy)
        pens[0].ellipse((cx, rest - 0.022), (idn.eye_dx + idn.brow_len + 0.03, 0.07), bit[0])
        for s in (-1, 1):
            pens[1].ellipse((cx + s * idn.eye_dx, idn.eye_y + 0.03), (idn.eye_w + 0.04, 0.08), bit[1])
            pens[2].line(_curve((cx + s * (nw + 0.012), ny - 0.01), (cx + s * (nw + 0.045), (ny + my) / 2),
                                (mx + s * (w + 0.02), my + cdy + 0.01)), bit[2], 0.04)
        pens[2].ellipse((cx, (idn.eye_y + ny) / 2 + 0.01), (nw + 0.03, (ny - idn.eye_y) / 2 + 0.03), bit[2])
        pens[3].ellipse((mx, (mouth_top + lip_bottom) / 2), (w + 0.04, (lip_bottom - mouth_top) / 2 + 0.03), bit[3])
        pens[4].ellipse((mx, (lip_bottom + chin_y) / 2), (0.085, (chin_y - lip_bottom) / 2 + 0.01), bit[4])
        packed = regs.sum(axis=0, dtype=np.uint8)

    # --- nuisance: rotation, scale, shift, lighting gradient, blur, noise --------------------
    if nuisance:
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
        img = np.clip(f, 0, 255, out=f).astype(np.uint8)
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


def _sample_rng(seed: int, subject: int, category: taxonomy.Category) -> np.random.Generator:
    """The generator of one (subject, category) cell: independent of which other cells are drawn."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(subject), int(category.cfee_id), 0x5A])


def iter_samples(
    *, categories: Sequence[str] | None = None, subjects: Sequence[int], per_subject: int = 2, seed: int = 0
) -> Iterator[tuple[int, taxonomy.Category, np.ndarray, np.random.Generator]]:
    """(subject, category, AU vector, nuisance rng) for every image, subject-major; no rendering."""
    cats = [taxonomy.by_name(c) for c in (categories or [c.name for c in taxonomy.CATEGORIES])]
    for s in subjects:
        for cat in cats:
            rng = _sample_rng(seed, s, cat)
            au = sample_au_matrix(cat.name, per_subject, rng)
            for k in range(per_subject):
                yield s, cat, au[k], rng


def generate(
    *,
    categories: Sequence[str] | None = None,
    n_subjects: int = 40,
    per_subject: int = 2,
    image_size: int = 64,
    seed: int = 0,
    masks: bool = True,
    progress: bool = False,
    subject_offset: int = 0,
    nuisance: bool = True,
) -> FaceSet:
    """Procedural FACS faces of ``categories`` (default: all 22) for subjects ``subject_offset + 0..n_subjects-1``.

    Deterministic per seed; an image depends only on (seed, subject, category, repeat), so sets with
    disjoint subject ranges are disjoint identities. ``region_masks[i, r]`` holds ALL face regions of
    image i (see ``active_region_masks`` for the ones its AUs move).
    """
    if n_subjects < 1 or per_subject < 1:
        raise ValueError(f"generate needs n_subjects >= 1 and per_subject >= 1, got {n_subjects}, {per_subject}")
    if image_size < 32:
        raise ValueError(f"generate needs image_size >= 32, got {image_size}")
    cats = list(categories) if categories is not None else [c.name for c in taxonomy.CATEGORIES]
    for c in cats:
        taxonomy.by_name(c)  # fail early with the valid names
    subjects = range(subject_offset, subject_offset + n_subjects)
    n = n_subjects * len(cats) * per_subject
    S = int(image_size)
    images = np.empty((n, S, S, 3), dtype=np.uint8)
    region = np.empty((n, len(taxonomy.REGIONS), S, S), dtype=bool) if masks else None
    labels = np.empty(n, dtype=np.int64)
    subj = np.empty(n, dtype=np.int64)
    aus = np.empty((n, len(_AUS)), dtype=np.float32)
    idents = {s: make_identity(seed, s) for s in subjects}
    it = iter_samples(categories=cats, subjects=subjects, per_subject=per_subject, seed=seed)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=n, desc="synthetic faces", unit="img")
    for i, (s, cat, au, rng) in enumerate(it):
        img, m = render_face(idents[s], au, image_size=S, rng=rng, nuisance=nuisance, masks=masks)
        images[i] = img
        if region is not None:
            region[i] = m
        labels[i] = taxonomy.CATEGORIES.index(cat)
        subj[i] = s
        aus[i] = au
    return FaceSet(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.from_numpy(labels),
        subjects=torch.from_numpy(subj),
        sources=tuple(f"synthetic:{seed}:{i}" for i in range(n)),
        aus=torch.from_numpy(aus),
        region_masks=torch.from_numpy(region) if region is not None else None,
        meta={"generator": "synthetic", "seed": seed, "image_size": S, "subject_offset": subject_offset,
              "per_subject": per_subject, "nuisance": nuisance, "region_masks": "all regions" if masks else None},
    )


def prototype_aus(category: str, intensity: float = 0.9) -> np.ndarray:
    """The AU vector with exactly the prototypical AUs of ``category`` at ``intensity`` (for figures)."""
    v = np.zeros(len(_AUS), dtype=np.float32)
    for au in taxonomy.by_name(category).prototypical:
        v[_AU_INDEX[au]] = intensity
    return v
