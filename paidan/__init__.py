"""paidan's command line (:mod:`paidan.cli`), imported by :func:`main` without the cyclic collector."""

from __future__ import annotations

from model.startup import startup


def main() -> None:
    """The ``paidan`` command."""
    with startup():
        from paidan.cli import app
    app(prog_name="paidan")
