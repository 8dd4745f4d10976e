"""The demo's YuYin steps, in this process: train, benchmark (baselines), evaluate, recommend.

Each calls the function ``yuyin <command>`` calls, with the values the demo's flags give
(``yuyin.train.load_config`` fills the rest from ``TrainConfig``'s defaults, as the command does).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from commercial98k.storage.files import atomic_write_bytes, atomic_write_json

from .config import DemoConfig
from .runner import StepFailed


def _say(command: str) -> None:
    print(f"  > {command} (in-process)", flush=True)


def batch_size(cfg: DemoConfig) -> int:
    """``cfg.batch_size``, or fewer when the training split is smaller (a full batch is needed)."""
    index = json.loads(cfg.path("shards", "index.json").read_text(encoding="utf-8"))
    n_train = int(index["splits"].get("train", {}).get("samples", 0))
    if n_train < 2:
        raise StepFailed(f"the training split has {n_train} clip(s); generate more videos (--videos-per-category)")
    return min(cfg.batch_size, n_train)


def _train_config(cfg: DemoConfig, **extra):
    """``TrainConfig`` of ``--shards shards --steps N --batch-size B --device D --seed S`` (+ ``extra``)."""
    from yuyin.train import load_config

    return load_config(None, shards=str(cfg.path("shards")), weights={}, model={}, steps=cfg.train_steps,
                       batch_size=batch_size(cfg), device=cfg.device, seed=cfg.seed, **extra)


def _needs_split(cfg: DemoConfig, split: str) -> dict:
    """The shards' index, after checking that ``split`` has samples."""
    from yuyin.data import load_index

    index = load_index(cfg.path("shards"))
    if not index["splits"].get(split, {}).get("samples"):
        raise StepFailed(f"{cfg.path('shards')}: split {split!r} is empty; change --split-fractions")
    return index


def run_train(cfg: DemoConfig) -> None:
    """``yuyin train --shards shards --steps N --batch-size B --checkpoint-dir runs/yuyin --device D --seed S``."""
    from commercial98k.export.report import dropped_lines, split_table
    from yuyin.train import train

    _say("yuyin train")
    config = _train_config(cfg, checkpoint_dir=str(cfg.path("runs", "yuyin")))
    index = _needs_split(cfg, "train")
    for line in split_table(index) + dropped_lines(index):
        print(line)
    summary = train(config, resume=None)
    print(f"trained {summary['steps']} steps ({summary['samples_per_s']:.0f} samples/s): "
          f"loss {summary['last'].get('loss', float('nan')):.4f}; checkpoint {summary['checkpoint']}")


def run_benchmark(cfg: DemoConfig) -> None:
    """``yuyin benchmark --shards shards --steps N --batch-size B --out runs/benchmark --methods M
    --device D --seed S``."""
    from yuyin.baselines import run_benchmark as benchmark

    _say("yuyin benchmark")
    out = cfg.path("runs", "benchmark")
    config = _train_config(cfg)
    for split in ("train", "test"):
        _needs_split(cfg, split)
    benchmark(config, str(out), tuple(cfg.baselines), "test")
    print((out / "benchmark.md").read_text(encoding="utf-8"))


def run_evaluate(cfg: DemoConfig) -> None:
    """``yuyin evaluate --checkpoint runs/yuyin --shards shards --split test --out eval/report``, then the
    table of YuYin against the baselines (``eval/summary.md``)."""
    from yuyin.evaluate import evaluate_checkpoint, report_markdown, write_report
    from yuyin.stats import METRICS, bootstrap_intervals

    _say("yuyin evaluate")
    _needs_split(cfg, "test")
    report = evaluate_checkpoint(str(cfg.path("runs", "yuyin")), cfg.path("shards"), "test", 64, cfg.device)
    q = report.get("queries")
    if q:  # --bootstrap 2000 (the command's default)
        report["v2m_intervals"] = bootstrap_intervals(q["v2m_rank"], METRICS, 2000, groups=q["music_id"])
    write_report(report, str(cfg.path("eval", "report")))
    print(report_markdown(report))
    report = json.loads(cfg.path("eval", "report.json").read_text(encoding="utf-8"))
    baselines = json.loads(cfg.path("runs", "benchmark", "benchmark.json").read_text(encoding="utf-8"))
    table = recall_table(report, baselines)
    atomic_write_bytes(cfg.path("eval", "summary.md"), table.encode("utf-8"))
    print("\n" + table)


