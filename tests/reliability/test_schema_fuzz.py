"""schemathesis against the app's own OpenAPI schema: no 5xx, no answer that breaks the schema.

Every operation gets a bounded number of generated requests (valid and invalid), sent in-process
through the ASGI app with an admin key, so the key-protected endpoints are exercised too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.specs.openapi import checks as openapi_checks

from model.router import Router
from model.settings import Settings
from serve.app import create_app
from tests.reliability.conftest import ADMIN_KEY, API_KEY

EXAMPLES_PER_OPERATION = 20
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
# Requests that the served tiny model accepts, for operations whose valid input depends on it.
KNOWN_VALID: dict[str, dict[str, Any]] = {
    "POST /v1/feedback": {
        "text": "公司拖欠三个月工资不发",
        "department": "人社",
        "category": "劳动保障",
    },
}
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(
    tiny_model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    cached_loader: Callable[[Path, Path | None], tuple[Router, dict[str, Any]]],
) -> Any:
    app = create_app(
        Settings(
            model_root=tiny_model_dir.parent,
            model_dir=tiny_model_dir,
            data_dir=tmp_path_factory.mktemp("fuzz-var"),
            api_keys=[API_KEY],
            admin_keys=[ADMIN_KEY],
            reload_interval=0,
            access_log=False,
        ),
        router_loader=cached_loader,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def operation_cases() -> list[Any]:
    """``(METHOD /path, mode)`` for every documented operation: valid requests for all, invalid
    ones for those that take input (building the schema loads no model)."""
    paths = create_app(Settings(reload_interval=0, access_log=False)).openapi()["paths"]
    cases = []
    for path, ops in sorted(paths.items()):
        for method, op in sorted(ops.items()):
            label = f"{method.upper()} {path}"
            cases.append(pytest.param(label, GenerationMode.POSITIVE, id=f"{label}-valid"))
            if op.get("parameters") or op.get("requestBody"):
                cases.append(pytest.param(label, GenerationMode.NEGATIVE, id=f"{label}-invalid"))
    return cases


# schemathesis' own pytest plugin does not work with this pytest, so each operation gets a
# Hypothesis test built from the operation's strategy.
@pytest.mark.parametrize(("label", "mode"), operation_cases())
def test_api_conforms_to_its_schema(api_schema: Any, label: str, mode: GenerationMode) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label
    calls: list[int] = []

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call_and_validate(headers=AUTH, checks=CHECKS)
        calls.append(response.status_code)

    run()
    if mode is GenerationMode.POSITIVE and label in KNOWN_VALID:
        # The schema cannot say that a department is required because the served model has a
        # department head, and Hypothesis favours leaving optional fields out: in about one run
        # of four all twenty generated feedbacks lacked one (422), and the test failed at random.
        # One request the model accepts is always sent beside the generated ones.
        case = operation.Case(body=KNOWN_VALID[label], media_type="application/json")
        calls.append(case.call_and_validate(headers=AUTH, checks=CHECKS).status_code)
    assert calls, f"no request was generated for {label}"
    if mode is GenerationMode.NEGATIVE:  # invalid input was generated, and refused
        assert any(400 <= c < 500 for c in calls), (label, calls)
    elif label != "POST /v1/admin/reload":  # random model paths are refused, rightly
        assert any(200 <= c < 300 for c in calls), (label, calls)
