"""Music under a voice-over: detection, identity and cost, on real music and real speech only.

From ``../shared/media``: Emotify tracks (held out: nothing here was tuned on them beyond the
defaults this script reports) and real recorded speech. Per track, three 12-s "ads": A (5-17 s),
B (10-22 s, sharing 7 s of music with A) and C (35-47 s, sharing none). Conditions:

* ``clean``: the music alone;
* ``digits@N``: a different voice on each ad (a string of one speaker's spoken digits over 50-100 %
  of it) N dB above the music;
* ``sentences@N``: the same voice-over (every CMU ARCTIC sentence, in one order, from 1.2 s) on
  every ad of every track: a brand's reused voice;
* ``jingle``: the same 2-s sound logo (music from a track outside the set) on every ad;
* ``rerecorded``: the ad played in a room and recorded again (reverberation, band limit, noise).

Negatives: the voice-overs alone, pink noise, digital silence. Printed per condition: detection
recall (the ad yields a music span of at least ``--min-clip-seconds``) with today's
speech-aware spans (Silero VAD) and with the earlier rule (music evidence alone, ending at 0.6x
the onset); landmark and Chromaprint identity over the
ads of that condition (ids per track, tracks split over several ids, ids holding two tracks,
same-track pair recall of the overlapping A-B pairs); ``--music-library`` with half the tracks;
then the negatives' false clips and the
fingerprint cost per second of audio against a plain decode. ``--features`` adds the emotion KL
and embedding cosine shift (``benchmarks/voiceover_features.py``). The last line is
machine-readable.

    python benchmarks/voiceover.py                 # 40 tracks, 15-20 min on 2 busy cores
    python benchmarks/voiceover.py --tracks 160
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from commercial98k.identity import landmarks as lm  # noqa: E402
from commercial98k.identity.chromaprint import fingerprint_audio, group_music  # noqa: E402
from commercial98k.identity.landmark_index import LandmarkIndex  # noqa: E402
from commercial98k.identity.library import match_library, open_library  # noqa: E402
from commercial98k.split.music import get_detector, spans_from_probs  # noqa: E402
from commercial98k.split.vad import FRAME_S as VAD_FRAME_S  # noqa: E402
from commercial98k.split.vad import get_vad, spans_from_frames  # noqa: E402
from commercial98k.testing import voiceover as vo  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
SR = vo.SAMPLE_RATE
EXCERPTS = {"A": (5.0, 12.0), "B": (10.0, 12.0), "C": (35.0, 12.0)}


def track_files(n: int) -> list[Path]:
    """``n`` Emotify files spread evenly over the four genres."""
    files = sorted((MEDIA / "emotify" / "audio").glob("*.mp3"))
    if not files:
        raise SystemExit(f"no Emotify audio under {MEDIA}/emotify/audio (see shared/media/README.md)")
    return [files[i] for i in np.linspace(0, len(files) - 2, n).astype(int)]  # the last file is the jingle's


def make_ads(condition: str, snr: float, music: dict[str, dict[str, np.ndarray]], bank: vo.SpeechBank,
             jingle_music: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """(track, excerpt) -> the ad's 16 kHz audio under ``condition``."""
    rng = np.random.default_rng(7)
    out = {}
    for track, parts in music.items():
        for name, seg in parts.items():
            n = len(seg)
            if condition == "clean":
                ad = seg
            elif condition == "digits":
                ad = vo.mix(seg, vo.digit_voice(bank, n, rng.uniform(0.5, 1.0), rng), snr)
            elif condition == "sentences":
                ad = vo.mix(seg, vo.sentence_voice(bank, n, 0.8, start=int(1.2 * SR)), snr)
            elif condition == "jingle":
                ad = vo.mix(seg, vo.jingle(jingle_music, n, at=int(9.5 * SR)), snr)
            elif condition == "rerecorded":
                ad = vo.rerecord(seg, rng)
            else:
                raise ValueError(condition)
            out[(track, name)] = ad
    return out


