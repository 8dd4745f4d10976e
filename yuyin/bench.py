"""Multi-seed benchmark with honest statistics: every method and ablation, tuned alike, the same splits and seeds.

With ``budget`` (``small``/``full``; ``yuyin.tuning``) every method first gets the same grid
search on the validation split; without it every method runs the base options for ``base.steps``.
Then ``run_stat_benchmark`` trains each method's recipe once per seed on the train split and keeps
the per-query video->music ranks of the test split (``runs/<setting>/<method>/seed<N>.json``; a
re-run reuses finished runs, so the benchmark can be stopped and continued). Two settings:

* ``main``: train on the train split, rank every test clip against every test track (tracks
  never seen in training: the grouped split shares no track between train and test).
* ``loco`` (leave one category out): for each test category C, train on the train split
  *without* C's clips and rank C's test clips against all test tracks. The model has seen
  neither the music nor any ad of that category; pooled over categories.

The emotion runs (``yuyin.emotion_input``) bound what the emotion branch can give: the true mood
as input (oracle) and the learned vectors shuffled across clips (no information). ``yuyin.stats``
gives mean ± 95 % interval over seeds and a paired, track-grouped bootstrap of each method's
difference to the best baseline (and of each ablation and emotion run to full YuYin);
``yuyin.method_card`` draws the R@10 plot and writes the method card from those numbers.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from commercial98k.storage.files import atomic_write_bytes, atomic_write_json

from .baselines import NEURAL
from .emotion_input import EMOTION_INPUTS, emotion_splits, load_track_moods
from .evaluate import embed_batches, random_v2m, track_gallery, v2m_ranks
from .methods import BASELINES, EMOTION_RUNS, LABELS, LOCO_METHODS, STAT_METHODS
from .runs import TrackedTrainer, batches_of, cached_run, data_key, load_split, memory_loader, recipe_config
from .stats import METRICS, fmt_diff, fmt_interval, higher_is_better, paired_bootstrap, seed_summary
from .train import TrainConfig
from .tuning import (
    BUDGETS,
    cost_lines,
    fit_cca,
    is_searched,
    measure_step_seconds,
    tune_method,
    untuned_recipe,
)


def embed_method(method: str, base: TrainConfig, recipe: dict[str, Any], train: list[dict], test: list[dict],
                 model_dir: Path) -> dict:
    """Train ``method``'s ``recipe`` on ``train`` (seed ``base.seed``) and embed ``test``: video [N,E], music [N,E]."""
    if method == "cca":
        video, music = fit_cca(recipe["settings"], base.seed, train, test)
        return {"video": video, "music": music}
    cfg = recipe_config(method, base, recipe["settings"], recipe["steps"], model_dir)
    trainer = TrackedTrainer(cfg, memory_loader(train, cfg.batch_size, cfg.seed), recipe["schedule_steps"])
    trainer.run()
    emb = embed_batches(trainer.model, batches_of(test, 64), trainer.device, progress=False)
    return {"video": emb["video"], "music": emb["music"]}


