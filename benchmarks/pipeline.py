"""Speed of each pipeline stage in multiples of real time per CPU core, vs a plain ffmpeg decode.

For every file in ``../shared/media/videos`` (or ``--videos``) it times, with CPU time (this
process plus its children, so threads and ffmpeg subprocesses count; divide by nothing: the
figure is per core):

* ``ffmpeg decode (reference)``: ``ffmpeg -threads 1 -i FILE -f null -``, every stream decoded;
* ``decode``: what the stages decode: audio at 16 kHz (``media.load_audio``) and frames at 1 fps,
  224 px (``media.load_frames``);
* ``shots``: ``split.shots.detect_shots`` (PySceneDetect adaptive detector, its own decoding);
* ``split, one decode``: ``split.decode.scan_video``, what ``c98k split`` runs per video: one
  decode serving shots, keyframe pHashes and YAMNet (compare with decode + shots + music segment);
* ``music segment``: ``split.music`` YAMNet music/speech segmentation of the decoded audio;
* ``embeddings``: the audio model (musicnn) on the audio and the frame model
  (EfficientNet-Lite0) on the frames, then each of them alone;
* ``emotion``: the emotion head (``gems-head``) on the audio embedding sequence; the audio
  embedding it needs is the ``audio`` row above.

Speed = media seconds / CPU seconds ("x real time per core"); the last column divides it by the
reference decode's speed on the same files, measured in the same run. Models are built and
warmed up before timing. A stage whose code or weights are missing is reported as such.

    .venv/bin/python benchmarks/pipeline.py [--videos DIR] [--repeats 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VIDEOS = ROOT.parent / "shared" / "media" / "videos"
VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov")
AUDIO_SR = 16000
FRAME_FPS = 1.0


def cpu_seconds() -> float:
    """CPU time of this process (all threads, ns resolution) plus that of its finished children."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


@dataclass
class Result:
    """Accumulated media and CPU seconds of one stage."""

    stage: str
    media_s: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    files: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def speed(self) -> float:
        return self.media_s / self.cpu_s if self.cpu_s > 0 else float("nan")


@dataclass
class Item:
    """One media file, its duration and what earlier stages decoded or computed from it."""

    path: Path
    duration_s: float
    has_audio: bool
    cache: dict = field(default_factory=dict)


# --- stages: each takes an Item (and the shared models) and does the stage's work -------------
def stage_reference(item: Item, models: dict) -> None:
    from commercial98k.media.ffmpeg_io import ffmpeg_bin

    subprocess.run([ffmpeg_bin(), "-nostdin", "-v", "error", "-threads", "1", "-i", str(item.path), "-f", "null", "-"],
                   check=True, capture_output=True)


def stage_decode(item: Item, models: dict) -> None:
    from commercial98k.media import ffmpeg_io as media

    if item.has_audio:
        item.cache["audio"] = media.load_audio(item.path, AUDIO_SR)
    item.cache["frames"] = media.load_frames(item.path, fps=FRAME_FPS, size=224)


def stage_shots(item: Item, models: dict) -> None:
    from commercial98k.split.shots import detect_shots

    item.cache["shots"] = detect_shots(item.path)


def stage_split_once(item: Item, models: dict) -> None:
    """What ``c98k split`` decodes now: one PyAV pass for shots, keyframe pHashes and YAMNet."""
    from commercial98k.split.decode import scan_video

    scan_video(item.path, music_detector=models["music"] if item.has_audio else None)


def stage_music(item: Item, models: dict) -> None:
    item.cache["music"] = models["music"].segment(item.cache["audio"])


def stage_audio_embedding(item: Item, models: dict) -> None:
    audio = item.cache["audio"]
    model = models["audio"]
    if model.sample_rate != AUDIO_SR:
        from scipy.signal import resample_poly

        audio = resample_poly(audio, model.sample_rate, AUDIO_SR).astype("float32")
    item.cache["audio_seq"] = model.embed(audio)


def stage_frame_embedding(item: Item, models: dict) -> None:
    item.cache["frame_seq"] = models["frames"].embed_images(item.cache["frames"])


def stage_embeddings(item: Item, models: dict) -> None:
    if item.has_audio:
        stage_audio_embedding(item, models)
    stage_frame_embedding(item, models)


def stage_emotion(item: Item, models: dict) -> None:
    item.cache["emotion"] = models["emotion"].predict(item.cache["audio_seq"])


#: stage name -> (function, needs audio, models it needs)
STAGES: dict[str, tuple[Callable[[Item, dict], None], bool, tuple[str, ...]]] = {
    "ffmpeg decode (reference)": (stage_reference, False, ()),
    "decode": (stage_decode, False, ()),
    "shots": (stage_shots, False, ()),
    "split, one decode (shots+pHash+music)": (stage_split_once, False, ("music",)),
    "music segment": (stage_music, True, ("music",)),
    "embeddings": (stage_embeddings, False, ("audio", "frames")),
    "  audio (musicnn)": (stage_audio_embedding, True, ("audio",)),
    "  frames (EfficientNet-Lite0)": (stage_frame_embedding, False, ("frames",)),
    "emotion (head on embeddings)": (stage_emotion, True, ("emotion",)),
}


