"""Label evidence on real frames: OCR of rendered overlays, visual category evidence, the combined
category score, tags that never come from file names."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFont

from commercial98k.label.category import (
    CategoryCalibration,
    category_result,
    combine,
    expected_calibration_error,
    fit_calibration,
)
from commercial98k.label.evidence import clip_tags, title_is_filename
from commercial98k.label.tags import TagNormalizer
from commercial98k.label.visual import IMAGENET_TABLE, VisualEvidence, table_matrix
from commercial98k.manifest.io import read_manifest
from commercial98k.models.ocr import keyframe_times, load_keyframes, merge_lines, ocr_model
from commercial98k.models.registry import FRAMES
from commercial98k.taxonomy import load_taxonomy

pytestmark = pytest.mark.usefixtures("shared_models")  # one musicnn / EfficientNet / text encoder per session

ZH_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
EN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def _font(path: Path, size: int):
    if not path.is_file():
        pytest.skip(f"{path} not installed (Debian: fonts-wqy-microhei / fonts-dejavu-core)")
    return ImageFont.truetype(str(path), size)


@pytest.fixture(scope="module")
def real_frame(shared_media: Path) -> np.ndarray:
    """A 854x480 frame of the Big Buck Bunny trailer (a busy, real picture)."""
    return load_keyframes(shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv", [12.0], (854, 480))[0]


def _overlay(frame: np.ndarray, zh: str, en: str) -> np.ndarray:
    im = Image.fromarray(frame)
    d = ImageDraw.Draw(im)
    d.rectangle((40, 330, 620, 392), fill=(0, 0, 0))
    d.text((50, 336), zh, font=_font(ZH_FONT, 40), fill="white")
    d.text((50, 404), en, font=_font(EN_FONT, 36), fill="white", stroke_width=2, stroke_fill="black")
    return np.array(im)


def test_ocr_reads_chinese_and_english_price_and_slogan_overlays(real_frame: np.ndarray) -> None:
    model = ocr_model()
    lines = model.read(_overlay(real_frame, "限时特价 ¥199 口红", "Only $29.99 - Shop now"))
    joined = " ".join(line.text for line in lines).replace(" ", "")
    assert "限时特价" in joined and "199" in joined and "口红" in joined
    assert "$29.99" in joined and "Shopnow" in joined
    assert all(line.score >= model.min_score for line in lines)
    assert model.info.name == "rapidocr-ppocrv4" and model.info.version == "1.4.4"
    # the same text in two keyframes is one line; the plain frame has no price overlay
    frames = np.stack([_overlay(real_frame, "新品上市", "SUMMER SALE 50% OFF")] * 2 + [real_frame])
    merged = model.read_frames(frames)
    assert sum("SUMMER" in t for t in merged) == 1 and sum("新品上市" in t for t in merged) == 1


def test_keyframes_are_shot_middles_and_repeats_merge() -> None:
    shots = [{"start_s": 0.0, "end_s": 2.0}, {"start_s": 2.0, "end_s": 6.0}, {"start_s": 6.0, "end_s": 20.0}]
    assert keyframe_times(1.0, 10.0, shots) == [1.5, 4.0, 8.0]
    assert len(keyframe_times(0.0, 10.0, None, max_frames=2)) == 2
    from commercial98k.models.ocr import OcrLine

    merged = merge_lines([[OcrLine("Shop now", 0.9)], [OcrLine("SHOP NOW", 0.95), OcrLine("Shop", 0.8)]])
    assert merged == ["SHOP NOW"]


def _lipstick_frame() -> np.ndarray:
    """A product shot: a lipstick (red slanted bullet, gold collar, black case) on a light backdrop."""
    im = Image.new("RGB", (224, 224), (235, 235, 235))
    d = ImageDraw.Draw(im)
    d.rectangle((80, 130, 144, 222), fill=(20, 20, 20))
    d.rectangle((86, 100, 138, 132), fill=(212, 175, 55))
    d.polygon([(90, 100), (90, 40), (134, 10), (134, 100)], fill=(200, 20, 40))
    return np.array(im)


def test_visual_evidence_ranks_cosmetics_first_for_a_lipstick(real_frame: np.ndarray) -> None:
    taxonomy = load_taxonomy()
    model = FRAMES.create("efficientnet-lite0")
    visual = VisualEvidence(model, taxonomy)
    dist, mass = visual.distribution(_lipstick_frame()[None])
    assert dist is not None and taxonomy.ids()[int(np.argmax(dist))] == "cosmetics"
    assert dist.sum() == pytest.approx(1.0) and mass > 0.1
    # the same from the stored frame embeddings (the classifier head only, no second pass)
    dist2, _ = visual.from_frame_embeddings(model.embed_images(_lipstick_frame()[None]))
    np.testing.assert_allclose(dist, dist2, atol=1e-4)
    # combined with page text that says nothing and no OCR: still cosmetics, a distribution summing to 1
    res = category_result(taxonomy.ids(), {"page_text": None, "ocr": None, "visual": dist}, "cosmetics",
                          CategoryCalibration())
    assert res.predicted_category == "cosmetics" and res.probs.sum() == pytest.approx(1.0)
    assert res.present == ["visual"] and res.category_confidence == pytest.approx(res.probs.max())
    # every table entry is a real ImageNet class and belongs to one category
    assert table_matrix(taxonomy.ids()).sum(axis=1).max() == 1 and set(IMAGENET_TABLE) == set(taxonomy.ids())


def test_combined_score_is_calibrated_on_labelled_evidence() -> None:
    """Over-confident experts get weights < 1; the fitted combination has a lower ECE."""
    rng = np.random.default_rng(0)
    n, c = 400, 6
    labels = rng.integers(0, c, n)
    evidence = []

    def expert(y: int, acc: float) -> np.ndarray:
        k = y if rng.random() < acc else rng.integers(0, c)
        p = np.full(c, 0.002)
        p[k] = 1.0
        return p / p.sum()  # says 99 % whatever it thinks

    for y in labels:
        evidence.append({"page_text": expert(y, 0.6), "ocr": expert(y, 0.5) if rng.random() < 0.5 else None,
                         "visual": expert(y, 0.4)})
    raw = np.stack([combine(e, c)[0] for e in evidence])
    cal = fit_calibration(evidence, list(labels), c)
    fitted = np.stack([combine(e, c, cal)[0] for e in evidence])
    assert all(0 < w < 1 for w in cal.weights.values())
    assert expected_calibration_error(fitted, labels) < 0.5 * expected_calibration_error(raw, labels)
    np.testing.assert_allclose(fitted.sum(axis=1), 1.0)
    probs, present = combine({"page_text": None, "ocr": None, "visual": None}, c)
    assert present == [] and np.allclose(probs, 1 / c)


def test_folder_clip_named_aug_ad_7_gets_no_file_name_tags(shared_media: Path, tmp_path: Path) -> None:
    """`c98k fetch --source FOLDER`: the file name is the title; it must give no tag."""
    from pipelines.cli import main

    folder = tmp_path / "ads"
    folder.mkdir()
    shutil.copy(shared_media / "videos" / "videollava_sample_demo_22.mp4", folder / "aug_ad_7.mp4")
    manifest = tmp_path / "videos.parquet"
    result = CliRunner().invoke(main, ["fetch", "--source", str(folder), "--category", "cosmetics",
                                       "--data-root", str(tmp_path / "data"), "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    row = read_manifest(manifest, "videos").to_pylist()[0]
    assert row["title"] == "aug_ad_7" and title_is_filename(row)
    norm = TagNormalizer()
    tags, sources = clip_tags(norm, row, ocr_text=None, music=["pop", "female vocal"])
    assert tags == ["pop", "female vocal"] and sources == ["music", "music"]
    # with on-screen text it gets OCR product words, never the file name's parts
    tags, sources = clip_tags(norm, row, ocr_text="LANCOME | 口红 限时特价 | $29.99 | Nov 2024", music=["pop"])
    assert {"aug", "ad", "7", "nov", "2024", "29.99"}.isdisjoint(tags)
    assert "lipstick" in tags and sources[tags.index("lipstick")] == "ocr" and sources[-1] == "music"
    # the same clip from a direct URL: the URL's file name is no page text either
    url_row = {"title": "aug_ad_7", "platform": "generic", "url": "http://127.0.0.1:8000/media/aug_ad_7.mp4"}
    assert title_is_filename(url_row) and clip_tags(norm, url_row)[0] == []
    # a real page title still gives tags, generic tokens dropped
    page = {"title": "Matte lipstick final ad_12 August 2024 video", "platform": "youtube", "url": "https://x/watch"}
    tags, sources = clip_tags(norm, page)
    assert "lipstick" in tags and {"final", "ad_12", "ad 12", "august", "2024", "video", "ad"}.isdisjoint(tags)
    assert set(sources) == {"page"}


def test_benchmark_scores_a_hand_labelled_manifest(tmp_path: Path, labels_benchmark, capsys) -> None:
    """`benchmarks/labels.py --manifest M --truth T` on a labelled clips manifest; refits the calibration."""
    from commercial98k.manifest.io import write_manifest

    ids = load_taxonomy().ids()
    rng = np.random.default_rng(0)
    rows, truth = [], ["video_id,category"]
    for i in range(40):
        true = ids[i % 4]
        guess = true if i % 5 else ids[(i + 1) % 4]  # 80 % right
        page = np.full(len(ids), 0.01)
        page[ids.index(guess)] = 1.0
        visual = rng.dirichlet(np.full(len(ids), 50.0))  # weak, noisy evidence
        probs, present = combine({"page_text": page, "visual": visual}, len(ids))
        rows.append({"video_id": f"v{i}", "clip_id": f"v{i}-c000", "status": "ok", "category": "food",
                     "predicted_category": ids[int(np.argmax(probs))],
                     "category_probs": dict(zip(ids, probs.tolist(), strict=True)), "category_evidence": present,
                     "category_evidence_probs": {"page_text": (page / page.sum()).tolist(), "visual": visual.tolist()}})
        truth.append(f"v{i},{true}")
    manifest = write_manifest(rows, tmp_path / "c98k.parquet", "clips")
    (tmp_path / "truth.csv").write_text("\n".join(truth) + "\n")
    labels_benchmark.main(["--manifest", str(manifest), "--truth", str(tmp_path / "truth.csv"),
                           "--fit-calibration", str(tmp_path / "cal.json")])
    out = capsys.readouterr().out
    assert "40 labelled clips" in out and "top-1 0.800" in out and "<- disagrees" in out
    cal = CategoryCalibration.load(tmp_path / "cal.json")
    # the page text says ~90 % and is right 80 % of the time: its weight shrinks, the ECE drops
    assert cal.weights["page_text"] < 1.0 and cal.ece_after < cal.ece_before
