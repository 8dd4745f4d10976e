"""Users' corrections of a manifest, kept beside it (``<manifest stem>.corrections.json``).

Written by ``c98k browse`` (one correction at a time), read by ``c98k build-shards``,
``c98k stats`` and the category calibration. The manifest itself is never rewritten:
the corrections file is the user's layer over it.

Meaning: a ``category`` correction replaces the clip's category (source ``corrected``);
an ``unusable`` clip is left out of the shards, counted with its reason; a ``music_join``
``reject`` moves ``clip_id`` out of ``other``'s music_id group before the grouped split
(``confirm`` only records that a person checked the join).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from commercial98k.errors import C98kError
from commercial98k.storage.files import atomic_write_json
from commercial98k.taxonomy import Taxonomy, load_taxonomy

KINDS = ("category", "unusable", "music_join")
JOIN_VALUES = ("confirm", "reject")
FILE_VERSION = 1

Key = tuple[str, str, "str | None"]


class CorrectionError(C98kError, ValueError):
    """A malformed correction or corrections file; the message names the field (and the file)."""


@dataclass(frozen=True)
class Correction:
    """One user's correction of one clip."""

    clip_id: str
    kind: str
    value: str | None
    reason: str | None = None
    other: str | None = None
    who: str = ""
    when: str = ""

    @property
    def key(self) -> Key:
        return (self.clip_id, self.kind, self.other)


def corrections_path(manifest: str | os.PathLike) -> Path:
    """``manifests/c98k.parquet`` -> ``manifests/c98k.corrections.json``."""
    path = Path(manifest)
    return path.with_name(f"{path.stem}.corrections.json")


