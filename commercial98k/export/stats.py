"""Summary statistics and an HTML report (embedded PNG plots) for a videos or clips manifest.

Works on partial manifests: a column group that a stage has not filled yet (all null) is
reported as missing instead of plotted.
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
import textwrap
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from commercial98k.export.filters import training_category
from commercial98k.manifest.corrections import Correction, latest, load_corrections
from commercial98k.manifest.io import read_manifest
from commercial98k.manifest.schema import guess_kind
from commercial98k.manifest.status import stopped_at
from commercial98k.storage.files import atomic_write_bytes

_NORMALISE = [  # (pattern, replacement), applied in order: what varies between items of one cause
    (re.compile(r"'[^']*'|\"[^\"]*\""), "'<…>'"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), "<url>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[\w.~-]*/)+[\w.~-]+"), "<path>"),
    (re.compile(r"^(ERROR: \[[^\]]+\]) [^:\s]+:"), r"\1 <id>:"),  # yt-dlp: ERROR: [extractor] <video id>: ...
    (re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{6,}\b"), "<id>"),  # ids and hashes: letters and digits
    (re.compile(r"\b\d+\.\d+\b|\b\d{4,}\b"), "<n>"),  # measurements; 3-digit codes (404) stay
]


def _error_cause(error: str | None, max_len: int = 120) -> str:
    """The cause of an error line with ids, paths, URLs, quoted values and numbers normalised out.

    "ERROR: [generic] x: ... 404" and "ERROR: [generic] y: ... 404" are one cause.
    """
    if not error:
        return "(no error text)"
    line = " ".join(error.split())
    for pattern, repl in _NORMALISE:
        line = pattern.sub(repl, line)
    return (line[:max_len - 1] + "…" if len(line) > max_len else line) or "(no error text)"


#: The columns the summary and the plots read. Rows are built from these alone: a large
#: manifest's fingerprints, shot lists and feature paths never become Python objects here.
STATS_COLUMNS = ("video_id", "clip_id", "category", "status", "error", "tags", "platform_tags", "duration_s",
                 "clip_start_s", "clip_end_s", "has_music", "music_id", "valence", "arousal", "emotion",
                 "category_confidence", "split", "fetch_status", "split_status", "label_status")
STATS_COLUMNS += ("predicted_category",)  # predicted vs crawl category
DISAGREE_BELOW = 0.2  # P(crawl category) under which a differing prediction is a strong disagreement


def _rows(table: pa.Table) -> list[dict]:
    return table.select([c for c in STATS_COLUMNS if c in table.column_names]).to_pylist()


def _durations(rows: list[dict], kind: str) -> list[float]:
    out = []
    for r in rows:
        if kind == "clips" and r.get("clip_start_s") is not None and r.get("clip_end_s") is not None:
            out.append(float(r["clip_end_s"]) - float(r["clip_start_s"]))
        elif kind == "videos" and r.get("duration_s") is not None:
            out.append(float(r["duration_s"]))
    return out


def _describe(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {"count": int(a.size), "mean": float(a.mean()), "min": float(a.min()), "p10": float(np.percentile(a, 10)),
            "median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "max": float(a.max()),
            "total_hours": float(a.sum() / 3600)}


def summarize(table: pa.Table, top_n: int = 20, corrections: list[Correction] | None = None) -> dict[str, Any]:
    """Counts and distributions of a manifest table (clips or videos kind), with its users' corrections."""
    kind = guess_kind(table.schema)
    rows = _rows(table)
    per_cat: dict[str, Counter] = {}
    for r in rows:
        per_cat.setdefault(r.get("category") or "(none)", Counter())[r.get("status") or "(none)"] += 1
    failures = Counter(_error_cause(r.get("error")) for r in rows if r.get("status") not in ("ok", None))
    tag_column = "tags" if kind == "clips" and any(r.get("tags") for r in rows) else "platform_tags"
    tags = Counter(t for r in rows for t in (r.get(tag_column) or []))
    summary: dict[str, Any] = {
        "kind": kind, "rows": len(rows),
        "status": dict(Counter(r.get("status") or "(none)" for r in rows).most_common()),
        "per_category": {c: dict(v) for c, v in sorted(per_cat.items())},
        "duration_s": _describe(_durations(rows, kind)),
        "failures_by_cause": dict(failures.most_common()),
        "stopped_at": dict(Counter(stopped_at(r) for r in rows).most_common()),
        "tag_column": tag_column, "distinct_tags": len(tags), "top_tags": tags.most_common(top_n),
    }
    if kind == "clips":
        known = [bool(r["has_music"]) and r.get("status") != "no_music" for r in rows if r.get("has_music") is not None]
        music = Counter(r["music_id"] for r in rows if r.get("music_id"))
        reuse = Counter(music.values())
        va = [(r["valence"], r["arousal"]) for r in rows if r.get("valence") is not None and r.get("arousal") is not None]
        conf = [r["category_confidence"] for r in rows if r.get("category_confidence") is not None]
        summary.update({
            "videos": len({r["video_id"] for r in rows}),
            "has_music_share": (sum(known) / len(known)) if known else None,
            "music": {"tracks": len(music), "clips_with_music_id": sum(music.values()),
                      "reused_tracks": sum(1 for n in music.values() if n > 1),
                      "clips_per_track": dict(sorted(reuse.items())),
                      "max_clips_per_track": max(music.values()) if music else 0},
            "emotion_labelled": len(va),
            "emotions": dict(Counter(r["emotion"] for r in rows if r.get("emotion")).most_common()),
            "category_confidence": _describe(conf),
            "splits": dict(Counter(r["split"] for r in rows if r.get("split"))),
            "predicted_vs_crawl": predicted_vs_crawl(rows),
        })
        summary.update(category_sources_and_corrections(rows, corrections or []))
    return summary


