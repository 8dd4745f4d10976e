"""The toolkit's error base class and the one-line wording of any error.

Every error the library raises about the user's input or machine (a bad manifest, a missing
tool, a dead URL, a full disk) derives from ``C98kError``; its message already names the item
and the cause, so the command line prints it as one line without the type name. Anything else
escaping a command is a bug, and the line says which exception it was.
"""

from __future__ import annotations


class C98kError(Exception):
    """Base of the toolkit's expected errors: the message names what failed and why."""


def error_line(e: BaseException) -> str:
    """``ExceptionType: first line of the message``: the manifest's ``error`` format."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else 'no detail'}"
