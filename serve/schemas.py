"""Request and response bodies of the HTTP API, named for their direction.

Length limits come from :class:`model.settings.Settings`, so the request models are built per app by
:func:`make_request_models`; the module-level ``RouteRequest`` & co. carry the default limits and are
what the OpenAPI page of a default install shows.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict
from pydantic_core import InitErrorDetails, PydanticCustomError

from model.router import (
    MAX_TOP_K,
    Answer,
    CoDepartment,
    HeadResult,
    MaskedTicket,
    SimilarTicket,
)
from model.settings import Settings
from model.text import CONTROL, id_key, is_blank, normalize_label
from model.tickets import JOINT_JOINER, LIST_COMMAS, joint_departments
from serve.db import MAX_DEPARTMENTS_CHARS, MAX_REQUEST_ID_CHARS
from serve.errors import TITLE_ONLY, quoted

DEFAULTS = Settings.model_construct()
MAX_ID_CHARS = 100
MAX_LABEL_CHARS = 100  # one department's or category's name
# What separates the names of a department field: the joint separator, or 、 and commas.
NAME_SEPARATORS = re.compile(f"{JOINT_JOINER}|{LIST_COMMAS.pattern}")
# A POST /v1/route answer nests five levels (suggestion > department > candidates > one candidate >
# its label); JSON far deeper than this cannot be written back out (the export's serializer stops at
# a few hundred levels), so the suggestion is refused above it.
MAX_SUGGESTION_DEPTH = 32
MAX_SUGGESTION_CHARS = 100_000  # a route answer is a few kB; anything near this is not one
TOO_LARGE_SUGGESTION = (
    f"is larger than {MAX_SUGGESTION_CHARS:,} characters of JSON; send the POST /v1/route answer "
    "as it was"
)
# JSON may escape a lone surrogate ("\ud800"); json.loads lets it through, but it is not a character,
# cannot be encoded and pydantic refuses it. Each one becomes U+FFFD, so odd text is still routed.
_SURROGATE = re.compile("[\ud800-\udfff]")


# Below this depth a value is left as it is: no field takes JSON nested that deep (the suggestion,
# the one nested field, stops at MAX_SUGGESTION_DEPTH), so validation refuses it naming its field,
# and the recursion here never reaches Python's limit (a RecursionError was a 500).
_SCRUB_DEPTH = MAX_SUGGESTION_DEPTH + 2


def scrub_surrogates(value: Any, depth: int = 0) -> Any:
    """``value`` with every lone surrogate in its strings (keys included) replaced by U+FFFD, down
    to ``_SCRUB_DEPTH`` levels."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if depth >= _SCRUB_DEPTH:
        return value
    if isinstance(value, dict):
        return {scrub_surrogates(k): scrub_surrogates(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_surrogates(v, depth + 1) for v in value]
    return value


# A feedback request_id (the idempotency key): a client-made token such as a UUID.
REQUEST_ID_PATTERN = re.compile(f"^[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID_CHARS}}}$")

# The same rules as JSON Schema patterns, so that the OpenAPI page states them and generated
# clients and fuzzers send what is accepted; the validators below give the clearer message.
PRINTABLE: JsonDict = {"pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*$"}
# Holds a character that survives normalisation (an approximation of is_blank: private-use or
# unassigned characters alone also count as blank).
_VISIBLE = "[^\\s\\x00-\\x1f\\x7f-\\x9f\\u200b-\\u200f\\u2060-\\u206f\\ufeff]"
NOT_BLANK: JsonDict = {"pattern": _VISIBLE}


def id_schema(schema: JsonDict) -> None:
    """The JSON Schema of an id that :func:`integer_as_text` reads: a printable string, an integer
    (read as its digits) or null. Said ``string | null`` alone, the schema kept generated clients
    and request validators from sending the ticket numbers the server takes."""
    schema.update(PRINTABLE)
    variants = cast(list[JsonDict], schema.get("anyOf", []))
    schema["anyOf"] = [*variants[:1], {"type": "integer"}, *variants[1:]]


# A decision without a department (a category-only deployment) is stored as an empty department:
# the column predates such decisions and is NOT NULL, and retraining reads an empty department as it
# reads a history row's empty department cell. The API shows it as null.
NO_DEPARTMENT = ""


def stored_department(value: Any) -> Any:
    """A stored department as the API shows it: null for a decision without one."""
    return None if value == NO_DEPARTMENT else value


def no_control(value: str | None) -> str | None:
    """``value`` unchanged, or a ``ValueError`` naming its first control character.

    A text is cleaned of them, but an id or a label is stored as sent, and PostgreSQL refuses
    U+0000 in any text column.
    """
    if value is not None and (m := CONTROL.search(value)):
        raise ValueError(
            f"holds a control character (U+{ord(m.group()):04X}) at character {m.start() + 1}"
        )
    return value


def integer_as_text(value: Any) -> Any:
    """A JSON integer id as its decimal digits; anything else unchanged (and checked as a string).

    Many ticket systems number their tickets and operators, and send the number as one. A
    fraction or ``true`` is no id and stays refused.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def whole_number(value: Any) -> Any:
    """A JSON number without a fractional part written with one (``3.0``) as the integer it is;
    anything else unchanged, and checked as a strict integer.

    JSON Schema's ``integer``, which the OpenAPI schema states, is met by ``3.0``, and a client
    whose numbers are all doubles writes that; ``true`` and ``"3"`` stay refused.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Strict: JSON true or "3" is a client's mistake, not a count of candidates. The bounds belong to the
# type, inside the validator: given to the field beside it, the schema wrote them "ge" and "le",
# which JSON Schema does not know, so validators and generated clients let 0 and 21 through.
CandidateCount = Annotated[StrictInt, Field(ge=1, le=MAX_TOP_K), BeforeValidator(whole_number)]


def shallow_json(value: Any, limit: int = MAX_SUGGESTION_DEPTH) -> Any:
    """``value`` unchanged, or a ``ValueError`` if its objects and arrays nest deeper than ``limit``
    (the value itself is level 1). Walked without recursion, so any depth is safe to check."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            raise ValueError(
                f"is nested deeper than {limit} levels of objects and arrays; send the "
                "POST /v1/route answer as it was"
            )
        stack.extend((child, depth + 1) for child in children)
    return value


def more_values_than(value: Any, limit: int) -> bool:
    """Whether ``value`` holds more than ``limit`` values (itself, its keys and the values in its
    objects and arrays, at any depth); stops counting there."""
    stack = [value]
    seen = 0
    while stack:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            seen += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        if seen + len(stack) > limit:
            return True
    return False


class _TooLarge:
    """In place of a suggestion too large to be a route answer, which is then not walked."""


def storable_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """``value`` unchanged, or a ``ValueError`` if the database could not store it: a NaN or an
    infinite number (JSON has none; PostgreSQL refuses the column), or a ``model_version`` - the
    row's default one - holding a control character (PostgreSQL refuses U+0000 in text)."""
    if value is None:
        return value
    version = value.get("model_version")
    if isinstance(version, str) and (m := CONTROL.search(version)):
        raise ValueError(
            f"model_version holds a control character (U+{ord(m.group()):04X}) at character "
            f"{m.start() + 1}"
        )
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(
                f"holds a number JSON cannot ({item}) at {quoted(path, 200)}; send finite numbers"
            )
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(item))
    return value


