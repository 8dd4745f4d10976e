"""One error surface for the ``c98k`` and ``yuyin`` command lines.

``CliGroup`` is the Click group class of both CLIs: any exception that escapes a command is
printed as ONE ``error:`` line on stderr (what went wrong, naming the file, column or shard the
message carries) and the process exits 1. With ``-v`` the traceback is printed first. Click's
own usage errors (exit 2) and explicit exits pass through unchanged.
"""

from __future__ import annotations

import sys
import tarfile
import traceback
from typing import NoReturn

import click

from commercial98k.errors import C98kError

#: Besides ``C98kError``, the exception types whose message already says what and where.
_PLAIN = (C98kError, ValueError, KeyError, OSError)


def one_line(e: BaseException) -> str:
    """A single line describing ``e``: its message (first line), prefixed by its type when that adds meaning."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    msg = " ".join(str(msg).split()) or type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in msg:
        msg = f"{e.filename}: {msg}"
    if isinstance(e, tarfile.TarError):
        return f"a shard or tar file is truncated or corrupt ({msg}); run `c98k build-shards` again"
    if isinstance(e, _PLAIN):
        return msg
    return f"{type(e).__name__}: {msg}"


def report_error(e: BaseException, verbose: int = 0) -> None:
    """Print the traceback (``verbose``) and the one ``error:`` line for ``e`` on stderr."""
    if verbose:
        click.echo("".join(traceback.format_exception(e)).rstrip(), err=True)
    hint = "" if verbose else " (run with -v for the traceback)" if not _expected(e) else ""
    click.echo(f"error: {one_line(e)}{hint}", err=True)


def _expected(e: BaseException) -> bool:
    """Errors about the user's input (files, values), as opposed to a bug: no traceback hint."""
    return isinstance(e, (*_PLAIN, tarfile.TarError))


def fail(e: BaseException, code: int = 1) -> NoReturn:
    """For a command's own ``except``: the one ``error:`` line (traceback first under ``-v``), then exit ``code``."""
    ctx = click.get_current_context(silent=True)
    verbose = int(ctx.find_root().params.get("verbose") or 0) if ctx is not None else 0
    report_error(e, verbose)
    sys.exit(code)


class CliGroup(click.Group):
    """A Click group that turns any uncaught exception of a command into one ``error:`` line and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as e:  # the one place where a traceback is turned into a line
            report_error(e, int(ctx.params.get("verbose") or 0))
            ctx.exit(1)
