"""The demo corpus generator: real music in, ad-like videos out, as planned and reproducible."""

from __future__ import annotations

import dataclasses
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from commercial98k.demo import music
from commercial98k.demo.corpus import STYLES, plan_corpus, plan_video
from commercial98k.demo.render import generate_corpus, load_corpus, render_video
from commercial98k.label.emotion_data import GEMS9, load_emotify
from commercial98k.media.ffmpeg_io import load_audio, probe
from commercial98k.storage.files import sha256_file

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
SR = music.SAMPLE_RATE


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[music.Track]]:
    """The immich-memories-music tracks plus one rendered music21 arrangement."""
    folder = tmp_path_factory.mktemp("music")
    tracks = music.build_library(folder, ("immich",), progress=False)
    if shutil.which("fluidsynth") and music.SOUNDFONT.is_file():
        tracks.append(music.render_arrangement(music.ARRANGEMENTS[5], folder))  # the chorale: short to render
    return folder, tracks


def _track_corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _best_corr(reference: np.ndarray, audio: np.ndarray, max_lag: int = 2048) -> float:
    """Highest normalised correlation of ``audio`` with ``reference`` over small lags (codec delay)."""
    n = min(len(reference), len(audio)) - 2 * max_lag
    ref = reference[max_lag:max_lag + n]
    return max(_track_corr(ref, audio[max_lag + lag:max_lag + lag + n]) for lag in range(-max_lag, max_lag + 1, 32))


def test_library_tracks_are_real_music(library) -> None:
    folder, tracks = library
    assert len({t.mood for t in tracks}) == 5
    for t in tracks:
        audio = music.read_track(folder, t)
        assert len(audio) == int(music.TRACK_SECONDS * SR)
        rms = np.sqrt(np.mean(audio[: 20 * SR] ** 2))
        assert 0.05 < rms < 0.3, t.track_id  # normalised to about -18 dBFS, not silent
        assert 0 <= t.energy <= 1


def test_music21_arrangement_uses_its_tempo(library) -> None:
    folder, tracks = library
    rendered = [t for t in tracks if t.source == "music21"]
    if not rendered:
        pytest.skip("fluidsynth or the GM soundfont is missing")
    score = music.arrange_score(music.ARRANGEMENTS[5])
    marks = list(score.recurse().getElementsByClass("MetronomeMark"))
    assert [m.number for m in marks] == [music.ARRANGEMENTS[5].bpm]
    programs = {i.midiProgram for i in score.recurse().getElementsByClass("Instrument")}
    assert programs == set(music.ARRANGEMENTS[5].programs)


def test_emotion_set_loads_as_emotify(library, tmp_path: Path) -> None:
    folder, tracks = library
    music.write_emotion_set(folder, tmp_path, tracks, seconds=5.0)
    ds = load_emotify(tmp_path)
    assert len(ds.items) == len(tracks)
    by_id = {t.track_id: t for t in tracks}
    for it in ds.items:
        expected = {g for g in music.MOOD_GEMS[by_id[it.item_id].mood]}
        assert {GEMS9[i] for i in np.flatnonzero(it.gems)} == expected


def test_plans_are_deterministic_and_tied_to_music(library) -> None:
    _, tracks = library
    cats = ["sports_outdoor", "jewelry_accessories"]
    a = plan_corpus(tracks, cats, 9, seed=3)
    assert a == plan_corpus(tracks, cats, 9, seed=3)
    assert a != plan_corpus(tracks, cats, 9, seed=4)
    for p in a:  # moods from the category's pool, shots tile the video
        assert p.track_mood in STYLES[p.category].moods
        assert p.shots[0].start_s == 0 and p.shots[-1].end_s == p.duration_s
        assert all(s.end_s == n.start_s for s, n in zip(p.shots, p.shots[1:], strict=False))
    reused = [t for t in {p.track_id for p in a} if sum(p.track_id == t for p in a) > 1]
    assert reused, "some tracks must be reused across ads"

    def mean_shot(category: str) -> float:
        shots = [s.end_s - s.start_s for p in a if p.category == category for s in p.shots]
        return float(np.mean(shots))

    assert mean_shot("sports_outdoor") < mean_shot("jewelry_accessories")  # energetic -> faster cuts


