"""The dataset writer: determinism across workers, resumability, validation, no train/test leak."""

from __future__ import annotations

import filecmp
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparkle_vlm.cli.main import main
from sparkle_vlm.errors import SparkleError
from sparkle_vlm.generate import generate_dataset
from sparkle_vlm.records import read_jsonl
from sparkle_vlm.tasks import get_task


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _gen(out: Path, n: int = 60, workers: int = 1, seed: int = 0, **over) -> None:
    task = get_task("instruct")
    generate_dataset(task, task.make_config(n=n, **over), seed, out, workers=workers, progress=False)


def test_workers_give_identical_bytes(tmp_path: Path) -> None:
    _gen(tmp_path / "w1", n=130, workers=1)
    _gen(tmp_path / "w2", n=130, workers=2)
    a, b = _tree(tmp_path / "w1"), _tree(tmp_path / "w2")
    assert a.keys() == b.keys()
    assert a == b
    assert len([k for k in a if k.startswith("images/")]) == 130


def test_layout_and_manifest(tmp_path: Path) -> None:
    _gen(tmp_path / "d", n=4)
    man = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert man["counts"] == {
        "images": 4,
        "records": 68,
        "by_task": {"description": 4, "direction": 12, "distance": 28, "localization": 24},
    }
    assert man["task"] == "instruct" and man["task_version"] == 1 and man["config"]["n"] == 4
    recs = read_jsonl(str(tmp_path / "d" / "data.jsonl"))
    assert len({r["id"] for r in recs}) == 68
    for r in recs:
        assert "." not in r["id"]
        assert all((tmp_path / "d" / p).is_file() for p in r["images"])
    assert not (tmp_path / "d" / ".sparkle-partial.json").exists()


def test_same_seed_same_bytes_and_rerun_is_noop(tmp_path: Path) -> None:
    _gen(tmp_path / "a", n=10)
    _gen(tmp_path / "b", n=10)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    before = _tree(tmp_path / "a")
    _gen(tmp_path / "a", n=10)  # complete folder, same options: nothing to do
    assert _tree(tmp_path / "a") == before


def test_different_options_into_complete_folder_is_refused(tmp_path: Path) -> None:
    _gen(tmp_path / "a", n=3)
    with pytest.raises(SparkleError, match="different dataset"):
        _gen(tmp_path / "a", n=3, seed=1)


def test_neighbouring_seeds_share_no_scenes() -> None:
    task = get_task("instruct")
    cfg = task.make_config(n=50)
    scenes = {}
    for seed in (0, 1, 2):
        for i in range(50):
            nodes = task.sample(cfg, seed, i).scene["nodes"]
            key = tuple((n["x"], n["y"]) for n in nodes)
            assert key not in scenes, f"seed {seed} index {i} repeats {scenes.get(key)}"
            scenes[key] = (seed, i)


def test_no_train_test_leak() -> None:
    train, test = get_task("instruct"), get_task("basic_mcq")
    train_pts = {
        (round(n["x"], 9), round(n["y"], 9))
        for i in range(300)
        for n in train.sample(train.make_config(n=300), 0, i).scene["nodes"]
    }
    for i in range(100):
        for n in test.sample(test.make_config(n=100), 0, i).scene["nodes"]:
            assert (round(n["x"], 9), round(n["y"], 9)) not in train_pts


def _unfinish(part: Path, n: int) -> None:
    """Make a finished instruct run in ``part`` look crashed: no manifest, the partial marker back."""
    from sparkle_vlm.fsutil import atomic_write_json
    from sparkle_vlm.generate import identity

    (part / "manifest.json").unlink()
    task = get_task("instruct")
    atomic_write_json(part / ".sparkle-partial.json", identity(None, task, task.make_config(n=n), 0))