def run_setting(base: TrainConfig, out: Path, methods: Iterable[str], recipes: dict[str, dict], seeds: Iterable[int],
                setting: str, train: list[dict], test: list[dict], categories: list[str], inputs: dict[str, Any],
                ) -> dict[str, Any]:
    """Ranks per method and seed for ``setting`` ``main`` or ``loco``; queries in one fixed order.

    ``inputs``: ``moods`` (track -> mood, for the oracle run), ``classes`` (emotion classes), ``data`` (data key).
    """
    methods, seeds = list(methods), list(seeds)
    mids = [s["meta"].get("music_id") for s in test]
    n_tracks = len(set(mids))
    cat_of = [categories[int(s["meta"]["category_id"])] for s in test]
    held = [None] if setting == "main" else sorted(set(cat_of))
    jobs = [(m, s, c) for c in held for s in seeds for m in methods]
    ranks: dict[str, dict[int, list[np.ndarray]]] = {m: {s: [] for s in seeds} for m in methods}
    for method, seed, cat in tqdm(jobs, desc=f"benchmark {setting}", unit="run"):
        cfg = _seeded(base, seed)
        sub = train if cat is None else [x for x in train if categories[int(x["meta"]["category_id"])] != cat]
        name = f"seed{seed}" + (f"-{cat}" if cat else "")

        def compute(method=method, cfg=cfg, sub=sub, name=name) -> dict[str, Any]:
            data = emotion_splits(method, {"train": sub, "test": test}, inputs["moods"], inputs["classes"])
            emb = embed_method(method, cfg, recipes[method], data["train"], data["test"],
                               out / "models" / setting / name)
            gallery, _, owner = track_gallery(np.asarray(emb["music"], np.float32), mids)
            return {"ranks": v2m_ranks(np.asarray(emb["video"], np.float32), gallery, owner).tolist(),
                    "clip_ids": [x["clip_id"] for x in test], "train_clips": len(sub)}

        key = {"method": method, "seed": seed, "setting": setting, "held_out": cat, "recipe": recipes[method],
               "data": inputs["data"], "stage": "final"}
        doc = cached_run(out / "runs" / setting / method / f"{name}.json", key, compute)
        r = np.asarray(doc["ranks"])
        ranks[method][seed].append(r if cat is None else r[np.asarray(cat_of) == cat])
    queries = [i for c in held for i in range(len(test)) if c is None or cat_of[i] == c]
    return {"setting": setting, "held_out": held, "tracks": n_tracks,
            "ranks": {m: [np.concatenate(ranks[m][s]) for s in seeds] for m in methods},
            "groups": [mids[i] for i in queries], "clips": len(queries)}


def _seeded(base: TrainConfig, seed: int) -> TrainConfig:
    return dataclasses.replace(base, seed=seed)


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
                             for k in ("R@10", "MedR")}
        diffs[m] = d
    oracle, shuffled = EMOTION_RUNS
    if oracle in ranks and shuffled in ranks:  # the whole range the emotion input spans
        diffs[oracle]["vs_shuffled"] = {k: paired_bootstrap(ranks[oracle], ranks[shuffled], k, n_boot,
                                                            groups=res["groups"]) for k in ("R@10", "MedR")}
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


def tuning_markdown(tuning: dict[str, dict[str, Any]]) -> str:
    """The chosen recipe of every method: its settings, steps and validation scores."""
    lines = ["**Tuned on the validation split** (each method's grid, one search seed; the step is the best "
             "validation checkpoint's):", "", "| method | settings | steps | val R@10 | val MedR | settings tried |",
             "|---|---|---|---|---|---|"]
    for m, rec in tuning.items():
        c = rec["chosen"]
        settings = ", ".join(f"{k} {v:g}" for k, v in c["settings"].items())
        lines.append(f"| {LABELS.get(m, m)} | {settings} | {c['steps']} | {c['val']['R@10']:.3f} | "
                     f"{c['val']['MedR']:.1f} | {len(rec['runs'])} |")
    return "\n".join(lines) + "\n"


