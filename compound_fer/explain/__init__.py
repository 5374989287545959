"""Grad-CAM explanations of a model and the basic-compound relationship report (light on import: the
submodules load torch and grad-cam)."""

#: Parts of a config's split ``compound-fer gradcam --split`` explains (``all``: every image).
SPLIT_CHOICES = ("all", "train", "val", "test")
