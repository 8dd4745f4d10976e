"""The same tuning budget for every method: a small grid search chosen on the validation split only.

For each method, each setting of the grid (``BUDGETS``: learning rate x temperature, or margin
for the triplet loss, x weight decay; CCA: components x PCA size) is trained once, on the search
seed, for ``max_steps`` steps on one warm-up + cosine schedule, scoring the validation split every
``eval_every`` steps (v2m R@10; ties: the lower mean rank) and stopping after ``patience``
evaluations without a better score. The chosen recipe is the setting and step with the best
validation score; the benchmark then trains it once per seed to that step, on the same schedule
(early stopping at the chosen checkpoint's step). The test split is not an input here: it is
loaded only after every choice is made.

Each search run is cached in ``<out>/tuning/<method>/<setting>.json`` (validation curve,
training loss, best step) by a key of its method, setting, seed and data, so a stopped search
resumes; ``<out>/tuning.json`` records every method's choice and curves.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .baselines import NEURAL, CCABaseline, _pooled
from .config import TrainConfig
from .runs import (
    TrackedTrainer,
    batches_of,
    cached_doc,
    cached_run,
    is_neural,
    memory_loader,
    model_method,
    recipe_config,
    selection_score,
    val_scores,
)


@dataclass(frozen=True)
class Budget:
    """A search grid and the length of each run in it."""

    name: str
    lr: tuple[float, ...]
    temperature: tuple[float, ...]  # InfoNCE methods (the learned temperature's starting value)
    margin: tuple[float, ...]  # triplet methods (CBVMR)
    weight_decay: tuple[float, ...]
    max_steps: int
    eval_every: int
    patience: int  # evaluations without improvement before a search run stops (0: never)
    cca: tuple[tuple[int, int], ...]  # (CCA components, PCA size per side)


BUDGETS: dict[str, Budget] = {
    # 2 x 2 x 2 settings around the untuned defaults (lr 1e-3, temperature 0.07, wd 0.01), 600 steps
    # (about 12 passes over 1,541 clips at batch 32, twice the untuned 300): README gives the cost.
    "small": Budget("small", (5e-4, 2e-3), (0.05, 0.1), (0.1, 0.3), (0.01, 0.1), 600, 50, 5,
                    ((8, 32), (16, 64), (32, 128))),
    "full": Budget("full", (2.5e-4, 5e-4, 1e-3, 2e-3), (0.03, 0.07, 0.15), (0.1, 0.2, 0.4), (0.0, 0.01, 0.1),
                   1500, 50, 8, ((8, 32), (16, 64), (32, 64), (16, 128), (32, 128))),
    # checks the machinery in seconds; its numbers mean nothing
    "smoke": Budget("smoke", (1e-3, 3e-3), (0.07,), (0.2,), (0.01,), 12, 4, 0, ((4, 8), (8, 16))),
}


def settings_grid(method: str, budget: Budget) -> list[dict[str, Any]]:
    """Every setting the search tries for ``method``, in a fixed order."""
    if method == "cca":
        return [{"n_components": c, "pca_dim": p} for c, p in budget.cca]
    if not is_neural(method):
        raise ValueError(f"unknown method {method!r}")
    second = ("margin", budget.margin) if NEURAL[model_method(method)][2] == "triplet" else \
        ("temperature", budget.temperature)
    return [{"lr": lr, second[0]: x, "weight_decay": wd}
            for lr, x, wd in itertools.product(budget.lr, second[1], budget.weight_decay)]


def setting_name(settings: dict[str, Any]) -> str:
    """A file name for a setting: ``lr0.001-temperature0.07-weight_decay0.01``."""
    return "-".join(f"{k}{v:g}" for k, v in settings.items())


def fit_cca(settings: dict[str, Any], seed: int, train: list[dict], other: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """CCA with ``settings`` fitted on ``train``; video and music embeddings of ``other``."""
    tr, ot = _pooled(batches_of(train, 256)), _pooled(batches_of(other, 256))
    model = CCABaseline(settings["n_components"], settings["pca_dim"], seed=seed).fit(tr["video"], tr["music"])
    return model.embed(ot["video"], ot["music"])


def search_run(method: str, settings: dict[str, Any], budget: Budget, base: TrainConfig, train: list[dict],
               val: list[dict], model_dir: Path) -> dict[str, Any]:
    """Train one setting on the search seed, scoring ``val``: the validation curve and its best step."""
    ids = [s["meta"].get("music_id") for s in val]
    if method == "cca":
        video, music = fit_cca(settings, base.seed, train, val)
        row = {"step": 0, **val_scores(video, music, ids)}
        return {"settings": settings, "curve": [row], "best": row, "losses": []}
    cfg = dataclasses.replace(recipe_config(method, base, settings, budget.max_steps, model_dir),
                              eval_every=budget.eval_every)
    trainer = TrackedTrainer(cfg, memory_loader(train, cfg.batch_size, cfg.seed), budget.max_steps, val,
                             budget.patience)
    trainer.run()
    return {"settings": settings, "curve": trainer.curve, "best": trainer.best, "losses": trainer.losses,
            "stopped_at": trainer.step}


def search_key(method: str, settings: dict[str, Any], budget: Budget, seed: int, data: dict[str, Any]) -> dict:
    return {"method": method, "settings": settings, "seed": seed, "budget": dataclasses.asdict(budget)
            if method != "cca" else "cca", "data": data, "stage": "search"}


def choose(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose best validation score is highest (ties: the earlier setting in grid order)."""
    best = max(runs, key=lambda r: selection_score(r["best"]))  # max keeps the first of equals
    return {"settings": best["settings"], "steps": int(best["best"]["step"]), "val": best["best"]}


