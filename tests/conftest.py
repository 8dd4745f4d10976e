"""Shared fixtures: the real media in ../shared/media, temporary data roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_MEDIA = Path(os.environ.get("C98K_SHARED_MEDIA", ROOT.parent / "shared" / "media"))


@pytest.fixture(scope="session")
def shared_media() -> Path:
    """``../shared/media``. Missing: an error in CI (it is always there), a skip elsewhere."""
    if not SHARED_MEDIA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_MEDIA} is missing; CI always provides ../shared/media")
        pytest.skip(f"{SHARED_MEDIA} not found (tests on real media need ../shared/media)")
    return SHARED_MEDIA


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root
