"""Brand evidence and glued on-screen words: the brand table, its matching rules, the ``brand``
evidence kind in the category score, and real OCR of glued overlays rendered on a real frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from commercial98k.label.category import EVIDENCE, CategoryCalibration, category_result, fit_calibration
from commercial98k.label.evidence import brand_evidence
from commercial98k.label.zero_shot import BrandMatcher, brand_matcher
from commercial98k.models.ocr import load_keyframes, ocr_model, split_glued
from commercial98k.taxonomy import Brand, load_brands, load_taxonomy

pytestmark = pytest.mark.usefixtures("shared_models")  # one musicnn / EfficientNet / text encoder per session

EN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def _names(text: str) -> list[str]:
    return [b.names[0] for b in brand_matcher().find(text)]


def test_brand_table_covers_every_category_in_english_and_chinese() -> None:
    brands = load_brands()
    ids = load_taxonomy().ids()
    assert len(brands) >= 300
    for c in ids:
        mine = [b for b in brands if b.category == c]
        assert len(mine) >= 25, c
        with_zh = [b for b in mine if any("\u4e00" <= ch <= "\u9fff" for n in b.names for ch in n)]
        assert len(with_zh) >= len(mine) // 3, c
    # one brand per name: the matcher refuses a table where two brands share one
    BrandMatcher(brands, ids)
    with pytest.raises(ValueError, match="'Dior' and 'Diorama'"):
        BrandMatcher([Brand(("Dior",), "cosmetics"), Brand(("Diorama", "DIOR"), "home")], ids)


def test_brand_file_with_an_unknown_category_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "brands.json"
    bad.write_text(json.dumps({"brands": {"cosmetics": [{"names": ["Glossier"], "also": ["toys"]}]}}), "utf-8")
    with pytest.raises(ValueError, match=r"brand #0 of 'cosmetics' \(Glossier\): unknown category 'toys'"):
        load_brands(bad)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"brands": {"cosmetics": [{"names": [" "]}]}}), "utf-8")
    with pytest.raises(ValueError, match="has no names"):
        load_brands(empty)


@pytest.mark.parametrize(("text", "want"), [
    ("Dioramas of the deep sea", []),  # whole words only
    ("DIOR J'adore", ["Dior"]),
    ("ｄｉｏｒ　Ｓａｕｖａｇｅ", ["Dior"]),  # full-width letters and space
    ("L’ORÉAL PARIS | because you're worth it", ["L'Oréal"]),  # curly apostrophe, accent, case
    ("LOREAL", ["L'Oréal"]),
    ("COCA-COLA zero", ["Coca-Cola"]),
    ("cocacola", ["Coca-Cola"]),  # a glued multi-word name
    ("Estee Lauder Advanced Night Repair", ["Estée Lauder"]),
    ("TIFFANY & CO.", ["Tiffany & Co."]),
    ("Nike耐克 Just do it", ["Nike"]),  # a Latin name against Chinese text is still a word
    ("全新迪奥真我香水", ["Dior"]),  # Chinese names inside unsegmented text
    ("芭比波朗 新品上市", ["Bobbi Brown"]),  # the longest name wins (not Barbie's 芭比)
    ("Apple juice and a dove", []),  # everyday words are not brands
    ("Nikes and adidasx", []),
    ("SK-II Facial Treatment Essence", ["SK-II"]),
    ("Only at Sephora: Fenty Beauty", ["Sephora", "Fenty Beauty"]),
])
def test_brand_matching_rules(text: str, want: list[str]) -> None:
    assert _names(text) == want


def test_brand_evidence_from_ocr_page_text_and_tags_not_file_names() -> None:
    ids = load_taxonomy().ids()
    folder = {"platform": "local", "platform_id": "maybelline_ad_3", "video_id": "local-maybelline_ad_3",
              "title": "maybelline_ad_3", "video_path": "videos/maybelline_ad_3.mp4"}
    # a file name is not page text: no brand from it
    assert brand_evidence(None, folder) is None
    p = brand_evidence(None, folder, ocr_text="THE NEW | MAYBELLINE NEW YORK | $9.99")
    assert ids[int(np.argmax(p))] == "cosmetics" and p.max() == pytest.approx((1 + 1 / 36) / (1 + 12 / 36))
    page = {"platform": "youtube", "title": "Lancôme Génifique: 7 days", "description": "", "platform_tags": []}
    assert ids[int(np.argmax(brand_evidence(None, page)))] == "cosmetics"
    tagged = brand_evidence(None, {"platform": "youtube", "platform_tags": []}, tags=["rolex", "luxury"])
    assert ids[int(np.argmax(tagged))] == "jewelry_accessories"
    # a brand that sells in two categories: its own first, the other second
    nike = brand_evidence(None, {}, ocr_text="JUST DO IT. NIKE")
    order = [ids[i] for i in np.argsort(-nike)[:2]]
    assert order == ["sports_outdoor", "apparel"]


def test_brand_is_an_evidence_kind_of_the_calibrated_score(tmp_path: Path) -> None:
    assert "brand" in EVIDENCE
    ids = load_taxonomy().ids()
    brand = brand_evidence(None, {}, ocr_text="Charlotte Tilbury")
    visual = np.full(len(ids), 0.5 / (len(ids) - 1))
    visual[ids.index("apparel")] = 0.5  # the frames look like apparel (the wrong predictions)
    res = category_result(ids, {"page_text": None, "ocr": None, "visual": visual, "brand": brand}, "cosmetics")
    assert res.present == ["visual", "brand"] and res.predicted_category == "cosmetics"
    assert res.evidence["brand"] == pytest.approx(list(brand))
    # weights are fitted for the brand kind like the others, and a saved calibration keeps it
    rng = np.random.default_rng(0)
    evidence, labels = [], []
    for _ in range(200):
        y = int(rng.integers(len(ids)))
        b = np.full(len(ids), 1 / 36)
        b[y if rng.random() < 0.9 else (y + 1) % len(ids)] += 1.0
        evidence.append({"visual": rng.dirichlet(np.ones(len(ids))), "brand": b / b.sum()})
        labels.append(y)
    cal = fit_calibration(evidence, labels, len(ids))
    assert cal.weights["brand"] > cal.weights["visual"]
    assert CategoryCalibration.load(cal.save(tmp_path / "cal.json")).weights["brand"] == \
        pytest.approx(cal.weights["brand"])


@pytest.mark.parametrize(("glued", "want"), [
    ("Tapordrawaroundanythingyouwant", "Tap or draw around anything you want"),
    ("Yourskindeservesmore", "Your skin deserves more"),
    ("NEWARRIVAL", "NEW ARRIVAL"),
    ("限时特价 ¥199 Shopnow", "限时特价 ¥199 Shop now"),  # Chinese and prices untouched
    ("GlowalldaywithMaybelline", "Glow all day with Maybelline"),
    ("Maybelline", "Maybelline"),  # a brand is not "may bel line"
    ("Weleda", "Weleda"),  # an unknown name is not "We led a"
    ("iPhone MacBook PlayStation", "iPhone MacBook PlayStation"),  # product names in mixed case
    ("Hydrating serum", "Hydrating serum"),  # real words
])
def test_glued_words_are_split_into_common_words(glued: str, want: str) -> None:
    assert split_glued(glued) == want


def _tight_overlay(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """``lines`` drawn on ``frame`` with 2 px between words (the recogniser then reads each line as one word)."""
    if not EN_FONT.is_file():
        pytest.skip(f"{EN_FONT} not installed (Debian: fonts-dejavu-core)")
    im = Image.fromarray(frame)
    draw, font = ImageDraw.Draw(im), ImageFont.truetype(str(EN_FONT), 30)
    for n, line in enumerate(lines):
        x = 40.0
        for word in line.split():
            draw.text((x, 330 + 60 * n), word, font=font, fill="white", stroke_width=2, stroke_fill="black")
            x += font.getlength(word) + 2
    return np.array(im)


@pytest.fixture(scope="module")
def real_frame(shared_media: Path) -> np.ndarray:
    return load_keyframes(shared_media / "videos" / "big_buck_bunny_trailer_480p.mkv", [12.0], (854, 480))[0]


def test_real_ocr_of_a_tightly_set_overlay_reads_glued_words_then_splits_them(real_frame: np.ndarray) -> None:
    """PP-OCRv4 drops the spaces of tightly set English text (as in real ads); ``read_frames`` splits them
    back, and the brand becomes evidence for a folder clip without page text."""
    frame = _tight_overlay(real_frame, ["Tap or draw around anything you want", "Glow all day with Maybelline"])
    model = ocr_model()
    raw = [line.text for line in model.read(frame)]
    assert "Tapordrawaroundanythingyouwant" in raw  # the failure this fixes, on the real model
    lines = model.read_frames(frame[None])
    assert "Tap or draw around anything you want" in lines and "Glow all day with Maybelline" in lines
    ids = load_taxonomy().ids()
    p = brand_evidence(None, {"platform": "local", "title": "clip_7"}, ocr_text=" | ".join(lines))
    assert ids[int(np.argmax(p))] == "cosmetics"


def test_label_text_side_uses_brand_evidence_for_a_folder_clip(real_frame: np.ndarray, tmp_path: Path) -> None:
    """``c98k label``'s text side on a clip from a folder (its title is a file name): the on-screen brand
    is the ``brand`` evidence, stored with its distribution, and the glued slogan is stored split."""
    import av

    from commercial98k.label.batch import text_features
    from commercial98k.label.extractors import LabelConfig, models_for

    frame = _tight_overlay(real_frame, ["CHARLOTTE TILBURY", "Your skin deserves more"])
    (tmp_path / "videos").mkdir()
    with av.open(str(tmp_path / "videos" / "ad_12.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        for _ in range(10):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    row = {"clip_id": "local-ad_12-c000", "video_id": "local-ad_12", "platform": "local", "platform_id": "ad_12",
           "title": "ad_12", "video_path": "videos/ad_12.mp4", "clip_start_s": 0.0, "clip_end_s": 2.0,
           "width": frame.shape[1], "height": frame.shape[0], "category": None}
    models = models_for(LabelConfig(emotion_model="none", visual_evidence="none", ocr_frames=1))
    [parts] = text_features([row], models, None, None, tmp_path)
    assert "Your skin deserves more" in parts.ocr_text
    assert "brand" in parts.category_evidence and "page_text" not in parts.category_evidence
    ids = load_taxonomy().ids()
    assert ids[int(np.argmax(parts.category_evidence_probs["brand"]))] == "cosmetics"
    assert parts.predicted_category == "cosmetics"
