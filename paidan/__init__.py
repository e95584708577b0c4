"""paidan's command line (:mod:`paidan.cli`), imported by :func:`main` without the cyclic collector."""

from __future__ import annotations

import signal

from model.startup import startup


def main() -> None:
    """The ``paidan`` command."""
    with startup():
        from paidan.cli import app, err, out
    try:
        app(prog_name="paidan")
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
