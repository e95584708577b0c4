"""paidan's command line (:mod:`paidan.cli`), imported by :func:`main` without the cyclic collector."""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import NoReturn

from model.startup import startup


def escape_what_stdout_cannot_encode() -> None:
    """A character stdout's encoding lacks is written as a ``\\u3bbe``-style escape, as Python
    writes it on stderr, instead of ending the command in a UnicodeEncodeError traceback.

    stdout is GBK where Windows redirects it (``paidan label … > label.log``: the ANSI code page,
    cp936) and on a ``LANG=zh_CN.GBK`` server, and GBK lacks characters of place names (长沙县㮾梨
    街道, U+3BBE) and emoji: a label of 㮾梨街道办事处 ended ``paidan label`` with exit 1 after its
    work was done, and an emoji in a similar ticket's title left ``paidan predict`` printing
    nothing.
    """
    stream = sys.stdout
    if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        # ValueError, OSError: not a text file Python made (an embedding's own stream)
        with contextlib.suppress(ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")


def interrupted_before_the_command() -> NoReturn:
    """Ctrl-C in the first seconds of a command, while paidan is imported and typer builds the
    commands (it reads every option's type), before the command runs: it ended in a 30-line
    KeyboardInterrupt traceback, where Ctrl-C a second later says one line, exit 130."""
    sys.stderr.write("interrupted\n")
    raise SystemExit(128 + signal.SIGINT)


def main() -> None:
    """The ``paidan`` command."""
    escape_what_stdout_cannot_encode()
    try:
        with startup():
            from paidan.cli import app, err, out
    except KeyboardInterrupt:
        interrupted_before_the_command()
    try:
        app(prog_name="paidan")
    except KeyboardInterrupt:  # while typer builds the commands; a running one says its own
        interrupted_before_the_command()
    except SystemExit as e:
        if out.failed is not None:
            # Said last, after the command's own warnings, which go to stderr all the same.
            reason = out.failed.strerror or str(out.failed)
            err.print(
                f"[red]error:[/red] cannot write to standard output: {reason}",
                highlight=False,
                soft_wrap=True,
            )
            raise SystemExit(e.code if e.code not in (0, None) else 1) from None
        # stdout's reader went away, and the command did its work: exit as a Unix tool killed by
        # SIGPIPE does (`set -o pipefail` sees it as `seq 1000 | head -1`), having said nothing.
        if out.closed and e.code in (0, None):
            raise SystemExit(128 + getattr(signal, "SIGPIPE", 13)) from None
        raise
