"""The corrections file (c98k browse -> build-shards, stats, category calibration)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner
from synthetic import make_labelled_corpus
from test_category_source import shard_metas

from commercial98k.export.partition import components
from commercial98k.export.shards import ShardFilters, build_shards
from commercial98k.label.category import (
    calibrate_from_corrections,
    calibration_path,
    combine,
    expected_calibration_error,
    row_probs,
)
from commercial98k.manifest.corrections import (
    Correction,
    CorrectionError,
    apply_corrections,
    corrections_path,
    latest,
    load_corrections,
    own_music_id,
    save_correction,
)
from commercial98k.manifest.io import read_manifest, write_manifest
from commercial98k.taxonomy import load_taxonomy
from pipelines.cli import main as cli

IDS = load_taxonomy().ids()
WHEN = "2026-12-07T01:00:00+00:00"


def _c(clip_id: str, kind: str, value: str | None = None, **kw) -> Correction:
    return Correction(clip_id, kind, value, who=kw.pop("who", "ann"), when=kw.pop("when", WHEN), **kw)


def test_path_round_trip_and_latest_per_key(tmp_path):
    manifest = tmp_path / "manifests" / "c98k.parquet"
    assert corrections_path(manifest) == tmp_path / "manifests" / "c98k.corrections.json"
    assert load_corrections(manifest) == []
    save_correction(manifest, _c("a", "category", "food"))
    save_correction(manifest, _c("a", "category", "pets", when="2026-12-07T02:00:00Z"))  # replaces the first
    save_correction(manifest, _c("a", "music_join", "reject", other="b"))
    save_correction(manifest, _c("a", "music_join", "confirm", other="c"))  # another join: its own key
    save_correction(manifest, _c("d", "unusable", reason="not an ad"))
    got = load_corrections(manifest)
    assert [(c.clip_id, c.kind, c.value, c.other) for c in got] == [
        ("a", "category", "pets", None), ("a", "music_join", "reject", "b"), ("a", "music_join", "confirm", "c"),
        ("d", "unusable", None, None)]
    assert json.loads(corrections_path(manifest).read_text())["version"] == 1
    assert latest(got + [_c("d", "unusable", reason="blurry")])[("d", "unusable", None)].reason == "blurry"


@pytest.mark.parametrize("bad, field", [
    (_c("a", "rating", "5"), "kind"),
    (_c("a", "category", "shoes"), "value"),
    (_c("", "category", "food"), "clip_id"),
    (_c("a", "music_join", "reject"), "other"),
    (_c("a", "music_join", "maybe", other="b"), "value"),
    (_c("a", "music_join", "reject", other="a"), "other"),
    (_c("a", "unusable"), "reason"),
    (_c("a", "unusable", "food", reason="x"), "value"),
    (_c("a", "category", "food", when="yesterday"), "when"),
    (_c("a", "category", "food", who=""), "who"),
])
def test_malformed_corrections_are_refused_naming_the_field(tmp_path, bad, field):
    manifest = tmp_path / "c98k.parquet"
    with pytest.raises(CorrectionError, match=f"^{field}:"):
        save_correction(manifest, bad)
    assert not corrections_path(manifest).exists()


def test_malformed_file_names_the_file(tmp_path):
    manifest = tmp_path / "c98k.parquet"
    path = corrections_path(manifest)
    path.write_text("{not json")
    with pytest.raises(CorrectionError, match="c98k.corrections.json: not JSON"):
        load_corrections(manifest)
    path.write_text(json.dumps({"corrections": [{"clip_id": "a", "kind": "category", "value": "food",
                                                 "who": "x", "when": WHEN, "colour": "red"}]}))
    with pytest.raises(CorrectionError, match="correction #0: colour: unknown field"):
        load_corrections(manifest)


def test_concurrent_saves_lose_nothing(tmp_path):
    manifest = tmp_path / "c98k.parquet"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: save_correction(manifest, _c(f"clip{i}", "category", IDS[i % len(IDS)])), range(40)))
    assert {c.clip_id for c in load_corrections(manifest)} == {f"clip{i}" for i in range(40)}


def test_build_shards_applies_corrections(tmp_path):
    manifest, data_root = make_labelled_corpus(tmp_path, n_clips=80, seed=4, failed_share=0, dup_share=0)
    rows = read_manifest(manifest).to_pylist()
    fixed, junk = rows[0], rows[5]
    by_music: dict[str, list[dict]] = {}
    for r in rows:
        by_music.setdefault(r["music_id"], []).append(r)
    mover, stays = next((a, b) for group in by_music.values() for a in group for b in group
                        if a["video_id"] != b["video_id"] and a["clip_id"] not in (fixed["clip_id"], junk["clip_id"]))
    new_cat = next(c for c in IDS if c != fixed["category"])
    for c in (_c(fixed["clip_id"], "category", new_cat), _c(junk["clip_id"], "unusable", reason="not an ad"),
              _c(mover["clip_id"], "music_join", "reject", other=stays["clip_id"]),
              _c("gone-c000", "category", "food")):
        save_correction(manifest, c)

    out = tmp_path / "shards"
    f = ShardFilters(category_source="crawl", min_category_confidence=0.99)  # neither drops a corrected clip
    index = build_shards(manifest, out, data_root, filters=f, fractions=(1.0, 0.0, 0.0), progress=False)
    metas = shard_metas(out)
    assert metas[fixed["clip_id"]]["category"] == new_cat and metas[fixed["clip_id"]]["category_source"] == "corrected"
    assert metas[fixed["clip_id"]]["crawl_category"] == fixed["category"]
    assert junk["clip_id"] not in metas
    assert index["corrections"] == {"categories": 1, "unusable": {"not an ad": 1}, "rejected_joins": 1,
                                    "unknown_clips": 1}

    full = build_shards(manifest, tmp_path / "all", data_root, progress=False)
    metas = shard_metas(tmp_path / "all")
    assert junk["clip_id"] not in metas and len(metas) == len(rows) - 1
    assert metas[mover["clip_id"]]["music_id"] == own_music_id(mover["clip_id"])
    assert metas[stays["clip_id"]]["music_id"] == stays["music_id"]
    assert sum(s.get("corrected", 0) for s in full["category_sources"].values()) == 1
    # the rejected clip is a split component of its own (unless its video ties it to the group)
    moved, _ = apply_corrections(rows, load_corrections(manifest))
    comp = next(c for c in components(moved) if rows.index(mover) in c)
    assert rows.index(stays) not in comp

    res = CliRunner().invoke(cli, ["build-shards", "--manifest", str(manifest), "--data-root", str(data_root),
                                   "--out", str(tmp_path / "cli"), "--any-music"])
    assert res.exit_code == 0, res.output
    assert "marked unusable in the corrections: 1 (not an ad: 1)" in res.output
    assert "corrections applied: 1 categories, 1 clips split off a rejected music join" in res.output
    ignored = CliRunner().invoke(cli, ["build-shards", "--manifest", str(manifest), "--data-root", str(data_root),
                                       "--out", str(tmp_path / "raw"), "--any-music", "--no-corrections"])
    assert ignored.exit_code == 0 and junk["clip_id"] in shard_metas(tmp_path / "raw")

    res = CliRunner().invoke(cli, ["stats", "--manifest", str(manifest), "--no-report"])
    assert res.exit_code == 0 and f"crawl {len(rows) - 2}, corrected 1, unusable 1" in res.output
    assert "1 marked unusable; music joins reject 1; 1 name no clip of this manifest" in res.output

    # a corrections file naming an unknown category: one error line naming the file, exit 1
    doc = json.loads(corrections_path(manifest).read_text())
    doc["corrections"][0]["value"] = "shoes"
    corrections_path(manifest).write_text(json.dumps(doc))
    res = CliRunner().invoke(cli, ["build-shards", "--manifest", str(manifest), "--data-root", str(data_root),
                                   "--out", str(tmp_path / "bad")])
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 1 and len(errors) == 1 and "c98k.corrections.json" in errors[0]
    assert "unknown category 'shoes'" in errors[0]


def _overconfident_rows(n: int, seed: int = 0) -> tuple[list[dict], dict[str, str]]:
    """Labelled rows whose page text is right 70 % of the time but claims ~90 %; weak visual evidence."""
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for i in range(n):
        true = IDS[int(rng.integers(len(IDS)))]
        guess = true if rng.random() < 0.7 else IDS[int(rng.integers(len(IDS)))]
        page = np.full(len(IDS), 0.01)
        page[IDS.index(guess)] = 1.0
        visual = rng.dirichlet(np.full(len(IDS), 20.0))
        visual[IDS.index(true)] *= 1.6
        ev = {"page_text": (page / page.sum()).tolist(), "visual": (visual / visual.sum()).tolist()}
        probs, present = combine({k: np.asarray(v) for k, v in ev.items()}, len(IDS))
        clip_id = f"v{i:04d}-c000"
        rows.append({"video_id": clip_id[:5], "clip_id": clip_id, "status": "ok", "category": None,
                     "predicted_category": IDS[int(np.argmax(probs))], "category_confidence": float(probs.max()),
                     "category_probs": dict(zip(IDS, probs.tolist(), strict=True)), "category_evidence": present,
                     "category_evidence_probs": ev})
        truth[clip_id] = true
    return rows, truth


def test_fifty_corrections_calibrate_the_rest(tmp_path, labels_benchmark, capsys):
    rows, truth = _overconfident_rows(300)
    manifest = write_manifest(rows, tmp_path / "c98k.parquet", kind="clips")
    for r in rows[:50]:
        save_correction(manifest, _c(r["clip_id"], "category", truth[r["clip_id"]]))
    rest = [r["clip_id"] for r in rows[50:]]
    labels = np.asarray([IDS.index(truth[c]) for c in rest])

    def ece(table_rows: list[dict]) -> float:
        by_id = {r["clip_id"]: r for r in table_rows}
        return expected_calibration_error(np.stack([row_probs(by_id[c], IDS) for c in rest]), labels)

    before = ece(rows)
    cal, path, rescored = calibrate_from_corrections(manifest, corrections_path(manifest))
    after = ece(read_manifest(manifest, "clips").to_pylist())
    assert path == calibration_path(manifest) and path.is_file() and rescored == 300
    assert cal.weights["page_text"] < 1.0 and cal.ece_after < cal.ece_before  # on the 50, out of sample
    assert after < before - 0.03  # on the 250 nobody corrected

    # the benchmark takes the corrections file as --truth (matched by clip_id)
    capsys.readouterr()
    labels_benchmark.main(["--manifest", str(manifest), "--truth", str(corrections_path(manifest))])
    out = capsys.readouterr().out
    assert "50 labelled clips" in out and "(clip_id matched in" in out

    # stats: how many were corrected and how often the (now rescored) prediction was right on them
    res = CliRunner().invoke(cli, ["stats", "--manifest", str(manifest), "--no-report"])
    now = {r["clip_id"]: r for r in read_manifest(manifest, "clips").to_pylist()}
    right = sum(now[c]["predicted_category"] == truth[c] for c in (r["clip_id"] for r in rows[:50]))
    assert res.exit_code == 0 and f"50 categories corrected (prediction right on {right}/50" in res.output


def test_label_with_a_corrections_file_without_categories_is_one_error_line(tmp_path):
    rows, _ = _overconfident_rows(5)
    manifest = write_manifest(rows, tmp_path / "c98k.parquet", kind="clips")
    save_correction(manifest, _c(rows[0]["clip_id"], "unusable", reason="blurry"))
    res = CliRunner().invoke(cli, ["label", "--manifest", str(manifest), "--data-root", str(tmp_path),
                                   "--category-calibration", str(corrections_path(manifest))])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip().splitlines()[-1].startswith("error:") and "no category correction" in res.output
