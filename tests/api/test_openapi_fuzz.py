"""Schemathesis over the OpenAPI document: at least 1,000 generated, authenticated requests on
PostgreSQL, and not one answered with a 5xx."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import Api, finding

MIN_REQUESTS = 1000


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_generated_requests_never_get_a_server_error(api: Api) -> None:
    for tenant in ("hosp-a", "hosp-b"):
        api.study(tenant, (finding(1, "left", 11.0),))
        api.study(tenant)
        api.study(tenant, done=False)
    headers = api.token("hosp-a", "admin")
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 15
    statuses: Counter[int] = Counter()
    failures: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy(), data=st.data())
        @settings(
            max_examples=90,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case[Any], data: st.DataObject) -> None:
            response = case.call(headers=headers)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:200]}"
                )

        run()

    total = sum(statuses.values())
    print(f"schemathesis: {total} requests, statuses {dict(sorted(statuses.items()))}")
    assert failures == [], "\n".join(failures[:20])
    assert total >= MIN_REQUESTS, f"only {total} requests generated: {dict(statuses)}"
    assert statuses[200] > 0 and statuses[404] > 0  # it reached real routes, not only refusals
