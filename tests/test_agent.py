"""The agent middleware called as a real WSGI app, and a real in-process snapshot."""

from __future__ import annotations

import tracemalloc

from flask import Flask
from flask.testing import FlaskClient

from analysis.snapshot_io import snapshot_from_dict
from memsoak.agent import Agent, tracing

TOKEN = "s3cret-token"


def _client(remote: str = "127.0.0.1") -> FlaskClient:
    app = Flask(__name__)

    @app.route("/")
    def index() -> str:
        return "hello"

    @app.route("/__memsoak_lookalike/")
    def lookalike() -> str:
        return "app route"

    app.wsgi_app = Agent(app.wsgi_app, token=TOKEN)  # type: ignore[method-assign]
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = remote
    return client


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_status_needs_the_token() -> None:
    client = _client()
    assert client.get("/__memsoak__/status").status_code == 401
    assert client.get("/__memsoak__/status", headers=_auth("wrong")).status_code == 401
    assert client.get("/__memsoak__/status", headers=_auth(TOKEN + "x")).status_code == 401
    response = client.get("/__memsoak__/status", headers=_auth())
    assert response.status_code == 200
    assert {"pid", "rss_bytes", "traced_bytes"} <= set(response.json or {})


def test_refused_answers_say_nothing_more() -> None:
    response = _client().get("/__memsoak__/status")
    assert response.json == {"error": "unauthorized"}


def test_non_loopback_clients_are_refused_even_with_forwarded_headers() -> None:
    client = _client(remote="10.1.2.3")
    headers = {**_auth(), "X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"}
    assert client.get("/__memsoak__/status", headers=headers).status_code == 403


def test_the_app_is_untouched_outside_the_prefix() -> None:
    client = _client()
    assert client.get("/").get_data(as_text=True) == "hello"
    assert client.get("/__memsoak_lookalike/").get_data(as_text=True) == "app route"


def test_unknown_endpoint_and_wrong_method() -> None:
    client = _client()
    assert client.get("/__memsoak__/../etc/passwd", headers=_auth()).status_code == 404
    assert client.get("/__memsoak__/snapshot", headers=_auth()).status_code == 405


def test_snapshot_over_http_is_a_valid_document() -> None:
    tracemalloc.start(5)
    keep = [bytearray(100_000) for _ in range(3)]  # noqa: F841 - must be alive in the snapshot
    response = _client().post("/__memsoak__/snapshot", headers=_auth(), json={"min_site_bytes": 0})
    assert response.status_code == 200
    snapshot = snapshot_from_dict(response.json)
    biggest = max(snapshot.sites.items(), key=lambda item: item[1].size)
    assert biggest[1].size >= 300_000 and biggest[1].count >= 3
    assert biggest[0][-1].code.startswith("keep = [bytearray")
    assert biggest[0][-1].function == "test_snapshot_over_http_is_a_valid_document"


def test_snapshot_without_tracing_is_a_conflict() -> None:
    assert not tracemalloc.is_tracing()
    assert _client().post("/__memsoak__/snapshot", headers=_auth(), json={}).status_code == 409


def test_function_names_from_source() -> None:
    spans = tracing._function_spans(
        ["class A:\n", "    def m(self):\n", "        x = 1\n", "\n", "        def inner():\n",
         "            return 2\n", "        return x\n", "def f():\n", "    pass\n", "y = 3\n"]
    )  # fmt: skip
    assert tracing._function_at(spans, 3) == "A.m"
    assert tracing._function_at(spans, 6) == "A.m.inner"
    assert tracing._function_at(spans, 7) == "A.m"
    assert tracing._function_at(spans, 9) == "f"
    assert tracing._function_at(spans, 10) == "<module>"