def predicted_vs_crawl(rows: list[dict]) -> dict[str, Any]:
    """Crawl category -> predicted category counts, and how many disagree strongly (a different
    prediction while the crawl category's calibrated probability is under ``DISAGREE_BELOW``)."""
    table: dict[str, Counter] = {}
    strong = Counter()
    for r in rows:
        crawl, pred = r.get("category"), r.get("predicted_category")
        if not crawl or not pred:
            continue
        table.setdefault(crawl, Counter())[pred] += 1
        conf = r.get("category_confidence")
        if pred != crawl and conf is not None and conf < DISAGREE_BELOW:
            strong[crawl] += 1
    return {"table": {c: dict(v.most_common()) for c, v in sorted(table.items())},
            "strong_disagreements": dict(strong), "labelled": sum(sum(v.values()) for v in table.values())}


def category_sources_and_corrections(rows: list[dict], corrections: list[Correction]) -> dict[str, Any]:
    """Where the training category of each ``ok`` clip comes from (``build-shards --category-source any``),
    and the corrections: how many per kind, and how often the prediction (and the crawl) agreed with them."""
    chosen = latest(corrections).values()
    corrected = {c.clip_id: c.value for c in chosen if c.kind == "category"}
    unusable = {c.clip_id for c in chosen if c.kind == "unusable"}
    sources = Counter("unusable" if r["clip_id"] in unusable else training_category(r, corrected.get(r["clip_id"]))[1]
                      or "none" for r in rows if r.get("status") == "ok")
    by_id = {r["clip_id"]: r for r in rows if r.get("clip_id")}
    judged = [(by_id[c], v) for c, v in corrected.items() if c in by_id]
    predicted = [(r, v) for r, v in judged if r.get("predicted_category")]
    crawl = [(r, v) for r, v in judged if r.get("category")]
    joins = Counter(c.value for c in chosen if c.kind == "music_join")
    return {"category_sources": dict(sources.most_common()), "corrections": {
        "categories": len(judged), "unusable": len(unusable & set(by_id)),
        "music_joins": dict(joins), "unknown_clips": sum(1 for c in chosen if c.clip_id not in by_id),
        "predicted_right": sum(r["predicted_category"] == v for r, v in predicted), "predicted": len(predicted),
        "crawl_right": sum(r["category"] == v for r, v in crawl), "crawl": len(crawl)}}


