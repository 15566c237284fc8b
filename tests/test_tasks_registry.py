"""Registry-wide contract: every registered task, in each modality, honours the task contract.

Determinism, oracle answers score 1, JSON round trip, identical PNG bytes on re-render, and the
record schema. A new task is tested here the moment it is registered.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from sparkle_vlm.answers import score
from sparkle_vlm.records import dumps
from sparkle_vlm.render.raster import encode_png
from sparkle_vlm.tasks import TASKS, get_task

REQUIRED = (
    "id", "task", "version", "split", "seed", "index", "images", "messages",
    "answer", "choices", "answer_type", "scene", "query",
)  # fmt: skip


def _variants() -> list[tuple[str, dict]]:
    get_task("instruct")  # registers the built-in tasks
    out = []
    for name, task in TASKS.items():
        fields = {f.name for f in dataclasses.fields(task.config_cls)}
        out.append((name, {"n": 6}))
        if "modality" in fields:
            out.append((name, {"n": 6, "modality": "text"}))
        if "split" in fields:
            out.append((name, {"n": 6, "split": "train"}))
    return out


VARIANTS = _variants()


@pytest.mark.parametrize(
    "name, over", VARIANTS, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in VARIANTS]
)
def test_task_contract(name: str, over: dict) -> None:
    task = get_task(name)
    assert isinstance(task.version, int) and task.version >= 1
    cfg = task.make_config(**over)
    seen_ids: set[str] = set()
    for index in range(cfg.n):
        a = task.sample(cfg, 7, index)
        b = task.sample(cfg, 7, index)
        assert [dumps(r) for r in a.records] == [dumps(r) for r in b.records], "sample is not deterministic"
        assert a.records, "a scene must yield at least one record"
        for rec in a.records:
            for key in REQUIRED:
                assert key in rec, f"record lacks {key}"
            assert rec["id"] not in seen_ids and "." not in rec["id"]
            seen_ids.add(rec["id"])
            assert rec["version"] == task.version and rec["index"] == index and rec["seed"] == 7
            assert json.loads(dumps(rec)) == rec
            n_parts = sum(p["type"] == "image" for t in rec["messages"] for p in t["content"])
            assert n_parts == len(rec["images"])
            assert rec["images"] == ([a.image] if a.image else [])
            verdict = score(rec, rec["answer"])
            assert verdict.correct and verdict.score == 1.0, (rec["id"], rec["answer"], verdict)
        if a.image is not None:
            png1 = encode_png(task.render(a.scene, cfg.size))
            png2 = encode_png(task.render(json.loads(json.dumps(a.scene)), cfg.size))
            assert png1 == png2
            assert png1.startswith(b"\x89PNG")


@pytest.mark.parametrize("name", sorted({n for n, _ in VARIANTS}))
def test_unknown_option_names_the_field(name: str) -> None:
    from sparkle_vlm.errors import ConfigError

    with pytest.raises(ConfigError, match="no_such_option"):
        get_task(name).make_config(no_such_option=1)
    with pytest.raises(ConfigError, match="^n:"):
        get_task(name).make_config(n=-1)
