"""GRPO reward functions built on the Sparkle verifiers (the same ``score`` that evaluation uses).

Each function follows TRL's reward contract: keyword arguments ``completions`` (conversational:
a list of message dicts per completion; plain: strings) plus every dataset column, one list entry
per completion, and a ``list[float]`` result. Our GRPO rows carry the canonical record as a JSON
string in the ``record`` column.

- :func:`accuracy_reward`: 1 for correct/optimal; for a suboptimal composite answer the verifier's
  graded ``details["reward"]`` (optimal length / answer length); 0 for wrong, infeasible and
  unparsable answers.
- :func:`format_reward`: 1 when the answer is readable and in the form the prompt asks for
  (``\\boxed{...}`` when the prompt asks for it, a Python list when it asks for one), else 0.

Pure Python: importing this module does not import torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sparkle_vlm.answers import score
from sparkle_vlm.answers.types import Verdict

BOXED = re.compile(r"\\boxed\{[^{}]*\S[^{}]*\}")
PY_LIST = re.compile(r"\[[^\[\]]*\]")

RewardFunc = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a string, or a list of messages whose content is a string or parts.

    >>> completion_text([{"role": "assistant", "content": "left"}])
    'left'
    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "top "}, {"type": "text", "text": "left"}]}])
    'top left'
    >>> completion_text(None)
    ''
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, list):
        return ""
    texts: list[str] = []
    for msg in completion:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
    return "".join(texts)


def as_record(value: Any) -> dict[str, Any]:
    """A record from the ``record`` column (a JSON string) or a record dict passed as is."""
    if isinstance(value, dict):
        return value
    return json.loads(value)


def graded(verdict: Verdict) -> float:
    """Map a verdict to a reward in [0, 1].

    >>> graded(Verdict("suboptimal", 0.0, None, None, {"reward": 0.75}))
    0.75
    >>> graded(Verdict("correct", 1.0)), graded(Verdict("infeasible", 0.0)), graded(Verdict("unparsable", 0.0))
    (1.0, 0.0, 0.0)
    """
    if verdict.outcome in ("correct", "optimal"):
        return 1.0
    if verdict.outcome == "suboptimal":
        r = verdict.details.get("reward")
        if isinstance(r, (int, float)) and not isinstance(r, bool):
            return float(min(1.0, max(0.0, r)))
        return 0.0
    return 0.0


def _prompt_of(record: dict[str, Any]) -> str:
    for turn in reversed(record.get("messages") or []):
        if turn.get("role") == "user":
            content = turn.get("content")
            if isinstance(content, str):
                return content
            return "".join(p.get("text") or "" for p in content if p.get("type") == "text")
    return ""


def format_ok(record: dict[str, Any], text: str, verdict: Verdict | None = None) -> bool:
    """Whether ``text`` is readable by the verifier and has the form the prompt asks for."""
    verdict = verdict or score(record, text)
    if verdict.outcome == "unparsable":
        return False
    prompt = _prompt_of(record)
    if "\\boxed" in prompt and not BOXED.search(text):
        return False
    return not ("Python list" in prompt and not PY_LIST.search(text))


def accuracy_reward(completions: list[Any], record: list[Any], **kwargs: Any) -> list[float]:
    """Graded correctness of each completion against its canonical record (see :func:`graded`).

    >>> rec = json.dumps({"id": "q", "answer_type": "direction", "answer": "left", "choices": None,
    ...                   "messages": [{"role": "user", "content": "Which direction?"}]})
    >>> accuracy_reward([[{"role": "assistant", "content": "left"}], [{"role": "assistant", "content": "top"}]],
    ...                 record=[rec, rec])
    [1.0, 0.0]
    """
    return [graded(score(as_record(r), completion_text(c))) for c, r in zip(completions, record, strict=True)]


def format_reward(completions: list[Any], record: list[Any], **kwargs: Any) -> list[float]:
    """1.0 for answers in the requested form (see :func:`format_ok`), else 0.0.

    >>> rec = json.dumps({"id": "q", "answer_type": "mcq", "answer": "B", "choices": ["left", "right"],
    ...     "messages": [{"role": "user", "content": "Options: A. left, B. right\\nAnswer in \\\\boxed{option}."}]})
    >>> format_reward(["\\\\boxed{A}", "B"], record=[rec, rec])
    [1.0, 0.0]
    """
    out = []
    for c, r in zip(completions, record, strict=True):
        out.append(1.0 if format_ok(as_record(r), completion_text(c)) else 0.0)
    return out


def reward_functions(format_weight: float) -> tuple[list[RewardFunc], list[float]]:
    """The reward functions and their weights for GRPO (format reward only when its weight > 0)."""
    if format_weight > 0:
        return [accuracy_reward, format_reward], [1.0, float(format_weight)]
    return [accuracy_reward], [1.0]