def format_summary(s: dict[str, Any]) -> str:
    """The summary as a plain-text table for the terminal."""
    statuses = list(s["status"])
    lines = [f"{s['kind']} manifest: {s['rows']} rows" + (f" from {s['videos']} videos" if "videos" in s else "")]
    width = max([8] + [len(c) for c in s["per_category"]])
    lines.append(f"{'category':{width}s} " + " ".join(f"{st:>9s}" for st in statuses) + f" {'total':>7s}")
    for cat, counts in s["per_category"].items():
        lines.append(f"{cat:{width}s} " + " ".join(f"{counts.get(st, 0):9d}" for st in statuses)
                     + f" {sum(counts.values()):7d}")
    d = s["duration_s"]
    lines.append("duration: " + (f"n={d['count']} mean {d['mean']:.1f}s median {d['median']:.1f}s "
                                 f"[{d['min']:.1f}, {d['max']:.1f}] total {d['total_hours']:.2f} h" if d else "none yet"))
    if s["kind"] == "clips":
        share = s["has_music_share"]
        lines.append("has_music: " + (f"{share:.1%} of clips" if share is not None else "not detected yet"))
        m = s["music"]
        lines.append(f"music: {m['tracks']} tracks, {m['reused_tracks']} reused, "
                     f"max {m['max_clips_per_track']} clips per track")
        lines.append(f"emotion labelled: {s['emotion_labelled']} clips; splits: {s['splits'] or 'none'}")
    pvc = s.get("predicted_vs_crawl") or {}
    if pvc.get("labelled"):
        lines.append("predicted vs crawl category (crawl: predicted counts; ! = strong disagreements):")
        for crawl, preds in pvc["table"].items():
            n = pvc["strong_disagreements"].get(crawl, 0)
            lines.append(f"  {crawl}: " + ", ".join(f"{p} {c}" for p, c in preds.items())
                         + (f"  ! {n} strongly disagree" if n else ""))
    if s.get("category_sources"):
        lines.append("training category of ok clips (build-shards --category-source any): "
                     + ", ".join(f"{k} {n}" for k, n in s["category_sources"].items()))
    c = s.get("corrections") or {}
    if any(v for v in c.values()):
        pred = (f"prediction right on {c['predicted_right']}/{c['predicted']} ({c['predicted_right'] / c['predicted']:.0%})"
                if c["predicted"] else "no prediction to compare")
        crawl = f", crawl category right on {c['crawl_right']}/{c['crawl']}" if c["crawl"] else ""
        joins = ", ".join(f"{k} {n}" for k, n in sorted(c["music_joins"].items())) or "none"
        lines.append(f"corrections: {c['categories']} categories corrected ({pred}{crawl}); {c['unusable']} marked "
                     f"unusable; music joins {joins}" + (f"; {c['unknown_clips']} name no clip of this manifest"
                                                          if c["unknown_clips"] else ""))
    if s["top_tags"]:
        lines.append(f"top {s['tag_column']}: " + ", ".join(f"{t} ({n})" for t, n in s["top_tags"][:10]))
    if s.get("stopped_at"):
        lines.append("where rows stopped: " + ", ".join(f"{k}: {n}" for k, n in s["stopped_at"].items()))
    if s["failures_by_cause"]:
        lines.append("failures by cause:")
        lines += [f"  {n:6d}  {c}" for c, n in s["failures_by_cause"].items()]
    return "\n".join(lines)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


#: Fonts tried in order per glyph (matplotlib >= 3.6 falls back across families): Chinese tags
#: and category names need a CJK font (Debian: fonts-wqy-microhei, see scripts/install_system_deps.sh).
FONT_FAMILIES = ["DejaVu Sans", "WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC"]


