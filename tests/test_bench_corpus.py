"""The benchmark-size corpus preset: its library, its plans and its time estimate (no rendering of the whole)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from commercial98k.demo.bench_corpus import BENCHMARK, estimate, library_size
from commercial98k.demo.corpus import plan_corpus
from commercial98k.demo.music import (
    ARRANGEMENTS,
    MOOD_ENERGY,
    VARIANTS,
    Track,
    _arrangement_id,
    bench_arrangements,
    render_arrangement,
)


def _fake_library() -> list[Track]:
    """The benchmark library's tracks as ``build_library`` would list them (without audio)."""
    tracks = []
    for a in (*ARRANGEMENTS, *bench_arrangements()):
        tracks.append(Track(_arrangement_id(a), a.title, a.mood, a.style, "music21", "pd", "x.wav", 30.0,
                            MOOD_ENERGY[a.mood], "0"))
    for i in range(28):
        mood = sorted(MOOD_ENERGY)[i % 5]
        tracks.append(Track(f"immich-{i}", str(i), mood, "acoustic" if i % 2 else "electronic", "immich", "MIT",
                            "x.wav", 30.0, MOOD_ENERGY[mood], "0"))
    return tracks


def test_every_arrangement_is_a_distinct_track_in_its_own_key():
    arr = bench_arrangements()
    assert len({_arrangement_id(a) for a in arr}) == len(arr) >= 300
    keys = defaultdict(list)
    for a in arr:
        keys[a.work].append(a.transpose % 12)
    assert all(len(set(k)) == len(VARIANTS) for k in keys.values())  # no two versions share a pitch class
    assert library_size(BENCHMARK["music_sources"]) == len(arr) + len(ARRANGEMENTS) + 28


def test_benchmark_plans_reach_the_issue_sizes():
    tracks = _fake_library()
    plans = plan_corpus(tracks, BENCHMARK["categories"], BENCHMARK["videos_per_category"], 0, True,
                        BENCHMARK["playlist_size"])
    assert len(plans) >= 2000
    used = Counter(p.track_id for p in plans)
    assert len(used) >= 300
    cats_per_track = defaultdict(set)
    for p in plans:
        cats_per_track[p.track_id].add(p.category)
        assert 8.0 <= p.duration_s <= 14.0
    assert sum(len(c) > 1 for c in cats_per_track.values()) < 0.2 * len(used)  # playlists stay mostly a shop's own


def test_a_benchmark_arrangement_renders(tmp_path: Path):
    t = render_arrangement(bench_arrangements()[5], tmp_path)
    assert (tmp_path / t.path).stat().st_size > 100_000 and t.mood == VARIANTS[5][0]


def test_estimate_counts_only_what_is_left(tmp_path: Path):
    first = estimate(tmp_path, BENCHMARK["music_sources"], 2040)
    assert "2040 ads (2040 to render)" in first and " h on 2 free cores" in first
    (tmp_path / "music" / "tracks").mkdir(parents=True)
    for i in range(100):
        (tmp_path / "music" / "tracks" / f"t{i}.wav").write_bytes(b"")
    n = library_size(BENCHMARK["music_sources"])
    assert f"({n - 100} to render)" in estimate(tmp_path, BENCHMARK["music_sources"], 2040)
    # a finished stage is not estimated again
    assert "fetch 7 min" in estimate(tmp_path, BENCHMARK["music_sources"], 2040)
    (tmp_path / ".steps").mkdir()
    (tmp_path / ".steps" / "fetch.completed").write_text("{}")
    again = estimate(tmp_path, BENCHMARK["music_sources"], 2040)
    assert "fetch 0 min" in again and "split 10 min" in again