def build_models(threads: int) -> tuple[dict, dict[str, str]]:
    """The models the stages use; a model that cannot be built is reported, not fatal."""
    import torch

    torch.set_num_threads(threads)
    builders = {
        "music": lambda: __import__("commercial98k.split.music", fromlist=["get_detector"]).get_detector(
            num_threads=threads),
        "audio": lambda: _registry("AUDIO").create("musicnn", device="cpu"),
        "frames": lambda: _registry("FRAMES").create("efficientnet-lite0", device="cpu"),
        "emotion": lambda: _registry("EMOTION").create("gems-head"),
    }
    models, errors = {}, {}
    for name, build in builders.items():
        try:
            models[name] = build()
        except Exception as e:  # missing module, weights or dependency: report it
            errors[name] = f"{type(e).__name__}: {e}"
    return models, errors


def _registry(kind: str):
    from commercial98k.models import registry

    return getattr(registry, kind)


def load_items(folder: Path) -> list[Item]:
    from commercial98k.media.ffmpeg_io import probe

    items = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in VIDEO_EXTS:
            info = probe(p)
            if info.has_video:
                items.append(Item(p, info.duration_s, info.has_audio))
    return items


def run_stage(name: str, items: list[Item], models: dict, model_errors: dict[str, str], repeats: int) -> Result:
    fn, needs_audio, needed = STAGES[name]
    res = Result(name)
    missing = [f"{m}: {model_errors[m]}" for m in needed if m not in models]
    if missing:
        res.error = "not available (" + "; ".join(missing) + ")"
        return res
    for item in items:
        if needs_audio and not item.has_audio:
            continue
        if name.startswith("emotion") and "audio_seq" not in item.cache:
            continue
        try:
            best_cpu, best_wall = float("inf"), float("inf")
            for _ in range(repeats):
                c0, w0 = cpu_seconds(), time.perf_counter()
                fn(item, models)
                best_cpu, best_wall = min(best_cpu, cpu_seconds() - c0), min(best_wall, time.perf_counter() - w0)
        except Exception as e:
            res.notes.append(f"{item.path.name}: {type(e).__name__}: {str(e)[:120]}")
            continue
        res.media_s += item.duration_s
        res.cpu_s += best_cpu
        res.wall_s += best_wall
        res.files += 1
    if not res.files and not res.error:
        res.error = "no file processed" + (f" ({res.notes[0]})" if res.notes else "")
    return res


def warm_up(models: dict) -> None:
    """One short pass through every model so one-time set-up is not timed."""
    import numpy as np

    audio = np.zeros(AUDIO_SR * 4, np.float32) + 1e-3
    if "frames" in models:
        models["frames"].embed_images(np.zeros((2, 224, 224, 3), np.uint8))
    if "music" in models:
        models["music"].segment(audio)
    if "audio" in models:
        seq = models["audio"].embed(audio)
        if "emotion" in models:
            models["emotion"].predict(seq)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, default=VIDEOS, help="Folder of videos [../shared/media/videos].")
    ap.add_argument("--repeats", type=int, default=1, help="Best of this many runs per file and stage.")
    ap.add_argument("--threads", type=int, default=1, help="Threads for torch and onnxruntime.")
    args = ap.parse_args()
    if not args.videos.is_dir():
        sys.exit(f"error: {args.videos}: no such folder (the benchmark reads ../shared/media/videos)")
    items = load_items(args.videos)
    if not items:
        sys.exit(f"error: {args.videos}: no video files")
    print(f"{len(items)} videos, {sum(i.duration_s for i in items):.0f} s of media, "
          f"{sum(i.has_audio for i in items)} with audio; threads={args.threads}, best of {args.repeats}")
    models, errors = build_models(args.threads)
    warm_up(models)
    results = []
    for name in STAGES:
        print(f"  timing {name} ...", file=sys.stderr, flush=True)
        results.append(run_stage(name, items, models, errors, args.repeats))
    ref = results[0].speed
    print(f"\n{'stage':30s} {'files':>5s} {'media s':>8s} {'CPU s':>8s} {'x real time/core':>17s} {'vs ffmpeg decode':>17s}")
    for r in results:
        if r.error:
            print(f"{r.stage:30s} {r.error}")
            continue
        print(f"{r.stage:30s} {r.files:5d} {r.media_s:8.1f} {r.cpu_s:8.3f} {r.speed:17.1f} {r.speed / ref:17.3f}")
        for note in r.notes:
            print(f"    skipped {note}")


if __name__ == "__main__":
    main()
