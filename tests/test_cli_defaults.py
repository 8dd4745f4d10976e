"""The CLI's defaults are the library's: every option named like a field of the config it fills
(or a parameter of the function it calls) has that field's default, or names it in its help
(``[400]``) when its own default is None so a config file can override it."""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

import click
import pytest

from commercial98k.label.extractors import LabelConfig
from commercial98k.sources import YtdlpOptions
from commercial98k.split.step import SplitConfig
from pipelines import shards as shards_stage
from pipelines.cli import main as c98k
from pipelines.label import LabelOptions
from yuyin.cli import main as yuyin
from yuyin.config import TrainConfig


def _field_defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _signature_defaults(fn) -> dict[str, Any]:
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}


def _same(option_default: Any, library_default: Any) -> bool:
    if isinstance(library_default, tuple | list) and isinstance(option_default, tuple | list):
        return tuple(option_default) == tuple(library_default)
    return option_default == library_default


def _help_default(help_text: str | None) -> str | None:
    match = re.search(r"\[([^\]:,]+)", help_text or "")
    return match.group(1).strip() if match else None


def _help_names(text: str, value: Any) -> bool:
    if isinstance(value, bool):
        return True  # flags say "on"/"off" or name the mode; nothing to parse
    if isinstance(value, int | float):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return text == str(value)


CASES = [(c98k, "split", SplitConfig), (c98k, "label", LabelConfig), (c98k, "label", LabelOptions),
         (c98k, "fetch", YtdlpOptions), (c98k, "build-shards", shards_stage.run), (yuyin, "train", TrainConfig)]


@pytest.mark.parametrize(("cli", "command", "target"), CASES,
                         ids=[f"{c}-{getattr(t, '__name__', t)}" for _, c, t in CASES])
def test_option_defaults_are_the_library_defaults(cli, command, target):
    cmd = cli.get_command(click.Context(cli), command)
    defaults = _field_defaults(target) if dataclasses.is_dataclass(target) else _signature_defaults(target)
    checked, wrong = 0, []
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name not in defaults:
            continue
        want = defaults[param.name]
        if param.default is None or not isinstance(param.default, str | int | float | bool | tuple | list):
            said = _help_default(param.help)
            if want is None or said is None:
                continue
            checked += 1
            if not _help_names(said, want):
                wrong.append(f"{param.opts[0]}: help says [{said}], {getattr(target, '__name__', target)} has {want!r}")
            continue
        checked += 1
        if not _same(param.default, want):
            wrong.append(f"{param.opts[0]}: default {param.default!r}, {getattr(target, '__name__', target)} has {want!r}")
    assert checked >= 2, f"{command}: no option matched a field of {target}"
    assert not wrong, "\n".join(wrong)
