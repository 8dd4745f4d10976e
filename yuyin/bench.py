"""Multi-seed benchmark with honest statistics: every method and ablation, the same splits and seeds.

``run_stat_benchmark`` trains each method of ``baselines`` once per seed on the train split and
keeps the per-query video->music ranks of the test split (``runs/<setting>/<method>/seed<N>.json``;
a re-run reuses finished runs, so the benchmark can be stopped and continued). Two settings:

* ``main``: train on the train split, rank every test clip against every test track (tracks
  never seen in training: the grouped split shares no track between train and test).
* ``loco`` (leave one category out): for each test category C, train on the train split
  *without* C's clips and rank C's test clips against all test tracks. The model has seen
  neither the music nor any ad of that category; pooled over categories.

``yuyin.stats`` then gives mean ± 95 % interval over seeds, and a paired, track-grouped
bootstrap of each method's difference to the best baseline (and of each ablation to full YuYin).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from commercial98k.storage.files import atomic_write_bytes, atomic_write_json

from .baselines import NEURAL, CCABaseline, _pooled, method_config
from .evaluate import embed_batches, random_v2m, track_gallery, v2m_ranks
from .stats import METRICS, fmt_diff, fmt_interval, higher_is_better, paired_bootstrap, seed_summary
from .train import TrainConfig, Trainer

BASELINES = ("cca", "cbvmr", "contrastive")
ABLATIONS = ("yuyin-no-wfm", "yuyin-no-emotion", "yuyin-no-video-music", "yuyin-no-video-tag",
             "yuyin-no-music-tag", "yuyin-no-category")
STAT_METHODS = (*BASELINES, "yuyin", *ABLATIONS)
LOCO_METHODS = ("cbvmr", "contrastive", "yuyin", "yuyin-no-category")
LABELS = {"yuyin-no-wfm": "YuYin without WFM (concatenation)", "yuyin-no-emotion": "YuYin without emotion (audio only)",
          "yuyin-no-video-music": "YuYin without the video-music pair", "yuyin-no-video-tag":
          "YuYin without the video-tag pair", "yuyin-no-music-tag": "YuYin without the music-tag pair",
          "yuyin-no-category": "YuYin without the category task", "yuyin": "**YuYin**", "cca": "CCA",
          "cbvmr": "CBVMR (triplet)", "contrastive": "contrastive (video-music InfoNCE)"}


def load_split(cfg: TrainConfig, split: str) -> list[dict[str, Any]]:
    """Every decoded sample of ``split`` in shard order (held in memory: read once, used by every run)."""
    from .data import make_dataset

    return list(make_dataset(cfg.shards, split, shuffle=False, max_frames=cfg.max_frames,
                             max_audio=cfg.max_audio, max_tags=cfg.max_tags))


def batches_of(samples: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """``samples`` collated into batches of ``size`` in order (the last one partial)."""
    from .data import collate

    return [collate(samples[i:i + size]) for i in range(0, len(samples), size)]


def memory_loader(samples: list[dict[str, Any]], batch_size: int, seed: int):
    """A ``Trainer`` loader factory over in-memory samples: epoch -> shuffled full batches."""
    from .data import collate

    if len(samples) < batch_size:
        raise ValueError(f"{len(samples)} training clip(s) for batch size {batch_size}; lower --batch-size")

    def factory(epoch: int) -> Iterator[dict[str, Any]]:
        order = list(range(len(samples)))
        random.Random(seed * 100_003 + epoch).shuffle(order)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            yield collate([samples[j] for j in order[i:i + batch_size]])

    return factory


def embed_method(method: str, base: TrainConfig, train: list[dict], test: list[dict], model_dir: Path) -> dict:
    """Train ``method`` on ``train`` (seed ``base.seed``) and embed ``test``: video [N,E], music [N,E]."""
    if method == "cca":
        tr, te = _pooled(batches_of(train, 256)), _pooled(batches_of(test, 256))
        model = CCABaseline(seed=base.seed).fit(tr["video"], tr["music"])
        video, music = model.embed(te["video"], te["music"])
        return {"video": video, "music": music}
    cfg = method_config(method, base, model_dir)
    cfg = dataclasses.replace(cfg, checkpoint_every=cfg.steps, progress=False, eval_every=0)
    trainer = Trainer(cfg, loader_factory=memory_loader(train, cfg.batch_size, cfg.seed))
    trainer.fit()
    emb = embed_batches(trainer.model, batches_of(test, 64), trainer.device, progress=False)
    trainer.close()
    return {"video": emb["video"], "music": emb["music"]}


def _run_key(method: str, base: TrainConfig, setting: str, held_out: str | None) -> dict[str, Any]:
    index = json.loads((Path(base.shards) / "index.json").read_text(encoding="utf-8"))
    return {"method": method, "seed": base.seed, "setting": setting, "held_out": held_out,
            "steps": base.steps if method != "cca" else 0, "batch_size": base.batch_size, "lr": base.lr,
            "model": base.model, "manifest_sha256": index.get("manifest", {}).get("sha256"),
            "splits": {k: v.get("samples") for k, v in index.get("splits", {}).items()}}


def cached_run(path: Path, key: dict[str, Any], compute) -> dict[str, Any]:
    """``compute()`` once per key: a finished run's JSON is reused while its key matches."""
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("key") == key:
            return doc
    start = time.perf_counter()
    doc = {"key": key, **compute(), "seconds": round(time.perf_counter() - start, 1)}
    atomic_write_json(path, doc)
    return doc


