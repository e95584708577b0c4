"""The lines ``paidan serve`` logs: each begins with its time, in UTC with its date, and under
``--workers N`` with the id of the process that wrote it.

uvicorn's format is ``LEVEL:    message``: a ``model reload refused`` ERROR or a database WARNING
kept by ``nohup`` or a ``>> /var/log/…`` redirect could not be placed in time, nor a worker that
kept failing told from the others. The time is written as ``train``'s progress lines write it
(``2026-12-05T02:30:14Z``), so that one log's days stay apart and read against a model's version.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from uvicorn.logging import AccessFormatter, DefaultFormatter

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# A line break and the blanks around it, in a message (the log is one line per record).
LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def utc(seconds: float | None) -> time.struct_time:
    """A record's time in UTC, whatever the server's time zone (the formatters' ``converter``)."""
    return time.gmtime(seconds)


class UTCFormatter(DefaultFormatter):
    """uvicorn's formatter (its level prefix, coloured on a terminal), its times in UTC, and a
    message on one line: one that spans several (alembic's ``Running upgrade 0001 -> 0002, …``
    quotes a migration's docstring whole) went on in lines without a time. A traceback keeps its
    lines, after the dated one."""

    converter = staticmethod(utc)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = LINE_BREAKS.sub(" ", record.message)
        return super().formatMessage(record)


class UTCAccessFormatter(AccessFormatter):
    """uvicorn's access line formatter, its times in UTC (``paidan serve`` turns uvicorn's access
    log off: :mod:`serve.telemetry` writes a PII-free one through the default handler)."""

    converter = staticmethod(utc)


def line_prefix(workers: int = 1) -> str:
    """What every line begins with: the time and, with several workers, ``[pid]``."""
    return "%(asctime)s " + ("[%(process)d] " if workers > 1 else "")


def log_line(message: str, workers: int = 1) -> str:
    """``message`` as an INFO line of the server's log, dated as uvicorn's lines are (and under
    ``--workers N`` with this process's id, the supervisor's): for the lines ``paidan serve``
    prints itself before uvicorn's logging is set up (``serving MODEL on http://…``, which an
    operator looks for after each restart, was the one line of the log without its time)."""
    formatter = UTCFormatter(
        line_prefix(workers) + "%(levelprefix)s %(message)s", TIME_FORMAT, use_colors=False
    )
    record = logging.LogRecord("serve", logging.INFO, __file__, 0, message, None, None)
    return formatter.format(record)


def dated(config: dict[str, Any], workers: int = 1) -> dict[str, Any]:
    """uvicorn's logging ``config`` (a copy of ``uvicorn.config.LOGGING_CONFIG``) with every line
    dated: its two formatters, and the root logger's, which other libraries' lines reach (asyncio,
    SQLAlchemy): ``paidan``'s own ``LEVEL name: message``, dated too (in a worker process, which
    never ran the command's set-up, Python printed them bare)."""
    for name, factory in (("default", UTCFormatter), ("access", UTCAccessFormatter)):
        formatter = config["formatters"][name]
        formatter["()"] = f"{factory.__module__}.{factory.__qualname__}"
        formatter["fmt"] = line_prefix(workers) + formatter["fmt"]
        formatter["datefmt"] = TIME_FORMAT
    config["formatters"]["named"] = {
        "()": f"{UTCFormatter.__module__}.{UTCFormatter.__qualname__}",
        "fmt": line_prefix(workers) + "%(levelprefix)s %(name)s: %(message)s",
        "datefmt": TIME_FORMAT,
        "use_colors": None,
    }
    config["handlers"]["named"] = {
        "formatter": "named",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    # No level: `paidan --verbose serve` keeps the level it set.
    config["root"] = {"handlers": ["named"]}
    return config
