"""``DemoConfig``: what the demo builds, where, and how much it trains."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class DemoConfig:
    """What the demo builds and how much it trains."""

    work_dir: Path = Path("demo_work")
    categories: tuple[str, ...] = ()
    videos_per_category: int = 14
    seed: int = 0
    quick: bool = False
    workers: int = 2
    train_steps: int = 300
    batch_size: int = 32
    device: str = "cpu"
    split_fractions: str = "0.6,0.1,0.3"  # a test split big enough to compare methods
    baselines: tuple[str, ...] = ("cca", "cbvmr")  # yuyin benchmark's baselines (not its ablations)
    music_sources: tuple[str, ...] = ("immich", "music21")
    playlist_size: int | None = None  # tracks per category (None: two fifths of its videos)
    shards_on_true_tracks: bool = False  # shards from the manifest copy with true-track music_ids (benchmark)
    progress: bool = True

    @property
    def root(self) -> Path:
        return Path(self.work_dir)

    def path(self, *parts: str) -> Path:
        """A path inside the work folder."""
        return self.root.joinpath(*parts)

    def fractions(self) -> tuple[float, float, float]:
        """``split_fractions`` as the three numbers ``build-shards`` takes."""
        train, val, test = (float(x) for x in self.split_fractions.split(","))
        return train, val, test