def analyse(ads: dict[tuple[str, str], np.ndarray], min_clip_s: float) -> dict:
    """Per ad: detection (speech-aware and music-only), landmarks and a Chromaprint fingerprint."""
    det = get_detector()
    rows = {}
    for key, audio in ads.items():
        probs = det.frame_probs(audio)
        voice = get_vad().frame_probs(audio)  # once: the spans and the landmarks' voiced frames
        spans = spans_from_probs(probs, speech_segments=spans_from_frames(voice, len(audio) / SR))
        plain = spans_from_probs(probs, offset=0.3, speech=1.01)  # the rule before: music evidence alone
        peaks = lm.extract_peaks(audio, lm.voiced_frames(voice, VAD_FRAME_S, 0.0, len(audio)))
        rows[key] = {"detected": any(e - s >= min_clip_s for s, e in spans),
                     "detected_plain": any(e - s >= min_clip_s for s, e in plain),
                     "landmarks": lm.encode(peaks), "chromaprint": fingerprint_audio(audio, SR)}
    return rows


def identity_metrics(ids: dict[tuple[str, str], str]) -> dict[str, float]:
    """Over the overlapping A and B ads: ids per track and tracks split over several ids; over all
    ads: ids holding two tracks and the most tracks one id holds; same-track A-B pair recall."""
    by_track: dict[str, set[str]] = defaultdict(set)
    by_id: dict[str, set[str]] = defaultdict(set)
    for (track, part), mid in ids.items():
        if part in ("A", "B"):  # C shares no audio with them: only a library can join it
            by_track[track].add(mid)
        by_id[mid].add(track)
    pairs = [(t, ids.get((t, "A")), ids.get((t, "B"))) for t in by_track]
    joined = [a is not None and a == b for _, a, b in pairs]
    return {"ids_per_track": float(np.mean([len(v) for v in by_track.values()])),
            "tracks_split": sum(len(v) > 1 for v in by_track.values()),
            "mixed_ids": sum(len(v) > 1 for v in by_id.values()),
            "largest": max(len(v) for v in by_id.values()),
            "pair_recall": float(np.mean(joined)) if joined else float("nan")}


def landmark_ids(rows: dict, keys: list) -> dict:
    """Music ids from a fresh persisted landmark index, added in one batch as ``c98k split`` does."""
    with tempfile.TemporaryDirectory() as tmp:
        idx = LandmarkIndex(Path(tmp) / "idx")
        names = {f"{t}|{e}": (t, e) for t, e in keys}
        idx.add({n: rows[k]["landmarks"] for n, k in names.items()})
        found = idx.music_ids()
    return {names[n]: (found.get(n) or f"none-{n}") for n in names}


def chromaprint_ids(rows: dict, keys: list) -> dict:
    names = {f"{t}|{e}": (t, e) for t, e in keys}
    found = group_music({n: rows[k]["chromaprint"] for n, k in names.items()})
    return {names[n]: (found.get(n) or f"none-{n}") for n in names}


def library_check(files: list[Path], music: dict, bank: vo.SpeechBank, snr: float = 6.0) -> dict[str, float]:
    """``--music-library`` with the full tracks of half the set: the disjoint C ads under a different voice.

    Returns the share of in-library C ads given their own track (offset within 0.1 s of the truth)
    and the number of ads given a track they do not play (out-of-library ads included).
    """
    import os

    rng = np.random.default_rng(5)
    inside = files[::2]
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "library"
        lib.mkdir()
        for f in inside:
            (lib / f.name).symlink_to(f.resolve())
        before = os.environ.get("C98K_CACHE")
        os.environ["C98K_CACHE"] = str(Path(tmp) / "cache")  # the library's index goes to the cache
        try:
            idx, keys = open_library(lib, progress=False)
        finally:
            if before is None:
                os.environ.pop("C98K_CACHE")
            else:
                os.environ["C98K_CACHE"] = before
        ads = {}
        for f in files:
            seg = music[f.stem]["C"]
            mixd = vo.mix(seg, vo.digit_voice(bank, len(seg), rng.uniform(0.5, 1.0), rng), snr)
            ads[f.stem] = lm.encode(lm.extract_voiced(mixd, get_vad()))
        found = match_library(idx, keys, ads)
    names = {f.stem for f in inside}
    right = sum(1 for k, (t, off) in found.items() if k in names and Path(t).stem == k
                and abs(off - EXCERPTS["C"][0]) <= 0.1)
    wrong = sum(1 for k, (t, _) in found.items() if Path(t).stem != k)
    return {"library_recall": right / len(names), "library_wrong": wrong}


