"""How good are the labels? Category (all evidence and each kind switched off), OCR, emotion.

Default run (no arguments) prints four tables, every number measured in this run:

1. **Category on the demo corpus** (ads rendered by ``commercial98k.demo``: product shapes,
   price/slogan overlays, titles and descriptions): top-1, top-2 and ECE of the combined score
   with all evidence, without page text, without OCR, without visual evidence, and each kind
   alone. ``raw`` = uncalibrated weights (1, 1, 1); ``cal`` = weights fitted by 5-fold CV
   (fitted on four folds, scored on the fifth), so the calibrated ECE is out of sample. Also the
   visual mapping ``table`` vs ``embedding`` and the OCR cost per clip.
2. **OCR character accuracy** on Chinese and English price/slogan overlays rendered over real
   frames of the shared videos (1 - character error rate, per language).
3. **Emotion**: 5-fold CV grouped by track on the shared Emotify (160 tracks) with the bundled
   head's settings: KL, top-1, per-emotion r, spread, VA correlation, against the mean and the
   per-genre mean (``commercial98k.label.emotion_training``).

``--manifest M --truth T`` instead scores a labelled clips manifest against a csv of ``video_id``
or ``url`` with its true ``category`` (a user's hand-labelled crawl): top-1, top-2, ECE and a
predicted-vs-true table; with ``--fit-calibration OUT`` it also fits the evidence weights on those
clips (from their ``category_evidence_probs``) for ``c98k label --category-calibration OUT``.
``--truth`` may also be a corrections file (``<manifest>.corrections.json`` written by ``c98k browse``):
its category corrections are the true categories, matched by ``clip_id``.

``--corrections-demo`` measures what a few corrections buy: a synthetic labelled manifest whose
evidence is over-confident (page text right 75 % of the time but saying ~90 %), N of its clips
corrected through ``corrections.save_correction``, the weights fitted on them
(``label.category.calibrate_from_corrections``, what ``c98k label --category-calibration
<corrections file>`` runs), and top-1 / ECE of the other clips before and after.

    .venv/bin/python benchmarks/labels.py [--per-category 6] [--skip emotion]
    .venv/bin/python benchmarks/labels.py --manifest manifests/c98k.parquet --truth my_labels.csv
    .venv/bin/python benchmarks/labels.py --manifest manifests/c98k.parquet --truth manifests/c98k.corrections.json
    .venv/bin/python benchmarks/labels.py --corrections-demo 50 --clips 400
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from commercial98k.label.category import (  # noqa: E402
    EVIDENCE,
    calibrate_on,
    combine,
    cv_probs,
    expected_calibration_error,
    fit_calibration,
    row_evidence,
    row_probs,
    top_k_accuracy,
)

SHARED = ROOT.parent / "shared" / "media"


# ---- 1. category on the demo corpus ---------------------------------------------------------

def demo_corpus(work: Path, per_category: int) -> list[dict]:
    """Render (or reuse) a small demo corpus; returns its video entries with plan, path and category."""
    from commercial98k.demo.corpus import DEFAULT_CATEGORIES, plan_corpus
    from commercial98k.demo.music import build_library, load_library
    from commercial98k.demo.render import generate_corpus, load_corpus

    library = work / "music"
    if not (library / "library.json").is_file():
        build_library(library, sources=("immich",), progress=False)
    plans = plan_corpus(load_library(library), DEFAULT_CATEGORIES, per_category, seed=0, quick=True)
    generate_corpus(plans, library, work / "videos", progress=False)
    by_file = {p.file: p for p in plans}
    out = []
    for v in load_corpus(work / "videos")["videos"]:
        plan = by_file.get(v.get("file") or v.get("path"))
        if plan is not None and (work / "videos" / plan.file).is_file():
            out.append({"plan": plan, "path": work / "videos" / plan.file, "category": plan.category})
    return out


def _cpu() -> float:
    """CPU seconds of this process and its finished children (ffmpeg decodes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def corpus_evidence(videos: list[dict]) -> tuple[list[dict], list[str], dict[str, float]]:
    """Per video: page-text, OCR and visual (table and embedding) distributions; the cost per clip
    (CPU seconds of this process and its ffmpeg children, which a loaded machine does not inflate) of OCR and of the frame
    embeddings that ``c98k label`` computes anyway."""
    from commercial98k.label.visual import VisualEvidence
    from commercial98k.label.zero_shot import CategoryMatcher, clip_text
    from commercial98k.media.ffmpeg_io import load_frames, probe
    from commercial98k.models.ocr import ocr_clip, ocr_model
    from commercial98k.models.registry import FRAMES, TEXT
    from commercial98k.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    text, frames = TEXT.create("use-multilingual"), FRAMES.create("efficientnet-lite0")
    matcher = CategoryMatcher(text, taxonomy)
    visual = {m: VisualEvidence(frames, taxonomy, text, m) for m in ("table", "embedding")}
    ocr = ocr_model()
    out, cost = [], {"ocr_cpu_s": 0.0, "ocr_wall_s": 0.0, "frames_cpu_s": 0.0, "seconds": 0.0}
    for v in videos:
        plan = v["plan"]
        info = probe(v["path"])
        shots = [{"start_s": s.start_s, "end_s": s.end_s} for s in plan.shots]
        t0, c0 = time.perf_counter(), _cpu()
        ocr_text = ocr_clip(ocr, v["path"], 0.0, info.duration_s, shots, info.width, info.height)
        cost["ocr_wall_s"] += time.perf_counter() - t0
        cost["ocr_cpu_s"] += _cpu() - c0
        c0 = _cpu()
        emb = frames.embed_images(load_frames(v["path"], fps=1.0, size=224))
        cost["frames_cpu_s"] += _cpu() - c0
        cost["seconds"] += float(info.duration_s or 0.0)
        page, o = matcher.probabilities([clip_text(plan.title, plan.description), ocr_text or ""])
        ev = {"page_text": page, "ocr": None if not ocr_text else o}
        for m, vis in visual.items():
            ev[f"visual_{m}"] = vis.from_frame_embeddings(emb)[0]
        out.append(ev)
    return out, taxonomy.ids(), {k: v / max(1, len(videos)) for k, v in cost.items()}


def _select(ev: dict, use: set[str], visual: str) -> dict:
    return {"page_text": ev["page_text"] if "page_text" in use else None,
            "ocr": ev["ocr"] if "ocr" in use else None,
            "visual": ev[f"visual_{visual}"] if "visual" in use else None}


def category_table(evidence: list[dict], labels: np.ndarray, n: int) -> list[str]:
    settings = [("all evidence", set(EVIDENCE)), ("no page text", {"ocr", "visual"}),
                ("no OCR", {"page_text", "visual"}), ("no visual", {"page_text", "ocr"}),
                ("page text only", {"page_text"}), ("OCR only", {"ocr"}), ("visual only", {"visual"})]
    lines = [f"{'evidence':<26}{'top-1':>8}{'top-2':>8}{'ECE raw':>9}{'ECE cal':>9}{'top-1 cal':>10}"]
    for visual in ("table", "embedding"):
        for name, use in settings:
            if visual == "embedding" and "visual" not in use:
                continue
            ev = [_select(e, use, visual) for e in evidence]
            raw = np.stack([combine(e, n)[0] for e in ev])
            cal = cv_probs(ev, labels, n)
            label = f"{name} [{visual}]" if "visual" in use else name
            lines.append(f"{label:<26}{top_k_accuracy(raw, labels, 1):>8.3f}{top_k_accuracy(raw, labels, 2):>8.3f}"
                         f"{expected_calibration_error(raw, labels):>9.3f}{expected_calibration_error(cal, labels):>9.3f}"
                         f"{top_k_accuracy(cal, labels, 1):>10.3f}")
    return lines


# ---- 2. OCR character accuracy --------------------------------------------------------------

OCR_TEXTS = {"zh": ["限时特价 ¥199", "新品上市 买一送一", "口红 持久显色", "全场五折 包邮", "夏季新款 连衣裙",
                    "智能手机 超长续航"],
             "en": ["Only $29.99", "SUMMER SALE 50% OFF", "Shop now", "New arrival: running shoes",
                    "Free shipping today", "Glow all day"]}


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def ocr_accuracy(height_share: int = 16) -> dict[str, float]:
    """1 - CER of overlays rendered on real frames (spaces and case ignored), per language.

    The text (font size 1/``height_share`` of the frame height, shrunk to fit the width) is drawn in the lower
    band of a frame of each shared video; the band is read, and the reading is scored against the
    overlay as its best line or all its lines joined (the frames carry text of their own)."""
    from PIL import Image, ImageDraw, ImageFont

    from commercial98k.models.ocr import load_keyframes, ocr_model

    fonts = {"zh": "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
             "en": "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"}
    sources = [("big_buck_bunny_trailer_480p.mkv", (854, 480)), ("video2dataset_test_video.mp4", (960, 540)),
               ("videollava_sample_demo_22.mp4", (360, 640))]
    model = ocr_model()
    out = {}
    for lang, texts in OCR_TEXTS.items():
        errors = chars = 0
        for i, text in enumerate(texts):
            name, (w, h) = sources[i % len(sources)]
            frame = load_keyframes(SHARED / "videos" / name, [3.0 + 4 * i], (w, h))[0]
            im = Image.fromarray(frame)
            size = max(8, h // height_share)
            font = ImageFont.truetype(fonts[lang], size)
            while font.getlength(text) > 0.9 * w and size > 10:
                size -= 1
                font = ImageFont.truetype(fonts[lang], size)
            top = int(h * 0.8)
            ImageDraw.Draw(im).text((w // 20, top), text, font=font, fill="white", stroke_width=2, stroke_fill="black")
            band = np.asarray(im)[top - size // 2: min(h, top + 2 * size)]
            lines = [line.text for line in model.read(band)]
            want = text.replace(" ", "").lower()
            candidates = [x.replace(" ", "").replace("￥", "¥").lower() for x in [*lines, "".join(lines)]] or [""]
            errors += min(min(len(want), _edit_distance(want, got)) for got in candidates)
            chars += len(want)
        out[lang] = 1.0 - errors / chars
    return out


# ---- 3. emotion -----------------------------------------------------------------------------

def emotion_table(cache: Path) -> str:
    from commercial98k.label import emotion_training as stage

    ds, seqs, model = stage.prepare("emotify", SHARED / "emotify", "musicnn", cache_dir=cache, progress=False,
                                    excerpt=(20.0, 20.0))
    res = stage.cross_validate(ds, seqs, model.info.tag(), stage.window_frames_for(20.0, model.hop_s), 5, 0,
                               progress=False)
    head = f"Emotify: {len(ds)} tracks, 5-fold CV (each track in one fold), window 20 s over the middle 20 s\n"
    return head + stage.format_table(stage.cv_metrics(res))


# ---- --manifest M --truth T -----------------------------------------------------------------

def score_manifest(manifest: Path, truth: Path, fit_out: Path | None = None) -> list[str]:
    import pandas as pd

    from commercial98k.manifest.corrections import (
        CorrectionError,
        is_corrections_file,
        latest,
        read_corrections_file,
    )
    from commercial98k.manifest.io import read_manifest
    from commercial98k.taxonomy import load_taxonomy

    ids = load_taxonomy().ids()
    if is_corrections_file(truth):
        try:
            chosen = latest(read_corrections_file(truth, load_taxonomy())).values()
        except CorrectionError as e:
            raise SystemExit(f"error: {e}") from None
        key, want = "clip_id", {c.clip_id: c.value for c in chosen if c.kind == "category"}
    else:
        t = pd.read_csv(truth)
        key = "video_id" if "video_id" in t.columns else "url"
        if key not in t.columns or "category" not in t.columns:
            raise SystemExit(f"error: {truth}: needs a 'category' column and 'video_id' or 'url'")
        want = dict(zip(t[key].astype(str), t["category"].astype(str), strict=True))
    rows = [r for r in read_manifest(manifest, "clips").to_pylist() if r.get("status") == "ok"
            and str(r.get(key)) in want and want[str(r.get(key))] in ids]
    if not rows:
        raise SystemExit(f"error: no ok clip of {manifest} has a {key} in {truth}")
    labels = np.array([ids.index(want[str(r[key])]) for r in rows])
    probs = np.stack([row_probs(r, ids) for r in rows])
    lines = [f"{len(rows)} labelled clips of {manifest} ({key} matched in {truth})",
             f"top-1 {top_k_accuracy(probs, labels, 1):.3f}  top-2 {top_k_accuracy(probs, labels, 2):.3f}  "
             f"ECE {expected_calibration_error(probs, labels):.3f}", "true -> predicted (count)"]
    pairs: dict[tuple[str, str], int] = {}
    for lab, p in zip(labels, probs.argmax(axis=1), strict=True):
        pairs[(ids[lab], ids[p])] = pairs.get((ids[lab], ids[p]), 0) + 1
    lines += [f"  {a:<22} -> {b:<22} {n:>4}{'' if a == b else '  <- disagrees'}" for (a, b), n in sorted(pairs.items())]
    if fit_out and any(row_evidence(r) for r in rows):
        cal = calibrate_on(rows, {r["clip_id"]: want[str(r[key])] for r in rows}, ids, f"{manifest} labelled by {truth}")
        lines.append(f"calibration {cal.tag()}: ECE {cal.ece_before:.3f} as labelled, {cal.ece_after:.3f} refitted"
                     + (" (5-fold CV)" if len(rows) >= 10 else " (in sample)")
                     + f" -> {cal.save(fit_out)} (c98k label --category-calibration {fit_out})")
    return lines


# ---- --corrections-demo N -------------------------------------------------------------------

def synthetic_labelled_rows(n: int, seed: int = 0, right: float = 0.75) -> tuple[list[dict], dict[str, str]]:
    """Labelled clips rows whose page text names the true category ``right`` of the time but claims ~90 %,
    with weak visual evidence; and their true categories by clip_id."""
    from commercial98k.taxonomy import load_taxonomy

    ids = load_taxonomy().ids()
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for i in range(n):
        true = ids[int(rng.integers(len(ids)))]
        guess = true if rng.random() < right else ids[int(rng.integers(len(ids)))]
        page = np.full(len(ids), 0.01)
        page[ids.index(guess)] = 1.0
        visual = rng.dirichlet(np.full(len(ids), 20.0))
        visual[ids.index(true)] *= 1.6  # weak but real
        ev = {"page_text": (page / page.sum()).tolist(), "visual": (visual / visual.sum()).tolist()}
        probs, present = combine({k: np.asarray(v) for k, v in ev.items()}, len(ids))
        clip_id = f"syn{i:05d}-c000"
        rows.append({"video_id": clip_id[:8], "clip_id": clip_id, "status": "ok", "label_status": "ok",
                     "predicted_category": ids[int(np.argmax(probs))], "category_confidence": float(probs.max()),
                     "category_probs": dict(zip(ids, probs.tolist(), strict=True)), "category_evidence": present,
                     "category_evidence_probs": ev})
        truth[clip_id] = true
    return rows, truth


def corrections_demo(work: Path, n: int, corrected: int, seed: int = 0) -> list[str]:
    """Correct ``corrected`` clips of a synthetic manifest, calibrate on them, score the rest before and after."""
    from datetime import datetime, timezone

    from commercial98k.label.category import calibrate_from_corrections
    from commercial98k.manifest.corrections import Correction, corrections_path, save_correction
    from commercial98k.manifest.io import read_manifest, write_manifest
    from commercial98k.taxonomy import load_taxonomy

    ids = load_taxonomy().ids()
    rows, truth = synthetic_labelled_rows(n, seed)
    manifest = work / "corrections_demo" / "c98k.parquet"
    for p in (manifest, corrections_path(manifest)):
        p.unlink(missing_ok=True)
    write_manifest(rows, manifest, "clips")
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for r in rows[:corrected]:
        save_correction(manifest, Correction(r["clip_id"], "category", truth[r["clip_id"]], who="bench", when=when))
    rest = [r["clip_id"] for r in rows[corrected:]]
    labels = np.asarray([ids.index(truth[c]) for c in rest])

    def scores(table_rows: list[dict]) -> tuple[float, float]:
        by_id = {r["clip_id"]: r for r in table_rows}
        probs = np.stack([row_probs(by_id[c], ids) for c in rest])
        return top_k_accuracy(probs, labels, 1), expected_calibration_error(probs, labels)

    top1_before, ece_before = scores(rows)
    cal, _path, rescored = calibrate_from_corrections(manifest, corrections_path(manifest))
    top1_after, ece_after = scores(read_manifest(manifest, "clips").to_pylist())
    return [f"Corrections calibrate the rest: {n} synthetic labelled clips, {corrected} corrected "
            f"(page text right 75 % of the time, claiming ~90 %); weights {cal.tag()}, {rescored} clips rescored",
            f"the other {len(rest)} clips: ECE {ece_before:.3f} -> {ece_after:.3f}, "
            f"top-1 {top1_before:.3f} -> {top1_after:.3f}"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, help="score this labelled clips manifest (with --truth)")
    ap.add_argument("--truth", type=Path, help="csv: video_id or url, category; or a *.corrections.json file")
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "bench_labels", help="demo corpus folder")
    ap.add_argument("--per-category", type=int, default=6)
    ap.add_argument("--emotion-cache", type=Path, default=ROOT / "data" / "emotion_cache")
    ap.add_argument("--skip", nargs="*", default=[], choices=["category", "ocr", "emotion"])
    ap.add_argument("--fit-calibration", type=Path,
                    help="write calibration weights fitted on the demo corpus (or, with --manifest/--truth, on "
                         "your labelled clips) here")
    ap.add_argument("--corrections-demo", type=int, metavar="N",
                    help="correct N clips of a synthetic labelled manifest and report ECE of the rest before/after")
    ap.add_argument("--clips", type=int, default=400, help="with --corrections-demo: clips in the manifest")
    ap.add_argument("--seed", type=int, default=0, help="with --corrections-demo: seed of the synthetic manifest")
    args = ap.parse_args(argv)
    if args.corrections_demo:
        print("\n".join(corrections_demo(args.work, args.clips, args.corrections_demo, args.seed)))
        return
    if args.manifest or args.truth:
        if not (args.manifest and args.truth):
            raise SystemExit("error: --manifest and --truth go together")
        print("\n".join(score_manifest(args.manifest, args.truth, args.fit_calibration)))
        return
    if "category" not in args.skip:
        videos = demo_corpus(args.work, args.per_category)
        evidence, ids, cost = corpus_evidence(videos)
        labels = np.array([ids.index(v["category"]) for v in videos])
        print(f"Category on the demo corpus: {len(videos)} ads, {len(set(labels))} categories "
              f"(chance top-1 {1 / len(ids):.3f} over {len(ids)})")
        print(f"cost per clip ({cost['seconds']:.1f} s of video): OCR {cost['ocr_cpu_s']:.2f} CPU-s "
              f"({cost['ocr_wall_s']:.2f} s wall), EfficientNet frames at 1 fps {cost['frames_cpu_s']:.2f} CPU-s; "
              f"OCR / frames = {cost['ocr_cpu_s'] / max(cost['frames_cpu_s'], 1e-9):.2f}x")
        print("\n".join(category_table(evidence, labels, len(ids))))
        if args.fit_calibration:
            ev = [_select(e, set(EVIDENCE), "table") for e in evidence]
            cal = fit_calibration(ev, list(labels), len(ids))
            raw = np.stack([combine(e, len(ids))[0] for e in ev])
            cal.fitted_on = f"demo corpus, {len(videos)} ads (benchmarks/labels.py)"
            cal.ece_before = expected_calibration_error(raw, labels)
            cal.ece_after = expected_calibration_error(cv_probs(ev, labels, len(ids)), labels)
            print(f"calibration {cal.tag()} -> {cal.save(args.fit_calibration)}")
    if "ocr" not in args.skip:
        for share in (16, 32):
            acc = ocr_accuracy(share)
            print(f"OCR character accuracy (1 - CER) on overlays over real frames, text 1/{share} of the frame "
                  "height: " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    if "emotion" not in args.skip:
        print(emotion_table(args.emotion_cache))


if __name__ == "__main__":
    main()
