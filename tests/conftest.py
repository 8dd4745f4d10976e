"""Shared fixtures: the real media in ../shared/media, temporary data roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_MEDIA = Path(os.environ.get("C98K_SHARED_MEDIA", ROOT.parent / "shared" / "media"))

# Every Ray instance the tests start or join (in-process or in subprocesses) runs without token
# auth: a token left in ~/.ray by an earlier run would otherwise switch auth on for some of them
# and off for others, and a driver then cannot talk to a cluster's raylet.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.pop("RAY_AUTH_TOKEN", None)


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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a test module: the 2-core machine is shared, and
    oversubscribed torch threads crawl. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
