"""The layering rule (docs/ARCHITECTURE.md, "The rule"), checked on the source tree itself.

* ``commercial98k/`` (the library) never imports ``pipelines`` or ``yuyin`` (no ``import``, no
  ``importlib`` string) and never starts them as subprocesses (``-m pipelines``, ``pipelines.cli``,
  ``yuyin.cli``);
* the modules of ``pipelines/`` and ``yuyin/`` import each other without a cycle (lazy imports
  inside functions count too);
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
IMPORT_CALLS = ("import_module", "__import__", "find_spec")
SUBPROCESS_PATTERNS = (re.compile(r"-m\s+(pipelines|yuyin)\b"), re.compile(r"\bpipelines\.cli\b"),
                       re.compile(r"\byuyin\.cli\b"),
                       re.compile(r"""["']-m["']\s*,\s*f?["'](pipelines|yuyin)\b"""))


def python_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


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


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ``pipelines``/``yuyin`` it imports (resolved to files that exist)."""
    modules = {module_name(p): p for pkg in UPPER for p in python_files(pkg)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = {m for _, m in imported_modules(path) if m in modules and m != name}
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


def test_pipelines_and_yuyin_have_no_import_cycle() -> None:
    graph = import_graph()
    assert "pipelines.commands.demo" in graph["pipelines.demo.__main__"]  # the graph sees the real imports
    assert "pipelines.demo" in graph["pipelines.commands.demo"]
    assert "yuyin.train" in graph["pipelines.demo.model_steps"] and "pipelines.errors" in graph["yuyin.cli"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_reports_the_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


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