def test_resume_after_partial_write_equals_full_run(tmp_path: Path) -> None:
    _gen(tmp_path / "full", n=120)
    part = tmp_path / "part"
    _gen(part, n=120)
    # Simulate a crash: no manifest yet, the record file cut in the middle of a line.
    _unfinish(part, 120)
    data = (part / "data.jsonl").read_bytes()
    (part / "data.jsonl").write_bytes(data[: len(data) // 2 + 17])
    _gen(part, n=120)
    assert _tree(part) == _tree(tmp_path / "full")


def test_resume_removes_temp_files_of_an_interrupted_write(tmp_path: Path) -> None:
    _gen(tmp_path / "full", n=40)
    part = tmp_path / "part"
    _gen(part, n=40)
    _unfinish(part, 40)
    # What a SIGKILL between mkstemp and rename leaves behind (seen in the kill test below).
    (part / "images" / ".instruct-train-s0-i000031.png.52tonxbh.tmp").write_bytes(b"")
    (part / ".manifest.json.a1b2c3d4.tmp").write_bytes(b"{")
    keep = part / "images" / "notes.tmp"  # not an atomic-write name: left alone, so the trees differ
    keep.write_bytes(b"x")
    _gen(part, n=40)
    keep.unlink()
    assert _tree(part) == _tree(tmp_path / "full")


@pytest.mark.slow
def test_killed_generate_resumes_to_identical_output(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "sparkle_vlm.cli.main",
        "generate",
        "instruct",
        "--n",
        "3000",
        "--workers",
        "1",
        "-q",
    ]
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run([*cmd, "--out", str(full)], check=True)
    proc = subprocess.Popen([*cmd, "--out", str(killed)])
    data = killed / "data.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not data.exists() or data.stat().st_size < 400_000):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "manifest.json").exists(), "run finished before it could be killed"
    subprocess.run([*cmd, "--out", str(killed)], check=True)
    assert _tree(killed) == _tree(full)
    assert filecmp.cmp(killed / "data.jsonl", full / "data.jsonl", shallow=False)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["generate", "instruct", "--n", "-3"], "--n"),
        (["generate", "instrct"], "did you mean 'instruct'"),
        (["generate", "instruct", "--size", "16"], "--size"),
        (["generate", "instruct", "--seed", "-1"], "--seed"),
        (["generate", "instruct", "--workers", "0"], "--workers"),
        (["generate", "instruct", "--grid", "5"], "--grid"),
        (["generate", "instruct", "--set", "focus=sideways"], "focus"),
        (["generate", "instruct", "--n", "abc"], "--n"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path: Path, capsys, args, needle) -> None:
    out = tmp_path / "out"
    rc = main([*args, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and "\n" not in err and needle in err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["under-a-file", "proc"])
def test_unwritable_out_is_refused(tmp_path: Path, capsys, kind: str) -> None:
    if kind == "under-a-file":
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "out"
    else:
        target = Path("/proc/sparkle-cannot-write-here")
    rc = main(["generate", "instruct", "--n", "2", "--out", str(target)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--out" in err and "\n" not in err
    assert not target.exists()


def test_cli_generate_and_tasks(tmp_path: Path, capsys) -> None:
    assert main(["generate", "instruct-direction", "--n", "3", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "3 images, 12 records" in out
    assert main(["tasks", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {"instruct", "basic_mcq"} <= {t["task"] for t in listing["tasks"]}
    assert "instruct-no-numbers" in {s["suite"] for s in listing["suites"]}


def test_basic_practice_data_never_shows_test_scenes() -> None:
    task = get_task("basic_mcq")
    test_cfg, train_cfg = task.make_config(n=200), task.make_config(n=400, split="train")
    test = {tuple((n["x"], n["y"]) for n in task.sample(test_cfg, 0, i).scene["nodes"]) for i in range(200)}
    for i in range(400):
        s = task.sample(train_cfg, 0, i)
        assert tuple((n["x"], n["y"]) for n in s.scene["nodes"]) not in test
        assert all(r["split"] == "train" and r["messages"][-1]["role"] == "assistant" for r in s.records)
