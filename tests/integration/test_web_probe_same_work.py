"""No timing oracle on ids: a call or capture that exists but is not the user's to see and
one that does not exist get the same answer (status, error id, body) after the same work: the
same store statements, in the same order (the denial is audited either way). Checked through
the HTTP API on a real server with the real store, by recording every SQL statement the
request runs; no stopwatch involved."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.integration.web_env import WebEnv, web_env

pytestmark = pytest.mark.asyncio

#: (method, path, body): every route that looks a call or a capture up by id.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/calls/{call}/events", None),
    ("POST", "/api/v1/calls/{call}/captures", {"fields": ["iban"]}),
    ("DELETE", "/api/v1/calls/{call}/captures/{capture}", None),
    ("GET", "/api/v1/captures/{capture}", None),
    ("POST", "/api/v1/captures/{capture}/reveal", {"reason": "customer asked", "otp": "123456"}),
]
#: user -> (a call and capture of someone else, ids that do not exist)
PROBES = {"anna": (("C-102", "CAP-2"), ("C-777", "CAP-7")),
          "rita": (("C-100", "CAP-1"), ("C-778", "CAP-8"))}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[WebEnv]:
    async with web_env(tmp_path) as e:
        e.captures.add("CAP-1", "C-100", "agent100")
        e.captures.add("CAP-2", "C-102", "agent102")
        yield e


@contextmanager
def statements(env: WebEnv) -> Iterator[list[str]]:
    """Every SQL statement run while the block runs (text only: the values differ)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))
    event.listen(env.store.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(env.store.db.engine, "before_cursor_execute", record)


async def probe(env: WebEnv, headers: dict[str, str], method: str, path: str,
                body: dict[str, Any] | None, ids: tuple[str, str]) -> tuple[int, str, list[str]]:
    call, capture = ids
    with statements(env) as seen:
        resp = await env.client.request(method, path.format(call=call, capture=capture),
                                        json=body, headers=headers)
        data = await resp.json()
    text = json.dumps(data, sort_keys=True).replace(call, "{id}").replace(capture, "{id}")
    return resp.status, text, seen


@pytest.mark.parametrize("user", sorted(PROBES))
@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_not_yours_and_no_such_id_answer_the_same_after_the_same_store_work(
        env: WebEnv, user: str, method: str, path: str, body: dict[str, Any] | None) -> None:
    headers = await env.login(user)
    assert (await env.client.get("/api/v1/me", headers=headers)).status == 200  # warm-up
    theirs, unknown = PROBES[user]
    answers = [await probe(env, headers, method, path, body, ids)
               for ids in (theirs, unknown, theirs, unknown)]
    status, text, work = answers[0]
    if status == 403:  # the role lacks the permission altogether: no id is looked up
        assert all(a[0] == 403 for a in answers)
        return
    assert status == 404 and json.loads(text)["error_id"] == "not_found", text
    for other_status, other_text, other_work in answers[1:]:
        assert (other_status, other_text) == (status, text)
        assert other_work == work, (method, path, work, other_work)
    assert any(s.startswith("INSERT INTO audit_log") for s in work)  # the denial, both ways
