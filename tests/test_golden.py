"""Golden files: the first scenes of every suite at seed 0, records and PNG hashes.

A difference means a (config, seed, index) now produces something else: if intended, bump the
task's version and run ``python tests/golden/regen.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from regen import golden_lines  # noqa: E402

from sparkle_vlm.suites import SUITES  # noqa: E402

HERE = Path(__file__).parent / "golden"


@pytest.mark.parametrize("suite", SUITES.names())
def test_golden(suite: str) -> None:
    path = HERE / f"{suite}.jsonl"
    assert path.exists(), "missing golden file; run python tests/golden/regen.py"
    want = path.read_text(encoding="utf-8").splitlines()
    got = golden_lines(suite)
    if want[0] == got[0]:
        assert got == want, f"{suite}: output changed without a version bump"
    else:
        old, new = json.loads(want[0]), json.loads(got[0])
        assert new["task_version"] > old["task_version"], f"{suite}: version went backwards"
        pytest.fail(f"{suite}: task version bumped to {new['task_version']}; regenerate the golden files")
