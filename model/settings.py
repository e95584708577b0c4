"""Runtime settings: one pydantic-settings class, read from ``PAIDAN_*`` environment variables."""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# API keys are kept only as ``sha256:<64 hex>``; a raw key shorter than this is refused.
MIN_KEY_CHARS = 16
KEY_HASH_PREFIX = "sha256:"
_KEY_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_ORIGIN = re.compile(r"^https?://[^/\s?#]+$", re.IGNORECASE)
DEFAULT_PORTS = {"http": 80, "https": 443}
# The shortest pause between two checks of the model root's `current` (seconds), 0 aside (off):
# 0.001 was accepted, and every worker read the pointer a thousand times a second.
MIN_RELOAD_INTERVAL_S = 0.1
# The most any length or count limit may be: no text, list or body is longer (sys.maxsize). Beyond
# pydantic's own (2**64 - 1), `paidan serve` announced itself and then died with a traceback
# building the request models.
MAX_LIMIT = sys.maxsize


# The settings naming input columns (``text_col`` …), each the default of its ``--text-col`` …
COLUMN_FIELDS = ("text_col", "title_col", "id_col", "department_col", "category_col", "time_col")


class Settings(BaseSettings):
    """Everything an operator may set at run time. Training hyperparameters are not here; see
    :class:`model.config.TrainingConfig`."""

    model_config = SettingsConfigDict(env_prefix="PAIDAN_", env_file=None, extra="ignore")

    model_root: Path = Field(
        Path("models"), description="Directory holding one folder per model version"
    )
    model_dir: Path | None = Field(
        None,
        description="Model directory to serve (under model_root); default: the root's current model",
    )
    data_dir: Path = Field(
        Path("var"), description="Directory for the embedded SQLite feedback database"
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the feedback database; default: SQLite under data_dir"
    )
    top_k: int = Field(3, ge=1, le=20, description="Candidates returned per head")
    similar_k: int = Field(5, ge=0, le=20, description="Similar past tickets returned per ticket")
    similar_snippets: bool = Field(
        True,
        description="Give similar past tickets the start of their text (snippet); false keeps "
        "their ids, titles and labels, and the joint-dispatch advice",
    )
    max_text_chars: int = Field(
        20_000, ge=100, le=MAX_LIMIT, description="Longest accepted ticket text, in characters"
    )
    max_title_chars: int = Field(
        200, ge=10, le=MAX_LIMIT, description="Longest accepted title, in characters"
    )
    max_batch: int = Field(
        1_000, ge=1, le=MAX_LIMIT, description="Most tickets in one batch request"
    )
    follow_current: bool = Field(
        True,
        description="When serving the root's current model, switch to whatever `current` points at",
    )
    # Finite: `inf` (or 1e400) turned polling off while the log said "every inf s".
    reload_interval: float = Field(
        2.0,
        ge=0,
        allow_inf_nan=False,
        description="Seconds between checks of the `current` pointer (at least "
        f"{MIN_RELOAD_INTERVAL_S:g}); 0 turns it off",
    )
    # -- access and limits (issue 5; see SECURITY.md) --
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated API keys, raw or as `sha256:<hex>`; only their SHA-256 is kept. "
        "Feedback and admin endpoints need one; unset, `paidan serve` binds loopback only",
    )
    admin_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated keys for /v1/admin/* (raw or `sha256:<hex>`); default: the API keys",
    )
    require_key_for_route: bool = Field(
        False, description="Require an API key on /v1/route and /v1/route/batch too"
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated origins allowed to call the API from a browser (CORS); "
        "default: none (CORS off)",
    )
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated host names the server answers to (the Host header) besides "
        "localhost, IP addresses and names without a dot, e.g. the public name a proxy on this "
        "machine forwards; `*.example.gov.cn` and `*` allowed. `paidan serve` on loopback "
        "refuses other names (DNS rebinding); elsewhere it checks only when this is set",
    )
    # 8 MiB: a batch of max_batch ordinary tickets fits however a mainstream client writes it.
    # Python's json/requests and .NET's System.Text.Json write each Chinese character as \uXXXX
    # (6 bytes): 1,000 shared real tickets (mean 348 characters) were 1.9-2.3 MiB so, over the
    # former 2 MiB in most batches; the 1,000 longest of 7,562 were 6.8 MiB.
    max_body_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        le=MAX_LIMIT,
        description="Largest accepted body of a batch (/v1/route/batch), in bytes (8 MiB)",
    )
    # 1 MiB: the largest body one ticket needs is a few hundred kB (a 20,000-character text and a
    # 100,000-character suggestion, each character a 6-byte \uXXXX). A body is parsed and checked
    # whole before it is refused: 7.6 MB of small values sent to /v1/route held the event loop for
    # 2 s, and every other request (/healthz too) waited behind it.
    max_ticket_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=MAX_LIMIT,
        description="Largest accepted body of every other request (/v1/route, /v1/feedback, the "
        "admin routes), in bytes (1 MiB); never more than max_body_bytes",
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=MAX_LIMIT,
        description="Largest accepted request line and headers together, in bytes (64 KB); "
        "beyond it `paidan serve` answers 431 and closes the connection",
    )
    root_path: str = Field(
        "",
        description="The sub-path a reverse proxy publishes the server under and strips before "
        "forwarding (e.g. /paidan); default: none",
    )
    access_log: bool = Field(
        True, description="Log one line per request (path PII-masked, no query string)"
    )
    keep_alive_s: int = Field(
        75,
        ge=1,
        description="Seconds an idle keep-alive connection stays open. Longer than the idle timeout "
        "of any proxy or client pool in front (nginx upstream keepalive: 60 s), so that the server "
        "never closes a connection the client is about to reuse",
    )
    # -- the columns of input files, for an export whose names are always the same: train,
    # evaluate, label, retrain and models freeze-eval read them where no --*-col option is given --
    text_col: str = Field("text", description="Input column holding the ticket text")
    title_col: str = Field("title", description="Input column holding the title")
    id_col: str = Field("id", description="Input column holding the ticket id")
    department_col: str = Field(
        "department", description="Input column holding the department label"
    )
    category_col: str = Field("category", description="Input column holding the category label")
    time_col: str = Field("time", description="Input column holding the ticket's time")
    # UTC by default, as paidan read such times before this setting: an upgrade does not move
    # every existing --since window. A centre whose exports are in China's local time sets
    # Asia/Shanghai.
    timezone: str = Field(
        "UTC",
        description="IANA time zone of ticket times written without one (Asia/Shanghai), and of "
        "--since bounds typed without one",
    )

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _hash_keys(cls, value: Any) -> tuple[str, ...]:
        return tuple(hash_key_entry(entry, i) for i, entry in enumerate(_split(value), 1))

    @field_validator(
        "model_root", "data_dir", "model_dir", "timezone", *COLUMN_FIELDS, mode="before"
    )
    @classmethod
    def _empty_is_default(cls, value: Any, info: Any) -> Any:
        # `PAIDAN_MODEL_ROOT=` (set, but empty) would be Path(""), the current directory; and
        # `PAIDAN_TITLE_COL=` a column named "", which no file has.
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[info.field_name].default
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("model_root", "data_dir")
    @classmethod
    def _a_directory(cls, value: Path) -> Path:
        # Checked here, so that every command stops at once naming the variable, not after the
        # work (serve trained the default model for 90 s before failing to write it under a file).
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} is a file, not a directory")
        return value

    @field_validator("reload_interval")
    @classmethod
    def _not_a_busy_loop(cls, value: float) -> float:
        if 0 < value < MIN_RELOAD_INTERVAL_S:
            raise ValueError(
                f"is {value:g} s; give 0 to turn the polling off or at least "
                f"{MIN_RELOAD_INTERVAL_S:g} s"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        # Checked here, so that every command stops with one line naming the variable rather than
        # a traceback from deep in SQLAlchemy. The message never quotes the URL: it may hold a
        # password.
        if value is None or not value.strip():
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        example = "write postgresql+psycopg://USER:PASSWORD@HOST/DB or sqlite:////PATH/paidan.db"
        try:
            url = make_url(value.strip())
        except ArgumentError:
            raise ValueError(f"is not a database URL; {example}") from None
        except ValueError:
            # SQLAlchemy's own message quoted the "port", which is the password when the URL
            # lacks its @HOST (postgresql+psycopg://USER:PASSWORD/DB) or the password holds a raw
            # ":" after a raw "@".
            raise ValueError(
                f"is not a database URL: its port is not a number; {example}; {ENCODE_PASSWORD}"
            ) from None
        backend = url.get_backend_name()
        if backend != "sqlite" and _raw_at_in_password(value.strip(), url):
            # SQLAlchemy ends the password at its first "@" and reads the rest as the host (or the
            # database, or a query parameter): the rest of the password was printed in the banner,
            # the logs, every 503 and /readyz, and handed to the resolver as a host name.
            raise ValueError(f"the password seems to hold a raw '@'; {ENCODE_PASSWORD}")
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"the {backend!r} database is not supported; {example}")
        if backend == "sqlite" and _in_memory(url):
            # The migration ran on a throw-away engine, so the app's database never had the
            # table: every feedback request answered 503 "no such table" for as long as it ran.
            raise ValueError(
                "an in-memory SQLite database starts empty on each connection and is lost at exit; "
                "name a file: sqlite:////PATH/paidan.db, or unset it for PAIDAN_DATA_DIR/paidan.db"
            )
        try:
            url.get_dialect().import_dbapi()
        except (NoSuchModuleError, ImportError) as e:
            raise ValueError(
                f"the driver {url.drivername!r} is not installed ({e}); {example}"
            ) from None
        if url.get_driver_name() == "psycopg":  # serve/db.py hands it to psycopg
            prepare_threshold(url.query.get("prepare_threshold"))
        return value.strip()

    @field_validator("root_path", mode="before")
    @classmethod
    def _check_root_path(cls, value: Any) -> str:
        return url_root_path("" if value is None else str(value))

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _check_origins(cls, value: Any) -> tuple[str, ...]:
        # Written as browsers send the Origin header, which CORS compares as a string: the desk
        # configured as https://Desk.Example.gov.cn:443 was refused, its browser sending
        # https://desk.example.gov.cn.
        return tuple(
            o if o == "*" else browser_origin(o) for o in (o.rstrip("/") for o in _split(value))
        )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _check_hosts(cls, value: Any) -> tuple[str, ...]:
        return tuple(dict.fromkeys(host_pattern(h) for h in _split(value)))

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        # An env file with Windows line ends, sourced by the shell (docs/retraining.md's cron line)
        # or read by `docker run --env-file`, keeps a CR at the end of each value:
        # PAIDAN_MODEL_ROOT named another, empty directory (the CR invisible in every message), and
        # `false` was refused as no boolean. Defined last, so that it runs before the other
        # validators.
        return value.strip() if isinstance(value, str) else value

    @property
    def keys_configured(self) -> bool:
        return bool(self.api_keys or self.admin_keys)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'paidan.db').resolve()}"


def check_zone(name: str) -> str:
    """``name`` if it is an IANA time zone this machine knows (``Asia/Shanghai``, ``UTC``).

    Raises
    ------
    ValueError
        For any other name, saying what to write.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name[:60]!r} is not an IANA time zone; write e.g. Asia/Shanghai (China's local "
            "time) or UTC"
        ) from None
    return name


ENCODE_PASSWORD = (
    "percent-encode the password in USER:PASSWORD@ (@ as %40, : as %3A, / as %2F, # as %23, "
    "? as %3F, % as %25; python3 -c 'import getpass, urllib.parse; "
    'print(urllib.parse.quote(getpass.getpass(), safe=""))\') or give it as ?password=…'
)


def _raw_at_in_password(raw: str, url: Any) -> bool:
    """Whether a parsed server URL shows the signs of an unencoded ``@`` in its password.

    An ``@`` in the user name parses right (``paidan@server:PASSWORD@HOST``); one in the password
    leaves an ``@`` in the host, the database name, or a query parameter's name.
    """
    if "@" in (url.host or "") or "@" in (url.database or ""):
        return True
    after_userinfo = raw.split("://", 1)[-1].split("@", 1)[-1]
    return re.search(r"[?&][^=&]*@", after_userinfo) is not None


def _in_memory(url: Any) -> bool:
    """Whether a SQLite URL names an in-memory database (``sqlite://``, ``:memory:``, or a
    ``file:`` URI with ``mode=memory``), which each connection opens empty."""
    database = url.database or ""
    mode = url.query.get("mode", ())
    modes = (mode,) if isinstance(mode, str) else mode
    return database in ("", ":memory:") or database.startswith("file::memory:") or "memory" in modes


# How a database URL says "never prepare" (psycopg's None), as other drivers and guides spell it.
NEVER_PREPARE = frozenset(
    {"", "none", "null", "off", "false", "no", "never", "disable", "disabled"}
)


def prepare_threshold(value: str | tuple[str, ...] | None) -> int | None:
    """A database URL's ``prepare_threshold`` as psycopg wants it: ``None`` (never prepare a
    statement on the server) when absent or spelt as "never" (``off``, ``false``, ``none`` …),
    else the whole number of executions after which psycopg prepares (``0``: at once)."""
    if isinstance(value, tuple):
        value = value[-1]
    if value is None or value.strip().lower() in NEVER_PREPARE:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"prepare_threshold={value.strip()[:40]!r} is neither a whole number nor 'none'; "
            "write prepare_threshold=none (never prepare statements on the server, the default, "
            "which PgBouncer's transaction pooling needs) or leave it out"
        ) from None


def _split(value: Any) -> list[str]:
    """Entries of a comma- or whitespace-separated string, or of a sequence."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[,\s]+", value) if v]
    return [str(v).strip() for v in value if str(v).strip()]


# The ASCII characters besides letters and digits a root path holds as themselves (RFC 3986's
# pchar, without "%"); any other character is percent-encoded.
ROOT_PATH_SAFE = "/-._~!$&'()*+,;=:@"
_ROOT_PATH = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*$")


def url_root_path(value: str) -> str:
    """``value`` as a root path: ``/paidan`` for ``paidan``, ``/paidan/`` or ``/paidan``; ``""``
    for none (``""`` or ``/``). Characters beyond ASCII are kept percent-encoded, as uvicorn
    (whose root path must be ASCII) and the page's URLs need them: ``/派单`` and
    ``/%e6%b4%be%e5%8d%95`` are both ``/%E6%B4%BE%E5%8D%95``."""
    path = "/" + value.strip().strip("/")
    if path == "/":
        return ""
    problem = (
        f"{value!r} is not a URL path; write the sub-path the proxy publishes the server under, "
        "e.g. /paidan"
    )
    if re.search(r"%[0-7][0-9A-Fa-f]", path):
        # %2F would be one segment to the proxy and two once uvicorn has decoded the request path.
        raise ValueError(
            f"{problem}, with ASCII characters written as themselves (only other characters "
            "may be percent-encoded)"
        )
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise ValueError(f"{problem}; its percent-encoding is not UTF-8") from None
    if any(ord(c) < 128 and not (c.isalnum() or c in ROOT_PATH_SAFE) for c in decoded):
        raise ValueError(problem)
    path = quote(decoded, safe=ROOT_PATH_SAFE)
    if not _ROOT_PATH.match(path) or "//" in path:
        raise ValueError(problem)
    return path


def browser_origin(origin: str) -> str:
    """``origin`` as a browser serialises it: scheme and host in lower case, an international
    host in its ASCII (punycode) form, no port when it is the scheme's default."""
    problem = (
        f"{origin!r} is not an origin; write scheme://host[:port], e.g. "
        "https://desk.example.gov.cn, or *"
    )
    if not _ORIGIN.match(origin):
        raise ValueError(problem)
    parts = urlsplit(origin)
    try:
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):  # a port that is not a number, a host IDNA cannot encode
        raise ValueError(problem) from None
    if not host or parts.username is not None:  # a browser never sends user@
        raise ValueError(problem)
    scheme = parts.scheme.lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, DEFAULT_PORTS[scheme]) else "")


_HOST_CHARS = re.compile(r"^[a-z0-9._-]+$")


def host_pattern(entry: str) -> str:
    """An entry of ``PAIDAN_ALLOWED_HOSTS`` as the Host header's host is compared: lower case, an
    international name in its ASCII (punycode) form, an IPv6 address in brackets, a fully-qualified
    name without its trailing dot (``gw.example.gov.cn.`` as dig prints it is
    ``gw.example.gov.cn``); ``*`` or ``*.example.gov.cn`` (the domain's hosts) as patterns."""
    problem = (
        f"{entry!r} is not a host name; write the names clients send in the Host header, "
        "without scheme or port, e.g. paidan.example.gov.cn, *.example.gov.cn or *"
    )
    if entry == "*":
        return entry
    wildcard = entry.startswith("*.")
    name = entry.removeprefix("*.").lower()
    if not wildcard:
        try:
            return f"[{ipaddress.IPv6Address(name.removeprefix('[').removesuffix(']')).compressed}]"
        except ValueError:
            pass
    if ":" in name and "://" not in name and name.rsplit(":", 1)[1].isdigit():
        raise ValueError(
            f"{entry!r} has a port; write the name alone (every port is accepted), e.g. "
            f"{entry.rsplit(':', 1)[0]}"
        )
    name = name.removesuffix(".")  # the root's dot: serve/hosts.py drops it from the Host too
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(problem) from None
    if (
        not name
        or not _HOST_CHARS.match(name)
        or ".." in name
        or name.startswith(".")
        or name.endswith(".")
    ):
        raise ValueError(problem)
    return f"*.{name}" if wildcard else name


def hash_key_entry(entry: str, position: int = 1) -> str:
    """``sha256:<hex>`` of a raw API key, or the entry itself when it already is one.

    The error never quotes the entry: it may be a secret.
    """
    if entry.lower().startswith(KEY_HASH_PREFIX):
        normalised = entry.lower()
        if not _KEY_HASH.match(normalised):
            raise ValueError(f"entry {position} starts with sha256: but is not 64 hex digits")
        return normalised
    if not (entry.isascii() and entry.isprintable()):
        # The server would hash its UTF-8, but a client's header arrives decoded as Latin-1 (and
        # browsers refuse to send it): a key that looked valid would never authenticate.
        raise ValueError(
            f"entry {position} has characters outside printable ASCII; an HTTP header cannot "
            "carry them (make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if len(entry) < MIN_KEY_CHARS:
        from model.text import counted

        raise ValueError(
            f"entry {position} is {counted(len(entry), 'character')}; a key needs at least "
            f"{MIN_KEY_CHARS} "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return KEY_HASH_PREFIX + hashlib.sha256(entry.encode("utf-8")).hexdigest()


class SettingsError(RuntimeError):
    """A ``PAIDAN_*`` value is invalid; the message is one line naming the variable."""


def given_problem(error: Any) -> str:
    """One setting's problem as the API words a field's (:func:`model.text.value_problem`): "is 0;
    must be at least 1", "is 'three'; must be a whole number", naming the value given; a command
    line option's too (``paidan serve --port 80a``), which Typer checks with pydantic. Text that
    is not of the setting's type is quoted (PII-masked) when shorter than a raw API key
    (``MIN_KEY_CHARS``); a longer one, which may be another setting's secret set under the wrong
    name, by its length alone."""
    from model.text import quoted, value_problem  # imported when needed (numpy)

    words = value_problem(error)
    if words is None:
        return str(error["msg"]).removeprefix("Value error, ")
    given = str(error.get("input", "")).strip()
    if not str(error.get("type", "")).endswith("_parsing"):
        return f"is {given}; {words}"  # a number, out of its bounds or not finite
    if not given:
        return f"is empty; {words}"
    if len(given) >= MIN_KEY_CHARS:
        return f"is {len(given):,} characters long (not quoted: it may be a secret); {words}"
    return f"is {quoted(given, cell=True)}; {words}"


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into one clear line."""
    try:
        return Settings()
    except ValidationError as e:
        problems = "; ".join(
            f"PAIDAN_{'_'.join(str(p) for p in err['loc']).upper()}: {given_problem(err)}"
            for err in e.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None


# PAIDAN_* variables that are not settings but are read by paidan's own tools: the --workers
# supervisor's note to its workers (serve/workers.py), the PostgreSQL tests' server, the notebook's
# data choice and the wrk benchmark's request bodies. Not reported as unknown.
OTHER_VARIABLES = frozenset(
    {"PAIDAN_SUPERVISOR", "PAIDAN_TEST_POSTGRES_URL", "PAIDAN_NOTEBOOK_DATA", "PAIDAN_WRK_BODIES"}
)


# `paidan serve` options that an operator may set as variables, as other servers read theirs
# (gunicorn's WEB_CONCURRENCY, a platform's PORT): refused as no setting, the refusal said nothing
# of where they are set.
SERVE_OPTION_VARIABLES = {
    "PAIDAN_WORKERS": "--workers",
    "PAIDAN_PORT": "--port",
    "PAIDAN_HOST": "--host",
}


def setting_variables() -> list[str]:
    """The environment variable of each setting, ``PAIDAN_MODEL_ROOT`` and so on."""
    return [f"PAIDAN_{name.upper()}" for name in Settings.model_fields]


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per ``PAIDAN_*`` variable that is no setting, naming the closest setting.

    Settings ignore other names (``extra="ignore"``): ``PAIDAN_API_KEY`` for ``PAIDAN_API_KEYS``
    left the feedback export and admin reload without a key, without a word. Names are compared
    without regard to case, as the settings read them.
    """
    environ = os.environ if environ is None else environ
    known = setting_variables()
    suffixes = [k.removeprefix("PAIDAN_") for k in known]
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith("PAIDAN_") or upper in known or upper in OTHER_VARIABLES:
            continue
        close = difflib.get_close_matches(upper.removeprefix("PAIDAN_"), suffixes, n=1)
        hint = f" (did you mean PAIDAN_{close[0]}?)" if close else ""
        if upper in SERVE_OPTION_VARIABLES:
            hint = f" (it is paidan serve's {SERVE_OPTION_VARIABLES[upper]} option)"
        lines.append(f"{name} is not a paidan setting{hint}")
    return lines


def check_unknown_variables(environ: Mapping[str, str] | None = None) -> None:
    """Refuse ``PAIDAN_*`` variables that are no setting (see :func:`unknown_variables`).

    Raises
    ------
    SettingsError
        One line naming each such variable and the setting it may have meant to be.
    """
    lines = unknown_variables(environ)
    if lines:
        raise SettingsError(
            "; ".join(lines) + ": a misspelt setting would be ignored, so the server does not "
            "start; correct the name or unset the variable"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return load_settings()
