"""Category without page text on demo-like ads, before and after glued-word splitting and brand evidence.

Renders the demo's ads (``commercial98k.demo``, ``--per-category`` per category) twice: as they are
("plain") and with the product word replaced by a brand name in capitals and the slogan set without
spaces ("branded"; half of the brands from ``commercial98k/data/brands.json``, half real brands it does not
list). On each it runs real OCR (3 keyframes), the EfficientNet visual table and the USE text match,
then scores each evidence kind alone and combined: top-1, top-2, ECE with the uncalibrated weights
and with weights fitted by 5-fold CV. "before" = OCR lines as read, no brand evidence; "after" =
glued words split (``split_glued``) and brand evidence. This is the README table in "Labels on ads
without page text". Renders and OCR results are cached in ``--work``.

    .venv/bin/python benchmarks/brand_evidence.py [--per-category 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from commercial98k.label.category import combine, expected_calibration_error, fit_calibration  # noqa: E402

# real brands NOT in commercial98k/data/brands.json (held out: the table cannot know them)
HELD_OUT = {
    "cosmetics": ["Cetaphil", "Tatcha", "Aesop"], "apparel": ["Jacquemus", "Everlane", "Reformation"],
    "food": ["Oatly", "Chobani", "Haribo"], "digital": ["Beyerdynamic", "Elgato", "Corsair"],
    "home": ["Vitamix", "Smeg", "Casper"], "mother_baby": ["UPPAbaby", "Owlet", "Hatch Baby"],
    "sports_outdoor": ["Rapha", "Osprey", "Yeti"], "jewelry_accessories": ["Monica Vinader", "Missoma", "Tous"],
    "pets": ["Zesty Paws", "Ollie", "Kong"], "health": ["Hims", "Ritual", "Olly"],
    "automotive": ["Polestar", "Rivian", "Lucid"], "books_stationery": ["Rhodia", "Clairefontaine", "Pentalic"],
}


def plans(work: Path, per_category: int):
    """The plain demo ads and their branded copies: (plan, group, brand name)."""
    from commercial98k.demo.corpus import STYLES, plan_corpus
    from commercial98k.demo.music import build_library, load_library
    from commercial98k.taxonomy import load_brands

    lib = work / "music"
    if not (lib / "library.json").is_file():
        build_library(lib, sources=("immich",), progress=False)
    base = plan_corpus(load_library(lib), list(STYLES), per_category, seed=0, quick=True)
    brands = load_brands()
    rng = random.Random(1)
    out = [(p, "demo", None) for p in base]
    for p in base:
        q = copy.deepcopy(p)
        in_table = rng.random() < 0.5
        if in_table:
            pool = [b.names[0] for b in brands if b.category == p.category and b.names[0].isascii()]
            name = rng.choice(pool)
        else:
            name = rng.choice(HELD_OUT[p.category])
        # the brand's name instead of the product word, the slogan set tightly (glued)
        for s in q.shots:
            if s.text == p.shots[0].text:
                s.text = name.upper()
            elif not s.text.startswith("$") and "OFF" not in s.text:
                s.text = s.text.replace(" ", "")
        q.file = "brand-" + p.file
        out.append((q, "in table" if in_table else "held out", name))
    return out


def render(items, work: Path):
    from commercial98k.demo.render import generate_corpus

    generate_corpus([p for p, _, _ in items], work / "music", work / "videos", workers=1, progress=False)


def evidence(items, work: Path):
    """OCR (raw and split), visual and brand evidence per ad; OCR and frame embeddings cached in work."""
    from commercial98k.label.visual import VisualEvidence
    from commercial98k.label.zero_shot import CategoryMatcher, brand_matcher
    from commercial98k.media.ffmpeg_io import load_frames, probe
    from commercial98k.models.ocr import clip_keyframes, dedupe_frames, merge_lines, ocr_model, split_glued
    from commercial98k.models.registry import FRAMES, TEXT
    from commercial98k.taxonomy import load_taxonomy

    tax = load_taxonomy()
    text, frames = TEXT.create("use-multilingual"), FRAMES.create("efficientnet-lite0")
    matcher, visual, ocr, bm = CategoryMatcher(text, tax), VisualEvidence(frames, tax, text, "table"), ocr_model(), \
        brand_matcher(tax)
    cache = work / "evidence.json"
    done = json.loads(cache.read_text()) if cache.is_file() else {}
    out = []
    for p, group, name in items:
        path = work / "videos" / p.file
        if p.file not in done:
            info = probe(path)
            shots = [{"start_s": s.start_s, "end_s": s.end_s} for s in p.shots]
            kf = clip_keyframes(path, 0.0, info.duration_s, shots, info.width, info.height)
            raw = merge_lines([ocr.read(f) for f in dedupe_frames(kf)])
            emb = frames.embed_images(load_frames(path, fps=1.0, size=224))
            vis = visual.from_frame_embeddings(emb)[0]
            done[p.file] = {"raw": raw, "visual": None if vis is None else vis.tolist()}
            cache.write_text(json.dumps(done))
        raw = done[p.file]["raw"]
        split = [split_glued(t) for t in raw]
        rt, st = " | ".join(raw), " | ".join(split)
        pr = matcher.probabilities([rt, st])
        brand_p, found = bm.evidence([st])
        out.append({"file": p.file, "group": group, "brand_name": name, "category": p.category,
                    "raw": rt, "split": st, "found": found,
                    "ocr_before": None if not rt.strip() else pr[0], "ocr_after": None if not st.strip() else pr[1],
                    "visual": None if done[p.file]["visual"] is None else np.asarray(done[p.file]["visual"]),
                    "brand": brand_p})
    return out, tax.ids()


def scores(ev, labels, n):
    """top-1, top-2 (a clip with none of the kinds counts as wrong), ECE raw, ECE and top-1 with 5-fold CV weights."""
    present = np.array([any(v is not None for v in e.values()) for e in ev])
    raw = np.stack([combine(e, n)[0] for e in ev])
    fold = np.random.default_rng(0).permutation(len(labels)) % 5
    cal = np.zeros_like(raw)
    for k in range(5):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        c = fit_calibration([ev[i] for i in tr], list(labels[tr]), n)
        for i in te:
            cal[i] = combine(ev[i], n, c)[0]
    def topk(p, k):
        top = np.argsort(-p, axis=1)[:, :k]
        return float(np.mean([present[i] and labels[i] in top[i] for i in range(len(labels))]))
    return (present.mean(), topk(raw, 1), topk(raw, 2), expected_calibration_error(raw, labels),
            expected_calibration_error(cal, labels), topk(cal, 1))


SETTINGS = [
    ("before: OCR (raw lines) only", {"ocr": "ocr_before"}),
    ("before: visual only", {"visual": "visual"}),
    ("before: OCR + visual", {"ocr": "ocr_before", "visual": "visual"}),
    ("after: OCR (split) only", {"ocr": "ocr_after"}),
    ("after: brand only", {"brand": "brand"}),
    ("after: OCR + visual", {"ocr": "ocr_after", "visual": "visual"}),
    ("after: OCR + brand", {"ocr": "ocr_after", "brand": "brand"}),
    ("after: OCR + visual + brand", {"ocr": "ocr_after", "visual": "visual", "brand": "brand"}),
]


def table(rows, ids, title):
    """The markdown table lines and the scores per setting name."""
    labels = np.array([ids.index(r["category"]) for r in rows])
    n = len(ids)
    lines = [f"{title}: {len(rows)} ads, {len(set(labels))} categories",
             "| evidence | present | top-1 | top-2 | ECE raw | ECE cal | top-1 cal |", "|---|---|---|---|---|---|---|"]
    out = {}
    for name, use in SETTINGS:
        ev = [{k: r[v] for k, v in use.items()} for r in rows]
        s = out[name] = scores(ev, labels, n)
        lines.append(f"| {name} | {s[0]:.2f} | {s[1]:.3f} | {s[2]:.3f} | {s[3]:.3f} | {s[4]:.3f} | {s[5]:.3f} |")
    return lines, out


def main():
    ap = argparse.ArgumentParser(
        description="Category top-1 / top-2 / ECE without page text on demo-like ads, each evidence kind (OCR, "
                    "visual, brand) alone and combined, before (OCR lines as read, no brand evidence) and after "
                    "(glued OCR words split, brand evidence); plain demo ads and the same ads branded (brand name "
                    "in capitals, slogan without spaces; half the brands listed in commercial98k/data/brands.json, half not).")
    ap.add_argument("--per-category", type=int, default=5, help="plain demo ads per category (default 5; "
                    "as many branded copies)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "c98k-bench-brand-evidence",
                    help="music library, rendered ads and the evidence cache (default: %(default)s)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    items = plans(args.work, args.per_category)
    render(items, args.work)
    print(f"rendered in {time.perf_counter() - t0:.0f} s", flush=True)
    rows, ids = evidence(items, args.work)
    glued_raw = sum(any(len(w) >= 12 and w.isalpha() for w in r["raw"].split()) for r in rows)
    print(f"evidence in {time.perf_counter() - t0:.0f} s; clips with a glued run (>= 12 letters) in raw OCR: {glued_raw}")
    for r in rows[:3] + rows[len(rows) // 2:len(rows) // 2 + 6]:
        print(r["file"], r["group"], r["brand_name"], "|", r["raw"], "->", r["split"], "| brands:", r["found"])
    demo = [r for r in rows if r["group"] == "demo"]
    branded = [r for r in rows if r["group"] != "demo"]
    fp = [r for r in demo if r["found"]]
    print(f"brand found on plain demo ads (false positives): {len(fp)} {[r['found'] for r in fp]}")
    found = {}
    for g in ("in table", "held out"):
        sub = [r for r in branded if r["group"] == g]
        found[g] = (sum(bool(r["found"]) for r in sub), len(sub))
        print(f"branded ads, brand {g}: {len(sub)}, brand found in {found[g][0]}")
    res = {}
    for key, title, sub in (("plain", "plain demo ads (no brand)", demo),
                            ("branded", "branded demo ads (brand name + glued slogan)", branded),
                            ("all", "all", rows)):
        lines, res[key] = table(sub, ids, title)
        print("\n".join(lines))
        print()
    before, after = "before: OCR + visual", "after: OCR + visual + brand"
    parts = []
    for key in ("plain", "branded"):
        for tag, name in (("before", before), ("after", after)):
            s = res[key][name]
            parts += [f"{key}_top1_{tag}={s[1]:.3f}", f"{key}_top2_{tag}={s[2]:.3f}", f"{key}_ece_{tag}={s[3]:.3f}"]
    parts += [f"brand_found_listed={found['in table'][0]}/{found['in table'][1]}",
              f"brand_found_unlisted={found['held out'][0]}/{found['held out'][1]}",
              f"brand_false_positives={len(fp)}/{len(demo)}"]
    print("brand_evidence: " + " ".join(parts))


if __name__ == "__main__":
    main()
