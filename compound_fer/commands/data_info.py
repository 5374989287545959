"""``compound-fer data-info PATH``: what a data folder holds, and what is wrong with it, without training.

Counts images per category and per subject, lists zero-byte, unknown-category, unmatched and duplicate
files; ``--check-images`` also decodes every image to find corrupt ones (slower).
"""

from __future__ import annotations

import argparse
import json
import sys

NAME = "data-info"
HELP = "count images per category and subject in a CFEE or labelled folder; list corrupt/unmatched files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="CFEE folder (**/EE_SSS_*.jpg) or labelled folders ROOT/<class name>/*")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--check-images", action="store_true",
                        help="decode every image to find corrupt or truncated files (slower)")
    parser.add_argument("--limit", type=int, default=20, help="list at most this many problem files (text output)")


def run(args: argparse.Namespace) -> int:
    from compound_fer.data.load import scan

    index = scan(args.path)
    if args.check_images:
        _check_images(index, progress=not args.json)
    info = index.summary()
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
    lines.append(f"  landmarks: {info['landmarks'] or 'none (faces found with Haar cascades)'}")
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
    if not (info["problems"] or info["duplicates"] or info["unmatched"]):
        lines.append("  no problems found")
    return "\n".join(lines)
