"""The layering rule (docs/ARCHITECTURE.md, "The rule"), checked on the source tree itself.

* ``commercial98k/`` (the library) never imports ``pipelines`` or ``yuyin`` (no ``import``, no
  ``importlib`` string) and never starts them as subprocesses (``-m pipelines``, ``pipelines.cli``,
  ``yuyin.cli``);
* the modules of ``commercial98k/``, ``pipelines/`` and ``yuyin/`` import each other without a
  cycle: imports inside functions and under ``TYPE_CHECKING`` count too, and importing ``a.b.c``
  counts as importing the packages ``a`` and ``a.b`` (their ``__init__`` runs first);
* the package root of ``commercial98k/`` holds at most ``MAX_ROOT_MODULES`` modules, and within
  each top-level package no module or subpackage is named as another plus ``s`` or plus a
  ``_suffix`` (``stage`` / ``stages`` / ``stage_runner``);
* a ``c98k`` command module that fails to import is an error, not a command silently missing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
UPPER = ("pipelines", "yuyin")
PACKAGES = ("commercial98k", *UPPER)
MAX_ROOT_MODULES = 6
IMPORT_CALLS = ("import_module", "__import__", "find_spec")
SUBPROCESS_PATTERNS = (re.compile(r"-m\s+(pipelines|yuyin)\b"), re.compile(r"\bpipelines\.cli\b"),
                       re.compile(r"\byuyin\.cli\b"),
                       re.compile(r"""["']-m["']\s*,\s*f?["'](pipelines|yuyin)\b"""))


def python_files(package: str, root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, at any depth; ``from m import n`` gives
    ``m.n`` as well as ``m`` (``n`` may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def importlib_strings(path: Path) -> Iterator[tuple[int, str]]:
    """(line, string) of every ``importlib.import_module("...")`` / ``__import__`` / ``find_spec`` literal."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            arg = node.args[0] if node.args else None
            if name in IMPORT_CALLS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield node.lineno, arg.value


def is_upper(module: str) -> bool:
    return module.split(".")[0] in UPPER


def test_the_library_never_imports_pipelines_or_yuyin() -> None:
    files = python_files("commercial98k")
    assert len(files) > 50
    found = [f"{p.relative_to(ROOT)}:{line}: {mod}" for p in files
             for line, mod in [*imported_modules(p), *importlib_strings(p)] if is_upper(mod)]
    assert not found, "commercial98k/ imports the layers above it:\n" + "\n".join(found)


