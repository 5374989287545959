"""Index tables of mediapipe's 468-point face mesh (legacy FaceMesh, no iris points).

Left/right as seen in the image (mediapipe's "right eye" of the subject is the image-left eye here).
The mirror permutation follows the canonical face model's layout: the 28 midline vertices map to
themselves, and the j-th other vertex among indices 0..247 pairs with vertex 248 + j. A mean of 401
detected cfee-subset faces, mirrored and matched by nearest point, gives the same 468 pairs.
"""

from __future__ import annotations

#: Vertices on the face's midline (x = 0 in the canonical face model).
MP_MIDLINE: tuple[int, ...] = (0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 94, 151, 152,
                               164, 168, 175, 195, 197, 199, 200)


def _flip() -> tuple[int, ...]:
    lateral = [i for i in range(248) if i not in MP_MIDLINE]
    flip = list(range(468))
    for j, i in enumerate(lateral):
        flip[i], flip[248 + j] = 248 + j, i
    return tuple(flip)


MP_FLIP: tuple[int, ...] = _flip()

MP_PARTS: dict[str, tuple[int, ...]] = {
    "left_eye": (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    "right_eye": (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398),
    "left_brow": (70, 63, 105, 66, 107, 55, 65, 52, 53, 46),
    "right_brow": (300, 293, 334, 296, 336, 285, 295, 282, 283, 276),
    "nose": (168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 129, 358, 64, 294, 48, 278),
    "outer_lip": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185),
    "inner_lip": (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191),
    # the jaw from the image-left cheek at eye level, through the chin (152), to the image-right cheek
    "contour": (234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361,
                323, 454),
    "chin": (136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 61, 291, 146, 91, 181, 84, 17, 314, 405,
             321, 375),
}

#: Points whose pairwise distances are geometry features (91 points, as the CFEE scheme's 78 cover
#: eyes, brows, nose, lips and jaw).
MP_KEY_POINTS: tuple[int, ...] = (
    (33, 160, 159, 158, 133, 153, 145, 144, 362, 385, 386, 387, 263, 373, 374, 380)
    + MP_PARTS["left_brow"] + MP_PARTS["right_brow"]
    + (168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 129, 358, 64, 294)
    + (61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91)
    + (78, 81, 13, 311, 308, 402, 14, 178)
    + MP_PARTS["contour"]
)

#: Points comparable with the CFEE release's (see schemes.CFEE78.named); a brow end is the mean of
#: the brow's upper and lower outline ends.
MP_NAMED: dict[str, tuple[int, ...]] = {
    "left_eye_outer": (33,), "left_eye_inner": (133,), "left_eye_top": (159,), "left_eye_bottom": (145,),
    "right_eye_inner": (362,), "right_eye_outer": (263,), "right_eye_top": (386,), "right_eye_bottom": (374,),
    "left_brow_outer": (70, 46), "left_brow_inner": (107, 55),
    "right_brow_inner": (336, 285), "right_brow_outer": (300, 276),
    "nose_bottom": (2,), "nose_left_wing": (129,), "nose_right_wing": (358,),
    "mouth_left": (61,), "mouth_right": (291,), "upper_lip_top": (0,), "lower_lip_bottom": (17,),
    "upper_lip_inner": (13,), "lower_lip_inner": (14,), "chin": (152,),
}