@pytest.fixture(scope="module")
def rendered(library, tmp_path_factory: pytest.TempPathFactory):
    """Three rendered ads: two over the same track (no voice), one with a voice-over."""
    folder, tracks = library
    out = tmp_path_factory.mktemp("ads")
    track = next(t for t in tracks if t.mood == "energetic")
    rng = random.Random(11)
    a = dataclasses.replace(plan_video(rng, "sports_outdoor", 0, track, quick=True), voice_text=None,
                            voice_start_s=None)
    b = dataclasses.replace(plan_video(rng, "digital", 1, track, quick=True), voice_text=None, voice_start_s=None)
    c = plan_video(random.Random(5), "cosmetics", 2, next(t for t in tracks if t.mood == "tender"), quick=False)
    c = dataclasses.replace(c, voice_text="Hydrating serum. Glow naturally.", voice_start_s=c.music_start_s + 1.0)
    doc = generate_corpus([a, b, c], folder, out, workers=2, progress=False)
    assert not doc["failed"]
    return folder, tracks, out, [a, b, c], doc


def test_videos_match_their_plan(rendered) -> None:
    _, _, out, plans, doc = rendered
    assert [v["file"] for v in doc["videos"]] == [p.file for p in plans]
    for p in plans:
        info = probe(out / p.file)
        assert info.has_video and info.has_audio
        assert (info.width, info.height) == (p.width, p.height)
        assert info.duration_s == pytest.approx(p.duration_s, abs=0.1)


def test_cuts_near_planned_shot_boundaries(rendered) -> None:
    from scenedetect import AdaptiveDetector, detect

    _, _, out, plans, _ = rendered
    for p in plans:
        scenes = detect(str(out / p.file), AdaptiveDetector())  # c98k split's default detector
        found = [s[0].seconds for s in scenes[1:]]
        planned = p.cut_times()
        hits = [c for c in planned if any(abs(c - f) <= 0.05 for f in found)]
        assert len(hits) >= 0.8 * len(planned), (p.file, planned, found)
        false = [f for f in found if all(abs(c - f) > 0.05 for c in planned)]
        assert len(false) <= max(1, 0.2 * len(found)), (p.file, planned, found)


def test_music_is_the_track_and_edges_are_silent(rendered) -> None:
    folder, tracks, out, plans, _ = rendered
    by_id = {t.track_id: t for t in tracks}
    for p in plans[:2]:  # no voice: the music span is the track itself
        audio = load_audio(out / p.file, SR)
        track = music.read_track(folder, by_id[p.track_id])
        m0, m1 = int((p.music_start_s + 0.5) * SR), int((p.music_end_s - 0.8) * SR)
        off = int((p.music_offset_s + 0.5) * SR)
        assert _best_corr(track[off:off + m1 - m0], audio[m0:m1]) > 0.9
        lead = audio[: int((p.music_start_s - 0.1) * SR)]
        assert np.sqrt(np.mean(lead**2)) < 0.01 * np.sqrt(np.mean(audio[m0:m1] ** 2))


def test_voice_over_ducks_the_music(rendered) -> None:
    folder, tracks, out, plans, doc = rendered
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is missing")
    p, meta = plans[2], doc["videos"][2]
    assert meta["voice_end_s"] > p.voice_start_s
    audio = load_audio(out / p.file, SR)
    track = music.read_track(folder, {t.track_id: t for t in tracks}[p.track_id])
    v0, v1 = int(p.voice_start_s * SR), int(meta["voice_end_s"] * SR)
    off = int((p.music_offset_s + p.voice_start_s - p.music_start_s) * SR)
    # under the voice the mix is no longer the plain track
    assert _best_corr(track[off:off + v1 - v0], audio[v0:v1]) < 0.8


def test_reused_track_gives_identical_audio(rendered) -> None:
    _, _, out, plans, _ = rendered
    a, b = plans[0], plans[1]
    assert a.track_id == b.track_id and a.music_offset_s == b.music_offset_s  # same hook
    span = min(a.music_end_s - a.music_start_s, b.music_end_s - b.music_start_s) - 1.2
    xa = load_audio(out / a.file, SR)[int((a.music_start_s + 0.4) * SR):][: int(span * SR)]
    xb = load_audio(out / b.file, SR)[int((b.music_start_s + 0.4) * SR):][: int(span * SR)]
    assert _best_corr(xa, xb) > 0.9


