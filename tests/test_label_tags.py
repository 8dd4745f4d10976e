"""Tag normalisation, music tags and the zero-shot category match."""

from __future__ import annotations

import json

import numpy as np
import pytest

from commercial98k.label.tags import TagNormalizer, clean_text, music_tags, normalize_tags
from commercial98k.label.zero_shot import CategoryMatcher, clip_text
from commercial98k.models.registry import TEXT

pytestmark = pytest.mark.usefixtures("shared_models")  # one musicnn / EfficientNet / text encoder per session


def test_clean_text_nfkc_case_and_edges():
    assert clean_text("  ＬＩＰＳＴＩＣＫ！ ") == "lipstick"
    assert clean_text("#Running_Shoes") == "running shoes"
    assert clean_text("【新品】") == "新品"


@pytest.mark.parametrize("platform_tags, title, expected", [
    (["口红", "Lip Stick", "#lipsticks", "LIPSTICK"], None, ["lipstick"]),
    (["ＭＡＫＥ－ＵＰ", "彩妆"], None, ["makeup"]),
    ([], "新款口红 持久显色 #美妆", ["makeup", "new arrival", "lipstick", "持久显色"]),
    (["ad", "广告", "https://example.com/x", "12345", "@brand", "#", ""], "Official Video", []),
    (["football"], "足球 Soccer ball commercial", ["football", "ball"]),
    ([], "iPhone 15 Pro 官方广告", ["smartphone", "pro"]),
    (["Premium Dog Food"], None, ["premium", "pet food"]),  # known bigram wins over single words
    (["dog food"], None, ["pet food"]),
])
def test_normalize_tags(platform_tags, title, expected):
    assert normalize_tags(platform_tags, title) == expected


def test_hashtags_from_description_and_cap(tmp_path):
    tags = normalize_tags(["kids"], "宝宝 玩具", "Shop now! #ToyCar #儿童 and more text that is not tagged")
    assert tags == ["kids", "toycar", "baby", "toy"]
    many = [f"tag{i}" for i in range(40)]
    assert len(normalize_tags(many)) == 16


def test_synonyms_file_conflict_is_reported(tmp_path):
    path = tmp_path / "syn.json"
    path.write_text(json.dumps({"synonyms": {"lipstick": ["口红"], "makeup": ["口红"]}}), encoding="utf-8")
    with pytest.raises(ValueError, match="口红"):
        TagNormalizer(path)


def test_music_tags_threshold_order_and_names():
    probs = np.array([[0.1, 0.5, 0.05, 0.3], [0.1, 0.3, 0.05, 0.3]])
    assert music_tags(probs, ["rock", "Ambient", "jazz", "House"], threshold=0.2) == ["ambient", "house"]
    assert music_tags({"rock": 0.05}, threshold=0.1) == []
    assert music_tags({"a": 0.9, "b": 0.8, "c": 0.7}, top_k=2) == ["a", "b"]
    with pytest.raises(ValueError, match="names"):
        music_tags(probs, ["rock"])


@pytest.fixture(scope="module")
def matcher():
    return CategoryMatcher(TEXT.create("use-multilingual"))


@pytest.mark.parametrize("title, category", [
    ("New matte lipstick, long-lasting colour", "cosmetics"),
    ("夏日新款口红 超显白", "cosmetics"),
    ("婴儿纸尿裤 超薄透气", "mother_baby"),
    ("Premium dog food for puppies", "pets"),
    ("Wireless noise cancelling headphones", "digital"),
    ("舒适真皮沙发 客厅", "home"),
    ("Diamond engagement ring", "jewelry_accessories"),
    ("冰爽可乐 夏天必备饮料", "food"),
])
def test_zero_shot_category_of_clear_titles(matcher, title, category):
    text = clip_text(title, None, normalize_tags([], title))
    match = matcher.match([text], [category])[0]
    assert match.predicted_category == category
    assert match.category_confidence > 0.5
    assert abs(sum(match.probs.values()) - 1.0) < 1e-5


def test_mismatched_crawl_category_gets_low_confidence(matcher):
    texts = [clip_text("婴儿纸尿裤 超薄透气"), clip_text("Diamond engagement ring"), "", "lipstick"]
    got = matcher.match(texts, ["automotive", "food", "cosmetics", "not-a-category"])
    assert got[0].category_confidence < 0.1 and got[0].predicted_category == "mother_baby"
    assert got[1].category_confidence < 0.1
    assert got[2].predicted_category is None and got[2].category_confidence is None  # no text
    assert got[3].predicted_category == "cosmetics" and got[3].category_confidence is None  # unknown crawl id
