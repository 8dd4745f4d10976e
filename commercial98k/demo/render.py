"""Render planned ads (``corpus.VideoPlan``) to MP4 with ffmpeg, espeak-ng and numpy.

Pictures: one lavfi source per shot (``gradients``, ``color``, ``mandelbrot``, ``cellauto``,
``life``) with a product-like shape (``drawbox``) and a price/slogan overlay (``drawtext``,
DejaVu font; skipped with a warning when no font is installed), concatenated with hard cuts.
Sound: the track's span, faded in and out, silent lead-in and tail, and an espeak-ng
voice-over either over the ducked music or alone before it; mixed in numpy and encoded to AAC.
``generate_corpus`` renders a whole plan list and writes ``corpus.json``. It is resumable at the
level of one video: each finished video's record is written beside it (``.render/<file>.json``)
the moment it is rendered, so a run killed after hours keeps every video it finished.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path

import ffmpeg
import numpy as np
import soundfile as sf

from commercial98k.engine.runner import Progress
from commercial98k.engine.stage import safe_call
from commercial98k.errors import C98kError
from commercial98k.media.ffmpeg_io import ffmpeg_bin
from commercial98k.storage.files import atomic_path, atomic_write_json, sha256_file

from .corpus import PLAN_VERSION, STYLES, Shot, VideoPlan
from .music import SAMPLE_RATE, Track, load_library, read_track

log = logging.getLogger(__name__)

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
)
MUSIC_DUCK = 0.45  # music gain under a voice-over (about -7 dB, as ads duck)
VOICE_RMS_DB = -16.0
MANIFEST_NAME = "corpus.json"
RECORDS_DIR = ".render"  # one finished video's record per file, written as soon as it is rendered


class RenderError(C98kError, RuntimeError):
    """A video that could not be rendered (the tool's last error line)."""


@functools.lru_cache(maxsize=1)
def find_font() -> str | None:
    """A bold DejaVu font file for text overlays, or None (text is then left out)."""
    for f in FONT_CANDIDATES:
        if Path(f).is_file():
            return f
    log.warning("no DejaVu font found (Debian: fonts-dejavu-core): demo videos get no text overlays")
    return None


@functools.lru_cache(maxsize=1)
def espeak_bin() -> str | None:
    """``espeak-ng`` on PATH, or None (voice-overs are then left out, with a warning)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        log.warning("espeak-ng not found (Debian: espeak-ng): demo videos get no voice-overs")
    return exe


def speak(text: str, voice: str, seed: int) -> np.ndarray | None:
    """Speech for ``text`` at ``SAMPLE_RATE``, RMS-normalised; None without espeak-ng."""
    exe = espeak_bin()
    if exe is None:
        return None
    speed = 150 + seed % 30
    with tempfile.TemporaryDirectory(prefix="c98k-voice-") as tmp:
        wav = Path(tmp) / "voice.wav"
        proc = subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(wav), text],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0 or not wav.exists():
            raise RenderError(f"espeak-ng failed: {(proc.stderr or '').strip()[-200:]}")
        audio, sr = sf.read(wav, dtype="float32")
    if sr != SAMPLE_RATE:  # espeak-ng speaks at 22.05 kHz; resample linearly otherwise
        x = np.arange(int(len(audio) * SAMPLE_RATE / sr)) * sr / SAMPLE_RATE
        audio = np.interp(x, np.arange(len(audio)), audio).astype(np.float32)
    rms = float(np.sqrt(np.mean(audio**2))) or 1.0
    return audio * (10 ** (VOICE_RMS_DB / 20) / rms)


def _ramp(n: int, start: int, end: int, low: float, ramp: int) -> np.ndarray:
    """Gain curve of length ``n``: 1 outside ``[start, end)``, ``low`` inside, linear ramps."""
    g = np.ones(n, np.float32)
    g[max(0, start):max(0, end)] = low
    for a, b, v0, v1 in ((start - ramp, start, 1.0, low), (end, end + ramp, low, 1.0)):
        a, b = max(0, a), min(n, b)
        if b > a:
            g[a:b] = np.linspace(v0, v1, b - a, dtype=np.float32)
    return g


def mix_soundtrack(plan: VideoPlan, track_audio: np.ndarray) -> tuple[np.ndarray, float | None]:
    """The video's mono soundtrack and the end time of its voice-over (None: no voice)."""
    sr = SAMPLE_RATE
    n = int(round(plan.duration_s * sr))
    out = np.zeros(n, np.float32)
    rng = np.random.default_rng(plan.seed)
    out += rng.normal(0, 10 ** (-66 / 20), n).astype(np.float32)  # a faint noise floor, like a real mix
    m0, m1 = int(plan.music_start_s * sr), int(plan.music_end_s * sr)
    off = int(plan.music_offset_s * sr)
    music = track_audio[off:off + (m1 - m0)].copy()
    fade_in, fade_out = min(len(music), int(0.2 * sr)), min(len(music), int(0.6 * sr))
    music[:fade_in] *= np.linspace(0, 1, fade_in, dtype=np.float32)
    music[len(music) - fade_out:] *= np.linspace(1, 0, fade_out, dtype=np.float32)
    bed = np.zeros(n, np.float32)
    bed[m0:m0 + len(music)] = music
    voice_end = None
    if plan.voice_text and plan.voice_start_s is not None:
        voice = speak(plan.voice_text, plan.voice_voice, plan.seed)
        if voice is not None:
            v0 = int(plan.voice_start_s * sr)
            voice = voice[: max(0, min(len(voice), m1 - v0 if v0 >= m0 else n - v0))]
            if v0 < m0:  # an intro: the voice must end before the music starts
                voice = voice[: max(0, m0 - v0 - int(0.1 * sr))]
            bed *= _ramp(n, v0, v0 + len(voice), MUSIC_DUCK, int(0.15 * sr))
            out[v0:v0 + len(voice)] += voice
            voice_end = round((v0 + len(voice)) / sr, 3)
    out += bed
    peak = float(np.max(np.abs(out)))
    return (out * (0.97 / peak) if peak > 0.97 else out), voice_end


def _hex(color: str) -> str:
    return "0x" + color.lstrip("#")


def _rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def shot_stream(shot: Shot, plan: VideoPlan, index: int):
    """The ffmpeg stream of one shot: background source, product shape, text overlay."""
    w, h, r = plan.width, plan.height, plan.fps
    dur = round(shot.end_s - shot.start_s, 3)
    seed = (plan.seed + 7919 * index) % (2**31)
    kind = shot.background
    if kind == "gradient":
        src = f"gradients=s={w}x{h}:r={r}:c0={_hex(shot.color)}:c1={_hex(shot.accent)}:n=2:seed={seed}:speed=0.03"
        s = ffmpeg.input(src, f="lavfi", t=dur)
    elif kind == "mandelbrot":
        s = ffmpeg.input(f"mandelbrot=s={w // 2}x{h // 2}:r={r}:start_scale={1.5 + seed % 5 * 0.3}", f="lavfi", t=dur)
        s = s.filter("scale", w, h).filter("hue", h=seed % 360, s=1.3)
    elif kind in ("cellauto", "life"):
        # a low-contrast moving texture (30% of the way to the accent colour), not a strobe
        bg = _rgb(shot.color)
        fg = tuple(round(0.7 * b + 0.3 * a) for a, b in zip(_rgb(shot.accent), bg, strict=True))
        if kind == "cellauto":
            src = f"cellauto=s={w // 8}x{h // 8}:r={r}:rule={(30, 90, 110, 150)[seed % 4]}:seed={seed}:scroll=1"
        else:
            src = f"life=s={w // 8}x{h // 8}:r={r}:seed={seed}:ratio=0.3:mold=0"
        s = ffmpeg.input(src, f="lavfi", t=dur).filter("format", "rgb24")
        s = s.filter("lutrgb", **{c: f"if(gt(val,128),{fg[i]},{bg[i]})" for i, c in enumerate("rgb")})
        s = s.filter("scale", w, h, flags="neighbor")
    else:
        s = ffmpeg.input(f"color=c={_hex(shot.color)}:s={w}x{h}:r={r}", f="lavfi", t=dur)
    s = _product(s, STYLES[plan.category].product, shot, w, h)
    font = find_font()
    if font and shot.text:
        s = s.drawtext(text=shot.text, fontfile=font, fontsize=max(11, min(w, h) // 12), fontcolor="white",
                       x="(w-tw)/2", y=f"h*0.82+{3 + seed % 5}*sin(t*3)", box=1, boxcolor="black@0.55",
                       boxborderw=4)
    return s.filter("format", "yuv420p").filter("setsar", 1)


def _product(s, product: str, shot: Shot, w: int, h: int):
    """Draw a product-like shape (filled boxes) at the shot's position."""
    cx = int(shot.product_x * w)
    body, trim = _hex(shot.product_color), "0xffffff@0.85"
    shapes = {  # (x, y, width, height) as shares of the frame, relative to the centre x
        "bottle": [(-0.08, 0.35, 0.16, 0.38, body), (-0.04, 0.27, 0.08, 0.08, trim), (-0.08, 0.48, 0.16, 0.08, trim)],
        "phone": [(-0.1, 0.18, 0.2, 0.56, "0x111111"), (-0.085, 0.21, 0.17, 0.48, body)],
        "box": [(-0.15, 0.35, 0.3, 0.32, body), (-0.02, 0.35, 0.04, 0.32, trim), (-0.15, 0.48, 0.3, 0.05, trim)],
        "shoe": [(-0.18, 0.55, 0.36, 0.1, body), (-0.18, 0.45, 0.16, 0.12, body), (-0.18, 0.64, 0.36, 0.03, trim)],
        "shirt": [(-0.12, 0.3, 0.24, 0.4, body), (-0.2, 0.3, 0.08, 0.16, body), (0.12, 0.3, 0.08, 0.16, body)],
        "bowl": [(-0.16, 0.5, 0.32, 0.1, body), (-0.12, 0.6, 0.24, 0.06, body), (-0.16, 0.46, 0.32, 0.04, trim)],
        "ring": [(-0.1, 0.35, 0.2, 0.2, trim), (-0.07, 0.38, 0.14, 0.14, body), (-0.03, 0.3, 0.06, 0.05, "0xe0f7fa")],
        "book": [(-0.12, 0.28, 0.24, 0.42, body), (-0.12, 0.28, 0.03, 0.42, trim), (-0.06, 0.36, 0.14, 0.04, trim)],
    }
    for x, y, bw, bh, color in shapes.get(product, shapes["box"]):
        s = s.drawbox(x=max(0, cx + int(x * w)), y=int(y * h), width=max(2, int(bw * w)), height=max(2, int(bh * h)),
                      color=color, t="fill")
    return s


def render_video(plan: VideoPlan, library_dir: Path, tracks: dict[str, Track], out_path: Path) -> float | None:
    """Render ``plan`` to ``out_path`` (atomic). Returns the voice-over's end time, if any."""
    track_audio = read_track(library_dir, tracks[plan.track_id])
    audio, voice_end = mix_soundtrack(plan, track_audio)
    video = ffmpeg.concat(*[shot_stream(s, plan, i) for i, s in enumerate(plan.shots)], v=1, a=0)
    with tempfile.TemporaryDirectory(prefix="c98k-render-") as tmp:
        wav = Path(tmp) / "mix.wav"
        sf.write(wav, audio, SAMPLE_RATE, subtype="PCM_16")
        with atomic_path(out_path, suffix=".mp4") as part:
            out = ffmpeg.output(
                video, ffmpeg.input(str(wav)).audio, str(part), format="mp4", vcodec="libx264", preset="veryfast",
                crf=30, pix_fmt="yuv420p", g=plan.fps * 4, acodec="aac", audio_bitrate="96k", ar=44100, ac=2,
                t=f"{plan.duration_s:.3f}", movflags="+faststart", map_metadata=-1, fflags="+bitexact",
                **{"flags:v": "+bitexact", "flags:a": "+bitexact", "threads": 1},
            ).overwrite_output()
            try:
                out.run(cmd=ffmpeg_bin(), capture_stdout=True, capture_stderr=True, quiet=True)
            except ffmpeg.Error as e:
                lines = (e.stderr or b"").decode("utf-8", "replace").strip().splitlines()
                raise RenderError(f"{plan.file}: ffmpeg failed ({lines[-1] if lines else 'no message'})") from e
    return voice_end


def load_corpus(out_dir: str | Path) -> dict:
    """Read ``corpus.json`` (the generated catalog and its ground truth)."""
    return json.loads((Path(out_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))


def _record_path(out_dir: Path, file: str) -> Path:
    return out_dir / RECORDS_DIR / f"{file}.json"


def previous_records(out_dir: str | Path) -> dict[str, dict]:
    """What earlier runs rendered into ``out_dir``: ``corpus.json``'s videos, then the per-video records
    (a run that was killed before writing ``corpus.json`` left only those)."""
    out_dir = Path(out_dir)
    previous: dict[str, dict] = {}
    if (out_dir / MANIFEST_NAME).exists():
        previous = {v["file"]: v for v in load_corpus(out_dir).get("videos", [])}
    for rec in sorted((out_dir / RECORDS_DIR).glob("*.json")):
        try:
            row = json.loads(rec.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a torn record: that video is rendered again
        previous[row["file"]] = row
    return previous


def generate_corpus(plans: list[VideoPlan], library_dir: str | Path, out_dir: str | Path, workers: int = 2,
                    progress: bool = True, meta: dict | None = None) -> dict:
    """Render every planned video into ``out_dir`` and write ``out_dir/corpus.json``.

    A video whose file exists, matches its record's checksum and whose plan is unchanged since the
    last run (finished or killed) is kept. A video that fails is reported (``status`` failed with
    the cause) and left out.
    """
    library_dir, out_dir = Path(library_dir), Path(out_dir)
    tracks = {t.track_id: t for t in load_library(library_dir)}
    previous = previous_records(out_dir)

    def step(item: dict) -> dict:
        plan: VideoPlan = item["plan"]
        path = out_dir / plan.file
        old = previous.get(plan.file)
        if old and old.get("plan_hash") == plan.plan_hash() and path.exists() and \
                old.get("sha256") == sha256_file(path):
            return {**old, "status": "skipped", "path": plan.file}
        try:
            voice_end = render_video(plan, library_dir, tracks, path)
        except Exception as e:
            return {"path": plan.file, "status": "failed", "error": f"{type(e).__name__}: {e}"}
        record = {**asdict(plan), "plan_hash": plan.plan_hash(), "voice_end_s": voice_end,
                  "cut_times": plan.cut_times(), "sha256": sha256_file(path)}
        atomic_write_json(_record_path(out_dir, plan.file), record)
        return {**record, "status": "ok", "path": plan.file}

    rows = _render_all(step, [{"plan": p, "path": p.file} for p in plans], workers, progress)
    videos = []
    for p in plans:
        r = rows[p.file]
        if r["status"] in ("ok", "skipped"):
            videos.append({k: v for k, v in r.items() if k not in ("status", "path", "error")})
    used = {v["track_id"] for v in videos}
    doc = {"version": PLAN_VERSION, **(meta or {}),
           "tracks": [asdict(t) for t in tracks.values() if t.track_id in used],
           "styles": {c: asdict(STYLES[c]) for c in sorted({p.category for p in plans})},
           "videos": videos, "failed": [r for r in rows.values() if r["status"] == "failed"]}
    atomic_write_json(out_dir / MANIFEST_NAME, doc)
    return doc


def _render_all(step, items: list[dict], workers: int, progress: bool) -> dict[str, dict]:
    """``step`` over ``items`` on ``workers`` threads (ffmpeg does the work); rows by path, failures printed."""
    bar = Progress(len(items), "render ads", disable=not progress)
    rows = {}
    try:
        with cf.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for row in pool.map(lambda item: safe_call(step, item), items):
                rows[row["path"]] = row
                bar.update(1, [row])
    finally:
        bar.close()
    return rows


__all__ = ["generate_corpus", "load_corpus", "mix_soundtrack", "previous_records", "render_video", "speak"]