def negatives(bank: vo.SpeechBank, min_clip_s: float, n: int = 10) -> dict[str, int]:
    """False music clips on speech-only, noise-only and silent inputs (``n`` each)."""
    det = get_detector()
    rng = np.random.default_rng(3)
    size = int(12 * SR)
    kinds = {"speech_digits": lambda: vo.digit_voice(bank, size, rng.uniform(0.5, 1.0), rng),
             "speech_sentences": lambda: vo.sentence_voice(bank, size, 0.9, start=int(rng.integers(0, SR))),
             "noise": lambda: vo.pink_noise(size, rng, level_db=float(rng.uniform(-35, -15))),
             "silence": lambda: np.zeros(size, np.float32)}
    out = {}
    for kind, make in kinds.items():
        count = 0
        for _ in range(n):
            audio = make()
            spans = spans_from_probs(det.frame_probs(audio), speech_segments=get_vad().speech_spans(audio))
            count += any(e - s >= min_clip_s for s, e in spans)
        out[kind] = count
    return out


def cost(audio: np.ndarray, path: Path) -> dict[str, float]:
    """CPU ms per second of audio: landmarks, Chromaprint, and decoding the file's audio (reference)."""
    from commercial98k.media.ffmpeg_io import load_audio

    seconds = len(audio) / SR

    def per_second(fn, repeats=3) -> float:
        t0 = time.process_time()
        for _ in range(repeats):
            fn()
        return (time.process_time() - t0) / repeats / seconds * 1000

    return {"landmarks_ms_per_s": per_second(lambda: lm.extract_peaks(audio, None)),
            "chromaprint_ms_per_s": per_second(lambda: fingerprint_audio(audio, SR)),
            "decode_ms_per_s": per_second(lambda: load_audio(path, SR))}


class _NoVoice:
    """The split without this work: no VAD, no landmarks (the reference of ``split_cost``)."""

    frame_s = VAD_FRAME_S

    def frame_probs(self, audio: np.ndarray) -> np.ndarray:
        return np.zeros(1, np.float32)


def _no_vad(num_threads: int | None = None) -> _NoVoice:
    return _NoVoice()


def _no_peaks(audio: np.ndarray, voiced_at: np.ndarray | None = None) -> lm.Peaks:
    return lm.Peaks(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))