def not_blank(value: str, info: ValidationInfo) -> str:
    """``value`` unchanged, or a ``ValueError`` if it holds nothing once normalised.

    Beside a title that holds something (a ticket whose title holds it all, as 12345 exports
    sometimes do), the error says how to send it, as a missing text's does (``TITLE_ONLY``).
    """
    if is_blank(value):
        title = info.data.get("title")
        if isinstance(title, str) and not is_blank(title):
            raise ValueError("is empty (only whitespace or invisible characters)" + TITLE_ONLY)
        raise ValueError(
            "is empty (only whitespace or invisible characters); send the complaint text"
        )
    return value


class _ScrubbedRequest(BaseModel):
    """A request body whose strings never hold lone surrogates."""

    @model_validator(mode="before")
    @classmethod
    def _scrub(cls, data: Any) -> Any:
        if not isinstance(data, dict) or cls.model_config.get("extra") != "forbid":
            return scrub_surrogates(data)
        # The value of an unknown key is refused whatever it holds, and only its key is quoted:
        # it is not walked (validation runs on the event loop, and 1 MiB of small numbers took
        # 0.2 s to walk, in which the server answered nothing else).
        known = keys_of(cls)
        return {
            scrub_surrogates(k): scrub_surrogates(v, 1) if k in known else v
            for k, v in data.items()
        }