def run_setting(base: TrainConfig, out: Path, methods: Iterable[str], seeds: Iterable[int], setting: str,
                train: list[dict], test: list[dict], categories: list[str]) -> dict[str, Any]:
    """Ranks per method and seed for ``setting`` ``main`` or ``loco``; queries in one fixed order."""
    methods, seeds = list(methods), list(seeds)
    mids = [s["meta"].get("music_id") for s in test]
    n_tracks = len(set(mids))
    cat_of = [categories[int(s["meta"]["category_id"])] for s in test]
    held = [None] if setting == "main" else sorted(set(cat_of))
    jobs = [(m, s, c) for c in held for s in seeds for m in methods]
    ranks: dict[str, dict[int, list[np.ndarray]]] = {m: {s: [] for s in seeds} for m in methods}
    for method, seed, cat in tqdm(jobs, desc=f"benchmark {setting}", unit="run"):
        cfg = dataclasses.replace(base, seed=seed)
        sub = train if cat is None else [x for x in train if categories[int(x["meta"]["category_id"])] != cat]
        name = f"seed{seed}" + (f"-{cat}" if cat else "")

        def compute(method=method, cfg=cfg, sub=sub, name=name) -> dict[str, Any]:
            emb = embed_method(method, cfg, sub, test, out / "models" / setting / name)
            gallery, _, owner = track_gallery(np.asarray(emb["music"], np.float32), mids)
            return {"ranks": v2m_ranks(np.asarray(emb["video"], np.float32), gallery, owner).tolist(),
                    "clip_ids": [x["clip_id"] for x in test], "train_clips": len(sub)}

        doc = cached_run(out / "runs" / setting / method / f"{name}.json", _run_key(method, cfg, setting, cat), compute)
        r = np.asarray(doc["ranks"])
        ranks[method][seed].append(r if cat is None else r[np.asarray(cat_of) == cat])
    queries = [i for c in held for i in range(len(test)) if c is None or cat_of[i] == c]
    return {"setting": setting, "held_out": held, "tracks": n_tracks,
            "ranks": {m: [np.concatenate(ranks[m][s]) for s in seeds] for m in methods},
            "groups": [mids[i] for i in queries], "clips": len(queries)}


def summarise(res: dict[str, Any], n_boot: int = 2000, primary: str = "R@10") -> dict[str, Any]:
    """Seed intervals per method, the best baseline by ``primary`` (ties: R@1, then MedR), paired bootstraps."""
    ranks = res["ranks"]
    summary = {m: seed_summary(r) for m, r in ranks.items()}
    present = [m for m in BASELINES if m in ranks]
    sign = 1 if higher_is_better(primary) else -1
    def score(m: str) -> tuple[float, ...]:  # ties on the primary metric (a small gallery saturates R@10): R@1, MedR
        return (sign * summary[m][primary]["mean"], summary[m]["R@1"]["mean"], -summary[m]["MedR"]["mean"])

    best = max(present, key=score) if present else None

    def against(m: str, b: str) -> dict[str, Any]:
        return {k: paired_bootstrap(ranks[m], ranks[b], k, n_boot, groups=res["groups"]) for k in ("R@1", "R@10", "MedR")}

    diffs: dict[str, dict[str, Any]] = {}
    for m in ranks:
        d: dict[str, Any] = {}
        if m == "yuyin":  # YuYin against every baseline, not only the best one
            d["vs_baselines"] = {b: against(m, b) for b in present}
        if best and m != best:
            d["vs_best"] = d["vs_baselines"][best] if m == "yuyin" else against(m, best)
        if m.startswith("yuyin-") and "yuyin" in ranks:
            d["vs_yuyin"] = {k: paired_bootstrap(ranks[m], ranks["yuyin"], k, n_boot, groups=res["groups"])
                             for k in ("R@10",)}
        diffs[m] = d
    return {"best_baseline": best, "summary": summary, "diffs": diffs}


