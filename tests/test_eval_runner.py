"""The evaluation runner: baselines on every suite, crash-safe resume, backend errors, run identity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sparkle_vlm.cli.main import main
from sparkle_vlm.errors import SparkleError
from sparkle_vlm.eval.runner import RESULTS_FILE, SUMMARY_FILE, EvalConfig, run_eval
from sparkle_vlm.eval.stats import wilson_interval
from sparkle_vlm.models import Backend, Completion, GenerationConfig, Request, load_backend

OOD = Path(__file__).parent / "fixtures" / "ood"
SUITES = ("paper", "basic", "composite", "text", "ood")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset cache for the module: each generated part is made once."""
    return tmp_path_factory.mktemp("eval-data")


def _eval(
    model: str, suite: str, out: Path, data_dir: Path, backend: Backend | None = None, **kw: Any
) -> dict:
    cfg = EvalConfig(model=model, suite=suite, out=out, data_dir=data_dir, ood_dir=OOD, **kw)
    return run_eval(cfg, backend=backend, progress=False)


def _stable(summary: dict) -> dict:
    """A summary without its timing block (the only part that may differ between identical runs)."""
    return {k: v for k, v in summary.items() if k != "timing"}


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()]


@pytest.mark.parametrize("suite", SUITES)
def test_oracle_scores_100_percent(suite: str, data_dir: Path, tmp_path: Path) -> None:
    s = _eval("oracle:", suite, tmp_path / "run", data_dir, limit=6)
    assert s["complete"] and s["counts"]["backend_errors"] == 0
    assert s["overall"]["n"] == s["counts"]["expected"] > 0
    assert s["overall"]["accuracy"] == 1.0
    for part in s["parts"].values():
        assert part["accuracy"] == 1.0 and part["unparsable"] == 0
        assert part["n"] == min(6, part["available"])


@pytest.mark.parametrize("suite", ["paper", "text", "ood"])
def test_random_sits_at_chance(suite: str, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    s = _eval("random:", suite, out, data_dir, limit=45)
    rows = _rows(out)
    assert s["complete"] and s["overall"]["unparsable"] == 0
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["part"], r["task"]), []).append(r)
    for (part, task), rs in groups.items():
        k = sum(r["correct"] for r in rs)
        if rs[0]["choices"]:
            # Multiple choice: the exact chance rate must sit inside the 99.9% interval of the observed rate.
            chance = sum(1 / len(r["choices"]) for r in rs) / len(rs)
            lo, hi = wilson_interval(k, len(rs), z=3.29)
            assert lo <= chance <= hi, (part, task, k, len(rs), chance)
        else:
            # Paths and tours: random walks and orders are rarely optimal.
            assert k / len(rs) < 0.3, (part, task, k, len(rs))
            assert all(r["outcome"] in ("optimal", "suboptimal", "infeasible") for r in rs)


class Interrupting(Backend):
    """Delegates to a real backend and raises KeyboardInterrupt (Ctrl-C) after ``after`` requests."""

    def __init__(self, inner: Backend, after: int) -> None:
        self.inner, self.after, self.served = inner, after, 0
        self.name = inner.name

    def generate(self, requests: list[Request], config: GenerationConfig) -> list[Completion]:
        if self.served + len(requests) > self.after:
            raise KeyboardInterrupt
        self.served += len(requests)
        return self.inner.generate(requests, config)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


class Flaky(Backend):
    """Fails every third request at the backend level (a timeout, say)."""

    name = "oracle"

    def __init__(self) -> None:
        self.inner = load_backend("oracle:")

    def generate(self, requests: list[Request], config: GenerationConfig) -> list[Completion]:
        good = self.inner.generate(requests, config)
        return [Completion("", error="timeout") if i % 3 == 0 else c for i, c in enumerate(good)]


def test_interrupted_run_resumes_to_the_same_summary(data_dir: Path, tmp_path: Path) -> None:
    ref = _eval("random:", "paper", tmp_path / "ref", data_dir, limit=9, batch_size=4)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _eval(
            "random:",
            "paper",
            out,
            data_dir,
            Interrupting(load_backend("random:"), 17),
            limit=9,
            batch_size=4,
        )
    assert len(_rows(out)) == 16 and not (out / SUMMARY_FILE).exists()
    resumed = _eval("random:", "paper", out, data_dir, limit=9, batch_size=4)
    assert resumed["timing"]["evaluated_now"] == ref["counts"]["expected"] - 16
    assert _stable(resumed) == _stable(ref)
    assert len(_rows(out)) == ref["counts"]["expected"]