@functools.cache
def keys_of(model: type[BaseModel]) -> frozenset[str]:
    """Every key ``model`` reads from a body: its fields' names and other names."""
    keys = set()
    for name, info in model.model_fields.items():
        keys.add(name)
        if info.alias:
            keys.add(info.alias)
        alias = info.validation_alias
        if isinstance(alias, str):
            keys.add(alias)
        elif isinstance(alias, AliasChoices):
            keys.update(c for c in alias.choices if isinstance(c, str))
    return frozenset(keys)


# -- errors ---------------------------------------------------------------------------------------
class ErrorBody(Answer):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_request`")
    message: str = Field(description="What is wrong, in one sentence")
    field: str | None = Field(None, description="Dotted path of the offending field, if any")


class ErrorResponse(Answer):
    """The one shape of every error answer."""

    error: ErrorBody


# -- routing --------------------------------------------------------------------------------------
# Request bodies are strict (STRICT_BODY): pydantic's lax mode read "masked": "yes" (or 1, or "false")
# as a boolean, and an integrator's typo went unseen. A JSON value of another type than the field's
# is a 422 naming the field; the before-validators still read what the docs promise (an integer id
# as its digits, 3.0 as top_k 3).
STRICT_BODY = ConfigDict(extra="forbid", strict=True)


class RouteRequestBase(_ScrubbedRequest):
    model_config = STRICT_BODY

    id: str | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        description="The caller's ticket id (a JSON integer is read as its digits)",
        json_schema_extra=id_schema,
    )
    title: str | None = Field(None, description="Ticket title (optional)")
    text: str = Field(description="The complaint text")
    top_k: CandidateCount | None = Field(None, description="Candidates per head")
    masked: bool = Field(
        False,
        description="Also answer the title and text as sent, personal data masked as the model "
        "read them masked (`masked` in the answer): for a client that shows the ticket, which "
        "must never show it with its phone or ID numbers",
    )

    _text_not_blank = field_validator("text")(not_blank)
    _id_number = field_validator("id", mode="before")(integer_as_text)
    _id_printable = field_validator("id")(no_control)


class RouteBatchRequest(BaseModel):
    model_config = STRICT_BODY

    items: list[Any] = Field(
        description="Tickets shaped like the body of POST /v1/route; each is checked on its own"
    )
    top_k: CandidateCount | None = Field(
        None, description="Candidates per head for items that set none"
    )


class FeedbackRequestBase(_ScrubbedRequest):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    ticket_id: str | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        validation_alias=AliasChoices("ticket_id", "id"),
        description="The caller's ticket id (`id`, its name in POST /v1/route, is accepted too; "
        "sent with `ticket_id`, it must name the same ticket; a JSON integer is read as its "
        "digits)",
        json_schema_extra=id_schema,
    )
    title: str | None = Field(None, description="Ticket title; stored PII-masked")
    text: str = Field(description="The complaint text; stored PII-masked")
    suggestion: dict[str, Any] | None = Field(
        None, description="The suggestion the dispatcher saw (the POST /v1/route answer)"
    )
    department: str | None = Field(
        None,
        max_length=MAX_DEPARTMENTS_CHARS,
        description="Department finally chosen; a joint dispatch (会办) names the lead first, "
        "the others after it, separated by `；`: `市残联；市住建局` (each department at most "
        f"{MAX_LABEL_CHARS} characters, all of them together at most {MAX_DEPARTMENTS_CHARS:,}). "
        "Required unless the served "
        "model has no department head (a category-only deployment): there, without it, `category` "
        "is",
        json_schema_extra=PRINTABLE,
    )
    category: str | None = Field(
        None,
        max_length=MAX_LABEL_CHARS,
        description="Category finally chosen",
        json_schema_extra=PRINTABLE,
    )
    dispatcher_id: str | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        description="Who decided (operator id; a JSON integer is read as its digits)",
        json_schema_extra=id_schema,
    )
    model_version: str | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        description="Version of the model that made the suggestion; default: the suggestion's, "
        "else the served model's",
        json_schema_extra=PRINTABLE,
    )
    request_id: str | None = Field(
        None,
        description="Idempotency key made by the client for this decision (a UUID, say): sent "
        "again with it, the save answers the row stored the first time and stores nothing more. "
        f"1 to {MAX_REQUEST_ID_CHARS} characters among A-Z a-z 0-9 . _ : -",
        json_schema_extra={"pattern": REQUEST_ID_PATTERN.pattern},
    )

    @model_validator(mode="before")
    @classmethod
    def _one_ticket_id(cls, data: Any) -> Any:
        # `id` is ticket_id's other name (the POST /v1/route body's): sent with ticket_id, the
        # alias left it over as an unknown field ("body.id: is not a known field").
        # A null one is a name not used.
        if isinstance(data, dict) and "id" in data and "ticket_id" in data:
            given, other = integer_as_text(data["ticket_id"]), integer_as_text(data["id"])
            # Compared as ids are (model.text.id_key): "２０２６" and "2026" are one ticket.
            keys = [id_key(v) if isinstance(v, str) else v for v in (given, other)]
            if given is not None and other is not None and keys[0] != keys[1]:
                # Raised at the key the client sent (body.id), as every other 422 names a field:
                # a ValueError here is the whole body's ("field": "body").
                raise ValidationError.from_exception_data(
                    cls.__name__,
                    [
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "value_error",
                                "names another ticket than ticket_id; send the ticket's id "
                                "once, as ticket_id (or as id)",
                            ),
                            loc=("id",),
                            input=data["id"],
                        )
                    ],
                )
            drop = "id" if other is None or given is not None else "ticket_id"
            data = {k: v for k, v in data.items() if k != drop}
        return data

    @model_validator(mode="before")
    @classmethod
    def _suggestion_not_walked_if_too_large(cls, data: Any) -> Any:
        # Before every validator that walks the body (lone surrogates, depth, finite numbers):
        # validation runs on the event loop, and a 6 MB suggestion of two million numbers was
        # walked for seconds before its size refused it. Each value written as JSON takes at
        # least one character, so more values than MAX_SUGGESTION_CHARS are more characters.
        if isinstance(data, dict) and more_values_than(
            data.get("suggestion"), MAX_SUGGESTION_CHARS
        ):
            data = {**data, "suggestion": _TooLarge()}
        return data

    @field_validator("suggestion", mode="before")
    @classmethod
    def _suggestion_too_large(cls, value: Any) -> Any:
        if isinstance(value, _TooLarge):
            raise ValueError(TOO_LARGE_SUGGESTION)
        return value

    _text_not_blank = field_validator("text")(not_blank)
    _ids_number = field_validator("ticket_id", "dispatcher_id", mode="before")(integer_as_text)
    _suggestion_shallow = field_validator("suggestion")(shallow_json)
    _suggestion_storable = field_validator("suggestion")(storable_json)

    @field_validator("department", mode="before")
    @classmethod
    def _department_not_a_list(cls, value: Any) -> Any:
        # Ticket files may write a joint dispatch as a JSON array; here it is one string, and
        # "Input should be a valid string" named no way to send one.
        if isinstance(value, list):
            names = [quoted(v.strip()) for v in value[:6] if isinstance(v, str) and v.strip()]
            shown = "；".join(names[:5]) + ("；…" if len(names) > 5 else "")
            example = f": {shown}" if names else ""
            raise ValueError(
                "must be a string, not an array; name a joint dispatch's departments in one, "
                f"the lead first, separated by ；{example}"
            )
        return value

    @field_validator("department")
    @classmethod
    def _department_given(cls, value: str | None) -> str | None:
        # Absent, null and blank are the same: no department chosen. Whether that is allowed
        # depends on the served model (see POST /v1/feedback), not on the body alone.
        if value is None or is_blank(value):
            return None
        # Stored as retraining reads it: "市住建局；；市公安局" as 市住建局；市公安局, and "；" or
        # "[]", whose lead department is "", refused.
        value = joint_departments(normalize_label(value))
        if not value:
            raise ValueError(
                "names no department, only separators (； or ;) or an empty list; send the "
                "department finally chosen"
            )
        # The list's limit is the field's max_length (the column's width); a name's is a name's,
        # as a category's is. Names listed with 、 or a comma are names too: POST /v1/feedback
        # reads them as a joint dispatch, or says how to write one.
        names = NAME_SEPARATORS.split(value)
        long = next((n for n, d in enumerate(names, 1) if len(d) > MAX_LABEL_CHARS), None)
        if long is not None:
            which = "its department" if len(names) == 1 else f"its department {long} (1 the lead)"
            raise ValueError(
                f"{which} is {len(names[long - 1]):,} characters long: each department is at "
                f"most {MAX_LABEL_CHARS} characters, a joint dispatch's list at most "
                f"{MAX_DEPARTMENTS_CHARS:,}, separated by ；"
            )
        return value

    @field_validator("category", "title")
    @classmethod
    def _blank_is_absent(cls, value: str | None) -> str | None:
        # An optional field sent empty (a form's untouched input) is the same as one not sent. A
        # label keeps no invisible character, or "市住建局\u200b" would be a department of its own at
        # retraining (a title is cleaned of them anyway).
        return None if value is None or is_blank(value) else normalize_label(value)

    @field_validator("ticket_id", "dispatcher_id")
    @classmethod
    def _blank_id_is_absent(cls, value: str | None) -> str | None:
        # "" was stored as "" where an id not sent is null: an export's reader had two ways to
        # say "no ticket id". Kept as sent otherwise (an id joins back to the ticket system).
        return None if value is None or is_blank(value) else value

    @field_validator("request_id")
    @classmethod
    def _request_id_token(cls, value: str | None) -> str | None:
        if value is not None and not REQUEST_ID_PATTERN.fullmatch(value):
            raise ValueError(
                f"must be 1 to {MAX_REQUEST_ID_CHARS} characters among A-Z a-z 0-9 . _ : - "
                "(a UUID, say)"
            )
        return value

    # After the stripping above: a label's surrounding newline or tab is not refused.
    _ids_printable = field_validator(
        "ticket_id", "department", "category", "dispatcher_id", "model_version"
    )(no_control)


@dataclass(frozen=True)
class RequestModels:
    """The request bodies with one app's limits."""

    route: type[RouteRequestBase]
    batch: type[RouteBatchRequest]
    feedback: type[FeedbackRequestBase]


def _item_as_sent(value: Any) -> Any:
    return value


def make_request_models(settings: Settings) -> RequestModels:
    """Request models whose ``max_length`` limits are the given settings'."""
    title = Annotated[str | None, Field(None, max_length=settings.max_title_chars)]
    text = Annotated[str, Field(max_length=settings.max_text_chars, json_schema_extra=NOT_BLANK)]
    route = create_model(
        "RouteRequest",
        __base__=RouteRequestBase,
        __doc__="One ticket to route.",
        title=(title, None),
        text=(text, ...),
    )
    # A batch's items are taken as sent and checked one by one by the route (a bad item gets its
    # own error), but the schema states what an item is, the body of POST /v1/route, and how many
    # are accepted: maxItems there alone, as the route answers 413 batch_too_large beyond it.
    item = Annotated[Any, PlainValidator(_item_as_sent, json_schema_input_type=route)]
    items = Annotated[
        list[item],
        Field(
            description=RouteBatchRequest.model_fields["items"].description,
            json_schema_extra={"maxItems": settings.max_batch},
        ),
    ]
    return RequestModels(
        route=route,
        batch=create_model(
            "RouteBatchRequest",
            __base__=RouteBatchRequest,
            __doc__=f"Up to {settings.max_batch:,} tickets to route, each answered on its own.",
            items=(items, ...),
        ),
        feedback=create_model(
            "FeedbackRequest",
            __base__=FeedbackRequestBase,
            __doc__="What the dispatcher finally chose for a ticket.",
            title=(title, None),
            text=(text, ...),
        ),
    )


_DEFAULT_MODELS = make_request_models(DEFAULTS)
RouteRequest = _DEFAULT_MODELS.route
FeedbackRequest = _DEFAULT_MODELS.feedback


class RouteResponse(Answer):
    """The suggestion for one ticket."""

    id: str | None = Field(None, description="The request's id, echoed")
    department: HeadResult | None
    category: HeadResult | None
    decision: Literal["auto", "review"] = Field(
        description="`auto` only when every head may dispatch without a person"
    )
    similar: list[SimilarTicket] = Field(
        description="Nearest past tickets (titles and snippets PII-masked)"
    )
    co_departments: list[CoDepartment] = Field(
        default_factory=list,
        description="Departments to involve beside the suggested one (a joint dispatch, 会办): "
        "each was dispatched jointly with it on two or more of the similar tickets. Advisory: "
        "`decision` does not depend on it",
    )
    model_version: str
    elapsed_ms: float = Field(description="Server time spent on this request, in milliseconds")
    masked: MaskedTicket | None = Field(
        None,
        description="Only when the request asked (`masked: true`): the title and text as sent "
        "(full-width forms, case, line breaks and script kept), each phone, ID, bank card number, "
        "e-mail address and the like that the model's masking replaced in what it read replaced "
        "by the same placeholder, such as [手机号]; the evidence terms are in the script the model "
        "reads and half-width, lower case (see `simplified`)",
    )
    simplified: dict[str, str] = Field(
        default_factory=dict,
        description="The ticket's traditional characters the model read as simplified ones, each "
        "with the one it read (區: 区), so that a client can find the evidence, which is in "
        "simplified characters, in the ticket as written; empty for a ticket in simplified ones",
    )


class RouteBatchItem(Answer):
    """One batch item's outcome: a result or an error, never both."""

    index: int = Field(description="Position of the item in the request")
    id: str | None = None
    result: RouteResponse | None = None
    error: ErrorBody | None = None


class RouteBatchResponse(Answer):
    """One outcome per input item, in input order."""

    results: list[RouteBatchItem]
    ok: int = Field(description="Items routed")
    failed: int = Field(description="Items refused, each with its error")
    model_version: str
    elapsed_ms: float


class FeedbackResponse(Answer):
    """The stored feedback row (text omitted)."""

    id: int
    ticket_id: str | None
    department: str | None = Field(description="null: no department was chosen (category-only)")
    category: str | None
    dispatcher_id: str | None
    model_version: str | None
    created_at: datetime
    request_id: str | None = Field(None, description="The idempotency key sent with it, if any")

    _no_department = field_validator("department", mode="before")(stored_department)


class FeedbackRecord(Answer):
    """One line of the JSON Lines export."""

    id: int
    ticket_id: str | None
    title: str | None
    text: str
    suggestion: dict[str, Any] | None
    department: str | None = Field(description="null: no department was chosen (category-only)")
    category: str | None
    dispatcher_id: str | None
    model_version: str | None
    created_at: datetime
    request_id: str | None = Field(None, description="The idempotency key sent with it, if any")

    _no_department = field_validator("department", mode="before")(stored_department)


class ExportIncomplete(Answer):
    """The last line of an export the feedback database cut once it had begun; the answer then
    ends without its last chunk (an incomplete transfer)."""

    export_error: str = Field(description="Why the export stopped, and after how many rows")
    since: datetime = Field(
        description="The `created_at` of the last row sent: export again with `since` this time "
        "(a row of that very time may come twice; its `id` tells)"
    )


class ModelInfo(Answer):
    """The served model: version, labels, thresholds and cross-validated metrics."""

    version: str
    created: str | None = None
    labels: dict[str, list[str]]
    co_departments: list[str] = Field(
        default_factory=list,
        description="The departments a joint dispatch (会办) may name beside the lead: the "
        "department labels but 其他, then those past joint dispatches named only beside a lead "
        "(a department never learnt as one)",
    )
    thresholds: dict[str, float]
    metrics: dict[str, Any]
    config: dict[str, Any] = Field(default_factory=dict)
    libraries: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, int] = Field(
        default_factory=dict,
        description="This server's request limits (`max_text_chars`, `max_title_chars`, "
        "`max_batch`, a batch's `max_body_bytes` and any other body's `max_ticket_body_bytes`), and "
        "feedback's fixed ones (`max_label_chars`: a department's or a category's name; "
        "`max_departments_chars`: a joint dispatch's list of departments, separators included), so "
        "that a client can warn before sending",
    )


class Health(Answer):
    status: Literal["ok"] = "ok"


class Readiness(Answer):
    """Whether the model is loaded, and the state of the feedback database."""

    status: Literal["ready", "degraded"]
    model_version: str
    database: dict[str, Any]
    behind_current: str | None = Field(
        None,
        description="Why this server keeps serving `model_version` while the registry's "
        "`current` names another model or cannot be read (`status` is then `degraded`), naming "
        "`current`, versions and their files relative to the model root, never the server's "
        "paths (its ERROR log line has them); null when it serves what `current` names, or "
        "does not follow it (a pinned model)",
    )
