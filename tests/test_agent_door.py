"""The agent's door: who gets in (token, client address), what it answers (JSON, size limits,
rate limits), and that everything else passes through to the app untouched.

The address tests use a client with a real non-loopback address: two network namespaces this
test makes itself, joined by a veth pair (10.200.x.1 server, 10.200.x.2 client). Nothing else
on the machine is reachable from them. Where namespaces cannot be made, those tests skip.
"""

from __future__ import annotations

import hmac
import io
import json
import os
import secrets
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memsoak.agent import middleware
from memsoak.agent.middleware import PREFIX, Agent
from memsoak.agent_client import AgentClient, AgentError

REPO = Path(__file__).resolve().parent.parent

TOKEN = "s3cret-token-for-tests"


def _app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app"]


def call(
    agent: Agent,
    path: str,
    *,
    method: str = "GET",
    token: str | None = TOKEN,
    remote: str = "127.0.0.1",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "REMOTE_ADDR": remote,
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "wsgi.input": io.BytesIO(body),
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        seen["status"] = status
        seen["headers"] = dict(response_headers)

    data = b"".join(agent(environ, start_response))
    return seen["status"], seen["headers"], data


@pytest.fixture
def agent() -> Iterator[Agent]:
    yield Agent(_app, token=TOKEN)


# -- the token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        None,  # no Authorization header
        "",
        "wrong-token-of-same-len",
        TOKEN[:-1],  # a prefix: shorter
        TOKEN + "x",  # longer
        TOKEN.upper(),
        "x" * 5000,  # far too long: refused before hashing
    ],
)
def test_wrong_or_missing_token_is_refused_with_json(agent: Agent, token: str | None) -> None:
    status, headers, data = call(agent, PREFIX + "status", token=token)
    assert status.startswith("401")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(data) == {"error": "unauthorized"}  # says nothing more


def test_other_schemes_are_refused(agent: Agent) -> None:
    for header in (f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}", "Bearer"):
        environ = {"PATH_INFO": PREFIX + "status", "REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": header}
        statuses: list[str] = []
        agent(environ, lambda status, headers, seen=statuses: seen.append(status))
        assert statuses[0].startswith("401"), header


def test_right_token_gets_status(agent: Agent) -> None:
    status, headers, data = call(agent, PREFIX + "status")
    assert status == "200 OK"
    doc = json.loads(data)
    assert doc["pid"] == os.getpid() and doc["rss_bytes"] > 0
    assert headers["Cache-Control"] == "no-store"


def test_token_comparison_is_constant_time_over_equal_length_digests(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(middleware.hmac, "compare_digest", recording)
    for token in ("a", TOKEN, TOKEN * 10):
        call(agent, PREFIX + "status", token=token)
    # Every comparison went through hmac.compare_digest, over two 32-byte digests whatever the
    # provided token's length: neither timing nor length tells an attacker anything.
    assert compared == [(32, 32)] * 3


def test_agent_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMSOAK_TOKEN", raising=False)
    with pytest.raises(ValueError, match="token"):
        Agent(_app, token="")


# -- client addresses -----------------------------------------------------------------------

FORWARDING_HEADERS = {
    "X-Forwarded-For": "127.0.0.1",
    "X-Real-IP": "127.0.0.1",
    "Forwarded": "for=127.0.0.1",
    "X-Client-IP": "127.0.0.1",
    "True-Client-IP": "::1",
}


@pytest.mark.parametrize(
    "remote", ["10.200.0.2", "192.168.1.5", "::ffff:10.0.0.1", "2001:db8::1", "", "junk"]
)
def test_non_loopback_clients_are_refused_whatever_the_headers_say(agent: Agent, remote: str) -> None:
    status, _headers, data = call(agent, PREFIX + "status", remote=remote, headers=FORWARDING_HEADERS)
    assert status.startswith("403")
    assert json.loads(data) == {"error": "forbidden"}


@pytest.mark.parametrize("remote", ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"])
def test_loopback_clients_are_served(agent: Agent, remote: str) -> None:
    assert call(agent, PREFIX + "status", remote=remote)[0] == "200 OK"


def test_allow_list_widens_the_door_only_as_far_as_it_says() -> None:
    agent = Agent(_app, token=TOKEN, allow=["10.200.0.0/24"])
    assert call(agent, PREFIX + "status", remote="10.200.0.9")[0] == "200 OK"
    assert call(agent, PREFIX + "status", remote="10.200.1.9")[0].startswith("403")
    # The allow-list replaces the default: loopback is not implied.
    assert call(agent, PREFIX + "status", remote="127.0.0.1")[0].startswith("403")
    assert call(agent, PREFIX + "status", remote="10.200.0.9", token="nope")[0].startswith("401")


def test_bad_allow_list_entries_are_rejected() -> None:
    with pytest.raises(ValueError, match="not an IP network"):
        Agent(_app, token=TOKEN, allow=["10.0.0.0/33"])


# -- what the door answers ------------------------------------------------------------------


def test_unknown_routes_and_methods_answer_json(agent: Agent) -> None:
    status, headers, data = call(agent, PREFIX + "nope")
    assert status.startswith("404") and headers["Content-Type"] == "application/json"
    assert "error" in json.loads(data)
    status, _, data = call(agent, PREFIX + "snapshot", method="GET")
    assert status.startswith("405") and "error" in json.loads(data)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", "400"),
        (b"[1, 2]", "400"),
        (b"[" * 100_000, "413"),  # over the body limit: refused unread
        (b"[" * 50_000, "400"),  # under the limit but nested past the parser's depth
        (json.dumps({"min_site_bytes": -1}).encode(), "400"),
        (json.dumps({"min_site_bytes": "1"}).encode(), "400"),
        (json.dumps({"min_site_bytes": 2**40}).encode(), "400"),
    ],
)
def test_bad_bodies_are_refused_with_json(agent: Agent, body: bytes, expected: str) -> None:
    status, headers, data = call(agent, PREFIX + "snapshot", method="POST", body=body)
    assert status.startswith(expected)
    assert headers["Content-Type"] == "application/json" and "error" in json.loads(data)


