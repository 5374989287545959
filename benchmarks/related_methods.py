"""Measure the three related systems (PurifiedLearning, omni-supervised distilled data, PathNet) on
synthetic faces, and omni mining precision on the real FER2013 pool; write benchmarks/results/related.json.

    python benchmarks/related_methods.py            # all parts (~10 min on one busy CPU thread)
    python benchmarks/related_methods.py --parts fer # only the FER-pool mining precision
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from compound_fer import taxonomy
from compound_fer.io import provenance, write_json

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def evaluator():
    from avalanche.training.plugins import EvaluationPlugin

    return EvaluationPlugin(loggers=[])


def probe_accuracy(feats: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> float:
    """Fresh linear probe on standardised features: trained on half the samples, scored on the other half."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(feats), generator=g)
    a, b = perm[: len(perm) // 2], perm[len(perm) // 2:]
    f = (feats - feats[a].mean(0)) / feats[a].std(0).clamp_min(1e-6)
    _, y = torch.unique(labels, return_inverse=True)
    lin = torch.nn.Linear(f.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(lin.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(lin(f[a]), y[a]).backward()
        opt.step()
    return float((lin(f[b]).argmax(1) == y[b]).float().mean())


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    out = torch.cat([model(x[i:i + 256]) for i in range(0, len(x), 256)])
    return float((out.argmax(1) == y).float().mean())


# --------------------------------------------------------------------------------------- synthetic data
def synthetic(size: int, n_train: int, n_test: int, per: int, compound: list[str], seed: int):
    from compound_fer.data.synthetic import generate

    cats = list(taxonomy.basic_names()) + compound
    tr = generate(categories=cats, n_subjects=n_train, per_subject=per, image_size=size, seed=seed, masks=False)
    te = generate(categories=cats, n_subjects=n_test, per_subject=per, image_size=size, seed=seed, masks=False,
                  subject_offset=1000)
    return tr, te


def part_purified(a) -> dict:
    """Basic classes only: identity probe accuracy on features and expression accuracy on unseen subjects."""
    from compound_fer.models import build_model
    from compound_fer.scenarios import basic_to_compound
    from compound_fer.training.purified import benchmark_subjects
    from compound_fer.training.registry import make_strategy

    tr, te = synthetic(a.size, a.subjects, a.test_subjects, a.per_subject, [], a.seed)
    cb = basic_to_compound(train=tr, test=te)
    xt, yt = te.float_images(), cb.to_model_labels(te.labels)
    xtr = tr.float_images()
    rows = {}
    for name, weight in (("naive", 0.0), ("purified", a.purify_weight)):
        torch.manual_seed(a.seed)
        model = build_model("small_cnn", num_classes=6, pretrained=False, image_size=a.size)
        t0 = time.time()
        s = make_strategy("purified", model=model, evaluator=evaluator(), lr=a.basic_lr, train_epochs=a.basic_epochs,
                          train_mb_size=32, seed=a.seed, purify_weight=weight,
                          subjects=benchmark_subjects(cb, tr))
        s.train(cb.train_stream[0])
        model.eval()
        with torch.no_grad():
            feats = torch.cat([model.features(xtr[i:i + 256]) for i in range(0, len(xtr), 256)])
        rows[name] = {"identity_probe_acc": probe_accuracy(feats, tr.subjects),
                      "identity_chance": 1.0 / len(torch.unique(tr.subjects)),
                      "expression_acc_unseen_subjects": accuracy(model, xt, yt), "seconds": round(time.time() - t0, 1)}
        log(f"purified part: {name} {rows[name]}")
    return {
        "setup": f"synthetic {a.size}px, 6 basic classes, {a.subjects} train / {a.test_subjects} test subjects, "
        f"small_cnn, {a.basic_epochs} epochs at lr {a.basic_lr}, batch 32, purify_weight={a.purify_weight} "
        "(0 = same plugin, no term)",
        "rows": rows,
    }


def part_continual(a) -> dict:
    """basic -> compound continual stream, every method at the same budget: final and mean step accuracy."""
    from compound_fer.models import build_model
    from compound_fer.scenarios import basic_to_compound
    from compound_fer.training.purified import benchmark_subjects
    from compound_fer.training.registry import available, make_strategy

    compound = list(taxonomy.compound_names()[: a.n_compound])
    tr, te = synthetic(a.size, a.subjects, a.test_subjects, a.per_subject, compound, a.seed)
    cb = basic_to_compound(train=tr, test=te)
    xt, yt = te.float_images(), cb.to_model_labels(te.labels)
    subj = benchmark_subjects(cb, tr)
    rows = {}
    methods = [m for m in a.methods if m in available()]
    for name in methods:
        torch.manual_seed(a.seed)
        model = build_model("small_cnn", num_classes=6, pretrained=False, image_size=a.size)
        extra = {"subjects": subj, "purify_weight": a.purify_weight} if "purified" in name else {}
        if name == "omni":
            extra = {"dm_iterations": a.dm_iterations}
        t0 = time.time()
        s = make_strategy(name, model=model, evaluator=evaluator(), lr=1e-3, train_epochs=a.epochs,
                          train_mb_size=16, mem_size=a.mem_size, num_classes_total=cb.n_classes, seed=a.seed,
                          **extra)
        steps = []
        for j, exp in enumerate(cb.train_stream):
            s.train_epochs = a.basic_epochs if j == 0 else a.epochs
            s.train(exp)
            seen = torch.isin(yt, torch.tensor(cb.seen_classes(j)))
            steps.append(accuracy(s.model, xt[seen], yt[seen]))
        rows[name] = {"step_acc": steps, "final_acc": steps[-1], "mean_step_acc": float(np.mean(steps)),
                      "mean_step_acc_without_step0": float(np.mean(steps[1:])), "seconds": round(time.time() - t0, 1)}
        log(f"continual part: {name} final {steps[-1]:.3f} mean {np.mean(steps):.3f}")
    return {
        "setup": f"synthetic {a.size}px, 6 basic then {a.n_compound} compound classes one per experience, "
        f"{a.subjects} train / {a.test_subjects} test subjects, small_cnn, {a.basic_epochs} epochs on "
        f"the basic experience then {a.epochs} per compound experience, mem_size={a.mem_size}, lr 1e-3, batch 16",
        "compound_order": compound,
        "rows": rows,
    }


def part_omni_synthetic(a) -> dict:
    """Few labels + an unlabelled synthetic pool: mining precision, and training with distilled images."""
    from compound_fer.models import build_model
    from compound_fer.training.distill_data import distribution_matching, random_real, train_on
    from compound_fer.training.omni import mine_by_similarity

    tr, te = synthetic(a.size, a.subjects, a.test_subjects, a.per_subject, [], a.seed)
    lab_subjects = torch.unique(tr.subjects)[: a.labelled_subjects]
    lab = tr.where(subjects=lab_subjects.tolist())
    pool = tr.where(subjects=torch.unique(tr.subjects)[a.labelled_subjects:].tolist())
    x, y = lab.float_images(), lab.labels - 1  # basic labels 1..6 -> 0..5
    xp, truth = pool.float_images(), pool.labels - 1
    xt, yt = te.float_images(), te.labels - 1

    def fit(xs, ys, seed):
        torch.manual_seed(seed)
        if a.omni_backbone == "small_cnn":
            m = build_model("small_cnn", num_classes=6, pretrained=False, image_size=a.size)
            return train_on(xs, ys, m, epochs=a.boost_epochs, lr=a.basic_lr, batch_size=32, seed=seed)
        # frozen ImageNet trunk, only the head learns (a realistic primitive model with few labels)
        m = build_model(a.omni_backbone, num_classes=6, pretrained=True, image_size=a.size)
        for name, prm in m.named_parameters():
            prm.requires_grad_(name.startswith("head."))
        return train_on(xs, ys, m, epochs=a.boost_epochs, lr=1e-2, batch_size=32, seed=seed)

    t0 = time.time()
    primitive = fit(x, y, a.seed)
    mined = mine_by_similarity(primitive.features, x, y, xp, per_class=a.mine_per_class, classify=primitive)
    out = {"labelled_images": len(x), "pool_images": len(xp), "mined": len(mined.index),
           "mining_precision": mined.precision(truth), "mining_chance": mined.chance(truth),
           "primitive_test_acc": accuracy(primitive, xt, yt)}
    log(f"omni synthetic: {out}")
    xm = torch.cat([x, xp[mined.index]])
    ym = torch.cat([y, mined.labels])
    sx, sy = distribution_matching(xm, ym, ipc=a.ipc, iterations=a.dm_iterations, seed=a.seed, progress=True)
    out["distill_seconds"] = round(time.time() - t0, 1)
    res = {"distilled_only": [], "random_real_only": [], "labelled_only": [], "labelled_plus_distilled": []}
    for s in range(a.repeats):
        res["distilled_only"].append(accuracy(fit(sx, sy, s), xt, yt))
        rx, ry = random_real(xm, ym, ipc=a.ipc, seed=s)
        res["random_real_only"].append(accuracy(fit(rx, ry, s), xt, yt))
        res["labelled_only"].append(accuracy(fit(x, y, s), xt, yt))
        res["labelled_plus_distilled"].append(accuracy(fit(torch.cat([x, sx]), torch.cat([y, sy]), s), xt, yt))
        log(f"omni synthetic repeat {s}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in res.items()))
    out["test_acc"] = {k: {"runs": v, "mean": float(np.mean(v))} for k, v in res.items()}
    out["setup"] = (
        f"synthetic {a.size}px, 6 basic classes; labelled = {a.labelled_subjects} subjects, pool = the "
        f"other {a.subjects - a.labelled_subjects} training subjects (labels hidden), test = "
        f"{a.test_subjects} unseen subjects; ipc={a.ipc}, DM {a.dm_iterations} iterations; {a.omni_backbone} "
        f"({'from scratch' if a.omni_backbone == 'small_cnn' else 'frozen ImageNet trunk, head only'}) "
        f"trained {a.boost_epochs} epochs; {a.repeats} seeds"
    )
    return out


def part_fer(a) -> dict:
    """Mining precision on the real FER2013 pool: labelled = cfee-subset basic + neutral, ImageNet features."""
    from compound_fer.data.cfee import read_cfee
    from compound_fer.data.crop_options import CropOptions
    from compound_fer.models import build_model
    from compound_fer.training.distill_data import train_on
    from compound_fer.training.omni import fer_pool_truth, mine_by_similarity, read_fer_pool

    pool_root, cfee_root = SHARED / "fer2013-pool", SHARED / "cfee-subset"
    if not (pool_root / "images").is_dir() or not (cfee_root / "Images").is_dir():
        return {"skipped": f"needs {pool_root} and {cfee_root}"}
    names = taxonomy.basic_names(include_neutral=True)
    t0 = time.time()
    lab = read_cfee(cfee_root, crop=CropOptions(image_size=a.fer_size, detector="mediapipe"),
                    include=names, cache=False, progress=False)
    pool = read_fer_pool(pool_root, image_size=a.fer_size, limit=a.pool_limit, seed=a.seed)
    truth = fer_pool_truth(pool_root, pool.sources)
    grey = lambda fs: fs.float_images().mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()  # noqa: E731
    x, xp = grey(lab), pool.float_images()
    y = lab.labels
    net = build_model("mobilenet_v2", num_classes=len(names), pretrained=True, image_size=a.fer_size).eval()
    with torch.no_grad():
        f = torch.cat([net.features(x[i:i + 64]) for i in range(0, len(x), 64)])
        fp = torch.cat([net.features(xp[i:i + 64]) for i in range(0, len(xp), 64)])
    log(f"FER part: features of {len(x)} CFEE + {len(xp)} pool faces in {time.time() - t0:.0f}s")
    # primitive model: a linear classifier on the frozen ImageNet features of the labelled CFEE faces
    _, yi = torch.unique(y, return_inverse=True)
    classes = torch.unique(y)
    lin = train_on(f, yi, torch.nn.Linear(f.shape[1], len(classes)), epochs=200, lr=1e-3, batch_size=64)
    ident = torch.nn.Identity()

    def global_logits(z: torch.Tensor) -> torch.Tensor:  # the classifier's logits indexed by global label
        out = z.new_full((len(z), len(taxonomy.CATEGORIES)), -1e9)
        out[:, classes] = lin(z)
        return out
    out = {"labelled": f"cfee-subset {', '.join(names)} ({len(x)} faces, greyscale), ImageNet MobileNetV2 "
                       f"features at {a.fer_size}px + linear classifier",
           "pool_images": len(xp), "pool_prior": {taxonomy.name_of(int(c)): float((truth == c).float().mean())
                                                   for c in torch.unique(truth)}, "rows": {}}
    for per in a.fer_per_class:
        for agree in (False, True):
            classify = global_logits if agree else None
            mined = mine_by_similarity(ident, f, y, fp, per_class=per, classify=classify)
            key = f"per_class={per}{'+classifier_agreement' if agree else ''}"
            prec = {taxonomy.name_of(int(c)): float((truth[mined.index[mined.labels == c]] == c).float().mean())
                    for c in classes if (mined.labels == c).any()}
            out["rows"][key] = {"mined": len(mined.index), "precision": mined.precision(truth),
                                "chance": mined.chance(truth), "per_class_precision": prec}
            log(f"FER mining {key}: precision {mined.precision(truth):.3f} chance {mined.chance(truth):.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["purified", "continual", "omni", "fer"])
    p.add_argument(
        "--methods", nargs="+", default=["naive", "purified", "omni", "pathnet", "kdpsmr", "kdpsmr+purified"]
    )
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--subjects", type=int, default=30)
    p.add_argument("--test-subjects", type=int, default=8)
    p.add_argument("--per-subject", type=int, default=2)
    p.add_argument("--n-compound", type=int, default=3)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--basic-epochs", type=int, default=25)
    p.add_argument("--basic-lr", type=float, default=2e-3)
    p.add_argument("--mem-size", type=int, default=90)
    p.add_argument("--purify-weight", type=float, default=1.0)
    p.add_argument("--labelled-subjects", type=int, default=4)
    p.add_argument("--mine-per-class", type=int, default=8)
    p.add_argument("--ipc", type=int, default=2)
    p.add_argument("--omni-backbone", default="small_cnn", help="small_cnn (scratch) or mobilenet_v2 (frozen trunk)")
    p.add_argument("--dm-iterations", type=int, default=100)
    p.add_argument("--boost-epochs", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fer-size", type=int, default=96)
    p.add_argument("--pool-limit", type=int, default=2000)
    p.add_argument("--fer-per-class", type=int, nargs="+", default=[20, 100])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "related.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    out_path = Path(a.out)
    result = {}
    if out_path.is_file():  # keep parts measured by an earlier run of other parts
        import json

        result = {
            k: v for k, v in json.loads(out_path.read_text()).items() if k in ("purified", "continual", "omni", "fer")
        }
    parts = {"purified": part_purified, "continual": part_continual, "omni": part_omni_synthetic, "fer": part_fer}
    for name in a.parts:
        t0 = time.time()
        result[name] = parts[name](a)
        result[name]["seconds"] = round(time.time() - t0, 1)
        write_json(out_path, {**provenance(command=" ".join(["python", *sys.argv]), seed=a.seed,
                                           options={k: v for k, v in vars(a).items() if k != "out"}), **result})
        log(f"wrote {out_path} ({name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