def test_partial_last_line_is_dropped_on_resume(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ref = _eval("random:", "composite", out, data_dir, limit=5)
    raw = (out / RESULTS_FILE).read_bytes()
    cut = raw.index(b"\n", len(raw) // 2) - 40  # inside a line: a crash mid-write
    (out / RESULTS_FILE).write_bytes(raw[:cut])
    (out / SUMMARY_FILE).unlink()
    again = _eval("random:", "composite", out, data_dir, limit=5)
    assert _stable(again) == _stable(ref)
    rows = _rows(out)
    assert len(rows) == len({(r["part"], r["id"]) for r in rows}) == ref["counts"]["expected"]


def test_backend_errors_are_retried_not_scored(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _eval("oracle:", "basic", out, data_dir, Flaky(), limit=9, batch_size=9)
    assert not first["complete"]
    assert first["counts"]["backend_errors"] == 3 and first["counts"]["scored"] == 6
    assert first["overall"]["n"] == 6 and first["overall"]["accuracy"] == 1.0  # errors are not wrong answers
    failed = [r for r in _rows(out) if r["status"] == "error"]
    assert len(failed) == 3 and all(r["backend_error"] == "timeout" for r in failed)
    second = _eval("oracle:", "basic", out, data_dir, limit=9, batch_size=9)
    assert second["complete"] and second["timing"]["evaluated_now"] == 3
    assert second["overall"]["n"] == 9 and second["overall"]["accuracy"] == 1.0


def test_cli_exits_1_while_requests_still_fail(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sparkle_vlm.eval.runner.load_backend", lambda model, **opts: Flaky())
    args = ["eval", "--model", "oracle:", "--suite", "basic", "--out", str(tmp_path / "run")]
    assert main([*args, "--limit", "6", "--data-dir", str(data_dir)]) == 1
    assert "4/6 scored INCOMPLETE: 2 request(s) failed" in capsys.readouterr().out


def test_a_larger_limit_extends_a_run(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _eval("oracle:", "composite", out, data_dir, limit=2)
    s = _eval("oracle:", "composite", out, data_dir, limit=4)
    assert s["timing"]["evaluated_now"] == 6 and s["overall"]["n"] == 12


def test_a_run_folder_is_not_reused_for_another_run(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _eval("oracle:", "basic", out, data_dir, limit=3)
    with pytest.raises(SparkleError, match="model='oracle:'"):
        _eval("random:", "basic", out, data_dir, limit=3)
    with pytest.raises(SparkleError, match="seed=0"):
        _eval("oracle:", "basic", out, data_dir, limit=3, seed=1)
    with pytest.raises(SparkleError, match="suite="):
        _eval("oracle:", "composite", out, data_dir, limit=3)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(SparkleError, match="not empty"):
        _eval("oracle:", "basic", stray, data_dir, limit=3)


def test_dataset_folder_as_suite(tmp_path: Path) -> None:
    from sparkle_vlm.generate import generate_dataset
    from sparkle_vlm.tasks import get_task

    task = get_task("basic_mcq")
    folder = tmp_path / "my-set"
    generate_dataset(task, task.make_config(n=4), 5, folder, workers=1, progress=False)
    s = run_eval(EvalConfig(model="oracle:", suite=str(folder), out=tmp_path / "run"), progress=False)
    assert list(s["parts"]) == ["my-set"] and s["overall"]["n"] == 12 and s["overall"]["accuracy"] == 1.0
    assert s["data"]["parts"]["my-set"]["seed"] == 5
    # Other data under the same path: rows of the old data must not be mixed with the new.
    shutil.rmtree(folder)
    generate_dataset(task, task.make_config(n=4), 6, folder, workers=1, progress=False)
    with pytest.raises(SparkleError, match="data of part 'my-set' changed"):
        run_eval(EvalConfig(model="oracle:", suite=str(folder), out=tmp_path / "run"), progress=False)
    with pytest.raises(SparkleError, match="neither an evaluation suite"):
        run_eval(
            EvalConfig(model="oracle:", suite=str(tmp_path / "nothing"), out=tmp_path / "r2"), progress=False
        )


def test_cli_writes_rows_summary_and_run_record(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = [
        "eval",
        "--model",
        "random:",
        "--suite",
        "basic",
        "--out",
        str(out),
        "--limit",
        "6",
        "--data-dir",
        str(data_dir),
        "--seed",
        "0",
        "--batch-size",
        "4",
        "-q",
    ]
    assert main(args) == 0
    rows = _rows(out)
    assert len(rows) == 6
    for key in (
        "id",
        "part",
        "task",
        "prompt",
        "output",
        "parsed",
        "outcome",
        "score",
        "error",
        "details",
        "latency_s",
        "images",
        "expected",
        "status",
    ):
        assert key in rows[0]
    run = json.loads((out / "run.json").read_text())
    assert run["command"][:6] == ["sparkle", "eval", "--model", "random:", "--suite", "basic"]
    assert run["model"] == load_backend("random:").describe()
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["model"] == run["model"] and summary["seed"] == 0
    assert set(summary["parts"]["basic"]["tasks"]) == {"direction", "distance", "localization"}
    assert summary["data"]["task_versions"]["direction"] >= 1
    assert summary["data"]["parts"]["basic"]["data_sha256"]
    for m in summary["parts"]["basic"]["tasks"].values():
        assert {"accuracy", "ci95", "unparsable_rate", "outcomes"} <= set(m)
    # Same command again: nothing left to do, same summary.
    assert main(args) == 0
    assert _stable(json.loads((out / SUMMARY_FILE).read_text())) == _stable(summary)
    capsys.readouterr()
    # A backend option the backend does not know is a one-line error, exit code 2.
    assert (
        main(
            [
                "eval",
                "--model",
                "oracle:",
                "--suite",
                "basic",
                "--out",
                str(tmp_path / "r2"),
                "--data-dir",
                str(data_dir),
                "--model-opt",
                "bogus=1",
                "-q",
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.startswith("error: bogus")


def test_summary_difficulty_breakdown(data_dir: Path, tmp_path: Path) -> None:
    s = _eval("oracle:", "composite", tmp_path / "run", data_dir, limit=20)
    spp = s["parts"]["spp-5x5"]["difficulty"]
    assert spp["grid"] == {"5": spp["grid"]["5"]} and spp["grid"]["5"]["n"] == 20
    assert len(spp["manhattan"]) >= 3
    assert "optimal_hops" not in spp  # same split as manhattan on open grids: shown once
    assert "greedy_ratio" not in s["parts"]["tsp"]["difficulty"]  # continuous: no breakdown


@pytest.mark.torch
def test_hf_backend_end_to_end(tiny_qwen2vl_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    from sparkle_vlm.report import build_report

    out = tmp_path / "run"
    s = _eval(
        f"hf:{tiny_qwen2vl_dir}",
        "paper",
        out,
        data_dir,
        limit=2,
        batch_size=4,
        max_new_tokens=8,
        model_options={"device": "cpu"},
    )
    assert s["complete"] and s["overall"]["n"] == 8
    assert s["model"]["backend"] == "hf"
    assert all(isinstance(r["output"], str) and r["images"] for r in _rows(out))
    paths = build_report([out], tmp_path / "rep", n_boot=100)
    assert "| Model | Direction |" in paths["report.md"].read_text()


def test_one_writer_per_run_folder(data_dir: Path, tmp_path: Path) -> None:
    import socket

    out = tmp_path / "run"
    _eval("oracle:", "basic", out, data_dir, limit=3)
    lock = out / ".lock"
    assert not lock.exists()
    lock.write_text(f"{socket.gethostname()} 1")  # pid 1 is alive: a live writer holds the folder
    with pytest.raises(SparkleError, match="another sparkle eval"):
        _eval("oracle:", "basic", out, data_dir, limit=3)
    lock.write_text(f"{socket.gethostname()} 999999999")  # a killed writer: the stale lock is taken over
    assert _eval("oracle:", "basic", out, data_dir, limit=3)["complete"]
    assert not lock.exists()
