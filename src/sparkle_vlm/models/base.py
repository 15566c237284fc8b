"""The model backend interface: a batch of requests (images + chat messages) in, completions out.

Backends are registered by name in :data:`BACKENDS` as *factories* ``(spec, options) -> Backend``
so that heavy stacks (torch, transformers, httpx) are imported only when a backend is used.
A model is named on the command line as ``BACKEND:SPEC``, e.g. ``hf:Qwen/Qwen2-VL-2B-Instruct``,
``openai:my-served-model``, ``random:``, ``oracle:``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.registry import Registry


@dataclass(frozen=True)
class Request:
    """One generation request.

    ``messages`` are canonical turns (content parts ``{"type": "image"}`` / ``{"type": "text"}``),
    without the assistant answer; ``images`` are absolute file paths filled into the image parts
    in order; ``record`` is the canonical record (baselines read ``choices``/``answer`` from it).
    """

    id: str
    messages: list[dict[str, Any]]
    images: list[str]
    record: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding options shared by all backends (greedy by default, for reproducible scores)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    #: Ask the backend to constrain answers to the record's option letters where it can (vLLM).
    constrained: bool = False


@dataclass(frozen=True)
class Completion:
    """One backend answer. ``error`` is set (and ``text`` empty) when the request itself failed."""

    text: str
    latency_s: float = 0.0
    error: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


class Backend(ABC):
    """A model that answers batches of requests."""

    #: Short identity written into results (never contains secrets).
    name: str = "backend"

    @abstractmethod
    def generate(self, requests: list[Request], config: GenerationConfig) -> list[Completion]:
        """Answer every request, in order. Must return one completion per request."""

    def describe(self) -> dict[str, Any]:
        """Model identity and settings for result files (no secrets)."""
        return {"backend": self.name}

    def close(self) -> None:  # noqa: B027 - an optional hook, not every backend holds resources
        """Release resources (threads, GPU memory)."""


BackendFactory = Callable[[str, dict[str, Any]], Backend]

#: backend name -> "module:function" of a factory ``(spec, options) -> Backend`` (imported lazily).
BACKENDS: Registry[str] = Registry("model backend")


def load_backend(model: str, **options: Any) -> Backend:
    """Build a backend from ``BACKEND:SPEC`` (e.g. ``hf:/path/to/ckpt``)."""
    name, sep, spec = model.partition(":")
    if not sep:
        raise SparkleError(
            f"--model: expected BACKEND:SPEC (backends: {', '.join(BACKENDS.names())}), got {model!r}"
        )
    target = BACKENDS.get(name)
    module, _, attr = target.partition(":")
    factory: BackendFactory = getattr(importlib.import_module(module), attr)
    return factory(spec, options)
