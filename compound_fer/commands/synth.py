"""``compound-fer synth``: draw the procedural FACS faces as a grid figure and, optionally, as PNG files."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "synth"
HELP = "Draw procedural FACS faces: a grid of all 22 categories (PNG+PDF), optionally images + CSV."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--identities", type=int, default=4, help="identities (grid rows) in the figure (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--grid-size", type=int, default=112, help="pixels per face in the figure (default 112)")
    parser.add_argument("--images", type=int, default=0, metavar="N",
                        help="also write N images per category as DIR/<category>/*.png, images.csv and "
                             "subjects.csv")
    parser.add_argument("--image-size", type=int, default=64, help="pixels per written image (default 64)")
    parser.add_argument("--name", default="synthetic_grid", help="figure file stem (default synthetic_grid)")
    parser.add_argument("--classes", metavar="NAMES",
                        help="comma-separated category names to draw (default: all 22), e.g. happy,'sadly angry'")


def save_grid(out: Path, *, identities: int = 4, seed: int = 0, size: int = 112, name: str = "synthetic_grid",
              classes: list[str] | None = None) -> list[Path]:
    """Grid of the categories ``classes`` (default all 22; columns, in bands of 11) for ``identities``
    subjects (rows): PNG + PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from compound_fer import taxonomy
    from compound_fer.data.synthetic import generate

    cats = tuple(taxonomy.by_name(c) for c in classes) if classes else taxonomy.CATEGORIES
    faces = generate(categories=[c.name for c in cats], n_subjects=identities, per_subject=1, image_size=size,
                     seed=seed, masks=False)
    ncol = min(11, len(cats))
    bands = -(-len(cats) // ncol)
    fig = plt.figure(figsize=(ncol * 1.0 + 0.35, bands * (identities * 1.0 + 0.5) + 0.35))
    subfigs = fig.subfigures(bands, 1, hspace=0.02, squeeze=False)[:, 0]
    imgs = faces.images.permute(0, 2, 3, 1).numpy()
    for band, sub in enumerate(subfigs):
        axes = sub.subplots(identities, ncol, squeeze=False)
        sub.subplots_adjust(left=0.03, right=0.998, bottom=0.01, top=1 - 0.5 / (identities + 0.5) - 0.005,
                            wspace=0.04, hspace=0.04)
        for j in range(ncol):
            c = band * ncol + j
            if c >= len(cats):
                for s in range(identities):
                    axes[s, j].axis("off")
                continue
            for s in range(identities):
                ax = axes[s, j]
                i = s * len(cats) + c  # generate is subject-major, categories in table order
                ax.imshow(imgs[i], interpolation="lanczos")
                ax.set_xticks([]), ax.set_yticks([])
                for sp in ax.spines.values():
                    sp.set_visible(False)
                if s == 0:
                    title = cats[c].name if len(cats[c].name) <= 11 else cats[c].name.replace(" ", "\n", 1)
                    ax.set_title(title, fontsize=8.5, fontweight="normal" if cats[c].kind == "compound" else "bold")
                if j == 0:
                    ax.set_ylabel(f"subject {s}", fontsize=8)
    what = "the 22 CFEE categories" if len(cats) == len(taxonomy.CATEGORIES) else f"{len(cats)} CFEE categories"
    fig.suptitle(f"Procedural FACS faces: {what} (bold: neutral and basic) x {identities} identities, "
                 f"seed {seed}. One random sample each: AUs drawn at the CFEE rates, random intensities and nuisance.",
                 fontsize=8.5, y=0.998)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=100)
    plt.close(fig)
    return paths


def save_images(out: Path, *, n: int, seed: int = 0, size: int = 64, classes: list[str] | None = None) -> Path:
    """N images per category (``classes``, default all) as out/<category>/s<subject>.png, out/images.csv and
    out/subjects.csv (``file,subject``: what the folder reader reads subject ids from)."""
    import csv

    import cv2
    from tqdm import tqdm

    from compound_fer import taxonomy
    from compound_fer.data.synthetic import generate
    from compound_fer.io import atomic_write

    faces = generate(categories=classes, n_subjects=n, per_subject=1, image_size=size, seed=seed, masks=False,
                     progress=True)
    aus = faces.aus.numpy()
    rows = []
    for i in tqdm(range(len(faces)), desc="writing PNGs", unit="img"):
        cat = taxonomy.name_of(int(faces.labels[i]))
        key = taxonomy.by_name(cat).key
        subj = int(faces.subjects[i])
        rel = Path(key) / f"s{subj:04d}.png"
        (out / key).mkdir(parents=True, exist_ok=True)
        rgb = faces.images[i].permute(1, 2, 0).numpy()
        if not cv2.imwrite(str(out / rel), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            from compound_fer.errors import DataError

            raise DataError(f"could not write {out / rel}; check that --out is writable")
        active = [au for j, au in enumerate(taxonomy.ACTION_UNITS) if aus[i, j] > 0]
        rows.append([rel.as_posix(), cat, int(faces.labels[i]), subj, " ".join(map(str, active)),
                     *(f"{v:.3f}" for v in aus[i])])
    header = ["path", "category", "label", "subject", "active_aus", *(f"AU{au}" for au in taxonomy.ACTION_UNITS)]

    def write(f):
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)

    def write_subjects(f):  # the folder reader's subject table: strict (by-subject) splits work on DIR as written
        w = csv.writer(f)
        w.writerow(["file", "subject"])
        w.writerows([r[0], r[3]] for r in rows)

    atomic_write(out / "subjects.csv", write_subjects)
    return atomic_write(out / "images.csv", write)


def parse_classes(text: str | None) -> list[str] | None:
    """``--classes`` -> taxonomy names (None: all); ConfigError naming the option and listing the valid names."""
    if text is None:
        return None
    from compound_fer import taxonomy
    from compound_fer.errors import ConfigError

    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        cats = [taxonomy.by_name(n).name for n in names]
    except taxonomy.UnknownCategoryError as exc:
        raise ConfigError(f"--classes: {exc}") from None
    if not cats:
        raise ConfigError(f"--classes {text!r}: name at least one category, e.g. --classes happy,'sadly angry'")
    return list(dict.fromkeys(cats))


def run(args: argparse.Namespace) -> int:
    from compound_fer.errors import ConfigError

    if args.identities < 1:
        raise ConfigError("--identities must be at least 1")
    if args.images < 0:
        raise ConfigError("--images must be >= 0")
    if args.image_size < 32 or args.grid_size < 32:
        raise ConfigError("--image-size and --grid-size must be at least 32 pixels")
    classes = parse_classes(args.classes)
    from compound_fer.commands._common import check_out_dir

    check_out_dir(args.out)
    paths = save_grid(args.out, identities=args.identities, seed=args.seed, size=args.grid_size, name=args.name,
                      classes=classes)
    for p in paths:
        print(f"wrote {p}")
    if args.images:
        csv_path = save_images(args.out, n=args.images, seed=args.seed, size=args.image_size, classes=classes)
        print(f"wrote {args.images} images per category under {args.out} and {csv_path}")
    return 0