def make_plots(table: pa.Table, summary: dict[str, Any]) -> dict[str, str | None]:
    """Title -> base64 PNG (None when the manifest has no data for that plot yet)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    families = [f for f in FONT_FAMILIES if f in installed] or ["sans-serif"]
    with warnings.catch_warnings(), plt.rc_context({"font.family": families}):
        # without a CJK font, Chinese text renders as boxes: that is not worth a warning per glyph
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        return _plots(table, summary, plt)


def _plots(table: pa.Table, summary: dict[str, Any], plt: Any) -> dict[str, str | None]:

    rows = _rows(table)
    plots: dict[str, str | None] = {}
    cats = summary["per_category"]
    fig, ax = plt.subplots(figsize=(8, 4))
    bottom = np.zeros(len(cats))
    for st in summary["status"]:
        vals = np.array([cats[c].get(st, 0) for c in cats])
        ax.bar(list(cats), vals, bottom=bottom, label=st)
        bottom += vals
    ax.set_ylabel("rows")
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", rotation=45, labelsize=7)
    plots["Rows per category (by status)"] = _png(fig)

    durations = _durations(rows, summary["kind"])
    plots["Durations (s)"] = None
    if durations:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(durations, bins=40)
        ax.set_xlabel("seconds")
        plots["Durations (s)"] = _png(fig)

    plots["Valence / arousal by category"] = None
    va = [(r["valence"], r["arousal"], r.get("category")) for r in rows
          if r.get("valence") is not None and r.get("arousal") is not None]
    if va:
        fig, ax = plt.subplots(figsize=(6, 5))
        for cat in sorted({c or "(none)" for _, _, c in va}):
            pts = np.array([(v, a) for v, a, c in va if (c or "(none)") == cat])
            ax.scatter(pts[:, 0], pts[:, 1], s=8, alpha=0.6, label=cat)
        ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel="valence", ylabel="arousal")
        ax.legend(fontsize=6, markerscale=2)
        plots["Valence / arousal by category"] = _png(fig)

    plots["Top tags"] = None
    if summary["top_tags"]:
        fig, ax = plt.subplots(figsize=(6, 0.25 * len(summary["top_tags"]) + 1))
        names, counts = zip(*summary["top_tags"][::-1], strict=True)
        ax.barh(names, counts)
        plots["Top tags"] = _png(fig)

    plots["Music reuse (clips per music track)"] = None
    reuse = summary.get("music", {}).get("clips_per_track")
    if reuse:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar([str(k) for k in reuse], list(reuse.values()))
        ax.set(xlabel="clips using the track", ylabel="tracks")
        plots["Music reuse (clips per music track)"] = _png(fig)

    plots["Failures by cause"] = None
    if summary["failures_by_cause"]:
        fail = list(summary["failures_by_cause"].items())[:20][::-1]
        labels = [textwrap.fill(c, 48) for c, _ in fail]  # wrapped, never cut
        height = 0.25 * sum(label.count("\n") + 1 for label in labels) + 0.2 * len(labels) + 1
        fig, ax = plt.subplots(figsize=(9, height))
        ax.barh(range(len(fail)), [n for _, n in fail], color="tab:red")
        ax.set_yticks(range(len(fail)), labels, fontsize=7)
        fig.tight_layout()
        plots["Failures by cause"] = _png(fig)
    return plots


def render_html(summary: dict[str, Any], plots: dict[str, str | None], title: str) -> str:
    """A self-contained HTML page: the text summary and the plots inlined as data URIs."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}img{max-width:100%}figure{margin:1em 0}</style>",
             f"</head><body><h1>{html.escape(title)}</h1><pre>{html.escape(format_summary(summary))}</pre>"]
    for name, png in plots.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if png is None:
            parts.append("<p><em>no data in the manifest yet</em></p>")
        else:
            parts.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{png}'></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(manifest: str | os.PathLike, report: str | os.PathLike | None = "reports/stats.html",
                 top_n: int = 20) -> dict[str, Any]:
    """Summarize ``manifest`` and (unless ``report`` is None) write the HTML report atomically."""
    table = read_manifest(manifest)
    summary = summarize(table, top_n, load_corrections(manifest))
    if report is not None:
        page = render_html(summary, make_plots(table, summary), f"Commercial-98K statistics: {Path(manifest).name}")
        atomic_write_bytes(report, page.encode("utf-8"))
    return summary