def table_markdown(res: dict[str, Any], stats: dict[str, Any], seeds: list[int], title: str) -> str:
    """One Markdown table: intervals per method, then differences (``*``: 95 % interval excludes 0)."""
    best = stats["best_baseline"] or "best baseline"
    head = ["method", *METRICS, f"ΔR@1 vs {best}", f"ΔR@10 vs {best}", f"ΔMedR vs {best}", "ΔR@10 vs YuYin"]
    lines = [f"**{title}**: {res['clips']} test clips (queries), {res['tracks']} test tracks never seen in "
             f"training; seeds {', '.join(map(str, seeds))}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, s in stats["summary"].items():
        d = stats["diffs"].get(m, {})
        vb, vy = d.get("vs_best", {}), d.get("vs_yuyin", {})
        cells = [LABELS.get(m, m) + (" (best baseline)" if m == best else "")]
        cells += [fmt_interval(s[k], k) for k in METRICS]
        cells += [fmt_diff(vb[k]) if k in vb else "" for k in ("R@1", "R@10", "MedR")]
        cells.append(fmt_diff(vy["R@10"]) if "R@10" in vy else "")
        lines.append("| " + " | ".join(cells) + " |")
    rnd = random_v2m(res["tracks"], (1, 5, 10, 25))
    lines.append("| random (expected) | " + " | ".join(f"{rnd[f'R@{k}']:.3f}" for k in (1, 5, 10, 25))
                 + f" | {rnd['median_rank']:.1f} |" + " |" * 4)
    return "\n".join(lines) + "\n"


def _verdict_line(d: dict[str, Any], against: str) -> str:
    s = d["R@10"]
    word = "significantly " if s["significant"] else "not significantly "
    better = "better" if s["diff"] > 0 else "worse"
    return (f"YuYin vs {against}: R@10 {s['diff']:+.3f} (95 % interval {s['low']:+.3f} .. "
            f"{s['high']:+.3f}), {word}{better}; R@1 {d['R@1']['diff']:+.3f}"
            f"{' (significant)' if d['R@1']['significant'] else ' (not significant)'}; median rank "
            f"{d['MedR']['diff']:+.1f}{' (significant)' if d['MedR']['significant'] else ' (not significant)'}.")


def verdict(stats: dict[str, Any]) -> str:
    """Plain sentences: does YuYin beat the best baseline, and each other one, by how much, significantly or not."""
    diffs = stats["diffs"].get("yuyin", {})
    d, best = diffs.get("vs_best"), stats["best_baseline"]
    if not d:
        return "YuYin or a baseline is missing: no verdict.\n"
    lines = [_verdict_line(d, f"the best baseline ({LABELS.get(best, best)})")]
    lines += [_verdict_line(v, LABELS.get(b, b)) for b, v in diffs.get("vs_baselines", {}).items() if b != best]
    return "\n\n".join(lines) + "\n"


def run_stat_benchmark(base: TrainConfig, out_dir: str | os.PathLike, seeds: list[int],
                       methods: tuple[str, ...] = STAT_METHODS, loco_methods: tuple[str, ...] = LOCO_METHODS,
                       split: str = "test", n_boot: int = 2000, corpus: str = "",
                       loco_seeds: list[int] | None = None) -> str:
    """Run ``main`` (and ``loco`` unless ``loco_methods`` is empty); write ``stats.md``/``.json``; return the Markdown."""
    from .data import load_index

    bad = [m for m in (*methods, *loco_methods) if m != "cca" and m not in NEURAL]
    if bad:
        raise ValueError(f"unknown method(s) {', '.join(bad)}; choose from cca, {', '.join(NEURAL)}")
    if len(seeds) < 1:
        raise ValueError("give at least one seed (3 or more for intervals)")
    out = Path(out_dir)
    categories = list(load_index(base.shards).get("categories") or [])
    train, test = load_split(base, "train"), load_split(base, split)
    if not test:
        raise ValueError(f"split {split!r} has no clips")
    parts = [f"# YuYin benchmark{f' on {corpus}' if corpus else ''}\n",
             f"Shards `{base.shards}`: {len(train)} training clips, split `{split}`. {base.steps} steps, "
             f"batch {base.batch_size}. Intervals: mean ± 95 % Student-t over seeds. Differences: paired "
             f"bootstrap ({n_boot} resamples of test *tracks*, their clips together), 95 % percentile "
             "interval; `*` = significant (interval excludes 0). MedR: lower is better.\n"]
    doc: dict[str, Any] = {"seeds": seeds, "loco_seeds": loco_seeds or seeds, "split": split, "n_boot": n_boot,
                           "settings": {}}
    settings = [("main", methods, "Held-out tracks", seeds)]
    if loco_methods:
        settings.append(("loco", loco_methods, "Leave one category out (category and tracks unseen)",
                         loco_seeds or seeds))
    for setting, ms, title, ss in settings:
        res = run_setting(base, out, ms, ss, setting, train, test, categories)
        stats = summarise(res, n_boot)
        parts += [table_markdown(res, stats, ss, title), verdict(stats)]
        doc["settings"][setting] = {"clips": res["clips"], "tracks": res["tracks"], "held_out": res["held_out"],
                                    **stats}
    md = "\n".join(parts)
    atomic_write_json(out / "stats.json", doc)
    atomic_write_bytes(out / "stats.md", md.encode("utf-8"))
    return md
