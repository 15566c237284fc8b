"""GRPO rewards from the Sparkle verifiers, table-style (TRL's tests/test_rewards.py layout).

Run: .venv/bin/python -m pytest tests/test_train_rewards.py
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sparkle_vlm.tasks import get_task
from sparkle_vlm.train.rewards import accuracy_reward, completion_text, format_reward, reward_functions


def _record(task: str, index: int = 0, **overrides: Any) -> dict[str, Any]:
    t = get_task(task)
    return t.sample(t.make_config(**overrides), 0, index).records[0]


def _conv(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


@pytest.fixture(scope="module")
def spp() -> dict[str, Any]:
    rec = _record("spp", grid=4)
    # instance 0 of seed 0: start N16 (top-right corner), end N7, one optimal path down, left, left
    assert rec["scene"]["start"] == "N16" and json.loads(rec["answer"].replace("'", '"')) == [
        "down",
        "left",
        "left",
    ]
    return rec


def test_accuracy_reward_spp(spp: dict[str, Any]):
    completions = [
        _conv("['down', 'left', 'left']"),  # the canonical optimal path
        _conv("['left', 'down', 'left']"),  # another optimal path: also 1
        _conv("['left', 'left', 'left', 'down', 'right']"),  # valid simple detour of 5 moves: 3 / 5
        _conv("['left', 'right', 'down', 'left', 'left']"),  # revisits the start: infeasible
        _conv("['up', 'down', 'left', 'left']"),  # leaves the grid from the top row: infeasible
        _conv("['down']"),  # stops short of the end: infeasible
        _conv("I think you go diagonally."),  # unparsable
    ]
    record = [json.dumps(spp)] * len(completions)
    rewards = accuracy_reward(completions=completions, record=record)
    assert rewards == pytest.approx([1.0, 1.0, 0.6, 0.0, 0.0, 0.0, 0.0])


def test_accuracy_reward_tsp():
    rec = _record("tsp", points=5)
    labels = json.loads(rec["answer"])
    reversed_tail = [labels[0]] + labels[1:][::-1]  # same start, valid tour, longer for this instance
    completions = [
        json.dumps(labels),  # optimal: 1
        json.dumps(reversed_tail),  # suboptimal: optimal / length
        json.dumps(labels[1:] + labels[:1]),  # wrong start for the fixstart variant: 0
        json.dumps(labels[:3]),  # misses points: 0
        "no idea",  # unparsable: 0
    ]
    rewards = accuracy_reward(completions=completions, record=[rec] * 5)  # dict records work too
    assert rewards[0] == 1.0
    assert 0.0 < rewards[1] < 1.0
    assert rewards[2:] == [0.0, 0.0, 0.0]


def test_accuracy_reward_basic_answers():
    mcq = _record("basic_mcq")
    instr = _record("instruct")  # direction question with a free-text answer
    letter = mcq["answer"]
    wrong = next(c for c in "ABCDEFGH" if c != letter)
    completions = [
        _conv(f"\\boxed{{{letter}}}"),
        _conv(f"\\boxed{{{wrong}}}"),
        _conv(instr["answer"]),
        _conv("?"),
    ]
    record = [json.dumps(mcq), json.dumps(mcq), json.dumps(instr), json.dumps(instr)]
    assert accuracy_reward(completions=completions, record=record) == [1.0, 0.0, 1.0, 0.0]


def test_format_reward(spp: dict[str, Any]):
    mcq = _record("basic_mcq")
    letter = mcq["answer"]
    wrong = next(c for c in "ABCDEFGH" if c != letter)
    cases = [
        (mcq, f"\\boxed{{{letter}}}", 1.0),  # boxed, as the prompt asks
        (mcq, f"\\boxed{{{wrong}}}", 1.0),  # wrong but well-formed
        (mcq, f"The answer is {letter}.", 0.0),  # readable but not boxed
        (mcq, "\\boxed{}", 0.0),  # empty box
        (spp, "['left', 'right', 'down', 'left', 'left']", 1.0),  # a Python list of moves
        (spp, "down, left, left", 0.0),  # moves, but not a list
        (spp, "[]", 1.0),  # a well-formed (empty) list: the format is right, the accuracy reward is 0
        (spp, "['north', 'west']", 0.0),  # a list, but not of moves the verifier reads
    ]
    got = format_reward(
        completions=[_conv(t) for _, t, _ in cases], record=[json.dumps(r) for r, _, _ in cases]
    )
    assert got == [want for _, _, want in cases]


def test_completion_text_shapes():
    assert completion_text("plain") == "plain"
    assert (
        completion_text(
            [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"}]}]
        )
        == "a"
    )
    assert completion_text(42) == ""


def test_rewards_accept_trl_kwargs(spp: dict[str, Any]):
    # TRL passes every dataset column plus prompts, completion_ids, trainer_state, log_* callables
    extra = {
        "prompts": [[]],
        "completion_ids": [[1, 2]],
        "trainer_state": None,
        "images": [[]],
        "id": ["x"],
        "log_extra": lambda *a: None,
        "log_metric": lambda *a: None,
    }
    assert accuracy_reward(completions=[_conv(spp["answer"])], record=[json.dumps(spp)], **extra) == [1.0]
    assert format_reward(completions=[_conv(spp["answer"])], record=[json.dumps(spp)], **extra) == [1.0]


def test_reward_function_weights():
    funcs, weights = reward_functions(0.2)
    assert [f.__name__ for f in funcs] == ["accuracy_reward", "format_reward"] and weights == [1.0, 0.2]
    funcs, weights = reward_functions(0.0)
    assert [f.__name__ for f in funcs] == ["accuracy_reward"] and weights == [1.0]
