"""``compound-fer data-info PATH``: what a data folder holds, and what is wrong with it, without training.

Counts images per category and per subject, lists zero-byte, unknown-category, unmatched and duplicate
files, and landmark rows that fail the sanity checks or name no image
(:mod:`compound_fer.data.landmark_checks`); ``--check-images`` also decodes every image to find corrupt ones (slower).
"""

from __future__ import annotations

import argparse
import json
import sys

NAME = "data-info"
HELP = ("count images per category and subject in a CFEE folder, class folders or a list file; list corrupt, "
        "unmatched files and bad landmark rows")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="CFEE folder (**/EE_SSS_*.jpg), class folders ROOT/<class name>/* or "
                        "a folder with a list file ROOT/labels.csv")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--check-images", action="store_true",
                        help="decode every image to find corrupt or truncated files (slower)")
    parser.add_argument("--limit", type=_count, default=20,
                        help="list at most this many problem files (text output; 0: counts only)")


def _count(text: str) -> int:
    """A whole number >= 0 for --limit (argparse turns the ValueError into a message naming the option)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: give 0 or more (0 prints the counts only; --json lists all)")
    return value


def run(args: argparse.Namespace) -> int:
    from compound_fer.data.landmark_checks import audit
    from compound_fer.data.load import scan

    index = scan(args.path)
    if args.check_images:
        _check_images(index, progress=not args.json)
    info = index.summary()
    info["landmark_detector"] = _detector()
    info["landmark_rows"] = audit(index)  # bad or unused rows of landmarks.csv; mostly bad: refused (exit 2)
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_text(info, limit=args.limit))
    return 0


def _check_images(index, *, progress: bool) -> None:
    from tqdm.auto import tqdm

    from compound_fer.data.images import read_image
    from compound_fer.errors import DataError

    known = {p.file for p in index.problems}
    for f in tqdm(index.files, desc="decoding", unit="img", disable=not progress, leave=False):
        if f in known:
            continue
        try:
            read_image(f, max_side=64)  # JPEG draft mode: a full decode pass, cheap output
        except DataError as exc:
            msg = str(exc)
            index.problems.add(f, msg[len(f) + 2:] if msg.startswith(f + ": ") else msg)


def _detector() -> str | None:
    """The landmark detector loading uses by default (data.landmark_detector), None when not installed."""
    import importlib.util

    return "mediapipe" if importlib.util.find_spec("mediapipe") is not None else None


def placement(info: dict) -> str:
    """How loading (default settings) places the faces: a landmarks file, the detector or Haar cascades."""
    detector = info.get("landmark_detector", "mediapipe")
    by = (f"the {detector} landmark detector" if detector else
          "Haar cascades (the mediapipe landmark detector is not installed: run `make install`)")
    if info["landmarks"]:
        return f"{info['landmarks']} (faces without a row: {by})"
    if detector:
        return f"none: {by} places each face when loading (data.landmark_detector; null: Haar cascades, no landmarks)"
    return f"none: {by} place each face, without landmarks"


def format_text(info: dict, *, limit: int = 20) -> str:
    """The human summary printed by data-info."""
    lines = [
        f"{info['root']} ({info['layout']} layout)",
        f"  images: {info['images']:,}   categories: {info['categories']}   "
        f"subjects: {info['subjects'] if info['subjects'] is not None else 'unknown (one per file)'}   "
        f"usable: {info['usable']:,}",
    ]
    if info["images_per_subject"]:
        s = info["images_per_subject"]
        lines.append(f"  images per subject: min {s['min']}, median {s['median']:g}, max {s['max']}")
    lines.append(f"  landmarks: {placement(info)}")
    lines.append("  images per category:")
    width = max((len(k) for k in info["images_per_category"]), default=0)
    lines += [f"    {k:<{width}}  {v:5d}" for k, v in info["images_per_category"].items()]

    def listing(title: str, items: list[str]) -> None:
        if not items:
            return
        lines.append(f"  {title}: {len(items)}")
        lines.extend(f"    {x}" for x in items[:limit])
        if len(items) > limit:
            lines.append(f"    ... and {len(items) - limit} more (use --json for all)")

    listing("problem files (skipped when reading)", [f"{p['file']}: {p['reason']}" for p in info["problems"]])
    listing("duplicate files (same bytes; the first is kept)", [" = ".join(g) for g in info["duplicates"]])
    listing("unmatched image files (ignored)", info["unmatched"])
    listing("skipped classes (match no category)",
            [f"{k}: {n} images skipped, not a CFEE category" for k, n in info.get("skipped_classes", {}).items()])
    lm = info.get("landmark_rows") or {}
    listing("landmark rows failing the sanity checks (their images are skipped when reading)", lm.get("bad_rows", []))
    listing("landmark rows naming no image (ignored)", lm.get("unused_rows", []))
    if not (info["problems"] or info["duplicates"] or info["unmatched"] or lm.get("bad_rows") or lm.get("unused_rows")):
        lines.append("  no problems found")
    return "\n".join(lines)
