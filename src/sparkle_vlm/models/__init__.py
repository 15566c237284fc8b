"""Model backends behind one interface (see :mod:`sparkle_vlm.models.base`).

Registered backends (factories are imported only when used, so torch loads only for ``hf``):

- ``hf:MODEL_OR_DIR``: transformers in-process (:mod:`sparkle_vlm.models.hf`);
- ``openai:SERVED_NAME``: any OpenAI-compatible chat completions server, e.g. ``vllm serve``
  (:mod:`sparkle_vlm.models.openai_api`);
- ``random:`` and ``oracle:``: chance-level and perfect baselines (:mod:`sparkle_vlm.models.baselines`).
"""

from sparkle_vlm.models.base import BACKENDS, Backend, Completion, GenerationConfig, Request, load_backend

BACKENDS.add("hf", "sparkle_vlm.models.hf:make_backend")
BACKENDS.add("openai", "sparkle_vlm.models.openai_api:make_backend")
BACKENDS.add("random", "sparkle_vlm.models.baselines:make_random")
BACKENDS.add("oracle", "sparkle_vlm.models.baselines:make_oracle")

__all__ = ["BACKENDS", "Backend", "Completion", "GenerationConfig", "Request", "load_backend"]
