"""Music-emotion data sets with human labels, loaded into one common ``EmotionDataset``.

* **Emotify** (Aljanaki, Wiering & Veltkamp 2016, "Studying emotion induced by music through a
  crowdsourcing game"): 0/1 votes for the nine GEMS emotions per listener rating. Per track we
  keep ``shares`` (the fraction of that track's ratings that chose each emotion, each in [0, 1];
  a rating may choose several emotions, so shares sum to the mean number of emotions chosen,
  about 1.9) and ``gems`` = shares normalised to sum to 1, i.e. each emotion's share of all votes
  the track received. ``gems`` is the soft target of the emotion head.
* **PMEmo2019** (Zhang et al. 2018): ``static_annotations.csv`` with ``musicId, Arousal(mean),
  Valence(mean)`` in [0, 1] -> rescaled to [-1, 1]; audio ``chorus/<musicId>.mp3``.
* **DEAM** (Aljanaki, Yang & Soleymani 2017): ``static_annotations_averaged_songs_*.csv`` with
  ``song_id, valence_mean, arousal_mean`` on the 1..9 SAM scale -> rescaled to [-1, 1]; audio
  ``MEMD_audio/<song_id>.mp3``.

Malformed files raise ``EmotionDataError`` with one line naming the file and the column.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from commercial98k.errors import C98kError, error_line

from .gems import GEMS9

if TYPE_CHECKING:  # pandas is imported where a CSV is read: `c98k --help` should not pay for it
    import pandas as pd

log = logging.getLogger(__name__)


DATASETS = ("emotify", "pmemo", "deam")
AUDIO_EXTS = (".mp3", ".wav", ".flac", ".ogg", ".m4a")


class EmotionDataError(C98kError, ValueError):
    """An annotation file that is missing, or lacks a column, or has a bad value."""


@dataclass(frozen=True)
class EmotionItem:
    """One labelled excerpt: where its audio is and what humans said about it."""

    item_id: str
    audio_path: Path
    start_s: float | None = None
    duration_s: float | None = None
    gems: np.ndarray | None = None  # [9] soft GEMS distribution, sums to 1
    shares: np.ndarray | None = None  # [9] share of raters choosing each emotion (Emotify)
    valence: float | None = None  # [-1, 1]
    arousal: float | None = None  # [-1, 1]
    group: str = ""  # stratum for cross-validation (Emotify: genre)
    n_ratings: int = 0


@dataclass
class EmotionDataset:
    """A list of ``EmotionItem`` plus the label classes (``GEMS9`` or empty for VA-only data)."""

    name: str
    items: list[EmotionItem]
    classes: tuple[str, ...] = ()
    root: Path | None = None
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[EmotionItem]:
        return iter(self.items)

    def __getitem__(self, i: int) -> EmotionItem:
        return self.items[i]

    @property
    def has_gems(self) -> bool:
        return bool(self.items) and all(it.gems is not None for it in self.items)

    @property
    def has_va(self) -> bool:
        return bool(self.items) and all(it.valence is not None and it.arousal is not None for it in self.items)

    def gems_matrix(self) -> np.ndarray:
        """Soft GEMS targets ``[N, 9]`` (rows sum to 1)."""
        if not self.has_gems:
            raise EmotionDataError(f"{self.name}: has no GEMS labels")
        return np.stack([it.gems for it in self.items]).astype(np.float64)

    def va_matrix(self) -> np.ndarray:
        """Valence/arousal targets ``[N, 2]`` in [-1, 1]."""
        if not self.has_va:
            raise EmotionDataError(f"{self.name}: has no valence/arousal labels")
        return np.array([[it.valence, it.arousal] for it in self.items], dtype=np.float64)

    def groups(self) -> np.ndarray:
        return np.array([it.group for it in self.items])

    def subset(self, indices) -> EmotionDataset:
        return EmotionDataset(self.name, [self.items[i] for i in indices], self.classes, self.root, self.source)


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise EmotionDataError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise EmotionDataError(f"{path}: not a readable CSV ({error_line(e)})") from e
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _require(df: pd.DataFrame, path: Path, columns) -> None:
    for c in columns:
        if c not in df.columns:
            raise EmotionDataError(f"{path}: missing column {c!r} (has: {', '.join(map(str, df.columns))})")


def _numeric(df: pd.DataFrame, path: Path, column: str, lo: float, hi: float) -> np.ndarray:
    """Column as float; a non-number, empty or out-of-range cell is an error naming the row."""
    import pandas as pd

    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise EmotionDataError(f"{path}: column {column!r} row {i + 2}: not a number ({df[column].iloc[i]!r})")
    out = np.flatnonzero((values < lo) | (values > hi))
    if out.size:
        i = int(out[0])
        raise EmotionDataError(f"{path}: column {column!r} row {i + 2}: {values[i]} outside [{lo}, {hi}]")
    return values


def _rescale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(2.0 * (values - lo) / (hi - lo) - 1.0, -1.0, 1.0)


def _find_one(root: Path, patterns: tuple[str, ...], what: str) -> list[Path]:
    for pattern in patterns:
        found = sorted(p for p in root.rglob(pattern) if p.is_file() and not p.name.startswith("."))
        if found:
            return found
    raise EmotionDataError(f"{root}: no {what} found (looked for {', '.join(patterns)})")


def _audio_for(audio_dir: Path, stem: str) -> Path | None:
    for ext in AUDIO_EXTS:
        p = audio_dir / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


EMOTIFY_GENRES = ("classical", "rock", "electronic", "pop")
"""Emotify's genres in id order: track ids 1-100 classical, 101-200 rock, 201-300 electronic, 301-400 pop."""
EMOTIFY_RATINGS = ("ratings.csv", "data.csv")


