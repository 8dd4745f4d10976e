"""Tag normalisation: platform tags, hashtags and title words -> clean canonical tags.

Rules (data in the bundled ``commercial98k/data/tag_synonyms.json``, or the file given):

* Unicode NFKC (full-width -> half-width), lower-case, ``#`` and ``_`` stripped, spaces collapsed;
* a synonym (English spelling, plural, or Chinese word) maps to its canonical English tag,
  e.g. ``口红``, ``Lip Stick`` and ``#lipsticks`` all become ``lipstick``;
* stop-words (English and Chinese, e.g. ``ad``, ``广告``) and junk (numbers, URLs, @handles)
  are dropped; duplicates removed keeping first-seen order; at most ``max_tags`` kept.

Sources in priority order: platform tags, hashtags (title and description), title words.
Chinese titles have no spaces: known Chinese words (two characters or more) are found inside
them, and short space-separated Chinese runs (2-4 characters) are kept as words. Music tags
from the audio model's tagger are turned into tags by ``music_tags``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

#: package data (``commercial98k/data/``), so a wheel install has it too
DEFAULT_SYNONYMS = Path(__file__).resolve().parent.parent / "data" / "tag_synonyms.json"
MAX_TAGS = 16
MAX_PHRASE_WORDS = 3

_HASHTAG = re.compile(r"#([^\s#,，。!！?？;；:：/|]+)")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9'+&.-]*[a-z0-9+]|[a-z0-9]|[\u3400-\u4dbf\u4e00-\u9fff]+")
_CJK = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff]+$")
_EDGE_PUNCT = "\"'`()[]{}<>.,;:!?！？。，、；：“”‘’（）【】《》·-–—~*+/\\|&"


def clean_text(text: str) -> str:
    """NFKC, lower-case, ``_`` -> space, whitespace collapsed, punctuation stripped at the ends."""
    text = unicodedata.normalize("NFKC", text).lower().replace("_", " ")
    text = " ".join(text.split())
    return text.strip(_EDGE_PUNCT + " #")


class TagNormalizer:
    """Maps raw tags and titles to canonical tags with a synonyms/stop-words file."""

    def __init__(self, path: str | Path | None = None, max_tags: int = MAX_TAGS):
        self.path = Path(path) if path else DEFAULT_SYNONYMS
        with open(self.path, encoding="utf-8") as f:
            doc = json.load(f)
        self.max_tags = max_tags
        self.canonical_of: dict[str, str] = {}
        for canonical, variants in doc.get("synonyms", {}).items():
            canon = clean_text(canonical)
            self.canonical_of[canon] = canon
            for v in variants:
                key = clean_text(v)
                if key in self.canonical_of and self.canonical_of[key] != canon:
                    raise ValueError(f"{self.path}: {v!r} maps to both {self.canonical_of[key]!r} and {canon!r}")
                self.canonical_of[key] = canon
        self.stopwords = {clean_text(w) for w in doc.get("stopwords", [])}
        self.drop = [re.compile(p) for p in doc.get("drop_patterns", [])]
        # Chinese words (and stop-words) that may be found inside unsegmented text, longest first.
        cjk = [k for k in (*self.canonical_of, *self.stopwords) if _CJK.match(k) and len(k) >= 2]
        self._cjk_words = sorted(set(cjk), key=len, reverse=True)

    # -- single phrases ------------------------------------------------------------------------
    def _junk(self, phrase: str) -> bool:
        return not phrase or phrase in self.stopwords or any(p.search(phrase) for p in self.drop)

    def canonical(self, phrase: str) -> str | None:
        """The canonical tag of one already-cleaned phrase, the phrase itself if unknown, None if junk."""
        if self._junk(phrase):
            return None
        if phrase in self.canonical_of:
            return self.canonical_of[phrase]
        if phrase.endswith("s") and phrase[:-1] in self.canonical_of:  # plural of a known tag
            return self.canonical_of[phrase[:-1]]
        return phrase

    def _cjk_run(self, run: str, keep_unknown: bool) -> list[str]:
        """Tags in a run of Chinese characters: the run itself if known, else known words inside it."""
        if run in self.canonical_of:
            return [self.canonical_of[run]]
        if self._junk(run):
            return []
        found, matched, i = [], False, 0
        while i < len(run):
            for w in self._cjk_words:
                if run.startswith(w, i):
                    matched = True
                    if w in self.canonical_of:
                        found.append(self.canonical_of[w])
                    i += len(w)
                    break
            else:
                i += 1
        if not matched and keep_unknown and 2 <= len(run) <= 4:
            found.append(run)
        return found

    def phrase_tags(self, raw: str) -> list[str]:
        """Tags from one platform tag or hashtag (a short phrase; long ones are split into words)."""
        phrase = clean_text(raw)
        if not phrase:
            return []
        if phrase in self.canonical_of:
            return [self.canonical_of[phrase]]
        if _CJK.match(phrase):
            return self._cjk_run(phrase, keep_unknown=len(phrase) <= 8)
        if len(phrase.split()) <= MAX_PHRASE_WORDS and not any(_CJK.match(t) for t in _TOKEN.findall(phrase)):
            tag = self.canonical(phrase)
            if tag is None:
                return []
            if tag != phrase or " " not in phrase:
                return [tag]
        return self.text_tags(phrase)

    # -- running text --------------------------------------------------------------------------
    def text_tags(self, text: str) -> list[str]:
        """Tags from free text (a title): known n-grams, then remaining non-stop-words."""
        tokens = _TOKEN.findall(clean_text(text))
        out: list[str] = []
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if _CJK.match(tok):
                out += self._cjk_run(tok, keep_unknown=True)
                i += 1
                continue
            for n in range(MAX_PHRASE_WORDS, 1, -1):  # longest known English n-gram first
                gram = " ".join(tokens[i:i + n])
                if len(tokens) - i >= n and gram in self.canonical_of:
                    out.append(self.canonical_of[gram])
                    i += n
                    break
            else:
                tag = self.canonical(tok)
                if tag is not None and (tag != tok or (len(tok) >= 3 and not tok.isdigit())):
                    out.append(tag)
                i += 1
        return out

    def normalize(self, platform_tags: Iterable[str] | None = None, title: str | None = None,
                  description: str | None = None) -> list[str]:
        """Clean, canonical, de-duplicated tags of one video (at most ``max_tags``)."""
        found: list[str] = []
        for raw in platform_tags or []:
            if raw:
                found += self.phrase_tags(str(raw))
        for text in (title, description):
            for h in _HASHTAG.findall(unicodedata.normalize("NFKC", text or "")):
                found += self.phrase_tags(h)
        if title:
            found += self.text_tags(_HASHTAG.sub(" ", unicodedata.normalize("NFKC", title)))
        seen: dict[str, None] = {}
        for t in found:
            if t and t not in seen:
                seen[t] = None
        return list(seen)[: self.max_tags]


@lru_cache(maxsize=4)
def default_normalizer(path: str | None = None) -> TagNormalizer:
    """A shared ``TagNormalizer`` over the bundled (or given) synonyms file."""
    return TagNormalizer(path)


def normalize_tags(platform_tags: Iterable[str] | None = None, title: str | None = None,
                   description: str | None = None) -> list[str]:
    """Clean tags of one video with the bundled synonyms (see ``TagNormalizer.normalize``)."""
    return default_normalizer().normalize(platform_tags, title, description)


def music_tags(tag_probs: np.ndarray | Mapping[str, float], names: Sequence[str] | None = None,
               threshold: float = 0.1, top_k: int = 5) -> list[str]:
    """Music tags (genre, instrument, mood) whose clip-level probability is at least ``threshold``.

    ``tag_probs`` is a ``{name: prob}`` map, or per-frame probabilities [T, K] / clip-level [K]
    with ``names``; frames are averaged. Highest first, at most ``top_k``, names lower-cased.
    """
    if isinstance(tag_probs, Mapping):
        names, probs = list(tag_probs), np.asarray(list(tag_probs.values()), np.float64)
    else:
        probs = np.asarray(tag_probs, np.float64)
        probs = probs.mean(axis=0) if probs.ndim == 2 else probs
        if names is None or len(names) != probs.shape[-1]:
            raise ValueError(f"music_tags: {probs.shape[-1]} probabilities but {0 if names is None else len(names)} names")
    order = np.argsort(-probs, kind="stable")
    out: list[str] = []
    for j in order[:top_k]:
        if probs[j] < threshold:
            break
        out.append(clean_text(str(names[j])))
    return out
