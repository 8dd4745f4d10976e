"""``yuyin benchmark --seeds``: every method over seeds, intervals, significance, leave-one-category-out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from yuyin_fixtures import synthetic_shards

from yuyin.cli import main

SMALL = ["--model-opt", "hidden=32", "--model-opt", "embed_dim=16", "--model-opt", "heads=2"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return synthetic_shards(tmp_path_factory.mktemp("bench"), n_clips=160, samples_per_shard=40, seed=5)


def _bench(shards: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["benchmark", "--shards", str(shards), "--seeds", "0,1", "--steps", "3",
                                     "--batch-size", "8", "--bootstrap", "200", "--out", str(out), *SMALL, *extra],
                              catch_exceptions=False)


def test_seeded_benchmark_table_and_loco(shards, tmp_path):
    out = tmp_path / "b"
    r = _bench(shards, out, "--methods", "cca,contrastive,yuyin,yuyin-no-category",
               "--loco-methods", "contrastive,yuyin", "--loco-seeds", "1")
    assert r.exit_code == 0, r.output
    md = (out / "stats.md").read_text()
    assert "Held-out tracks" in md and "Leave one category out" in md and "random (expected)" in md
    assert "YuYin vs the best baseline" in md and " ± " in md
    doc = json.loads((out / "stats.json").read_text())
    main_ = doc["settings"]["main"]
    assert main_["best_baseline"] in ("cca", "contrastive")
    assert set(main_["summary"]) == {"cca", "contrastive", "yuyin", "yuyin-no-category"}
    r1 = main_["summary"]["yuyin"]["R@1"]
    assert len(r1["per_seed"]) == 2 and r1["low"] <= r1["mean"] <= r1["high"]
    vs = main_["diffs"]["yuyin"]["vs_best"]["R@10"]
    assert vs["low"] <= vs["diff"] <= vs["high"] and isinstance(vs["significant"], bool)
    assert "vs_yuyin" in main_["diffs"]["yuyin-no-category"]
    # YuYin against each baseline: the best one's numbers are the same test, the other is named too
    per = main_["diffs"]["yuyin"]["vs_baselines"]
    assert set(per) == {"cca", "contrastive"} and per[main_["best_baseline"]]["R@10"] == vs
    other = ({"cca", "contrastive"} - {main_["best_baseline"]}).pop()
    assert f"YuYin vs {'CCA' if other == 'cca' else 'contrastive (video-music InfoNCE)'}: R@10" in md
    loco = doc["settings"]["loco"]
    assert len(loco["held_out"]) >= 2 and loco["clips"] == main_["clips"]  # every test clip, once
    runs = sorted((out / "runs" / "loco" / "yuyin").glob("*.json"))
    assert len(runs) == len(loco["held_out"]) and all("seed1-" in p.name for p in runs)  # --loco-seeds 1
    assert doc["loco_seeds"] == [1] and len(loco["summary"]["yuyin"]["R@1"]["per_seed"]) == 1
    full = json.loads((out / "runs" / "main" / "yuyin" / "seed0.json").read_text())["train_clips"]
    assert all(json.loads(p.read_text())["train_clips"] < full for p in runs)  # the category was left out

    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")}
    r = _bench(shards, out, "--methods", "cca,contrastive,yuyin,yuyin-no-category",
               "--loco-methods", "contrastive,yuyin", "--loco-seeds", "1")
    assert r.exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")} == stamp  # finished runs reused


def test_bad_seed_and_method_are_one_line_errors(shards, tmp_path):
    r = _bench(shards, tmp_path / "x", "--seeds", "a,b")
    assert r.exit_code == 2 and "--seeds" in r.output
    r = _bench(shards, tmp_path / "y", "--methods", "svm", "--loco-methods", "none")
    assert r.exit_code == 1 and "unknown method" in r.output and "Traceback" not in r.output


def test_evaluate_reports_bootstrap_intervals(shards, tmp_path):
    ckpt = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--shards", str(shards), "--steps", "2", "--batch-size", "8",
                                  "--checkpoint-dir", str(ckpt), *SMALL], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(ckpt), "--shards", str(shards),
                                  "--bootstrap", "200", "--out", str(tmp_path / "ev")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "95 % bootstrap interval over test tracks" in r.output
    doc = json.loads((tmp_path / "ev.json").read_text())
    iv = doc["v2m_intervals"]["R@10"]
    assert iv["low"] <= iv["value"] == doc["v2m"]["R@10"] <= iv["high"]
    assert len(doc["queries"]["v2m_rank"]) == doc["clips"]


# -- the tuned benchmark: search on validation only, cache, emotion inputs, plot and card -----------------

TUNED = ["cca", "contrastive", "yuyin", "yuyin-oracle-emotion", "yuyin-shuffled-emotion"]
MOODS = ("energetic", "happy", "tender", "calm", "nostalgic")


class SplitReadError(AssertionError):
    pass


class Exploding(list):
    """A split that fails the moment anything reads it."""

    def _boom(self, *a, **k):
        raise SplitReadError("the test split was read")

    __len__ = __iter__ = __getitem__ = __bool__ = _boom


def _moods(shards: Path) -> dict[str, str]:
    from yuyin.data import make_dataset

    ids = sorted({s["meta"]["music_id"] for sp in ("train", "val", "test") for s in make_dataset(shards, sp)})
    return {m: MOODS[i % len(MOODS)] for i, m in enumerate(ids)}


def _tuned_cli(shards: Path, out: Path, moods: Path):
    return CliRunner().invoke(main, ["benchmark", "--shards", str(shards), "--seeds", "0,1", "--batch-size", "8",
                                     "--bootstrap", "200", "--out", str(out), "--budget", "smoke",
                                     "--track-moods", str(moods), "--methods", ",".join(TUNED),
                                     "--loco-methods", "none", *SMALL], catch_exceptions=False)


@pytest.fixture(scope="module")
def tuned(shards, tmp_path_factory):
    """A smoke-budget run whose test split explodes when read, then the same run with the real test split."""
    from yuyin import bench
    from yuyin.config import load_config

    out = tmp_path_factory.mktemp("tuned") / "out"
    moods = out.parent / "moods.json"
    moods.write_text(json.dumps(_moods(shards)))
    real = bench.load_split
    mp = pytest.MonkeyPatch()
    mp.setattr(bench, "load_split", lambda cfg, split: Exploding() if split == "test" else real(cfg, split))
    cfg = load_config(None, shards=str(shards), batch_size=8, model={"hidden": 32, "embed_dim": 16, "heads": 2})
    with pytest.raises(SplitReadError):
        bench.run_stat_benchmark(cfg, out, [0, 1], tuple(TUNED), (), n_boot=200, budget="smoke", track_moods=moods)
    mp.undo()
    poisoned_choice = json.loads((out / "tuning.json").read_text())
    r = _tuned_cli(shards, out, moods)
    assert r.exit_code == 0, r.output
    return out, poisoned_choice, moods


def test_search_chooses_on_validation_without_reading_test(tuned):
    out, poisoned_choice, _ = tuned
    assert set(poisoned_choice) == set(TUNED)  # every choice was made before the test split was touched
    for m, rec in poisoned_choice.items():
        scores = [(run["best"]["R@10"], -run["best"]["MeanR"]) for run in rec["runs"]]
        best = rec["runs"][scores.index(max(scores))]
        assert rec["chosen"]["settings"] == best["settings"] and rec["chosen"]["steps"] == best["best"]["step"]
        if m != "cca":
            assert len(rec["runs"]) == 2 and all(p["step"] % 4 == 0 for run in rec["runs"] for p in run["curve"])
    doc = json.loads((out / "stats.json").read_text())
    assert {m: doc["recipes"][m] for m in TUNED} == {m: r["chosen"] for m, r in poisoned_choice.items()}


def test_choose_takes_the_best_validation_score_and_its_step():
    from yuyin.tuning import choose

    def run(name, curve):
        rows = [{"step": s, "R@10": r, "R@1": 0.0, "MedR": 1.0, "MeanR": mr} for s, r, mr in curve]
        return {"settings": {"lr": name}, "best": max(rows, key=lambda x: (x["R@10"], -x["MeanR"])), "curve": rows}

    runs = [run(1, [(4, 0.5, 3.0), (8, 0.7, 2.5)]), run(2, [(4, 0.7, 2.0), (8, 0.6, 2.0)]), run(3, [(4, 0.7, 2.0)])]
    assert choose(runs) == {"settings": {"lr": 2}, "steps": 4, "val": runs[1]["best"]}  # tie on R@10: mean rank


def test_tuned_run_writes_curves_plot_and_card(tuned):
    out, _, _ = tuned
    for name in ("r10.png", "tuning_curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "stats.json").read_text())
    main_ = doc["settings"]["main"]
    assert doc["budget"] == "smoke" and set(main_["summary"]) == set(TUNED)
    assert "vs_shuffled" in main_["diffs"]["yuyin-oracle-emotion"]
    assert set(main_["diffs"]["yuyin-shuffled-emotion"]["vs_yuyin"]) == {"R@10", "MedR"}
    card = (out / "method_card.md").read_text()
    assert "What the paper claims" in card and "Emotion range" in card and doc["date"] in card
    md = (out / "stats.md").read_text()
    assert "Tuned on the validation split" in md and "YuYin, oracle emotion (true mood)" in md


def test_rerun_computes_nothing(tuned, monkeypatch):
    from yuyin import bench, tuning

    out, _, moods = tuned

    def refuse(*a, **k):
        raise AssertionError("a cached run was computed again")

    monkeypatch.setattr(tuning, "search_run", refuse)
    monkeypatch.setattr(bench, "embed_method", refuse)
    before = (out / "stats.json").read_text()
    r = _tuned_cli(Path(json.loads(before)["shards"]), out, moods)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "stats.json").read_text())["settings"] == json.loads(before)["settings"]


def test_oracle_emotion_is_the_mood_in_the_head_layout(shards):
    from commercial98k.label.gems import GEMS9
    from commercial98k.models.emotion_head import GEMS_VA
    from yuyin.config import load_config
    from yuyin.emotion_input import emotion_splits, mood_vector
    from yuyin.runs import load_split

    classes = json.loads((shards / "index.json").read_text())["emotion_classes"]
    assert classes == list(GEMS9)
    calm = mood_vector("calm", classes)
    assert calm.shape == (11,) and calm[2 + GEMS9.index("calmness")] == 1.0 and calm[2:].sum() == 1.0
    assert tuple(calm[:2].round(6)) == GEMS_VA["calmness"]
    energetic = mood_vector("energetic", classes)
    assert energetic[2 + GEMS9.index("power")] == energetic[2 + GEMS9.index("joyful_activation")] == 0.5
    assert abs(energetic[0] - (GEMS_VA["power"][0] + GEMS_VA["joyful_activation"][0]) / 2) < 1e-6

    moods = _moods(shards)
    val = load_split(load_config(None, shards=str(shards)), "val")
    before = [s["emotion"].copy() for s in val]
    oracle = emotion_splits("yuyin-oracle-emotion", {"val": val}, moods, classes)["val"]
    for s, o in zip(val, oracle, strict=True):
        assert (o["emotion"] == mood_vector(moods[s["meta"]["music_id"]], classes)).all()
        assert o["clip_id"] == s["clip_id"] and o["frames"] is s["frames"]
    shuffled = emotion_splits("yuyin-shuffled-emotion", {"val": val}, None, classes)["val"]
    key = lambda v: tuple(np.round(v, 6))  # noqa: E731
    assert sorted(map(key, (s["emotion"] for s in shuffled))) == sorted(map(key, before))  # a permutation
    assert any((a["emotion"] != b).any() for a, b in zip(shuffled, before, strict=True))
    assert all((s["emotion"] == b).all() for s, b in zip(val, before, strict=True))  # originals untouched


def test_track_moods_from_the_corpus_and_missing_ones(tmp_path, shards):
    from commercial98k.demo.truth import true_music_id
    from yuyin.emotion_input import EmotionInputError, load_track_moods, oracle_emotion

    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps({"videos": [{"file": "a-000.mp4", "track_id": "m21-x", "track_mood": "calm"}]}))
    assert load_track_moods(corpus) == {true_music_id("m21-x"): "calm"}
    sample = {"clip_id": "c1", "meta": {"music_id": "t-unknown"}, "emotion": np.zeros(11, np.float32)}
    with pytest.raises(EmotionInputError, match="c1.*t-unknown"):
        oracle_emotion([sample], {"t-other": "calm"}, ["calmness"])
    r = CliRunner().invoke(main, ["benchmark", "--shards", str(shards), "--seeds", "0", "--batch-size", "8",
                                  "--out", str(tmp_path / "o"), "--budget", "smoke", "--methods",
                                  "yuyin-oracle-emotion", "--loco-methods", "none", *SMALL])
    assert r.exit_code == 1 and "--track-moods" in r.output and "Traceback" not in r.output


def test_card_renders_from_a_stats_dict(tmp_path):
    from yuyin.bench import summarise
    from yuyin.method_card import plot_r10, render_card

    rng = np.random.default_rng(0)
    n, groups = 120, [f"t{i % 40}" for i in range(120)]
    good, bad = [np.ones(n, int) + rng.integers(0, 3, n) for _ in range(3)], [rng.integers(1, 41, n) for _ in range(3)]
    ranks = {"contrastive": bad, "yuyin": good, "yuyin-no-wfm": bad, "yuyin-no-emotion": good,
             "yuyin-oracle-emotion": good, "yuyin-shuffled-emotion": bad}
    stats = {"seeds": [0, 1, 2], "budget": "small", "corpus": "a test corpus", "date": "2026-01-02 03:04 UTC",
             "settings": {"main": {"clips": n, "tracks": 40, **summarise({"ranks": ranks, "groups": groups}, 300)}}}
    card = render_card(stats)
    assert "a test corpus" in card and "2026-01-02 03:04 UTC" in card and "budget `small`" in card
    assert "YuYin is **significantly ahead at R@10**" in card and "**significantly ahead at median rank**" in card
    assert "significant share** (removing them lowers R@10): YuYin without WFM (concatenation)." in card
    y = stats["settings"]["main"]["summary"]["yuyin"]["R@10"]
    assert f"{y['mean']:.3f} ± {y['half']:.3f}" in card and "The learned head recovers" in card
    plot_r10(stats, tmp_path / "r10.png")
    assert (tmp_path / "r10.png").read_bytes()[:4] == b"\x89PNG"