def test_a_lying_content_length_is_refused(agent: Agent) -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": PREFIX + "gc",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {TOKEN}",
        "CONTENT_LENGTH": "-5",
        "wsgi.input": io.BytesIO(b""),
    }
    statuses: list[str] = []
    agent(environ, lambda status, headers: statuses.append(status))
    assert statuses[0].startswith("413")
    environ["CONTENT_LENGTH"] = "twelve"
    agent(environ, lambda status, headers: statuses.append(status))
    assert statuses[1].startswith("400")


def test_unauthorised_bodies_are_never_read() -> None:
    class Exploding(io.BytesIO):
        def read(self, *args: Any) -> bytes:
            raise AssertionError("the body of an unauthorised request was read")

    agent = Agent(_app, token=TOKEN)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": PREFIX + "snapshot",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": "Bearer wrong",
        "CONTENT_LENGTH": "10",
        "wsgi.input": Exploding(b"{}"),
    }
    statuses: list[str] = []
    agent(environ, lambda status, headers: statuses.append(status))
    assert statuses[0].startswith("401")


def test_responses_over_the_size_limit_are_refused(tracing: None) -> None:
    agent = Agent(_app, token=TOKEN, max_response_bytes=1000)
    status, _headers, data = call(agent, PREFIX + "snapshot", method="POST", body=b"{}")
    assert status.startswith("507") and len(data) < 1000
    assert "min_site_bytes" in json.loads(data)["error"]


@pytest.fixture
def tracing() -> Iterator[None]:
    import tracemalloc

    tracemalloc.start(1)
    yield
    tracemalloc.stop()


def test_snapshots_are_rate_limited(tracing: None) -> None:
    agent = Agent(_app, token=TOKEN, snapshot_burst=2, snapshot_interval_s=30)
    big = json.dumps({"min_site_bytes": 1 << 20}).encode()  # small, quick snapshots
    statuses = [call(agent, PREFIX + "snapshot", method="POST", body=big) for _ in range(3)]
    assert [s[0][:3] for s in statuses] == ["200", "200", "429"]
    _status, headers, data = statuses[2]
    assert int(headers["Retry-After"]) >= 1 and "rate limit" in json.loads(data)["error"]
    # Other endpoints are not limited.
    assert call(agent, PREFIX + "status")[0] == "200 OK"


def test_agent_failures_still_answer_json(agent: Agent) -> None:
    # tracemalloc is off in this process: a snapshot is a conflict, said in JSON.
    status, _headers, data = call(agent, PREFIX + "snapshot", method="POST", body=b"{}")
    assert status.startswith("409") and "not tracing" in json.loads(data)["error"]


