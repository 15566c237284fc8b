"""The ``openai`` backend: any OpenAI-compatible chat completions endpoint (``vllm serve``, hosted APIs).

``openai:SERVED_MODEL_NAME``. Requests go to ``{base_url}/chat/completions`` with the standard
library's HTTP client from a bounded thread pool, so no extra dependency is needed.

- Base URL: option ``base_url``, else env ``OPENAI_BASE_URL``, else ``http://127.0.0.1:8000/v1``.
- API key: env ``OPENAI_API_KEY`` (option ``api_key_env`` names another variable). The key is
  sent only in the ``Authorization`` header: it never appears in :meth:`describe`, in errors or
  in logs (server error text is scrubbed of it too).
- Images become base64 PNG data-URL ``image_url`` parts, in the canonical part order. PNG keeps
  synthetic scenes crisp (JPEG blurs thin lines and labels); PNG files are sent byte for byte.
- Decoding: ``temperature`` and ``seed`` from :class:`GenerationConfig` (greedy = 0).
- Constrained answers: with ``GenerationConfig.constrained`` and a record with ``choices``, the
  body carries ``structured_outputs: {"choice": ["A", "B", ...]}`` (vLLM >= 0.12). Servers
  silently drop fields they do not know, so every constrained answer is checked against the
  allowed letters: violations are counted in :meth:`describe` (call it after generating) and
  flagged per answer in ``Completion.usage["constraint_violation"]``.
- Failures: 429, 5xx, timeouts and connection errors are retried with exponential backoff and
  full jitter, honouring ``Retry-After``; other errors fail at once. A request that still fails
  returns ``Completion(text="", error=...)`` so the runner can record and retry it.

Options: ``base_url``, ``api_key_env``, ``concurrency`` (8), ``timeout`` (seconds per attempt,
120), ``max_retries`` (5), ``backoff`` (first backoff in seconds, 0.5), ``backoff_max`` (30),
``extra_body`` (a JSON object merged into every request body, e.g. ``{"top_k": 1}``),
``send_seed`` (true; some hosted APIs reject ``seed``), ``batch_size`` (ignored: requests are
concurrent, not batched).
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sparkle_vlm.errors import ConfigError
from sparkle_vlm.models.base import Backend, Completion, GenerationConfig, Request
from sparkle_vlm.models.options import Options

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def option_letters(n: int) -> list[str]:
    """The option letters of an ``n``-way multiple choice question.

    >>> option_letters(4)
    ['A', 'B', 'C', 'D']
    """
    return [chr(ord("A") + i) for i in range(n)]


def redact_url(url: str) -> str:
    """A URL without user info, query or fragment (where keys sometimes hide).

    >>> redact_url("https://user:secret@api.example.com/v1?key=abc")
    'https://api.example.com/v1'
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date).

    >>> parse_retry_after("2")
    2.0
    >>> parse_retry_after("soon") is None
    True
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _RequestFailed(Exception):
    """One attempt failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class OpenAIBackend(Backend):
    """Chat completions over HTTP with bounded concurrency and retries."""

    name = "openai"

    def __init__(self, spec: str, options: dict[str, Any] | None = None) -> None:
        if not spec:
            raise ConfigError(
                "--model", "openai needs the served model name, e.g. openai:Qwen2-VL-7B-Instruct"
            )
        opts = Options("openai", options)
        self.model = spec
        base = opts.text("base_url") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.api_key_env = opts.text("api_key_env", "OPENAI_API_KEY") or "OPENAI_API_KEY"
        concurrency = opts.integer("concurrency", 8, minimum=1)
        timeout = opts.number("timeout", 120.0, minimum=0.001)
        max_retries = opts.integer("max_retries", 5, minimum=0)
        backoff = opts.number("backoff", 0.5, minimum=0.0)
        backoff_max = opts.number("backoff_max", 30.0, minimum=0.0)
        extra_obj = opts.value("extra_body")
        self.send_seed = opts.flag("send_seed", True)
        opts.integer("batch_size", None, minimum=1)  # accepted for a uniform CLI; requests run concurrently
        opts.finish()
        assert concurrency is not None and timeout is not None and max_retries is not None
        assert backoff is not None and backoff_max is not None
        self.concurrency, self.timeout, self.max_retries = concurrency, timeout, max_retries
        self.backoff, self.backoff_max = backoff, backoff_max

        try:
            parts = urllib.parse.urlsplit(base)
            _ = parts.port  # raises ValueError for a malformed port
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError("base_url", f"expected an http(s) URL such as {DEFAULT_BASE_URL}")
        self.base_url = base.rstrip("/")
        self.endpoint = self.base_url + "/chat/completions"
        if isinstance(extra_obj, str):
            try:
                extra_obj = json.loads(extra_obj)
            except json.JSONDecodeError as exc:
                raise ConfigError("extra_body", f"not valid JSON: {exc.msg}") from None
        if extra_obj is not None and not isinstance(extra_obj, dict):
            raise ConfigError("extra_body", "must be a JSON object")
        self.extra_body: dict[str, Any] = dict(extra_obj or {})
        reserved = {"model", "messages"} & set(self.extra_body)
        if reserved:
            raise ConfigError("extra_body", f"must not set {', '.join(sorted(reserved))}")

        # Proxies from the environment apply to remote hosts only: a local vLLM must not be
        # routed through a corporate proxy just because no_proxy is unset.
        handlers: list[Any] = []
        if parts.hostname in _LOOPBACK or (parts.hostname or "").startswith("127."):
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sparkle-openai")
        self._jitter = random.Random()
        self._lock = threading.Lock()
        self._images: OrderedDict[str, str] = OrderedDict()
        # None until the first generate call tells us (GenerationConfig carries the setting).
        self.constrained: bool | None = None
        self.constrained_requests = 0
        self.constraint_violations = 0

    # -- request building -----------------------------------------------------------------------

    def _api_key(self) -> str | None:
        # Read at call time (not stored on the instance) so the key never lands in a repr or pickle.
        return os.environ.get(self.api_key_env) or None

    def image_data_url(self, path: str) -> str:
        """A ``data:image/png;base64,...`` URL for an image file (PNG bytes sent unchanged)."""
        with self._lock:
            if path in self._images:
                self._images.move_to_end(path)
                return self._images[path]
        with open(path, "rb") as f:
            data = f.read()
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            import io

            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                buf = io.BytesIO()
                im.save(buf, format="PNG")
                data = buf.getvalue()
        url = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        with self._lock:
            # Questions share scenes (17 per image in Sparkle-Instruct): keep recent encodings.
            self._images[path] = url
            while len(self._images) > 64:
                self._images.popitem(last=False)
        return url

    def build_messages(self, request: Request) -> list[dict[str, Any]]:
        """Canonical messages -> OpenAI messages, image parts filled from ``request.images`` in order."""
        images = iter(request.images)
        out: list[dict[str, Any]] = []
        used = 0
        for turn in request.messages:
            content = turn.get("content")
            if not isinstance(content, list):
                out.append({"role": turn["role"], "content": content})
                continue
            parts: list[dict[str, Any]] = []
            for part in content:
                kind = part.get("type")
                if kind == "image":
                    path = next(images, None)
                    if path is None:
                        raise ValueError(f"more image parts than image paths ({len(request.images)})")
                    used += 1
                    parts.append({"type": "image_url", "image_url": {"url": self.image_data_url(path)}})
                elif kind == "text":
                    parts.append({"type": "text", "text": part.get("text") or ""})
                else:
                    raise ValueError(f"unsupported content part type {kind!r}")
            out.append({"role": turn["role"], "content": parts})
        if used != len(request.images):
            raise ValueError(f"{used} image parts but {len(request.images)} image paths")
        return out

    def allowed_answers(self, request: Request, config: GenerationConfig) -> list[str] | None:
        """The option letters a constrained request may answer, or None when unconstrained."""
        choices = request.record.get("choices") if request.record else None
        if not config.constrained or not choices:
            return None
        return option_letters(len(choices))

    def build_body(self, request: Request, config: GenerationConfig) -> dict[str, Any]:
        """The JSON body of one chat completions request."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.build_messages(request),
            "max_tokens": config.max_new_tokens,
            "temperature": config.temperature,
            "n": 1,
        }
        if self.send_seed:
            body["seed"] = config.seed
        body.update(self.extra_body)
        allowed = self.allowed_answers(request, config)
        if allowed is not None:
            body["structured_outputs"] = {"choice": allowed}
        return body

    # -- transport ------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        key = self._api_key()
        return text.replace(key, "***") if key else text

    def _post(self, payload: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.endpoint, data=payload, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            try:
                detail = exc.read(500).decode("utf-8", "replace")
            except Exception:
                detail = ""
            retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            msg = f"HTTP {exc.code}: {' '.join(detail.split())[:300]}".strip()
            raise _RequestFailed(msg, exc.code in RETRY_STATUS or exc.code >= 500, retry_after) from None
        except TimeoutError:
            raise _RequestFailed(f"timed out after {self.timeout:g} s", True) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise _RequestFailed(f"timed out after {self.timeout:g} s", True) from None
            raise _RequestFailed(f"connection error: {reason}", True) from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _RequestFailed(f"connection error: {type(exc).__name__}: {exc}", True) from None
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _RequestFailed(f"response is not JSON: {raw[:200]!r}", True) from None
        if not isinstance(data, dict):
            raise _RequestFailed("response is not a JSON object", True)
        return data

    def _sleep_before_retry(self, attempt: int, retry_after: float | None) -> None:
        # Full jitter keeps many workers from retrying in lockstep after a shared 429.
        delay = self._jitter.uniform(0, min(self.backoff_max, self.backoff * (2**attempt)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        if delay > 0:
            time.sleep(delay)

    def _one(self, request: Request, config: GenerationConfig) -> Completion:
        t0 = time.perf_counter()
        try:
            body = self.build_body(request, config)
        except (OSError, ValueError) as exc:
            return Completion("", error=f"request {request.id}: cannot build request: {exc}")
        payload = json.dumps(body).encode("utf-8")
        allowed = body.get("structured_outputs", {}).get("choice")
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                data = self._post(payload)
            except _RequestFailed as exc:
                last = self._scrub(str(exc))
                if not exc.retryable or attempt == self.max_retries:
                    return Completion(
                        "",
                        latency_s=time.perf_counter() - t0,
                        error=f"{last} (after {attempt + 1} attempt{'s' if attempt else ''})",
                        usage={"attempts": attempt + 1},
                    )
                self._sleep_before_retry(attempt, exc.retry_after)
                continue
            return self._completion(data, allowed, attempt + 1, time.perf_counter() - t0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _completion(
        self, data: dict[str, Any], allowed: list[str] | None, attempts: int, latency: float
    ) -> Completion:
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            err = data.get("error") if isinstance(data, dict) else None
            msg = err.get("message") if isinstance(err, dict) else err
            return Completion(
                "",
                latency_s=latency,
                error=f"malformed response: {self._scrub(str(msg or data))[:300]}",
                usage={"attempts": attempts},
            )
        usage: dict[str, int] = {"attempts": attempts}
        raw_usage = data.get("usage")
        if isinstance(raw_usage, dict):
            for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
                if isinstance(raw_usage.get(k), int):
                    usage[k] = raw_usage[k]
        if allowed is not None:
            with self._lock:
                self.constrained_requests += 1
                if text.strip() not in allowed:
                    # The server ignored structured_outputs (unknown fields are dropped silently).
                    self.constraint_violations += 1
            usage["constraint_violation"] = int(text.strip() not in allowed)
        return Completion(text, latency_s=latency, usage=usage)

    # -- Backend --------------------------------------------------------------------------------

    def generate(self, requests: list[Request], config: GenerationConfig) -> list[Completion]:
        self.constrained = bool(self.constrained) or config.constrained
        futures = [self._pool.submit(self._one, r, config) for r in requests]
        return [f.result() for f in futures]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "base_url": redact_url(self.base_url),
            "api_key_env": self.api_key_env,
            "api_key_set": self._api_key() is not None,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout,
            "max_retries": self.max_retries,
            "image_format": "png",
            "extra_body_keys": sorted(self.extra_body),
            "constrained": self.constrained,
            # How constrained requests are sent; whether they were is "constrained" (None = no call yet).
            "structured_outputs": "choice (vLLM >= 0.12), for records with choices",
            "constrained_requests": self.constrained_requests,
            "constraint_violations": self.constraint_violations,
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def make_backend(spec: str, options: dict[str, Any]) -> OpenAIBackend:
    """Factory registered as ``openai`` in :data:`sparkle_vlm.models.base.BACKENDS`."""
    return OpenAIBackend(spec, options)
