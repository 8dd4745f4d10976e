"""Each shared contract is defined once in ``commercial98k/``, ``pipelines/`` and ``yuyin/``.

The checks read the source (``ast``), so a copy fails here even if it is never imported:

* the GEMS class order: one literal sequence of the GEMS names (``commercial98k/label/gems.py``);
* the emotion vector layout ``[valence, arousal, p_1..p_K]``: built in one function
  (``gems.emotion_vector``); ``GemsHead.to_vector`` delegates to it;
* "a path under the data root": one class (``storage.files.DataRoot``) checks that a path lies under a
  root; no other code pairs ``Path.resolve()``/``os.path.realpath|normpath|abspath`` with a
  containment test (``relative_to``, ``is_relative_to``, ``os.path.relpath``/``commonpath``,
  ``in p.parents``, ``p.parent == ...``, ``startswith``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from commercial98k.label.gems import GEMS9

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("commercial98k", "pipelines", "yuyin")
GEMS_HOME = "commercial98k/label/gems.py"
PATH_HOME = ("commercial98k/storage/files.py", "DataRoot")
NORMALISERS = {"realpath", "normpath", "abspath"}
CONTAINMENT_CALLS = {"relative_to", "is_relative_to", "relpath", "commonpath", "commonprefix", "startswith"}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)


def _mentions(node: ast.AST, word: str) -> bool:
    for n in ast.walk(node):
        if (isinstance(n, ast.Name) and word in n.id) or (isinstance(n, ast.Attribute) and word in n.attr):
            return True
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value == word:
            return True
    return False


def _where(rel: str, node: ast.AST) -> str:
    return f"{rel}:{node.lineno}: {ast.unparse(node)[:90]}"


# ---- GEMS order --------------------------------------------------------------------------


def test_gems_order_is_one_literal_in_gems_py():
    names = set(GEMS9)
    found = []
    for rel, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                strings = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(strings & names) >= 3:
                    found.append((rel, node))
    places = [_where(rel, n) for rel, n in found]
    assert len(found) == 1 and found[0][0] == GEMS_HOME, (
        "the GEMS class order must be written once, as GEMS9 in " + GEMS_HOME
        + "; import it instead of copying it. Literal sequences of GEMS names found:\n  " + "\n  ".join(places))


# ---- emotion vector ----------------------------------------------------------------------


def _vector_builders(tree: ast.Module) -> Iterator[ast.AST]:
    """List/tuple literals ``[valence, arousal, ...]`` that become a longer vector: concatenated
    (``+``, ``np.concatenate``/``hstack``/``r_``) or holding more than the pair."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.List, ast.Tuple)) or len(node.elts) < 2:
            continue
        if all(isinstance(e, ast.Constant) for e in node.elts):
            continue  # names of columns, not values
        if not (_mentions(node.elts[0], "valence") and _mentions(node.elts[1], "arousal")):
            continue
        up = parents.get(node)
        concatenated = isinstance(up, ast.BinOp) and isinstance(up.op, ast.Add)
        stacked = any(isinstance(p, ast.Call) and isinstance(p.func, ast.Attribute)
                      and p.func.attr in ("concatenate", "hstack", "append", "r_") for p in _ancestors(node, parents))
        longer = any(isinstance(e, ast.Starred) or _mentions(e, "prob") for e in node.elts[2:])
        if concatenated or stacked or longer:
            yield node


def _ancestors(node: ast.AST, parents: dict) -> Iterator[ast.AST]:
    while node in parents:
        node = parents[node]
        yield node


def test_emotion_vector_is_built_in_one_function():
    found = [(rel, n) for rel, tree in _modules() for n in _vector_builders(tree)]
    places = [_where(rel, n) for rel, n in found]
    assert len(found) == 1 and found[0][0] == GEMS_HOME, (
        "the emotion vector [valence, arousal, p_1..p_K] must be built only by emotion_vector in "
        + GEMS_HOME + "; call it instead. Builders found:\n  " + "\n  ".join(places))
    defs = [(rel, n) for rel, tree in _modules() for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.name == "emotion_vector"]
    assert [rel for rel, _ in defs] == [GEMS_HOME], f"emotion_vector defined in {[rel for rel, _ in defs]}"


def test_gems_head_to_vector_delegates_to_the_one_layout():
    import numpy as np

    from commercial98k.label.gems import emotion_vector
    from commercial98k.models.emotion_head import GemsHead

    tree = ast.parse(Path(REPO / "commercial98k/models/emotion_head.py").read_text(encoding="utf-8"))
    to_vector = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "to_vector")
    assert any(isinstance(n, ast.Call) and _mentions(n.func, "emotion_vector") for n in ast.walk(to_vector))
    head = GemsHead.__new__(GemsHead)
    head.classes = GEMS9
    pred = {"valence": 0.3, "arousal": -0.2, "probs": {g: i / 45 for i, g in enumerate(GEMS9)}}
    np.testing.assert_array_equal(head.to_vector(pred), emotion_vector(0.3, -0.2, pred["probs"], GEMS9))


# ---- data-root path helper ---------------------------------------------------------------


def _normalises(node: ast.AST, resolved: set[str]) -> bool:
    """True when ``node`` normalises a path (``Path.resolve()`` without arguments, ``os.path.realpath``
    ...) or uses a name assigned from such a call."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) \
                and ((n.func.attr == "resolve" and not n.args) or n.func.attr in NORMALISERS):
            return True
        if isinstance(n, ast.Name) and n.id in resolved:
            return True
    return False


def _containment_checks(scope: ast.AST) -> Iterator[ast.AST]:
    """Containment tests on normalised paths inside one function."""
    resolved: set[str] = set()
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and _normalises(node.value, resolved):
            resolved.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(scope):
        call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in CONTAINMENT_CALLS
        compare = isinstance(node, ast.Compare) and _mentions(node, "parent")
        if (call or compare) and _normalises(node, resolved):
            yield node


def _path_checks() -> list[tuple[str, str, ast.AST]]:
    out = []
    for rel, tree in _modules():
        classes = {id(f): c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                   for f in ast.walk(c) if isinstance(f, ast.FunctionDef)}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in _containment_checks(fn):
                    out.append((rel, classes.get(id(fn), ""), node))
    return out


def test_one_data_root_path_helper():
    checks = _path_checks()
    outside = [_where(rel, n) for rel, cls, n in checks if (rel, cls) != PATH_HOME]
    assert not outside, ("a path under the data root is checked only by storage.files.DataRoot (resolve/relative); "
                         "use it instead. Other containment checks:\n  " + "\n  ".join(outside))
    assert any((rel, cls) == PATH_HOME for rel, cls, _ in checks), "storage.files.DataRoot no longer checks containment"
    helpers = [(rel, n.name) for rel, tree in _modules() for n in ast.walk(tree)
               if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name in ("DataRoot", "within")]
    assert helpers == [("commercial98k/storage/files.py", "DataRoot")], f"data-root helpers defined: {helpers}"
