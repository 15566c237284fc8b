"""Model backends behind one interface (see :mod:`sparkle_vlm.models.base`)."""

from sparkle_vlm.models.base import BACKENDS, Backend, Completion, GenerationConfig, Request, load_backend

__all__ = ["BACKENDS", "Backend", "Completion", "GenerationConfig", "Request", "load_backend"]
