"""The benchmark's reading aids, made from its own numbers: the R@10 plot, the tuning curves, the method card.

``render_card(stats)`` writes every number it states from the ``stats.json`` dict of one
benchmark run (``yuyin.bench.run_stat_benchmark``); the fixed text says what the paper claims
and what the generated corpus can and cannot test. Nothing here trains or reads data.
"""

from __future__ import annotations

import os
from typing import Any

from .methods import ABLATIONS, EMOTION_RUNS, LABELS
from .stats import fmt_interval

ORACLE, SHUFFLED = EMOTION_RUNS
_GROUP_COLOUR = {"baseline": "#7f7f7f", "yuyin": "#000000", "ablation": "#1f77b4", "emotion": "#ff7f0e"}

PAPER_CLAIMS = """\
Ma et al. (EURASIP JASMP 2023) propose YuYin for background music of e-commerce video ads: a music
branch that fuses an audio and an emotion representation with a weighted fusion module (WFM), and
multi-task training with three contrastive pairs (video-music, video-tag, music-tag) plus product
category prediction. They report that YuYin outperforms the video-music retrieval baselines they
compare with on their Commercial-98K data, and ablations in which removing its parts (the emotion
branch and its fusion, the auxiliary tasks) lowers accuracy. This card does not restate the
paper's numbers; the baselines here (CCA, a CBVMR-style triplet model, plain contrastive) are
this project's."""

CORPUS_LIMITS = """\
* **Can test**: whether the multi-task set-up, the emotion branch and the WFM help retrieval of
  *unseen* tracks over baselines trained with the same tuning budget, on ads whose music follows
  documented rules; how much the emotion input could give at best (the true mood as input) and at
  worst (shuffled); whether a category the model never saw still gets matching music.
* **Cannot test**: real ads or real listeners. The ads are synthetic (drawn products, espeak
  voice-overs), the music is General MIDI renderings of public-domain scores plus a small produced
  library, and the link between an ad and its music is a category -> mood/sound/pace rule
  (`commercial98k/demo/corpus.py`), so "emotion helps" here means "the mood the rule used is
  recoverable", not that emotion matters to people. The music ids are the corpus's true tracks,
  not the pipeline's own identity (which splits one track into several ids under long
  voice-overs); the numbers say how the methods compare on this signal, not on Commercial-98K."""


def _label(m: str) -> str:
    return LABELS.get(m, m).replace("**", "")


def _group(m: str) -> str:
    if m == "yuyin":
        return "yuyin"
    if m in (ORACLE, SHUFFLED):
        return "emotion"
    return "ablation" if m.startswith("yuyin-") else "baseline"