def recall_table(report: dict, baselines: list[dict], ks: tuple[int, ...] = (1, 5, 10, 25)) -> str:
    """Video->music Recall@K and median rank of YuYin, the baselines and the random ranker."""
    rows = [("YuYin", report["v2m"])] + [(b["method"], b["v2m"]) for b in baselines]
    rows.append(("random (expected)", report["random"]["v2m"]))
    head = "| method | " + " | ".join(f"R@{k}" for k in ks) + " | MedR |"
    lines = [f"Held-out split `{report.get('split', 'test')}`: {report['clips']} clips, "
             f"{report['tracks']} tracks (video->music).", "", head, "|---" * (len(ks) + 2) + "|"]
    for name, m in rows:
        cells = [f"{m.get(f'R@{k}', float('nan')):.3f}" for k in ks] + [f"{m.get('median_rank', float('nan')):.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def split_clip_ids(cfg: DemoConfig, split: str) -> set[str]:
    """Clip ids in the shards of ``split``."""
    ids: set[str] = set()
    for tar_path in sorted(cfg.path("shards", split).glob(f"{split}-*.tar")):
        with tarfile.open(tar_path) as tar:
            ids |= {m.name.split(".", 1)[0] for m in tar.getmembers() if m.isfile()}
    return ids


def held_out_clip(cfg: DemoConfig) -> dict:
    """A test-split clip's manifest row: an ad (and a track) the model never trained on."""
    from commercial98k.manifest.io import read_manifest

    test_ids = split_clip_ids(cfg, "test")
    for r in read_manifest(cfg.path("manifests", "c98k.parquet"), "clips").to_pylist():
        if r["clip_id"] in test_ids and r.get("video_path"):
            return r
    raise StepFailed("no test-split clip found in the shards")


def run_recommend(cfg: DemoConfig) -> None:
    """``yuyin recommend --video V --checkpoint runs/yuyin --library shards --top-k 1000 --json`` for a
    held-out ad; writes where its own track ranks (``recommend/recommendation.json``)."""
    from yuyin.recommend import recommend_video

    _say("yuyin recommend")
    clip = held_out_clip(cfg)
    video = cfg.path("data", clip["video_path"])
    if not (cfg.path("shards") / "index.json").is_file():
        raise StepFailed(f"no shards at {cfg.path('shards')} (no index.json)")
    result = recommend_video(str(video), str(cfg.path("runs", "yuyin")), str(cfg.path("shards")), 1000, cfg.device)
    doc = json.loads(json.dumps(result, ensure_ascii=False))  # what --json prints
    truth = clip.get("music_id")
    ranked = doc.get("results", [])
    own = next((r["rank"] for r in ranked if r.get("music_id") == truth), None)
    doc["results"] = ranked[:5]
    atomic_write_json(cfg.path("recommend", "recommendation.json"),
                      {"video": str(Path(video)), "category": clip.get("category"), "true_music_id": truth,
                       "true_music_rank": own, "library_tracks": len(ranked), "result": doc})
    print(f"  {clip.get('title')!r} ({clip.get('category')}): its own track {truth} ranks "
          f"{own if own else '-'} of {len(ranked)}; top 5:")
    for r in doc["results"]:
        mark = "  <- the ad's own track" if r.get("music_id") == truth else ""
        title = (r.get("titles") or [""])[0]
        print(f"  {r['rank']:>2}. {r['music_id']}  score {r['score']:.3f}  {r.get('category')}, "
              f"{r.get('emotion')}  e.g. {title!r}{mark}")
