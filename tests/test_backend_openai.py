"""The ``openai`` backend against a local OpenAI-compatible server (stdlib http.server in a thread)."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sparkle_vlm.errors import ConfigError
from sparkle_vlm.models import GenerationConfig, Request, load_backend

#: One scripted reply: (status, headers, body or None for the default answer, delay in seconds).
Reply = tuple[int, dict[str, str], Any, float]


class FakeServer:
    """Records every request; answers from a script, then with ``answer(body)``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.script: list[Reply] = []
        self.latency = 0.0
        self.answer: Callable[[dict[str, Any]], str] = lambda body: "ok"
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None
        self.clients: list[Any] = []

    @property
    def base_url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw)
                with server.lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers.items()))
                    server.paths.append(self.path)
                    reply = server.script.pop(0) if server.script else None
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                done = False
                try:
                    status, headers, payload, delay = reply or (200, {}, None, server.latency)
                    time.sleep(delay)
                    # Leave the in-flight count before replying: once the reply is out, the client
                    # may send its next request before this handler thread runs again.
                    with server.lock:
                        server.in_flight -= 1
                        done = True
                    if payload is None:
                        payload = {
                            "id": "x",
                            "object": "chat.completion",
                            "choices": [
                                {"index": 0, "message": {"role": "assistant", "content": server.answer(body)}}
                            ],
                            "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
                        }
                    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass
                finally:
                    if not done:
                        with server.lock:
                            server.in_flight -= 1

        return Handler


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    httpd.daemon_threads = True
    fake.httpd = httpd
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield fake
    for client in fake.clients:
        client.close()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "scene.png"
    Image.new("RGB", (56, 56), (200, 10, 10)).save(path)
    return path


def _request(rid: str, question: str, image: Path | None, choices: list[str] | None = None) -> Request:
    parts: list[dict[str, Any]] = [{"type": "image"}] if image else []
    parts.append({"type": "text", "text": question})
    record = {"id": rid, "answer": "A", "choices": choices, "answer_type": "mcq" if choices else "region"}
    return Request(rid, [{"role": "user", "content": parts}], [str(image)] if image else [], record)


def _backend(server: FakeServer, **options: Any) -> Any:
    options.setdefault("backoff", 0.01)
    backend = load_backend("openai:tiny-served", base_url=server.base_url, **options)
    server.clients.append(backend)
    return backend


def _question(body: dict[str, Any]) -> str:
    return next(p["text"] for p in body["messages"][-1]["content"] if p["type"] == "text")


def test_answers_in_order_with_png_image_parts(server: FakeServer, image: Path) -> None:
    server.answer = lambda body: "echo " + _question(body)
    backend = _backend(server)
    reqs = [_request(f"r{i}", f"q{i}", image) for i in range(5)] + [_request("t", "text only", None)]
    comps = backend.generate(reqs, GenerationConfig(max_new_tokens=9, seed=5))
    assert [c.text for c in comps] == [f"echo q{i}" for i in range(5)] + ["echo text only"]
    assert all(c.error is None and c.usage["completion_tokens"] == 1 for c in comps)
    assert set(server.paths) == {"/v1/chat/completions"}
    body = next(b for b in server.bodies if _question(b) == "q0")
    assert body["model"] == "tiny-served"
    assert body["temperature"] == 0.0 and body["seed"] == 5 and body["max_tokens"] == 9
    assert "structured_outputs" not in body
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text"]  # canonical order kept
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == image.read_bytes()  # PNG sent byte for byte
    backend.close()


def test_non_png_images_are_sent_as_png(server: FakeServer, tmp_path: Path) -> None:
    jpg = tmp_path / "scene.jpg"
    Image.new("RGB", (40, 30), (0, 90, 200)).save(jpg)
    _backend(server).generate([_request("r", "q", jpg)], GenerationConfig())
    url = server.bodies[0]["messages"][0]["content"][0]["image_url"]["url"]
    data = base64.b64decode(url.split(",", 1)[1])
    assert data.startswith(b"\x89PNG") and url.startswith("data:image/png;base64,")


def test_429_is_retried_after_retry_after(server: FakeServer, image: Path) -> None:
    server.script = [(429, {"Retry-After": "0.3"}, {"error": {"message": "slow down"}}, 0.0)]
    t0 = time.perf_counter()
    (comp,) = _backend(server).generate([_request("r", "q", image)], GenerationConfig())
    assert comp.error is None and comp.text == "ok"
    assert comp.usage["attempts"] == 2 and len(server.bodies) == 2
    assert time.perf_counter() - t0 >= 0.3  # waited as told, not just the 10 ms backoff


def test_500_is_retried_then_reported(server: FakeServer, image: Path) -> None:
    server.script = [(500, {}, {"error": "boom"}, 0.0)] * 3
    (comp,) = _backend(server, max_retries=2).generate([_request("r", "q", image)], GenerationConfig())
    assert comp.text == "" and comp.error is not None
    assert "HTTP 500" in comp.error and comp.usage["attempts"] == 3
    assert len(server.bodies) == 3


def test_500_then_success(server: FakeServer, image: Path) -> None:
    server.script = [(503, {}, {"error": "warming up"}, 0.0)]
    (comp,) = _backend(server).generate([_request("r", "q", image)], GenerationConfig())
    assert comp.text == "ok" and comp.usage["attempts"] == 2


def test_client_errors_are_not_retried(server: FakeServer, image: Path) -> None:
    server.script = [(400, {}, {"error": {"message": "bad image"}}, 0.0)]
    (comp,) = _backend(server).generate([_request("r", "q", image)], GenerationConfig())
    assert comp.error is not None and "HTTP 400" in comp.error and "bad image" in comp.error
    assert len(server.bodies) == 1