def split_cost(repeats: int = 3) -> float:
    """CPU of ``c98k split``'s per-video step on the shared videos with sound, with the voice-over
    work (VAD, landmarks) over without it, interleaved A B A B in this process; the median ratio."""
    import commercial98k.split as split_pkg
    import commercial98k.split.step as step_mod
    from commercial98k.split.step import SplitConfig, SplitStep

    videos = [p for p in sorted((MEDIA / "videos").glob("*")) if p.suffix in (".mp4", ".mkv", ".webm")
              and "pyscenedetect" not in p.name]
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "videos").mkdir()
        rows = []
        for p in videos:
            (root / "videos" / p.name).symlink_to(p.resolve())
            rows.append({"video_id": p.stem, "video_path": f"videos/{p.name}", "status": "ok"})
        step = SplitStep(SplitConfig(data_root=str(root)), threads=1)
        real_vad, real_peaks = split_pkg.get_vad, step_mod.extract_peaks
        for _ in range(repeats):
            times = {}
            for name, vad, peaks in (("with", real_vad, real_peaks), ("without", _no_vad, _no_peaks)):
                split_pkg.get_vad, step_mod.extract_peaks = vad, peaks
                t0 = time.process_time()
                for row in rows:
                    step(row)
                times[name] = time.process_time() - t0
            ratios.append(times["with"] / times["without"])
        split_pkg.get_vad, step_mod.extract_peaks = real_vad, real_peaks
    return float(np.median(ratios))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=40)
    ap.add_argument("--min-clip-seconds", type=float, default=4.0)
    ap.add_argument("--features", action="store_true", help="also the emotion/embedding shift at +6 dB (slow)")
    ap.add_argument("--split-cost", action="store_true",
                    help="only: split's CPU on the shared videos with and without the voice-over work")
    args = ap.parse_args()
    if not (MEDIA / "speech").is_dir():
        raise SystemExit(f"{MEDIA}/speech not found (see shared/media/README.md)")
    if args.split_cost:
        ratio = split_cost()
        print(f"split CPU with the VAD and landmarks / without them (shared videos, median of 3): {ratio:.3f}")
        print(f"voiceover: split_cost_ratio={ratio:.3f}")
        return
    files = track_files(args.tracks)
    bank = vo.speech_bank(MEDIA / "speech")
    music = {f.stem: {e: vo.load_music(f, s, d) for e, (s, d) in EXCERPTS.items()} for f in files}
    jingle_src = sorted((MEDIA / "emotify" / "audio").glob("*.mp3"))[-1]
    jingle_music = vo.load_music(jingle_src, 20.0, 2.0)
    conditions = [("clean", 0), ("digits", 0), ("digits", 6), ("digits", 12), ("sentences", 0), ("sentences", 6),
                  ("sentences", 12), ("jingle", 0), ("rerecorded", 0)]
    summary: dict[str, float] = {}
    print(f"{len(files)} tracks x {len(EXCERPTS)} ads; A-B share 7 s of music, C shares none\n")
    print("ids/trk and split: over the overlapping A and B ads; mixed: ids holding two tracks (max: the "
          "most tracks in one id)")
    print(f"{'condition':<15} {'detect':>6} {'before':>6} | {'landmark: ids/trk split mixed max pairs':<40} | "
          f"{'chromaprint: ids/trk split mixed max pairs'}")
    for cond, snr in conditions:
        name = f"{cond}@{snr:+d}dB" if cond in ("digits", "sentences") else cond
        rows = analyse(make_ads(cond, snr, music, bank, jingle_music), args.min_clip_seconds)
        keys = sorted(rows)
        detect = float(np.mean([r["detected"] for r in rows.values()]))
        plain = float(np.mean([r["detected_plain"] for r in rows.values()]))
        lmk = identity_metrics(landmark_ids(rows, keys))
        cp = identity_metrics(chromaprint_ids(rows, keys))
        print(f"{name:<15} {detect:6.2f} {plain:6.2f} | {lmk['ids_per_track']:13.2f} {lmk['tracks_split']:5d} "
              f"{lmk['mixed_ids']:5d} {lmk['largest']:3d} {lmk['pair_recall']:5.2f}        | "
              f"{cp['ids_per_track']:16.2f} {cp['tracks_split']:5d} {cp['mixed_ids']:5d} {cp['largest']:3d} "
              f"{cp['pair_recall']:5.2f}", flush=True)
        tag = name.replace("@", "_").replace("+", "").replace("dB", "db")
        summary[f"detect_{tag}"] = detect
        summary[f"pairs_{tag}"] = lmk["pair_recall"]
        summary[f"mixed_{tag}"] = lmk["mixed_ids"]
        summary[f"largest_{tag}"] = lmk["largest"]
        summary[f"cp_pairs_{tag}"] = cp["pair_recall"]
    libr = library_check(files, music, bank)
    print(f"\n--music-library (full tracks of {len(files[::2])} of the {len(files)}; disjoint C ads under a "
          f"+6 dB voice): own track {libr['library_recall']:.2f}, a track the ad does not play: "
          f"{libr['library_wrong']}")
    summary.update(libr)
    neg = negatives(bank, args.min_clip_seconds)
    print("\nfalse music clips (of 10 each): " + ", ".join(f"{k} {v}" for k, v in neg.items()))
    summary.update({f"false_{k}": v for k, v in neg.items()})
    c = cost(music[files[0].stem]["A"], files[0])
    print(f"cost, CPU ms per second of audio: landmarks {c['landmarks_ms_per_s']:.2f}, chromaprint "
          f"{c['chromaprint_ms_per_s']:.2f}, decoding the MP3 {c['decode_ms_per_s']:.2f}")
    summary["landmarks_vs_decode"] = c["landmarks_ms_per_s"] / c["decode_ms_per_s"]
    if args.features:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from voiceover_features import feature_shift  # the label stage's own models

        rng = np.random.default_rng(11)
        shifts = [feature_shift(parts["A"], vo.mix(parts["A"], vo.digit_voice(bank, len(parts["A"]), 0.8, rng), 6.0))
                  for parts in list(music.values())[:10]]
        for k in shifts[0]:
            summary[f"features_{k}"] = float(np.mean([s[k] for s in shifts]))
        print("feature shift at +6 dB (10 tracks): " + ", ".join(f"{k} {summary['features_' + k]:.3f}" for k in shifts[0]))
    print("voiceover: " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