def plot_r10(stats: dict[str, Any], path: str | os.PathLike, setting: str = "main") -> None:
    """Every method's test R@10 (mean, 95 % interval over seeds); ablations and emotion runs annotated
    with their paired-bootstrap difference to full YuYin (``*``: significant)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluate import random_v2m

    s = stats["settings"][setting]
    methods = list(s["summary"])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(methods) + 1.4))
    for i, m in enumerate(methods):
        r = s["summary"][m]["R@10"]
        ax.errorbar(r["mean"], i, xerr=r["half"], fmt="o", capsize=3, color=_GROUP_COLOUR[_group(m)])
        d = s["diffs"].get(m, {}).get("vs_yuyin", {}).get("R@10")
        if d:
            ax.annotate(f"{d['diff']:+.3f}{' *' if d['significant'] else ''}", (r["high"], i),
                        xytext=(6, -3), textcoords="offset points", fontsize=8)
    ax.axvline(random_v2m(s["tracks"], (10,))["R@10"], color="#d62728", ls="--", lw=1, label="random")
    if "yuyin" in s["summary"]:
        ax.axvline(s["summary"]["yuyin"]["R@10"]["mean"], color="#000000", ls=":", lw=1, label="YuYin mean")
    ax.set_yticks(range(len(methods)), [_label(m) for m in methods], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"test R@10 ({s['clips']} clips, {s['tracks']} unseen tracks); mean ± 95 % interval over seeds")
    ax.set_title("Each method's R@10; beside ablations and emotion runs: Δ to YuYin (* significant)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tuning_curves(records: dict[str, dict[str, Any]], path: str | os.PathLike) -> None:
    """Validation R@10 against the step for every setting each method tried (the chosen one bold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    neural = {m: r for m, r in records.items() if m != "cca"}
    if not neural:
        return
    cols = min(4, len(neural))
    rows = (len(neural) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharey=True)
    for ax, (m, rec) in zip(axes.flat, neural.items(), strict=False):
        for run in rec["runs"]:
            chosen = run["settings"] == rec["chosen"]["settings"]
            xs, ys = [p["step"] for p in run["curve"]], [p["R@10"] for p in run["curve"]]
            ax.plot(xs, ys, lw=2 if chosen else 0.7, color="#000000" if chosen else "#9e9e9e")
        ax.axvline(rec["chosen"]["steps"], color="#d62728", lw=0.8, ls=":")
        ax.set_title(_label(m), fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(neural):]:
        ax.set_visible(False)
    fig.supxlabel("step", fontsize=8)
    fig.supylabel("validation R@10", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _diff(d: dict[str, Any]) -> str:
    digits = 1 if d["metric"] == "MedR" else 3
    return f"{d['diff']:+.{digits}f} (95 % interval {d['low']:+.{digits}f} .. {d['high']:+.{digits}f})"


def _sig(d: dict[str, Any]) -> str:
    return "significant" if d["significant"] else "not significant"


def _standing(d: dict[str, Any]) -> str:
    """``significantly ahead`` / ``significantly behind`` / ``not significantly different`` (MedR: lower is ahead)."""
    if not d["significant"]:
        return "not significantly different"
    ahead = d["diff"] < 0 if d["metric"] == "MedR" else d["diff"] > 0
    return "significantly ahead" if ahead else "significantly behind"


def _versus_baseline(s: dict[str, Any], setting_name: str, tuned: bool) -> list[str]:
    best = s.get("best_baseline")
    d = s["diffs"].get("yuyin", {}).get("vs_best")
    if not best or not d:
        return [f"* {setting_name}: YuYin or a baseline is missing, no verdict."]
    y, b = s["summary"]["yuyin"], s["summary"][best]
    return [f"* {setting_name}: against the best {'tuned ' if tuned else ''}baseline ({_label(best)}) YuYin is "
            f"**{_standing(d['R@10'])} at R@10** ({fmt_interval(y['R@10'], 'R@10')} against "
            f"{fmt_interval(b['R@10'], 'R@10')}; difference {_diff(d['R@10'])}) and **{_standing(d['MedR'])} at "
            f"median rank** ({fmt_interval(y['MedR'], 'MedR')} against {fmt_interval(b['MedR'], 'MedR')}; "
            f"difference {_diff(d['MedR'])})."]


def _components(s: dict[str, Any]) -> list[str]:
    lines, carrying, hurting = [], [], []
    for m in ABLATIONS:
        d = s["diffs"].get(m, {}).get("vs_yuyin", {}).get("R@10")
        if not d:
            continue
        if d["significant"]:
            (carrying if d["diff"] < 0 else hurting).append(_label(m))
        lines.append(f"  * {_label(m)}: R@10 {_diff(d)} against full YuYin, {_sig(d)}.")
    if not lines:
        return []
    head = ("* **Components with a significant share** (removing them lowers R@10): " + ", ".join(carrying) + "."
            if carrying else "* **No component carries a significant share**: no ablation is significantly below "
            "full YuYin at R@10.")
    if hurting:
        head += " Removing these *raises* R@10 significantly: " + ", ".join(hurting) + "."
    return [head, *lines]


def _emotion_range(s: dict[str, Any]) -> list[str]:
    summ, diffs = s["summary"], s["diffs"]
    if not all(m in summ for m in (ORACLE, SHUFFLED, "yuyin")):
        return ["* **Emotion range**: the oracle and shuffled emotion runs are not in this run."]
    o, sh, y = (summ[m]["R@10"] for m in (ORACLE, SHUFFLED, "yuyin"))
    span = diffs[ORACLE].get("vs_shuffled", {}).get("R@10")
    lines = [f"* **Emotion range** (R@10): shuffled emotion (no information) {fmt_interval(sh, 'R@10')}, the "
             f"learned emotion head (YuYin) {fmt_interval(y, 'R@10')}, the true mood (oracle) "
             f"{fmt_interval(o, 'R@10')}."]
    if span:
        lines.append(f"  Oracle − shuffled: {_diff(span)}, {_sig(span)}: the most the emotion input can add here.")
        width = span["diff"]
        if span["significant"] and width > 0:
            where = (y["mean"] - sh["mean"]) / width
            lines.append(f"  The learned head recovers {where:.0%} of that range (point estimate).")
        else:
            lines.append("  The range is not distinguishable from zero, so this corpus cannot show an emotion "
                         "effect either way.")
    for m in (ORACLE, SHUFFLED):
        d = diffs[m].get("vs_yuyin", {}).get("R@10")
        if d:
            lines.append(f"  {_label(m)} − YuYin: {_diff(d)}, {_sig(d)}.")
    return lines


def render_card(stats: dict[str, Any]) -> str:
    """The method card in Markdown; every number comes from ``stats`` (a ``stats.json`` dict)."""
    main = stats["settings"]["main"]
    budget = stats.get("budget")
    how = f"every method tuned with budget `{budget}` on the validation split" if budget else \
        "every method with the same fixed options (**not tuned**)"
    lines = ["# Method card: YuYin", "",
             f"Generated by `yuyin benchmark` (`make bench-yuyin`) on {stats.get('date', 'an unknown date')}"
             f"{' on ' + stats['corpus'] if stats.get('corpus') else ''}: shards `{stats.get('shards', '?')}`, "
             f"{stats.get('train_clips', '?')} training clips, {main['clips']} test clips on {main['tracks']} test "
             f"tracks never seen in training; seeds {', '.join(map(str, stats['seeds']))}; {how}. Intervals: 95 % "
             "over seeds; differences: paired bootstrap over test tracks. Plot: `r10.png`.", "",
             "## What the paper claims", "", PAPER_CLAIMS, "",
             "## What this corpus can and cannot test", "", CORPUS_LIMITS, "",
             "## Verdict, from this run's numbers", ""]
    lines += _versus_baseline(main, "**Held-out tracks**", bool(budget))
    lines += _components(main)
    lines += _emotion_range(main)
    if "loco" in stats["settings"]:
        lines += _versus_baseline(stats["settings"]["loco"], "**Leave one category out**", bool(budget))
    lines += ["", "![R@10 per method](r10.png)", ""]
    return "\n".join(lines)
