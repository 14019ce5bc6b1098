"""Fuzzing (issue 9): schemathesis generates requests for every route of the OpenAPI
description and sends them, with real tokens, to a real server; no answer may be a 5xx.

The CI run is short (``DMP_FHIR_FUZZ_EXAMPLES`` examples per operation, 20 by default);
``benchmarks/fuzz.py`` runs the same test long.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from .live_server import LiveServer, live_server
from .policy_env import PROFESSIONALS

EXAMPLES = int(os.environ.get("DMP_FHIR_FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def fuzz_server(mongodb_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(mongodb_url, Path(tmp_path_factory.mktemp("fuzz"))) as server:
        yield server


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_server: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.base_url}/_openapi.json")


@pytest.fixture(scope="module")
def tokens(fuzz_server: LiveServer) -> Iterator[str]:
    """A practitioner, a patient and a directory system, in turn."""
    return itertools.cycle(
        [
            fuzz_server.token({**PROFESSIONALS["gp_martin"], "scope": "user/*.cruds"}),
            fuzz_server.token(
                {"fhirUser": "Patient/pat-001", "patient": "pat-001", "scope": "patient/*.cruds"}
            ),
            fuzz_server.system_token(),
        ]
    )


def test_no_server_errors(fuzz_server: LiveServer, fuzz_schema: Any, tokens: Iterator[str]) -> None:
    """Every operation, ``EXAMPLES`` generated requests each (one test: the server is shared)."""
    root = fuzz_server.base_url.removesuffix(fuzz_server.settings.base_path)
    failures: list[str] = []
    operations = [result.ok() for result in fuzz_schema.get_all_operations()]
    assert len(operations) > 50

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            headers = {"Authorization": f"Bearer {next(tokens)}"}
            response = case.call(base_url=root, headers=headers, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

        run()
    assert not failures, failures
