"""How far a voice-over moves a clip's emotion and pooled audio embedding, before and after speech pooling.

For N held-out Emotify tracks (tracks 31-40 of each genre, a 12-s excerpt from 42 s: the bundled
speech correction was fitted on tracks 1-30 and other speakers), real speech (FSDD digit strings
of speakers nicolas/theo/yweweler, CMU ARCTIC sentences of axb) over 50-100 % of the excerpt at
each speech-to-music ratio. Speech spans come from Silero VAD as ``c98k split`` records them
(``split.vad``). Per condition it prints the mean/median KL(music alone || mix) of
the emotion distribution and the cosine of the pooled audio embeddings, with today's pooling
(``before``: every frame alike) and with ``label.speech_pooling`` (``after``), and their ratio.

    .venv/bin/python benchmarks/voiceover_features.py [--tracks 40] [--snr 0,6,12]
    .venv/bin/python benchmarks/voiceover_features.py --fit commercial98k/data/speech_correction_musicnn.npz

``feature_shift(music, mix)`` (16 kHz mono arrays) is the measuring function other benchmarks import.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from commercial98k.label import speech_pooling as sp  # noqa: E402
from commercial98k.media.ffmpeg_io import probe  # noqa: E402
from commercial98k.testing import voiceover as vo  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
GENRES = ("classical", "electronic", "pop", "rock")
HELD_OUT = tuple(range(31, 41))
FIT_TRACKS, FIT_STARTS, FIT_DRAWS, FIT_SNR = tuple(range(1, 31)), (0.0, 24.0), 5, (-3.0, 15.0)
TEST_DIGITS, TEST_SENTENCES = ("nicolas", "theo", "yweweler"), "axb"
FIT_DIGITS, FIT_SENTENCES = ("george", "jackson", "lucas"), "aew"
EXCERPT_S, START_S = 12.0, 42.0


@dataclass
class FeatureModels:
    """The label stage's default audio model and emotion head, and the speech-aware head."""

    audio: Any
    head: Any
    speech_emotion: sp.SpeechAwareEmotion


@functools.lru_cache(maxsize=1)
def default_models() -> FeatureModels:
    from commercial98k.label.extractors import LabelConfig, LabelModels

    models = LabelModels(LabelConfig())
    head = models.emotion.head if isinstance(models.emotion, sp.SpeechAwareEmotion) else models.emotion
    return FeatureModels(models.audio, head, sp.SpeechAwareEmotion(head, sp.bundled_correction(models.audio.info)))


def speech_share(audio16k: np.ndarray, n_frames: int, models: FeatureModels) -> np.ndarray:
    """Voiced share of each audio-model frame, from the speech spans split records (Silero VAD)."""
    from commercial98k.split.vad import get_vad

    spans = get_vad().speech_spans(audio16k)
    return sp.frame_speech_share(spans, n_frames, models.audio.hop_s, getattr(models.audio, "patch_s", None))


def kl(p: dict[str, float], q: dict[str, float]) -> float:
    """KL(p || q) of two emotion distributions over the same classes."""
    a = np.clip(np.array([p[k] for k in p]), 1e-9, 1.0)
    b = np.clip(np.array([q[k] for k in p]), 1e-9, 1.0)
    return float((a * np.log(a / b)).sum())


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def feature_shift(music: np.ndarray, mix: np.ndarray, models: FeatureModels | None = None) -> dict[str, float]:
    """Emotion KL(music alone || mix) and pooled-embedding cosine, before (every frame alike) and
    after (``label.speech_pooling``); ``music`` and ``mix`` are mono 16 kHz of equal length."""
    models = models or default_models()
    out: dict[str, float] = {}
    side = {}
    for name, audio in (("music", music), ("mix", mix)):
        seq = np.asarray(models.audio.embed(audio), np.float64)
        share = speech_share(audio, len(seq), models)
        side[name] = dict(seq=seq, share=share, before=models.head.predict(seq)["probs"],
                          after=models.speech_emotion.predict(seq, share)["probs"],
                          pooled_before=seq.mean(axis=0),
                          pooled_after=sp.pooled_embedding(seq, share, models.speech_emotion.correction))
    m, x = side["music"], side["mix"]
    out["kl_before"], out["kl_after"] = kl(m["before"], x["before"]), kl(m["after"], x["after"])
    out["cos_before"] = _cos(m["pooled_before"], x["pooled_before"])
    out["cos_after"] = _cos(m["pooled_after"], x["pooled_after"])
    out["speech_share"] = float(x["share"].mean())
    return out


def excerpt(path: Path, start_s: float = START_S) -> np.ndarray:
    """A 12-s excerpt from ``start_s`` (earlier on a track too short for it)."""
    start = max(0.0, min(start_s, probe(path).duration_s - EXCERPT_S - 0.5))
    return vo.load_music(path, start, EXCERPT_S)


def voice_over(bank: vo.SpeechBank, n: int, rng: np.random.Generator, digits: tuple[str, ...], sentences: str,
               use_digits: bool) -> np.ndarray:
    """Real speech over 50-100 % of ``n`` samples: one speaker's digit string, or read sentences."""
    coverage = float(rng.uniform(0.5, 1.0))
    if use_digits:
        return vo.digit_voice(bank, n, coverage, rng, speaker=str(rng.choice(digits)))
    return vo.voice_track(bank.sentences[sentences], n, coverage, rng, pause_s=(0.3, 0.3))