def tune_method(method: str, budget: Budget, base: TrainConfig, train: list[dict], val: list[dict], out: Path,
                data: dict[str, Any]) -> dict[str, Any]:
    """Search ``method``'s grid (cached per setting) and return its record: the choice and every curve."""
    runs = []
    for settings in settings_grid(method, budget):
        name = setting_name(settings)
        key = search_key(method, settings, budget, base.seed, data)
        runs.append(cached_run(out / "tuning" / method / f"{name}.json", key,
                               lambda s=settings, n=name: search_run(method, s, budget, base, train, val,
                                                                     out / "models" / "tuning" / method / n)))
    chosen = choose(runs)
    chosen["schedule_steps"] = budget.max_steps if method != "cca" else 0
    return {"method": method, "budget": budget.name, "search_seed": base.seed, "chosen": chosen,
            "runs": [{k: r.get(k) for k in ("settings", "best", "curve", "losses", "stopped_at", "seconds")}
                     for r in runs]}


def untuned_recipe(method: str, base: TrainConfig) -> dict[str, Any]:
    """The fixed recipe without a search: the base options, ``base.steps`` steps (CCA: its defaults)."""
    if method == "cca":
        return {"settings": {"n_components": 16, "pca_dim": 64}, "steps": 0, "schedule_steps": 0}
    return {"settings": {}, "steps": base.steps, "schedule_steps": base.steps}


# -- cost ----------------------------------------------------------------------------------------------

def measure_step_seconds(base: TrainConfig, train: list[dict], model_dir: Path, steps: int = 8) -> float:
    """Seconds per training step of full YuYin on these clips here and now (after 2 warm-up steps)."""
    cfg = recipe_config("yuyin", base, {}, steps + 2, model_dir)
    loader = memory_loader(train, cfg.batch_size, 0)
    trainer = TrackedTrainer(cfg, loader, steps + 2)
    batches = itertools.chain.from_iterable(loader(epoch) for epoch in itertools.count())
    for _ in range(2):
        trainer.train_step(next(batches))
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(next(batches))
    return (time.perf_counter() - start) / steps


def budget_steps(budget: Budget, methods: list[str], seeds: int, loco_runs: int,
                 searched: Callable[[str, dict], bool] = lambda m, s: False) -> dict[str, int]:
    """Upper bounds on the training steps left: the search (runs not cached), the final runs, leave-one-out runs."""
    neural = [m for m in methods if is_neural(m)]
    search = sum(budget.max_steps for m in neural for s in settings_grid(m, budget) if not searched(m, s))
    return {"search": search, "final": len(neural) * seeds * budget.max_steps,
            "loco": loco_runs * budget.max_steps}


def cost_lines(methods: list[str], seeds: int, loco_runs: int, sec_per_step: float, chosen: str,
               searched: Callable[[str, dict], bool] = lambda m, s: False) -> list[str]:
    """The estimated time of every budget (upper bounds: early stopping only shortens it)."""
    lines = [f"measured {sec_per_step * 1000:.0f} ms per YuYin training step here (CBVMR's is about a third)"]
    for name in ("small", "full"):
        b = BUDGETS[name]
        n = budget_steps(b, methods, seeds, loco_runs, searched if name == chosen else lambda m, s: False)
        total = sum(n.values())
        hours = total * sec_per_step / 3600
        grid = len(settings_grid("yuyin", b))
        lines.append(f"budget {name}{' (this run)' if name == chosen else ''}: {grid} settings per method x "
                     f"{b.max_steps} steps; at most {total:,} steps left (search {n['search']:,}, final "
                     f"{n['final']:,}, leave-one-category-out {n['loco']:,}): {hours:.1f} h in one process, "
                     f"{hours / 2:.1f} h over two (make bench-yuyin)")
    return lines


def is_searched(out: Path, budget: Budget, seed: int, data: dict[str, Any]) -> Callable[[str, dict], bool]:
    """Whether a search run is already cached (for the cost estimate)."""
    def done(method: str, settings: dict[str, Any]) -> bool:
        path = out / "tuning" / method / f"{setting_name(settings)}.json"
        return cached_doc(path, search_key(method, settings, budget, seed, data)) is not None
    return done