# -- nothing outside the prefix is touched --------------------------------------------------


class _Recorder:
    """An app that records the environ it got and answers with a body iterable of its own."""

    def __init__(self) -> None:
        self.environ: dict[str, Any] | None = None
        self.body = [b"\x00\xffraw", b"bytes\r\n"]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.environ = environ
        start_response("299 Odd", [("X-App", "yes"), ("Content-Type", "application/octet-stream")])
        return self.body


@pytest.mark.parametrize(
    "path",
    ["/", "/__memsoak__", "/__memsoak", "/x/__memsoak__/status", "/__MEMSOAK__/status", "//__memsoak__/"],
)
def test_requests_outside_the_prefix_pass_through_untouched(path: str) -> None:
    inner = _Recorder()
    agent = Agent(inner, token=TOKEN)
    body = b"\x00" + secrets.token_bytes(100)
    stream = io.BytesIO(body)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "REMOTE_ADDR": "10.1.2.3",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": "Bearer whatever",
        "wsgi.input": stream,
    }
    before = dict(environ)
    calls: list[tuple[str, list[tuple[str, str]]]] = []
    result = agent(environ, lambda status, headers: calls.append((status, headers)))
    assert inner.environ is environ and environ == before  # the same dict, unchanged
    assert stream.tell() == 0  # the body was not read
    assert result is inner.body  # the response iterable itself, not a copy
    assert calls == [("299 Odd", [("X-App", "yes"), ("Content-Type", "application/octet-stream")])]


def test_no_file_is_opened_from_a_name_in_the_request(tracing: None) -> None:
    marker = "memsoak-door-" + secrets.token_hex(4)
    opened: list[str] = []

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in ("open", "os.remove", "os.rename", "shutil.copyfile") and marker in str(args):
            opened.append(f"{event} {args}")

    sys.addaudithook(hook)  # cannot be removed; it only records paths carrying the marker
    agent = Agent(_app, token=TOKEN)
    hostile = [
        (PREFIX + f"../../tmp/{marker}", "GET", b""),
        (PREFIX + f"snapshot/{marker}", "POST", b"{}"),
        (PREFIX + "snapshot", "POST", json.dumps({"path": f"/tmp/{marker}", "file": marker}).encode()),
        (PREFIX + "tracing", "POST", json.dumps({"enable": True, "frames": 1, "out": marker}).encode()),
        (PREFIX + "gc", "POST", json.dumps({"filename": f"/tmp/{marker}"}).encode()),
    ]
    for path, method, body in hostile:
        call(agent, path, method=method, body=body)
    assert opened == []
    assert not any(marker in name for name in os.listdir("/tmp"))


# -- the client's side of rate limits --------------------------------------------------------