def emotify_original_file(root: Path, track_id: int, genre: str) -> Path:
    """Audio of a track in Emotify's original layout: ``<genre>/<n>.mp3``, ``n`` = 1..100 within the genre."""
    n = (int(track_id) - 1) % 100 + 1
    return _audio_for(root / genre, str(n)) or root / genre / f"{n}.mp3"


def _emotify_files(df: pd.DataFrame, path: Path, root: Path) -> pd.Series:
    """The ``file`` column, or (original layout: ``track id`` + ``genre``) the path derived from them."""
    import pandas as pd

    if "file" in df.columns:
        if df["file"].isna().any():
            raise EmotionDataError(f"{path}: column 'file' row {int(np.flatnonzero(df['file'].isna())[0]) + 2}: empty")
        return df["file"].astype(str)
    _require(df, path, ("track id", "genre"))
    ids = _numeric(df, path, "track id", 1, np.inf)
    genres = df["genre"].astype(str).str.strip().str.lower()
    files = [str(emotify_original_file(root, int(i), g).relative_to(root)) for i, g in zip(ids, genres, strict=True)]
    return pd.Series(files, index=df.index, dtype=object)


def load_emotify(root: str | Path) -> EmotionDataset:
    """Emotify: the ratings file (one row per listener rating) -> one item per track with soft labels.

    Two layouts: the shared one (``ratings.csv`` with a ``file`` column; audio ``root / <file>``)
    and Emotify's original one (``data.csv`` or ``ratings.csv`` with ``track id`` and ``genre``
    and no ``file`` column; audio ``<genre>/<n>.mp3``, n = 1..100 within the genre). ``group`` is
    the genre (``tracks.csv`` is not needed).
    """
    root = Path(root)
    path = next((root / n for n in EMOTIFY_RATINGS if (root / n).is_file()), root / EMOTIFY_RATINGS[0])
    df = _read_csv(path)
    _require(df, path, ("genre", *GEMS9))
    for c in GEMS9:
        _numeric(df, path, c, 0, 1)
        if not df[c].isin([0, 1]).all():
            i = int(np.flatnonzero(~df[c].isin([0, 1]).to_numpy())[0])
            raise EmotionDataError(f"{path}: column {c!r} row {i + 2}: vote must be 0 or 1 ({df[c].iloc[i]!r})")
    df = df.assign(file=_emotify_files(df, path, root))
    votes = df[list(GEMS9)].astype(np.float64)
    items = []
    for file, idx in df.groupby("file", sort=True).groups.items():
        v = votes.loc[idx].to_numpy()
        shares = v.mean(axis=0)
        total = shares.sum()
        if total <= 0:
            log.warning("%s: %s has no emotion votes; skipped", path, file)
            continue
        genres = df.loc[idx, "genre"].astype(str).str.strip().unique()
        audio = root / str(file)
        rel = Path(str(file))  # original layout <genre>/<n>.mp3 -> the shared layout's id <genre>_<n>
        item_id = f"{rel.parent.name}_{rel.stem}" if rel.parent.name in EMOTIFY_GENRES else rel.stem
        items.append(EmotionItem(item_id=item_id, audio_path=audio, gems=shares / total,
                                 shares=shares, group=str(genres[0]), n_ratings=len(idx)))
    if not items:
        raise EmotionDataError(f"{path}: no rated tracks")
    missing = [it.audio_path for it in items if not it.audio_path.is_file()]
    if missing:
        raise EmotionDataError(f"{path}: column 'file': {len(missing)} audio file(s) missing, e.g. {missing[0]}")
    return EmotionDataset("emotify", items, GEMS9, root, {"annotations": str(path)})


