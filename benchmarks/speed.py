"""Training speed on CPU: Avalanche strategies (ours) against a plain PyTorch loop on the same model and data.

Measures images/s of one continual step's training (tail + head on cached trunk maps, as the runner
trains), for a plain loop and Avalanche Naive, in one process so the ratios are comparable.
With ``--protocol`` it also times one whole order of the protocol (basic phase + trunk maps + 15 steps)
for Naive, Replay and KD+PSMR in the same process: the wall-time ratios KD+PSMR / Naive (which trains on
the new class's m images only) and KD+PSMR / Replay (which trains on the same memory + m images).
With ``--pooled`` it times the head-only steps of ``cfee_best`` (one order, one basic model) on cached
trunk maps and on cached pooled embeddings (``cache_pooled``) in the same process: before and after, the
KD+PSMR / Replay step ratio, and whether the rows are the same. Merges into benchmarks/results/speed.json.

    python benchmarks/speed.py [--data ../shared/data/cfee-subset] [--threads 2] [--protocol] [--pooled]
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from compound_fer import taxonomy
from compound_fer.config import load_config
from compound_fer.io import provenance, write_json

TIMINGS = {"seconds", "step_seconds", "train_seconds_after_basic", "trunk_cache_seconds"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="compound_fer/configs/cfee_cpu.yaml")
    ap.add_argument(
        "--data", default=None, help="cfee-subset path (default: the config's); 'synthetic' for generated faces"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--protocol", action="store_true",
                    help="also time one order of the whole protocol (basic + 15 steps) for naive, replay and kdpsmr")
    ap.add_argument("--pooled", action="store_true",
                    help="time cfee_best's head-only steps on maps and on pooled embeddings (one order, same basic)")
    ap.add_argument("--only-pooled", action="store_true", help="--pooled alone; the file's other figures are kept")
    ap.add_argument("--work", default="runs/speed", help="run folders of --pooled (weights stay here)")
    ap.add_argument("--out", default="benchmarks/results/speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    command = " ".join(["python", *map(shlex.quote, sys.argv)])
    if args.only_pooled:
        _merge(args.out, {"pooled_steps": time_pooled(data=args.data, work=args.work, command=command)})
        return 0
    from compound_fer.features import CachedTrunkModel, PickView
    from compound_fer.runner import build_basic_model, load_dataset, make_inputs, make_splits, seed_everything
    from compound_fer.scenarios import basic_to_compound
    from compound_fer.training.registry import make_strategy

    cfg = load_config(args.config)
    if args.data == "synthetic":
        cfg = cfg.with_overrides(data={"source": "synthetic", "image_size": 64}, model={"backbone": "small_cnn",
                                                                                         "pretrained": False})
    faces = load_dataset(cfg, path=None if args.data in (None, "synthetic") else args.data, progress=False)
    splits = make_splits(cfg, faces, seed=0)
    model = build_basic_model(cfg, 6)
    inputs = make_inputs(cfg, model, splits, seed=0, progress=False)
    order = [c.name for c in taxonomy.categories("compound")]
    bench = basic_to_compound(train=splits.train, test=splits.test, compound_order=order, inputs=inputs, seed=0)
    exp0 = bench.benchmark.train_stream[0]
    n_images = len(exp0.dataset)
    bs, lr = cfg.continual.batch_size, cfg.continual.lr
    x_all = inputs.train[torch.isin(splits.train.labels, torch.as_tensor(bench.class_order[:6]))]
    y_all = bench.to_model_labels(splits.train.labels[torch.isin(splits.train.labels,
                                                                 torch.as_tensor(bench.class_order[:6]))])
    results: dict[str, list[float]] = {"plain_pytorch": [], "avalanche_naive": []}
    for _ in range(args.repeats):
        # plain loop: same model, data, batch size, optimizer, epochs; a random view per image like PickView
        seed_everything(0)
        m = copy.deepcopy(model).set_trainable("tail_head")
        net = CachedTrunkModel(model=m).train()
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
        pick = PickView(random=True)
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            perm = torch.randperm(len(x_all))
            for i in range(0, len(perm), bs):
                idx = perm[i : i + bs]
                xb = torch.stack([pick(x) for x in x_all[idx]])
                loss = torch.nn.functional.cross_entropy(net(xb), y_all[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        results["plain_pytorch"].append(args.epochs * len(x_all) / (time.perf_counter() - t0))
        for name in ("naive",):
            seed_everything(0)
            m = copy.deepcopy(model).set_trainable("tail_head")
            strat = make_strategy(name, model=CachedTrunkModel(model=m), lr=lr, train_epochs=args.epochs,
                                  train_mb_size=bs, eval_mb_size=256, num_classes_total=21, mem_size=400)
            t0 = time.perf_counter()
            strat.train(exp0)
            results[f"avalanche_{name}"].append(args.epochs * n_images / (time.perf_counter() - t0))
    best = {k: max(v) for k, v in results.items()}
    out = {
        **provenance(command=" ".join(["python", *map(shlex.quote, sys.argv)]), seed=0),
        "what": "images/s training tail+head on cached trunk maps (experience 0 data), best of repeats",
        "backbone": cfg.model.backbone, "image_size": cfg.data.image_size, "images": n_images,
        "epochs": args.epochs, "batch_size": bs, "threads": args.threads,
        "images_per_second": best, "all_repeats": results,
        "ratio_naive_vs_plain": best["avalanche_naive"] / best["plain_pytorch"],
    }
    if args.protocol:
        out["protocol"] = time_protocol(cfg, data=None if args.data in (None, "synthetic") else args.data)
    else:
        out["note"] = "KD+PSMR against Naive: run with --protocol (one whole order of each, same process)"
    if args.pooled:
        out["pooled_steps"] = time_pooled(data=args.data, work=args.work, command=command)
    _merge(args.out, out)
    print({k: round(v, 1) for k, v in best.items()}, "naive/plain", round(out["ratio_naive_vs_plain"], 3))
    if "protocol" in out:
        print({k: v for k, v in out["protocol"].items() if k != "rows"})
    return 0


def _merge(path: str, sections: dict) -> None:
    """Write ``sections`` into the JSON at ``path``, keeping its other entries (e.g. whole_protocol)."""
    p = Path(path)
    doc = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    write_json(p, {**doc, **sections})


def time_pooled(*, data: str | None, work: str, command: str) -> dict:
    """cfee_best's head-only steps (naive, replay, kdpsmr, icarl; one order, no few-shot) on cached trunk maps, then
    on cached pooled embeddings with the same basic model, in this process: seconds of steps 1-15 each."""
    from compound_fer.runner import run_protocol

    cfg = load_config("compound_fer/configs/cfee_best.yaml")
    methods = ["naive", "replay", "kdpsmr", "icarl"]  # iCaRL on mirrored pairs (its class means flip their inputs)
    runs: dict[str, list[dict]] = {}
    for pooled in (False, True):
        out = Path(work) / f"pooled_{'on' if pooled else 'off'}"
        shutil.rmtree(out, ignore_errors=True)
        if pooled:  # the same basic model: copied from the first run (resume loads it)
            (out / "models").mkdir(parents=True)
            for f in (Path(work) / "pooled_off" / "models").glob("basic_seed0*"):
                shutil.copy2(f, out / "models" / f.name)
        runs["on" if pooled else "off"] = run_protocol(
            cfg.with_overrides(cache_pooled=pooled), out_dir=out, data_path=data, methods=methods, orders=1,
            seeds=[0], fewshot=False, resume=pooled, progress=False, command=command)

    def steps(rows: list[dict]) -> dict[str, float]:
        return {r["method"]: round(sum(r["step_seconds"][1:]), 2) for r in rows if r["kind"] == "continual"}

    def results(rows: list[dict]) -> list[str]:
        return [json.dumps({k: v for k, v in r.items() if k not in TIMINGS}, sort_keys=True)
                for r in rows if r["kind"] == "continual"]

    def samples(rows: list[dict]) -> dict[str, int]:
        return {r["method"]: int(sum(r["step_samples"][1:])) for r in rows if r["kind"] == "continual"}

    before, after = steps(runs["off"]), steps(runs["on"])
    n = samples(runs["on"])
    per_sample = {k: {m: round(1000 * t[m] / n[m], 4) for m in methods} for k, t in (("maps", before),
                                                                                      ("pooled", after))}
    basic = next(r for r in runs["on"] if r["kind"] == "basic")
    return {
        **provenance(command=command, seed=0),
        "what": "cfee_best, one class order, steps 1-15 (seconds), head-only steps on cached trunk maps (before) "
                "and on cached pooled embeddings (after), the same basic model, one process",
        "steps_1_15_seconds": {"maps": before, "pooled": after},
        "speedup": {m: round(before[m] / after[m], 2) for m in methods},
        "samples_steps_1_15": n,  # minibatch rows trained, replayed ones included
        "ms_per_sample": per_sample,
        "ratio_kdpsmr_vs_replay_per_sample": {k: round(v["kdpsmr"] / v["replay"], 2) for k, v in per_sample.items()},
        "ratio_kdpsmr_vs_replay": {"maps": round(before["kdpsmr"] / before["replay"], 2),
                                   "pooled": round(after["kdpsmr"] / after["replay"], 2)},
        "ratio_kdpsmr_vs_naive": {"maps": round(before["kdpsmr"] / before["naive"], 2),
                                  "pooled": round(after["kdpsmr"] / after["naive"], 2)},
        # the trunk cache of each run (the pooled run's includes pooling the cached views): the first run's
        # also warms the disk cache, so read the pair, not their difference, as pooling's cost
        "trunk_cache_seconds": {"maps": next(r for r in runs["off"] if r["kind"] == "basic")["trunk_cache_seconds"],
                                "pooled": basic["trunk_cache_seconds"]},
        "rows_identical": results(runs["off"]) == results(runs["on"]),
    }


def time_protocol(cfg, *, data: str | None) -> dict:
    """One order of the protocol, no few-shot: basic phase, trunk maps, then 15 steps of Naive, Replay, KD+PSMR."""
    import tempfile

    from compound_fer.runner import run_protocol

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rows = run_protocol(cfg, out_dir=tmp, data_path=data, methods=["naive", "replay", "kdpsmr"], orders=1,
                            seeds=[0], fewshot=False, progress=False)
        total = time.perf_counter() - t0
    basic = next(r for r in rows if r["kind"] == "basic")
    cont = {r["method"]: r for r in rows if r["kind"] == "continual"}
    one_order = {m: basic["seconds"] + basic["trunk_cache_seconds"] + r["seconds"] for m, r in cont.items()}
    return {
        "what": "one class order: basic phase + trunk maps + 15 continual steps (seconds); load excluded",
        "basic_seconds": basic["seconds"], "trunk_cache_seconds": basic["trunk_cache_seconds"],
        "basic_best_epoch": basic["best_epoch"], "basic_test_accuracy": basic["test_accuracy"],
        "steps_1_15_seconds": {m: round(sum(r["step_seconds"][1:]), 2) for m, r in cont.items()},
        "continual_seconds": {m: r["seconds"] for m, r in cont.items()},
        "one_order_seconds": one_order, "total_seconds_all_methods": round(total, 1),
        "ratio_kdpsmr_vs_naive": cont["kdpsmr"]["seconds"] / cont["naive"]["seconds"],
        "ratio_kdpsmr_vs_replay": cont["kdpsmr"]["seconds"] / cont["replay"]["seconds"],
        "overall_accuracy": {m: r["overall_accuracy"] for m, r in cont.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