@pytest.fixture
def served_agent(tracing: None) -> Iterator[str]:
    """An agent with a burst of 1 snapshot every 2 s, served on a loopback port in a thread."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    agent = Agent(_app, token=TOKEN, snapshot_burst=1, snapshot_interval_s=2.0)
    server = make_server("127.0.0.1", 0, agent, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_client_waits_out_the_rate_limit(served_agent: str) -> None:
    client = AgentClient(served_agent, TOKEN, timeout=60)
    client.snapshot(1 << 20)
    started = time.monotonic()
    client.snapshot(1 << 20)  # refused with 429 at first: the client waits as told, then succeeds
    assert time.monotonic() - started >= 1.0
    impatient = AgentClient(served_agent, TOKEN, timeout=0.5)
    with pytest.raises(AgentError, match="rate limit"):
        impatient.snapshot(1 << 20)


# -- a real client with a real non-loopback address ------------------------------------------

CLIENT = r"""
import json, sys, urllib.request, urllib.error
url, token, headers = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
request = urllib.request.Request(url, headers=headers)
if token:
    request.add_header("Authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        status, ctype, body = response.status, response.headers.get("Content-Type"), response.read()
except urllib.error.HTTPError as exc:
    status, ctype, body = exc.code, exc.headers.get("Content-Type"), exc.read()
print(json.dumps([status, ctype, body.decode("latin-1")]))
"""


class NetnsPair:
    """Two namespaces joined by a veth pair: `server` holds .1, `client` holds .2."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{secrets.token_hex(2)}"
        self.server_ns, self.client_ns = f"ms7s{tag}", f"ms7c{tag}"
        subnet = 1 + os.getpid() % 250
        self.server_ip, self.client_ip = f"10.200.{subnet}.1", f"10.200.{subnet}.2"
        self.subnet = f"10.200.{subnet}"
        self.made: list[str] = []

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    def up(self) -> None:
        veth_s, veth_c = f"v{self.server_ns}"[:15], f"v{self.client_ns}"[:15]
        for ns in (self.server_ns, self.client_ns):
            self._ip("netns", "add", ns)
            self.made.append(ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
        # Made inside the server namespace, so the host's own network never sees the pair.
        self._ip("-n", self.server_ns, "link", "add", veth_s, "type", "veth", "peer", "name", veth_c)
        self._ip("-n", self.server_ns, "link", "set", veth_c, "netns", self.client_ns)
        self._ip("-n", self.server_ns, "addr", "add", f"{self.server_ip}/24", "dev", veth_s)
        self._ip("-n", self.client_ns, "addr", "add", f"{self.client_ip}/24", "dev", veth_c)
        self._ip("-n", self.server_ns, "link", "set", veth_s, "up")
        self._ip("-n", self.client_ns, "link", "set", veth_c, "up")

    def down(self) -> None:
        for ns in self.made:  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)

    def get(self, ns: str, url: str, token: str | None, headers: dict[str, str] | None = None) -> list[Any]:
        result = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-c",
                CLIENT,
                url,
                token or "",
                json.dumps(headers or {}),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        status, ctype, body = json.loads(result.stdout)
        return [status, ctype, body]


@pytest.fixture
def netns() -> Iterator[NetnsPair]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2's `ip`: cannot make a non-loopback client")
    pair = NetnsPair()
    try:
        pair.up()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pair.down()
        stderr = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"cannot make network namespaces here: {stderr.decode(errors='replace').strip()}")
    yield pair
    pair.down()


def _serve_in(ns: str, token: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    command = ["ip", "netns", "exec", ns, sys.executable, "-m", "memsoak.serve", "targets.seed_fixed.app:app"]
    process = subprocess.Popen(
        [*command, *extra],
        cwd=REPO,
        env={**os.environ, "MEMSOAK_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 60
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline and process.poll() is None:
        if selector.select(timeout=0.5):
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    selector.close()
    if not line.endswith(b"\n"):
        process.kill()
        process.wait()
        raise AssertionError(
            f"target did not start in {ns}: {process.stderr.read() if process.stderr else ''}"
        )
    return process, json.loads(line)["url"]


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_non_loopback_client_is_refused_by_default(netns: NetnsPair, token: str) -> None:
    process, url = _serve_in(netns.server_ns, token, "--bind", "0.0.0.0:0")
    try:
        port = url.rsplit(":", 1)[1]
        remote = f"http://{netns.server_ip}:{port}"
        # The app itself is served to everyone; the agent is not.
        assert netns.get(netns.client_ns, remote + "/", None)[0] == 200
        for headers in ({}, FORWARDING_HEADERS, {"Host": "127.0.0.1"}):
            status, ctype, body = netns.get(netns.client_ns, remote + PREFIX + "status", token, headers)
            assert (status, ctype, json.loads(body)) == (403, "application/json", {"error": "forbidden"})
        # The same server, asked over its own loopback with the same token, answers.
        local = f"http://127.0.0.1:{port}"
        status, ctype, body = netns.get(netns.server_ns, local + PREFIX + "status", token)
        assert status == 200 and json.loads(body)["pid"] > 0
        assert netns.get(netns.server_ns, local + PREFIX + "status", token + "x")[0] == 401
    finally:
        _stop(process)


def test_allow_list_admits_the_listed_network_only(netns: NetnsPair, token: str) -> None:
    process, url = _serve_in(
        netns.server_ns, token, "--bind", f"{netns.server_ip}:0", "--allow", f"{netns.client_ip}/32"
    )
    try:
        status, ctype, body = netns.get(netns.client_ns, url + PREFIX + "status", token)
        assert status == 200 and ctype == "application/json" and json.loads(body)["rss_bytes"] > 0
        assert netns.get(netns.client_ns, url + PREFIX + "status", "wrong")[0] == 401
        assert netns.get(netns.client_ns, url + PREFIX + "status", None)[0] == 401
    finally:
        _stop(process)