def _recipes(methods: list[str], budget: str | None, base: TrainConfig, splits: dict[str, list[dict]], out: Path,
             inputs: dict[str, Any], say: Callable[[str], None]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Each method's recipe (searched on train/val with ``budget``, else the fixed one) and the tuning records."""
    if not budget:
        return {m: untuned_recipe(m, base) for m in methods}, {}
    records = {}
    for m in tqdm(methods, desc=f"tuning ({budget})", unit="method"):
        data = emotion_splits(m, splits, inputs["moods"], inputs["classes"])
        records[m] = tune_method(m, BUDGETS[budget], base, data["train"], data["val"], out, inputs["data"])
        c = records[m]["chosen"]
        say(f"{m}: chose {c['settings']} at step {c['steps']} (val R@10 {c['val']['R@10']:.3f})")
    return {m: r["chosen"] for m, r in records.items()}, records


def run_stat_benchmark(base: TrainConfig, out_dir: str | os.PathLike, seeds: list[int],
                       methods: tuple[str, ...] = STAT_METHODS, loco_methods: tuple[str, ...] = LOCO_METHODS,
                       split: str = "test", n_boot: int = 2000, corpus: str = "",
                       loco_seeds: list[int] | None = None, budget: str | None = None,
                       track_moods: str | os.PathLike | None = None, estimate_only: bool = False,
                       say: Callable[[str], None] = lambda line: None) -> str:
    """Tune (with ``budget``), run ``main`` (and ``loco`` unless ``loco_methods`` is empty); write
    ``stats.md``/``.json``, ``tuning.json``, the plots and ``method_card.md``; return the Markdown.

    The test split is read only after every method's recipe is chosen. ``say`` gets progress lines
    (the cost estimate first); ``estimate_only`` stops after it.
    """
    from .data import load_index
    from .method_card import plot_r10, plot_tuning_curves, render_card

    bad = [m for m in (*methods, *loco_methods) if m != "cca" and m not in NEURAL and m not in EMOTION_INPUTS]
    if bad:
        raise ValueError(f"unknown method(s) {', '.join(bad)}; choose from cca, {', '.join((*NEURAL, *EMOTION_INPUTS))}")
    if budget is not None and budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose from {', '.join(BUDGETS)}")
    if len(seeds) < 1:
        raise ValueError("give at least one seed (3 or more for intervals)")
    out = Path(out_dir)
    index = load_index(base.shards)
    categories = list(index.get("categories") or [])
    classes = list(index.get("emotion_classes") or [])
    moods = load_track_moods(track_moods) if track_moods else None
    inputs = {"moods": moods, "classes": classes, "data": data_key(base, moods)}
    all_methods = list(dict.fromkeys((*methods, *loco_methods)))
    search = _seeded(base, seeds[0])
    splits = {"train": load_split(base, "train")}
    if budget:
        splits["val"] = load_split(base, "val")
        if not splits["val"]:
            raise ValueError("the tuning search needs a validation split, and split 'val' has no clips")
        loco_runs = len(loco_seeds or seeds) * len(categories) * sum(m != "cca" for m in loco_methods)
        sec = measure_step_seconds(base, splits["train"], out / "models" / "probe")
        for line in cost_lines(all_methods, len(seeds), loco_runs, sec, budget,
                               is_searched(out, BUDGETS[budget], search.seed, inputs["data"])):
            say(line)
    if estimate_only:
        return ""
    recipes, records = _recipes(all_methods, budget, search, splits, out, inputs, say)
    if records:
        atomic_write_json(out / "tuning.json", records)
        plot_tuning_curves(records, out / "tuning_curves.png")
    train, test = splits["train"], load_split(base, split)  # the test split, only now
    if not test:
        raise ValueError(f"split {split!r} has no clips")
    how = (f"tuned with budget `{budget}` on the validation split (`tuning.json`)" if budget else
           f"{base.steps} steps, untuned")
    parts = [f"# YuYin benchmark{f' on {corpus}' if corpus else ''}\n",
             f"Shards `{base.shards}`: {len(train)} training clips, split `{split}`; every method {how}, "
             f"batch {base.batch_size}. Intervals: mean ± 95 % Student-t over seeds. Differences: paired "
             f"bootstrap ({n_boot} resamples of test *tracks*, their clips together), 95 % percentile "
             "interval; `*` = significant (interval excludes 0). MedR: lower is better. Music ids: the "
             "shards' (on the benchmark corpus, the true tracks').\n"]
    if records:
        parts.append(tuning_markdown(records))
    doc: dict[str, Any] = {"seeds": seeds, "loco_seeds": loco_seeds or seeds, "split": split, "n_boot": n_boot,
                           "budget": budget, "corpus": corpus, "shards": str(base.shards), "train_clips": len(train),
                           "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                           "recipes": recipes, "settings": {}}
    settings = [("main", methods, "Held-out tracks", seeds)]
    if loco_methods:
        settings.append(("loco", loco_methods, "Leave one category out (category and tracks unseen)",
                         loco_seeds or seeds))
    for setting, ms, title, ss in settings:
        res = run_setting(base, out, ms, recipes, ss, setting, train, test, categories, inputs)
        stats = summarise(res, n_boot)
        parts += [table_markdown(res, stats, ss, title), verdict(stats)]
        doc["settings"][setting] = {"clips": res["clips"], "tracks": res["tracks"], "held_out": res["held_out"],
                                    **stats}
    md = "\n".join(parts)
    atomic_write_json(out / "stats.json", doc)
    atomic_write_bytes(out / "stats.md", md.encode("utf-8"))
    plot_r10(doc, out / "r10.png")
    atomic_write_bytes(out / "method_card.md", render_card(doc).encode("utf-8"))
    return md
