"""Per-clip label evidence: page text, on-screen text (OCR), frames, music -> category and tags.

``page_text(row)`` is the clip's page metadata without anything that came from a file name,
a URL path or an id (a local file's or a direct URL's "title" is its file name).
``clip_tags`` merges tags from the page metadata, the OCR text (known product words and
brand-like lines) and the music tagger, each with its source (``tag_sources``), generic tokens
dropped (the normaliser's stop-words and drop patterns: months, dates, numbers, "ad",
"video", "final", ``ad_12``-style file-name parts).
``category_evidence`` turns page text, OCR text, frames and the brands named in them
(``brand_evidence``) into the per-evidence distributions that ``category.combine``
calibrates into one (``category.category_result``).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

import numpy as np

from commercial98k.errors import error_line
from commercial98k.label.zero_shot import CategoryMatcher, brand_matcher, clip_text

from ..taxonomy import Taxonomy
from .tags import TagNormalizer, clean_text

log = logging.getLogger(__name__)
TAG_SOURCES = ("page", "ocr", "music")
_FILENAME = re.compile(r"^[\w.-]+$")
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
_VIDEO_EXT = re.compile(r"\.(mp4|mov|mkv|webm|avi|flv|m4v|ts)$", re.I)
_PRICE = re.compile(r"[$¥€£]\s?\d[\d.,]*|\d[\d.,]*\s?(元|块|%|off)", re.I)
_BRANDLIKE = re.compile(r"^[A-Za-z][A-Za-z'&.-]{2,19}$")


def _stem(value: str | None) -> str | None:
    if not value:
        return None
    path = urlparse(value).path if "://" in value else value
    name = PurePosixPath(unquote(path)).name
    return _VIDEO_EXT.sub("", name) or None


def title_is_filename(row: dict) -> bool:
    """True when the row's ``title`` is a file name (local files, direct URLs), not page text."""
    title = (row.get("title") or "").strip()
    if not title:
        return False
    if row.get("platform") == "local":  # the importer's title is the file stem, its id starts with it
        ids = [str(row.get(k) or "") for k in ("platform_id", "video_id")]
        if any(i.startswith(_SAFE.sub("_", title)) or _SAFE.sub("_", title) in i for i in ids if i):
            return True
    stems = {_stem(row.get("url")), _stem(row.get("video_path")), _stem(row.get("platform_id"))}
    if title in stems or _stem(title) in stems or _VIDEO_EXT.search(title):
        return True
    # one "word" joined by _ or with digits and separators: aug_ad_7, IMG_2034, final-v2
    return bool(_FILENAME.match(title)) and ("_" in title or bool(re.search(r"\d", title) and "-" in title))


def page_text(row: dict) -> tuple[str | None, str | None, list[str]]:
    """(title, description, platform tags) of the page, file-name titles and tags removed."""
    title = None if title_is_filename(row) else row.get("title")
    fname = _stem(row.get("title")) if title is None else None
    tags = [t for t in (row.get("platform_tags") or []) if t and (fname is None or clean_text(t) not in
                                                                  clean_text(fname).split())]
    return title, row.get("description"), tags


def ocr_tags(norm: TagNormalizer, ocr_text: str | None, keywords: set[str]) -> list[str]:
    """Product words (known tags or taxonomy keywords) and brand-like lines of the on-screen text."""
    if not ocr_text:
        return []
    out: list[str] = []
    known = set(norm.canonical_of.values()) | keywords
    for line in ocr_text.split("|"):
        line = _PRICE.sub(" ", unicodedata.normalize("NFKC", line)).strip()
        if not line:
            continue
        for t in norm.text_tags(line):
            if t in known:
                out.append(t)
        words = line.split()
        if len(words) == 1 and _BRANDLIKE.match(words[0]) and words[0].isupper():  # "NIKE", "L'OREAL"
            tag = norm.canonical(clean_text(words[0]))
            if tag:
                out.append(tag)
    return out


def clip_tags(norm: TagNormalizer, row: dict, ocr_text: str | None = None, music: list[str] | None = None,
              keywords: set[str] | None = None) -> tuple[list[str], list[str]]:
    """(tags, their sources) from page metadata, OCR text and music tags; first source wins a tag."""
    title, description, platform_tags = page_text(row)
    found: list[tuple[str, str]] = [(t, "page") for t in norm.normalize(platform_tags, title, description)]
    found += [(t, "ocr") for t in ocr_tags(norm, ocr_text, keywords or set())]
    for t in music or []:
        tag = norm.canonical(clean_text(t))
        if tag:
            found.append((tag, "music"))
    seen: dict[str, str] = {}
    for t, src in found:
        if t and t not in seen:
            seen[t] = src
    tags = list(seen)[: norm.max_tags + 5]
    return tags, [seen[t] for t in tags]


def text_distributions(matcher: CategoryMatcher, texts: list[str], embeddings: np.ndarray | None = None
                       ) -> list[np.ndarray | None]:
    """The matcher's distribution per text (None for an empty text)."""
    if not texts:
        return []
    p = matcher.probabilities(texts, embeddings)
    return [None if not t.strip() or np.isnan(row).any() else row for t, row in zip(texts, p, strict=True)]


def page_texts(rows: list[dict]) -> list[str]:
    """The text of each row's page metadata (title, description, platform tags), file names removed."""
    out = []
    for r in rows:
        title, description, tags = page_text(r)
        out.append(clip_text(title, description, tags))
    return out


def brand_evidence(taxonomy: Taxonomy | None, row: dict, ocr_text: str | None = None,
                   tags: list[str] | None = None) -> np.ndarray | None:
    """The ``brand`` distribution of a clip: brands named in its on-screen text, page text (file-name
    titles excluded) or tags; None when it names none."""
    title, description, platform_tags = page_text(row)
    texts = [ocr_text, title, description, *platform_tags, *(tags or [])]
    return brand_matcher(taxonomy).evidence(texts)[0]


def clip_ocr(row: dict, models, data_root) -> str | None:
    """On-screen text of a clip row (None with OCR off or when its media cannot be read)."""
    model = models.ocr
    if model is None or data_root is None:
        return None
    from commercial98k.storage.files import DataRoot

    from ..models.ocr import ocr_clip

    root = DataRoot(data_root)
    try:
        if row.get("clip_path") and root.resolve(row["clip_path"]).is_file():
            video, start, end = root.resolve(row["clip_path"]), 0.0, None
            offset = float(row.get("clip_start_s") or 0.0)
            shots = [{"start_s": s["start_s"] - offset, "end_s": s["end_s"] - offset} for s in row.get("shots") or []]
            if row.get("clip_end_s") is not None:
                end = float(row["clip_end_s"]) - offset
        else:
            video, start, end = root.resolve(row["video_path"]), row.get("clip_start_s"), row.get("clip_end_s")
            shots = row.get("shots")
        return ocr_clip(model, video, start, end, shots, row.get("width"), row.get("height"),
                        models.config.ocr_frames)
    except Exception as e:  # OCR is evidence, not a reason to fail the clip
        log.warning("OCR of %s failed: %s", row.get("clip_id"), error_line(e))
        return None


def visual_evidence(models, frame_embeddings: np.ndarray | None) -> np.ndarray | None:
    """The visual category distribution of a clip's frame embeddings (None: no visual evidence)."""
    if frame_embeddings is None or len(frame_embeddings) == 0:
        return None
    try:
        visual = models.visual
    except ValueError as e:  # a frame model without class scores
        log.debug("no visual category evidence: %s", e)
        return None
    if visual is None:
        return None
    dist, _ = visual.from_frame_embeddings(frame_embeddings)
    return dist
