"""The benchmark-size corpus (``c98k demo --size benchmark``, ``make bench-yuyin``): hundreds of tracks, 2,000+ ads.

The demo corpus (43 tracks, 84 ads) is a smoke run: its test split holds about a dozen tracks, so
a random ranker already reaches R@10 ~0.8. This preset widens the music library and the ads:

* Music: 40 more music21 corpus pieces (``music.BENCH_PIECES``), each arranged 8 ways (``music.VARIANTS``):
  a mood with its General MIDI instruments and tempo, and a key of its own (the 8 transpositions
  of a piece are distinct pitch classes, so no two versions of a piece share their chroma and the
  fingerprinter keeps them apart). 320 rendered tracks + the demo's 43 = 363 tracks.
* Ads: all 12 categories x 170 short ads (8-14 s) = 2,040 ads. Each category draws a playlist
  of 30 tracks with the demo's rules (``corpus.STYLES``: category -> moods, sound, pace; shot
  length from the track's energy), so a track is used by about six ads and the grouped split
  puts about 30 % of the tracks (100+) in the test split, none of them in training.

The mood of an arrangement follows from how it is played, as a library would tag it:
fast synth leads or piano are *energetic*, bright mallets and electric piano *happy*, flute and
guitar at a slow tempo *tender*, slow strings or pads *calm*, accordion at a walking tempo
*nostalgic*.

Every step of the demo runner is resumable (``.steps`` markers; each stage skips finished
items), so the corpus can be built in stages (``--step music``, ``--step corpus``, ...) and a
killed run continues where it stopped. ``estimate`` prints the expected time first.
"""

from __future__ import annotations

import json
from pathlib import Path

from .corpus import STYLES
from .music import ARRANGEMENTS, bench_arrangements

#: Overrides of ``DemoConfig`` for ``--size benchmark``.
BENCHMARK = {"categories": tuple(STYLES), "videos_per_category": 170, "quick": True, "playlist_size": 30,
             "music_sources": ("immich", "music21", "music21-bench"), "split_fractions": "0.6,0.1,0.3",
             "shards_on_true_tracks": True}  # a held-out track is truly unseen (demo/truth.py)

#: The steps that build the corpus and its shards (training is ``yuyin benchmark --seeds``).
CORPUS_STEPS = ("music", "corpus", "emotion", "fetch", "split", "label", "truth", "shards", "stats")

#: Seconds per item (wall) with 2 workers on 2 cores, measured on the full benchmark corpus here
#: (render: 2,040 ads at 1.1-1.3 ads/s; fetch 434 s, split 622 s, label 1,710 s for 2,040 ads).
#: On a machine shared with other jobs the stages run 2-4x slower.
RATES = {"music": 3.0, "render": 0.85, "fetch": 0.21, "split": 0.30, "label": 0.84}


def library_size(sources: tuple[str, ...]) -> int:
    """Tracks a library of ``sources`` holds (immich-memories-music counted as 28)."""
    n = 28 if "immich" in sources else 0
    n += len(ARRANGEMENTS) if "music21" in sources else 0
    return n + (len(bench_arrangements()) if "music21-bench" in sources else 0)


def estimate(work_dir: str | Path, sources: tuple[str, ...], n_ads: int, rates: dict[str, float] = RATES) -> str:
    """One line: what is left to make and how long it should take (tracks and ads already made are not counted)."""
    work = Path(work_dir)
    tracks_done = len(list((work / "music" / "tracks").glob("*.wav")))
    tracks_left = max(0, library_size(sources) - tracks_done)
    ads_done = 0
    corpus = work / "catalog" / "corpus.json"
    if corpus.is_file():
        ads_done = len(json.loads(corpus.read_text(encoding="utf-8")).get("videos", []))
    else:
        ads_done = len(list((work / "catalog").glob("*.mp4")))
    ads_left = max(0, n_ads - ads_done)
    stages = {"music": tracks_left * rates["music"], "render": ads_left * rates["render"],
              **{k: n_ads * rates[k] for k in ("fetch", "split", "label")}}
    for step in ("fetch", "split", "label"):  # a finished step costs nothing on a re-run
        if (work / ".steps" / f"{step}.completed").is_file():
            stages[step] = 0.0
    total = sum(stages.values())
    parts = ", ".join(f"{k} {v / 60:.0f} min" for k, v in stages.items())
    return (f"benchmark corpus: {library_size(sources)} tracks ({tracks_left} to render), {n_ads} ads "
            f"({ads_left} to render); estimated {total / 3600:.1f} h on 2 free cores ({parts}); "
            "resumable: run again to continue")