def _va_items(ids, valence, arousal, audio_dir: Path, path: Path, require_audio: bool) -> list[EmotionItem]:
    items, missing = [], 0
    for raw_id, v, a in zip(ids, valence, arousal, strict=True):
        stem = str(int(raw_id)) if float(raw_id).is_integer() else str(raw_id)
        audio = _audio_for(audio_dir, stem)
        if audio is None:
            missing += 1
            if require_audio:
                continue
            audio = audio_dir / f"{stem}.mp3"
        items.append(EmotionItem(item_id=stem, audio_path=audio, valence=float(v), arousal=float(a)))
    if missing:
        log.warning("%s: %d of %d songs have no audio in %s%s", path, missing, len(ids), audio_dir,
                    "; skipped" if require_audio else "")
    if not items:
        raise EmotionDataError(f"{path}: no audio found in {audio_dir} for any of {len(ids)} annotated songs")
    return items


def load_pmemo(root: str | Path, audio_dir: str | Path | None = None, require_audio: bool = True) -> EmotionDataset:
    """PMEmo2019: static annotations (musicId, Arousal(mean), Valence(mean) in [0, 1]) -> VA in [-1, 1].

    ``root`` is the ``PMEmo2019`` folder (the csv is found anywhere under it); audio defaults to
    ``root/chorus``. Songs without audio are skipped (logged) unless ``require_audio=False``.
    """
    root = Path(root)
    path = _find_one(root, ("static_annotations.csv",), "PMEmo static_annotations.csv")[0]
    df = _read_csv(path)
    cols = ("musicId", "Arousal(mean)", "Valence(mean)")
    _require(df, path, cols)
    ids = _numeric(df, path, "musicId", 0, np.inf)
    arousal = _rescale(_numeric(df, path, "Arousal(mean)", 0, 1), 0, 1)
    valence = _rescale(_numeric(df, path, "Valence(mean)", 0, 1), 0, 1)
    audio = Path(audio_dir) if audio_dir else root / "chorus"
    items = _va_items(ids, valence, arousal, audio, path, require_audio)
    return EmotionDataset("pmemo", items, (), root, {"annotations": str(path)})


def load_deam(root: str | Path, audio_dir: str | Path | None = None, require_audio: bool = True) -> EmotionDataset:
    """DEAM: ``static_annotations_averaged_songs_*.csv`` (valence_mean, arousal_mean on 1..9) -> [-1, 1].

    All matching csv files under ``root`` are concatenated (1_2000 and 2000_2058). Audio defaults
    to the ``MEMD_audio`` folder found under ``root``.
    """
    root = Path(root)
    paths = _find_one(root, ("static_annotations_averaged_songs_*.csv",), "DEAM static_annotations_averaged_songs_*.csv")
    items: list[EmotionItem] = []
    if audio_dir is None:
        found = sorted(p for p in root.rglob("MEMD_audio") if p.is_dir())
        audio = found[0] if found else root / "MEMD_audio"
    else:
        audio = Path(audio_dir)
    seen: set[str] = set()
    for path in paths:
        df = _read_csv(path)
        _require(df, path, ("song_id", "valence_mean", "arousal_mean"))
        ids = _numeric(df, path, "song_id", 0, np.inf)
        valence = _rescale(_numeric(df, path, "valence_mean", 1, 9), 1, 9)
        arousal = _rescale(_numeric(df, path, "arousal_mean", 1, 9), 1, 9)
        for it in _va_items(ids, valence, arousal, audio, path, require_audio):
            if it.item_id not in seen:
                seen.add(it.item_id)
                items.append(it)
    return EmotionDataset("deam", items, (), root, {"annotations": [str(p) for p in paths]})


def load_dataset(name: str, root: str | Path) -> EmotionDataset:
    """Load a data set by name: ``emotify``, ``pmemo`` or ``deam``."""
    loaders = {"emotify": load_emotify, "pmemo": load_pmemo, "deam": load_deam}
    if name not in loaders:
        raise EmotionDataError(f"unknown emotion data set {name!r}; choose one of: {', '.join(DATASETS)}")
    return loaders[name](root)
