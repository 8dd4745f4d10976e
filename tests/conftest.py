"""Shared fixtures: the real media in ../shared/media, temporary data roots, one Ray cluster per session."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
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


# ---- one Ray cluster for the whole session --------------------------------------------------


@pytest.fixture(scope="session")
def session_ray_cluster() -> Iterator:
    """A local Ray cluster started once per session (``tests/ray_cluster.LocalCluster``: its own
    port on 127.0.0.1 and temp dir under /tmp), stopped at the end; only its own processes are
    stopped. Starting Ray costs 10-30 s on 2 cores, so every test that needs Ray shares this one."""
    pytest.importorskip("ray")
    from ray_cluster import LocalCluster

    cluster = LocalCluster(num_cpus=2)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def ray_address(session_ray_cluster) -> str:
    """``host:port`` of the session's Ray cluster: pass it as ``--address``, or as ``RAY_ADDRESS``
    to a subprocess started with ``ray_cluster.ray_env``."""
    return session_ray_cluster.address


@pytest.fixture
def ray_driver(ray_address: str) -> Iterator[str]:
    """This test process as a driver of the session's cluster for one test (``--engine ray`` code
    run in-process then finds Ray initialised and uses it); disconnected afterwards, so the
    test's actors and tasks end with it. Yields the address."""
    from ray_cluster import connect_driver, disconnect_driver

    old = connect_driver(ray_address)
    try:
        yield ray_address
    finally:
        disconnect_driver(old)


# ---- models built once per session ----------------------------------------------------------

#: Registries whose models are pure functions of their name and options once built (the emotion
#: heads are not memoised: they are cheap, and tests write head files at reused paths).
_SHARED_KINDS = ("audio", "frames", "text")


@pytest.fixture(scope="session")
def _built_models() -> dict:
    return {}


@pytest.fixture(scope="module")
def shared_models(_built_models: dict) -> Iterator[None]:
    """While a module that asks for this runs (``pytestmark = pytest.mark.usefixtures("shared_models")``),
    ``AUDIO/FRAMES/TEXT.create`` return the model built earlier in the session for the same name
    and options: each label configuration, fixture and module otherwise builds its own copy of
    musicnn, EfficientNet and the text encoder (seconds each). A failed build is not kept."""
    from commercial98k.models.registry import Registry

    create = Registry.create

    def create_once(self, name: str, **options):
        if self.kind not in _SHARED_KINDS:
            return create(self, name, **options)
        key = (self.kind, name, tuple(sorted((k, repr(v)) for k, v in options.items())))
        if key not in _built_models:
            _built_models[key] = create(self, name, **options)
        return _built_models[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Registry, "create", create_once)
        yield


@pytest.fixture(scope="session")
def labels_benchmark():
    """``benchmarks/labels.py`` as a module: its ``main(argv)`` runs in this process (a subprocess
    only re-imports what the tests have loaded already)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmarks_labels", ROOT / "benchmarks" / "labels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- two workers (pytest-xdist, ``make test``) ----------------------------------------------

_RAY_USE = re.compile(r"\b(session_ray_cluster|ray_address|ray_driver)\b|pytest\.mark\.ray\b")


def _ray_modules() -> set[str]:
    """Test modules that use the session's Ray cluster (read from their source: the scheduler runs
    in the controller, which does not collect the tests)."""
    here = Path(__file__).resolve().parent
    return {f"tests/{p.name}" for p in here.glob("test_*.py") if _RAY_USE.search(p.read_text(encoding="utf-8"))}


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadscope`` with one scope per module, except that every module using Ray shares one
    scope: a module's fixtures (corpora, models) are built once and there is one Ray cluster per run."""
    from xdist.scheduler import LoadScopeScheduling

    ray_modules = _ray_modules()

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "ray" if module in ray_modules else module

    return ModuleScheduling(config, log)