def test_timeout_is_an_error_not_an_exception(server: FakeServer, image: Path) -> None:
    server.script = [(200, {}, None, 1.5)] * 2
    backend = _backend(server, timeout=0.2, max_retries=1)
    (comp,) = backend.generate([_request("r", "q", image)], GenerationConfig())
    assert comp.text == "" and comp.error is not None and "timed out" in comp.error
    assert comp.usage["attempts"] == 2


def test_connection_refused_is_an_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    backend = load_backend("openai:m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01)
    (comp,) = backend.generate([_request("r", "q", None)], GenerationConfig())
    assert comp.text == "" and comp.error is not None and "connection error" in comp.error


def test_malformed_response_is_an_error(server: FakeServer) -> None:
    server.script = [(200, {}, b"not json", 0.0), (200, {}, {"choices": []}, 0.0)]
    (comp,) = _backend(server, max_retries=1).generate([_request("r", "q", None)], GenerationConfig())
    assert comp.text == "" and comp.error is not None and "malformed" in comp.error


def test_concurrency_is_bounded(server: FakeServer) -> None:
    server.latency = 0.15
    reqs = [_request(f"r{i}", f"q{i}", None) for i in range(8)]
    comps = _backend(server, concurrency=8).generate(reqs, GenerationConfig())
    assert all(c.text == "ok" for c in comps)
    assert server.max_in_flight >= 4  # requests overlapped
    server.max_in_flight = 0
    _backend(server, concurrency=1).generate(reqs[:3], GenerationConfig())
    assert server.max_in_flight == 1


def test_api_key_is_sent_but_never_exposed(
    server: FakeServer, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-0123456789-secret"
    monkeypatch.setenv("SPARKLE_TEST_KEY", secret)
    # A hostile or careless server echoes the credentials in its error text.
    server.script = [(401, {}, {"error": {"message": f"invalid key Bearer {secret}"}}, 0.0)]
    backend = _backend(server, api_key_env="SPARKLE_TEST_KEY")
    comps = backend.generate([_request("a", "q", image), _request("b", "q", image)], GenerationConfig())
    assert all(h.get("Authorization") == f"Bearer {secret}" for h in server.headers)
    failed = [c for c in comps if c.error]
    assert len(failed) == 1 and "HTTP 401" in (failed[0].error or "")
    described = json.dumps(backend.describe())
    assert secret not in described and "SPARKLE_TEST_KEY" in described
    for comp in comps:
        assert secret not in json.dumps([comp.text, comp.error, comp.usage])
    assert secret not in repr(backend.__dict__)


def test_no_key_no_authorization_header(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    _backend(server).generate([_request("r", "q", None)], GenerationConfig())
    assert "Authorization" not in server.headers[0]


def test_base_url_from_environment(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url + "/")
    backend = load_backend("openai:m")
    (comp,) = backend.generate([_request("r", "q", None)], GenerationConfig())
    assert comp.text == "ok" and backend.describe()["base_url"] == server.base_url


def test_constrained_choices(server: FakeServer, image: Path) -> None:
    server.answer = lambda body: "B" if "structured_outputs" in body else "The answer is B"
    backend = _backend(server)
    mcq = _request("m", "pick", image, choices=["top", "left", "down"])
    free = _request("f", "where?", image)
    comps = backend.generate([mcq, free], GenerationConfig(constrained=True))
    by_q = {_question(b): b for b in server.bodies}
    assert by_q["pick"]["structured_outputs"] == {"choice": ["A", "B", "C"]}
    assert "structured_outputs" not in by_q["where?"]
    assert comps[0].text == "B" and comps[0].usage["constraint_violation"] == 0
    info = backend.describe()
    assert info["constrained"] is True and info["constraint_violations"] == 0

    # A server that drops the unknown field answers freely: the violation is detected.
    server.answer = lambda body: "The answer is B"
    (comp,) = backend.generate([mcq], GenerationConfig(constrained=True))
    assert comp.text == "The answer is B" and comp.usage["constraint_violation"] == 1
    assert backend.describe()["constraint_violations"] == 1


def test_unconstrained_by_default(server: FakeServer, image: Path) -> None:
    backend = _backend(server)
    assert backend.describe()["constrained"] is None  # not known before a call
    backend.generate([_request("m", "pick", image, choices=["a", "b"])], GenerationConfig())
    assert "structured_outputs" not in server.bodies[0]
    assert backend.describe()["constrained"] is False


def test_extra_body_is_merged(server: FakeServer) -> None:
    _backend(server, extra_body='{"top_k": 1}', send_seed="false").generate(
        [_request("r", "q", None)], GenerationConfig()
    )
    assert server.bodies[0]["top_k"] == 1 and "seed" not in server.bodies[0]


def test_missing_image_fails_only_that_request(server: FakeServer, image: Path, tmp_path: Path) -> None:
    comps = _backend(server).generate(
        [_request("bad", "q", tmp_path / "nope.png"), _request("good", "q", image)], GenerationConfig()
    )
    assert comps[0].error is not None and "cannot build request" in comps[0].error
    assert comps[1].text == "ok" and len(server.bodies) == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"concurency": 4}, "concurency"),
        ({"concurrency": 0}, "concurrency"),
        ({"base_url": "ftp://host/v1"}, "base_url"),
        ({"extra_body": "[1]"}, "extra_body"),
        ({"extra_body": '{"model": "x"}'}, "extra_body"),
        ({"timeout": "soon"}, "timeout"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}:"):
        load_backend("openai:m", **options)


def test_model_name_required() -> None:
    with pytest.raises(ConfigError, match="served model name"):
        load_backend("openai:")