def test_the_library_never_starts_pipelines_or_yuyin_as_a_subprocess() -> None:
    found = []
    for p in python_files("commercial98k"):
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if any(rx.search(line) for rx in SUBPROCESS_PATTERNS):
                found.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "commercial98k/ runs the CLIs above it:\n" + "\n".join(found)


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The walkers find an absolute, a relative, a lazy and an importlib import, and a ``-m`` command line."""
    src = tmp_path / "commercial98k" / "demo" / "steps.py"
    src.parent.mkdir(parents=True)
    src.write_text("import os\nfrom . import music\nfrom ..storage.files import within\n\ndef run():\n"
                   "    from pipelines.cli import main\n    import importlib\n"
                   "    importlib.import_module('yuyin.train')\n"
                   "    return [sys.executable, '-m', 'pipelines.split', 'x']\n", encoding="utf-8")
    mods = {m for _, m in imported_modules(src, tmp_path)}
    assert {"os", "commercial98k.demo.music", "commercial98k.storage.files", "pipelines.cli"} <= mods
    assert [m for _, m in importlib_strings(src)] == ["yuyin.train"]
    hits = [line for line in src.read_text().splitlines() if any(rx.search(line) for rx in SUBPROCESS_PATTERNS)]
    assert hits == ["    from pipelines.cli import main", "    return [sys.executable, '-m', 'pipelines.split', 'x']"]


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (resolved to files that exist), plus the
    packages those live in; a module's own packages are left out (they are loaded before it)."""
    modules = {module_name(p, root): p for pkg in packages for p in python_files(pkg, root)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {m for _, m in imported_modules(path, root) if m in modules}
        targets |= {a for m in targets for a in _ancestors(m) if a in modules}
        graph[name] = targets - _ancestors(name) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert "pipelines.commands.demo" in graph["pipelines.demo.__main__"]  # the graph sees the real imports
    assert "pipelines.demo" in graph["pipelines.commands.demo"]
    assert "yuyin.train" in graph["pipelines.demo.model_steps"] and "pipelines.errors" in graph["yuyin.cli"]
    assert "commercial98k.demo.music" in graph["commercial98k.demo.bench_corpus"]  # relative
    assert "commercial98k.media.ffmpeg_io" in graph["commercial98k.testing.catalog_server"]  # lazy
    assert "commercial98k.sources" in graph["pipelines.fetch"]  # the package of what it imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def root_modules(package: str, root: Path = ROOT) -> list[str]:
    """The modules at a package's root (``__init__`` and ``__main__`` not counted)."""
    return sorted(p.stem for p in (root / package).glob("*.py") if not p.stem.startswith("__"))


def names_by_package(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Top-level package -> the last name of every module and subpackage under it."""
    out: dict[str, set[str]] = {}
    for pkg in packages:
        names = {p.stem for p in python_files(pkg, root) if not p.stem.startswith("__")}
        names |= {p.parent.name for p in python_files(pkg, root) if p.name == "__init__.py" and p.parent.name != pkg}
        out[pkg] = names
    return out


def colliding_names(names: set[str]) -> list[tuple[str, str]]:
    """(name, other) pairs where ``other`` is ``name`` plus ``s`` or plus a ``_suffix``."""
    return sorted((a, b) for a in names for b in names
                  if b == f"{a}s" or (b.startswith(f"{a}_") and len(b) > len(a) + 1))


def test_the_package_root_holds_few_modules() -> None:
    mods = root_modules("commercial98k")
    assert "taxonomy" in mods  # it sees the real root
    assert len(mods) <= MAX_ROOT_MODULES, f"{len(mods)} modules at commercial98k/'s root: {', '.join(mods)}"


def test_no_names_that_differ_by_a_plural_or_a_suffix() -> None:
    names = names_by_package()
    assert {"split", "cut", "taxonomy"} <= names["commercial98k"] and "commands" in names["pipelines"]
    found = [f"{pkg}: {a} / {b}" for pkg, ns in names.items() for a, b in colliding_names(ns)]
    assert not found, "names that differ only by a plural or a suffix:\n" + "\n".join(found)


def test_find_cycle_reports_the_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def test_the_cycle_check_sees_lazy_type_checking_and_package_imports(tmp_path: Path) -> None:
    """A cycle closed by an import inside a function, by one under ``TYPE_CHECKING``, and by one
    through a package's ``__init__``; a submodule importing its own package is no cycle."""
    init = {"lib/__init__.py": ""}
    cases = {
        "lazy": ({"lib/a.py": "from lib import b\n", "lib/b.py": "def f():\n    from . import a\n"},
                 ["lib.a", "lib.b", "lib.a"]),
        "type_checking": ({"lib/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lib.d import D\n",
                           "lib/d.py": "from .c import x\n"}, ["lib.c", "lib.d", "lib.c"]),
        "package": ({"lib/pkg/__init__.py": "from .inner import y\n", "lib/pkg/inner.py": "from lib.e import z\n",
                     "lib/e.py": "from lib.pkg.other import w\n", "lib/pkg/other.py": ""},
                    ["lib.e", "lib.pkg", "lib.pkg.inner", "lib.e"]),
        "own_package": ({"lib/pkg/__init__.py": "from .inner import y\n",
                         "lib/pkg/inner.py": "from lib.pkg import other\n", "lib/pkg/other.py": ""}, None),
    }
    for case, (files, cycle) in cases.items():
        graph = import_graph(_tree(tmp_path / case, {**init, **files}), ("lib",))
        assert find_cycle(graph) == cycle, case
    assert import_graph(tmp_path / "own_package", ("lib",))["lib.pkg.inner"] == {"lib.pkg.other"}


def test_the_name_checks_see_what_they_look_for(tmp_path: Path) -> None:
    names = {"stage", "stages", "stage_runner", "split", "cut", "shards", "build_shards", "_http"}
    assert colliding_names(names) == [("stage", "stage_runner"), ("stage", "stages")]
    _tree(tmp_path, {f"lib/{m}.py": "" for m in ("__init__", "__main__", "a", "b", "c", "d", "e", "f", "g")}
          | {"lib/split/__init__.py": "", "lib/split/cut.py": "", "lib/splits.py": ""})
    assert len(root_modules("lib", tmp_path)) == 8  # a-g and splits; no dunder files
    assert colliding_names(names_by_package(tmp_path, ("lib",))["lib"]) == [("split", "splits")]


def test_a_command_module_that_fails_to_import_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", [*cli.COMMAND_MODULES, "no_such_command"])
    result = CliRunner().invoke(cli.main, ["no-such-command", "--help"])
    assert result.exit_code == 1  # the one error line of pipelines.errors.CliGroup, naming the module
    assert result.output.splitlines() == [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "No module named 'pipelines.commands.no_such_command'" in result.output
    listing = CliRunner().invoke(cli.main, ["--help"])  # the listing does not hide it either
    assert listing.exit_code != 0 and isinstance(listing.exception, ModuleNotFoundError)


def test_every_listed_command_module_imports() -> None:
    import importlib

    from pipelines import cli

    for name in cli.COMMAND_MODULES:
        assert importlib.import_module(f"pipelines.commands.{name}").command is not None, name