def _text(value: object, field: str, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise CorrectionError(f"{field}: missing")
        return None
    if not isinstance(value, str):
        raise CorrectionError(f"{field}: must be a string, got {type(value).__name__}")
    return value


def validate(correction: Correction, taxonomy: Taxonomy | None = None) -> Correction:
    """Check one correction (the category id only when a taxonomy is given); return it."""
    _text(correction.clip_id, "clip_id", True)
    _text(correction.who, "who", True)
    _text(correction.when, "when", True)
    for field in ("value", "reason", "other"):
        _text(getattr(correction, field), field, False)
    try:
        datetime.fromisoformat(correction.when.replace("Z", "+00:00"))
    except ValueError:
        raise CorrectionError(f"when: not an ISO-8601 time: {correction.when!r}") from None
    kind = correction.kind
    if kind not in KINDS:
        raise CorrectionError(f"kind: unknown {kind!r}; one of {', '.join(KINDS)}")
    if kind == "category":
        if not correction.value:
            raise CorrectionError("value: a category correction needs a category id")
        if taxonomy is not None and correction.value not in taxonomy.ids():
            raise CorrectionError(f"value: unknown category {correction.value!r}; known: {', '.join(taxonomy.ids())}")
        if correction.other:
            raise CorrectionError("other: only a music_join correction names another clip")
    elif kind == "unusable":
        if correction.value is not None:
            raise CorrectionError("value: an unusable mark has no value (give the cause as reason)")
        if not correction.reason:
            raise CorrectionError("reason: an unusable mark needs a reason")
        if correction.other:
            raise CorrectionError("other: only a music_join correction names another clip")
    else:
        if correction.value not in JOIN_VALUES:
            raise CorrectionError(f"value: a music_join is {' or '.join(JOIN_VALUES)}, not {correction.value!r}")
        if not correction.other:
            raise CorrectionError("other: a music_join correction needs the other clip_id")
        if correction.other == correction.clip_id:
            raise CorrectionError("other: a clip cannot join itself")
    return correction


def from_dict(doc: object, taxonomy: Taxonomy | None = None) -> Correction:
    """A validated ``Correction`` from a JSON object (unknown fields are an error)."""
    if not isinstance(doc, dict):
        raise CorrectionError(f"correction: must be an object, got {type(doc).__name__}")
    fields = set(Correction.__dataclass_fields__)
    extra = sorted(set(doc) - fields)
    if extra:
        raise CorrectionError(f"{extra[0]}: unknown field; fields are {', '.join(sorted(fields))}")
    for field in ("clip_id", "kind"):
        _text(doc.get(field), field, True)
    return validate(Correction(**{f: doc.get(f) for f in fields}), taxonomy)


def latest(corrections: Iterable[Correction]) -> dict[Key, Correction]:
    """The last correction per (clip_id, kind, other), in the order given (later wins)."""
    out: dict[Key, Correction] = {}
    for c in corrections:
        out.pop(c.key, None)  # re-insert so the dict order is the order of the latest edits
        out[c.key] = c
    return out


def load_corrections(manifest: str | os.PathLike, taxonomy: Taxonomy | None = None) -> list[Correction]:
    """The corrections of ``manifest`` (``[]`` without a file); a malformed file raises naming it."""
    return read_corrections_file(corrections_path(manifest), taxonomy)


def is_corrections_file(path: str | os.PathLike) -> bool:
    """True for a ``*.corrections.json`` path (as ``corrections_path`` names them)."""
    return Path(path).name.endswith(".corrections.json")


def read_corrections_file(path: str | os.PathLike, taxonomy: Taxonomy | None = None) -> list[Correction]:
    """The corrections in ``path`` (``[]`` when it does not exist); a malformed file raises naming it."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CorrectionError(f"{path}: not JSON ({e})") from None
    items = doc.get("corrections") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise CorrectionError(f"{path}: corrections: expected a list under 'corrections'")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(from_dict(item, taxonomy))
        except CorrectionError as e:
            raise CorrectionError(f"{path}: correction #{i}: {e}") from None
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise writers of one corrections file (two browser requests at once lose no edit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def save_correction(manifest: str | os.PathLike, correction: Correction, taxonomy: Taxonomy | None = None) -> None:
    """Validate ``correction`` and rewrite the file atomically; it replaces an earlier one of its key."""
    validate(correction, taxonomy or load_taxonomy())
    path = corrections_path(manifest)
    with _locked(path):
        current = latest(load_corrections(manifest))
        current.pop(correction.key, None)
        current[correction.key] = correction
        doc = {"version": FILE_VERSION, "corrections": [asdict(c) for c in current.values()]}
        atomic_write_json(path, doc)


@dataclass(frozen=True)
class Applied:
    """What a manifest's corrections change in a build: categories, unusable clips, rejected joins."""

    categories: dict[str, str]  # clip_id -> corrected category
    unusable: dict[str, str]  # clip_id -> reason
    rejected: int = 0  # clips moved out of a music_id group
    unknown_clips: int = 0  # corrections naming a clip the manifest does not have


def own_music_id(clip_id: str) -> str:
    """The music_id a clip gets when its join was rejected (stable, unlike any fingerprint group's)."""
    return "m-" + hashlib.sha256(f"rejected:{clip_id}".encode()).hexdigest()[:12]


def apply_corrections(rows: list[dict], corrections: Iterable[Correction]) -> tuple[list[dict], Applied]:
    """``rows`` with rejected music joins split off (new dicts where changed) and what else applies.

    A ``reject`` moves ``clip_id`` out of ``other``'s group only while both still share a music_id
    (a later split may already have separated them).
    """
    chosen = latest(corrections).values()
    known = {r["clip_id"] for r in rows}
    music = {r["clip_id"]: r.get("music_id") for r in rows}
    categories, unusable, moved = {}, {}, set()
    unknown = 0
    for c in chosen:
        if c.clip_id not in known:
            unknown += 1
        elif c.kind == "category":
            categories[c.clip_id] = c.value
        elif c.kind == "unusable":
            unusable[c.clip_id] = c.reason or "unusable"
        elif c.value == "reject" and music[c.clip_id] and music[c.clip_id] == music.get(c.other):
            moved.add(c.clip_id)
    out = [dict(r, music_id=own_music_id(r["clip_id"])) if r["clip_id"] in moved else r for r in rows]
    return out, Applied(categories, unusable, len(moved), unknown)