def tracks(numbers: tuple[int, ...], emotify: Path) -> list[Path]:
    """Emotify files, genres interleaved (the first N cover every genre)."""
    return [emotify / "audio" / f"{g}_{n}.mp3" for n in numbers for g in GENRES]


def run(n_tracks: int, snrs: list[float], media: Path = MEDIA) -> dict[float, list[dict[str, float]]]:
    """``feature_shift`` of every held-out track at every ratio (deterministic)."""
    models, bank = default_models(), vo.speech_bank(media / "speech")
    results: dict[float, list[dict[str, float]]] = {s: [] for s in snrs}
    for t, path in enumerate(tracks(HELD_OUT, media / "emotify")[:n_tracks]):
        music = excerpt(path)
        for snr in snrs:
            rng = np.random.default_rng([t, int(snr * 10) + 1000])
            voice = voice_over(bank, len(music), rng, TEST_DIGITS, TEST_SENTENCES, use_digits=t % 2 == 0)
            results[snr].append(feature_shift(music, vo.mix(music, voice, snr), models))
    return results


def fit(out: Path, media: Path = MEDIA) -> sp.SpeechCorrection:
    """Fit and save the speech correction: tracks 1-30 of each genre, two excerpts each, ``FIT_DRAWS``
    voice-overs per excerpt by the fit speakers at a speech-to-music ratio drawn from ``FIT_SNR``."""
    models, bank = default_models(), vo.speech_bank(media / "speech")
    mix, clean, shares = [], [], []
    rng = np.random.default_rng(1)
    for path in tracks(FIT_TRACKS, media / "emotify"):
        for start in FIT_STARTS:
            music = excerpt(path, start)
            seq = models.audio.embed(music)
            for _ in range(FIT_DRAWS):
                voice = voice_over(bank, len(music), rng, FIT_DIGITS, FIT_SENTENCES, use_digits=rng.random() < 0.5)
                x = vo.mix(music, voice, float(rng.uniform(*FIT_SNR)))
                mseq = models.audio.embed(x)
                mix.append(mseq), clean.append(seq), shares.append(speech_share(x, len(mseq), models))
    meta = {"data": f"emotify tracks {FIT_TRACKS[0]}-{FIT_TRACKS[-1]} per genre, excerpts at {list(FIT_STARTS)} s",
            "snr_db": list(FIT_SNR), "draws": FIT_DRAWS, "speakers": [*FIT_DIGITS, FIT_SENTENCES],
            "fit_by": "benchmarks/voiceover_features.py --fit"}
    corr = sp.fit_correction(mix, clean, shares, models.audio.info.tag(), meta=meta)
    corr.save(out)
    print(f"{out}: fitted on {len(mix)} mixes, {corr.meta['frames']} frames")
    return corr


def _stat(rows: list[dict[str, float]], key: str) -> tuple[float, float]:
    values = [r[key] for r in rows]
    return float(np.mean(values)), float(np.median(values))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=40, help="held-out tracks (at most 40)")
    ap.add_argument("--snr", default="0,6,12", help="speech-to-music ratios, dB")
    ap.add_argument("--media", default=str(MEDIA))
    ap.add_argument("--fit", metavar="OUT", help="fit the speech correction and write it to OUT, then stop")
    args = ap.parse_args(argv)
    if args.fit:
        fit(Path(args.fit), Path(args.media))
        return
    snrs = [float(s) for s in args.snr.split(",")]
    results = run(min(args.tracks, 4 * len(HELD_OUT)), snrs, Path(args.media))
    print(f"{len(results[snrs[0]])} held-out Emotify tracks, 12-s excerpts, real speech over 50-100 %")
    print(f"{'speech':>7} {'voiced':>6} | {'KL before':>15} {'KL after':>15} {'ratio':>6} | "
          f"{'cos before':>15} {'cos after':>15}")
    print(f"{'dB':>7} {'share':>6} | {'mean / median':>15} {'mean / median':>15} {'':>6} | "
          f"{'mean / median':>15} {'mean / median':>15}")
    summary = {}
    for snr in snrs:
        rows = results[snr]
        st = {k: _stat(rows, k) for k in ("kl_before", "kl_after", "cos_before", "cos_after", "speech_share")}
        ratio = st["kl_after"][0] / max(st["kl_before"][0], 1e-12)
        print(f"{snr:+7.0f} {st['speech_share'][0]:6.2f} | {st['kl_before'][0]:7.4f} {st['kl_before'][1]:7.4f} "
              f"{st['kl_after'][0]:7.4f} {st['kl_after'][1]:7.4f} {ratio:6.2f} | "
              f"{st['cos_before'][0]:7.3f} {st['cos_before'][1]:7.3f} {st['cos_after'][0]:7.3f} {st['cos_after'][1]:7.3f}")
        tag = f"{snr:g}db"
        summary.update({f"kl_before_{tag}": st["kl_before"][0], f"kl_after_{tag}": st["kl_after"][0],
                        f"cos_before_{tag}": st["cos_before"][0], f"cos_after_{tag}": st["cos_after"][0]})
    print("voiceover_features: " + " ".join(f"{k}={v:.4f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