def test_regenerating_skips_unchanged_and_redoes_changed(rendered) -> None:
    folder, _, out, plans, doc = rendered
    before = {p.file: sha256_file(out / p.file) for p in plans}
    again = generate_corpus(plans, folder, out, workers=1, progress=False)
    assert again["videos"] == doc["videos"]
    assert {p.file: sha256_file(out / p.file) for p in plans} == before
    changed = dataclasses.replace(plans[0], title="A new title")
    third = generate_corpus([changed, *plans[1:]], folder, out, workers=1, progress=False)
    assert third["videos"][0]["title"] == "A new title"
    assert load_corpus(out)["videos"][0]["plan_hash"] == changed.plan_hash()


def test_a_killed_run_keeps_every_video_it_finished(rendered, monkeypatch, tmp_path: Path) -> None:
    """A run killed before writing corpus.json (hours into a benchmark corpus) must not render again."""
    import shutil

    from commercial98k.demo import render
    from commercial98k.demo.corpus import plan_from_dict

    folder, _, shared_out, _, _ = rendered
    out = tmp_path / "ads"
    shutil.copytree(shared_out, out)
    doc = load_corpus(out)  # the plans as the folder holds them now (other tests change one)
    plans = [plan_from_dict(v) for v in doc["videos"]]
    (out / render.MANIFEST_NAME).unlink()  # as if the run had been killed before its last line

    def must_not_render(*args, **kwargs):
        raise AssertionError("a finished video was rendered again")

    monkeypatch.setattr(render, "render_video", must_not_render)
    again = generate_corpus(plans, folder, out, workers=1, progress=False)
    assert again["videos"] == doc["videos"] and not again["failed"]
    # a torn record (killed again, before corpus.json): that one video is rendered again, only that one
    (out / render.MANIFEST_NAME).unlink()
    (out / render.RECORDS_DIR / f"{plans[0].file}.json").write_text("{", encoding="utf-8")
    third = generate_corpus(plans, folder, out, workers=1, progress=False)
    assert [f["path"] for f in third["failed"]] == [plans[0].file]
    assert "a finished video was rendered again" in third["failed"][0]["error"]


def test_same_plan_renders_the_same_bytes(rendered, tmp_path: Path) -> None:
    folder, tracks, out, plans, _ = rendered
    render_video(plans[1], folder, {t.track_id: t for t in tracks}, tmp_path / "again.mp4")
    assert sha256_file(tmp_path / "again.mp4") == sha256_file(out / plans[1].file)


def test_plan_round_trips_through_the_corpus_manifest(rendered) -> None:
    from commercial98k.demo.corpus import plan_from_dict

    _, _, out, plans, _ = rendered
    stored = load_corpus(out)["videos"]
    assert [plan_from_dict(v) for v in stored[1:]] == plans[1:]


def test_runner_skips_done_steps_and_reruns_changed_ones(tmp_path: Path, capsys) -> None:
    from pipelines.demo.runner import DemoConfig, Step, StepFailed, read_marker, run_steps

    calls: list[str] = []

    def writer(name: str):
        def run(cfg: DemoConfig) -> None:
            calls.append(name)
            cfg.path(f"{name}.txt").write_text(str(cfg.seed))
        return run

    def steps(broken: bool = False) -> list[Step]:
        return [Step("a", "first", writer("a"), lambda c: [c.path("a.txt")], lambda c: {"seed": c.seed}),
                Step("b", "second", (lambda c: None) if broken else writer("b"), lambda c: [c.path("b.txt")],
                     lambda c: {}, after=("a",))]

    cfg = DemoConfig(work_dir=tmp_path)
    run_steps(steps(), cfg)
    assert calls == ["a", "b"] and read_marker(cfg, "b")["step"] == "b"
    assert all(m["skipped"] for m in run_steps(steps(), cfg).values()) and calls == ["a", "b"]
    cfg.path("b.txt").unlink()  # a missing output re-runs its step only
    run_steps(steps(), cfg)
    assert calls == ["a", "b", "b"]
    cfg.seed = 1  # a changed parameter re-runs the step and everything after it
    run_steps(steps(), cfg)
    assert calls == ["a", "b", "b", "a", "b"]
    cfg.path("b.txt").unlink()
    with pytest.raises(StepFailed, match="without writing"):
        run_steps(steps(broken=True), cfg)
    assert read_marker(cfg, "b") is None
    assert "skipped" in capsys.readouterr().out
