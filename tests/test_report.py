"""``sparkle report``: paper-layout tables, self-contained HTML, failure gallery, paired tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sparkle_vlm.cli.main import main
from sparkle_vlm.errors import SparkleError
from sparkle_vlm.eval.runner import EvalConfig, run_eval
from sparkle_vlm.report import build_report

PAPER_HEADER = "| Model | Direction | Distance | Localization | SPP 4x4 | SPP 5x5 | TSP |"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random (baseline) and an oracle ("fine-tuned") run of the paper suite."""
    root = tmp_path_factory.mktemp("report-runs")
    out = []
    for model in ("random:", "oracle:"):
        run = root / model.rstrip(":")
        run_eval(
            EvalConfig(model=model, suite="paper", out=run, limit=12, data_dir=root / "data"), progress=False
        )
        out.append(run)
    return out[0], out[1]


def test_two_runs_give_tables_deltas_plots_gallery_and_tests(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, tuned = runs
    paths = build_report([base, tuned], tmp_path / "rep", n_boot=500)
    assert {p.name for p in paths.values()} == {"report.md", "report.html", "gallery.html", "report.json"}
    md = paths["report.md"].read_text()
    assert PAPER_HEADER in md
    rows = [
        line for line in md.splitlines() if line.startswith("| random |") or line.startswith("| oracle |")
    ]
    assert rows[1] == "| oracle | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |"
    delta = next(line for line in md.splitlines() if line.startswith("| Δ (oracle − random) |"))
    assert all(cell.strip().startswith("+") for cell in delta.strip("|").split("|")[1:])
    assert "## Paired significance" in md and "McNemar p" in md
    sig = json.loads(paths["report.json"].read_text())["significance"]
    spp = next(s for s in sig if s["part"] == "spp-5x5")
    assert spp["n"] == 12 and spp["a_only"] == 0 and spp["b_only"] >= 9 and spp["mcnemar_p"] < 0.01
    assert spp["ci95"][0] > 0
    html = paths["report.html"].read_text()
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', html)) >= 3
    assert "<table>" in html and "http" not in html.replace("http-equiv", "")  # self-contained
    gallery = paths["gallery.html"].read_text()
    assert gallery.count('<div class="card') >= 6 and "data:image/png;base64," in gallery
    assert "expected path (one shortest)" in gallery and "raw output" in gallery


def test_report_is_deterministic(runs: tuple[Path, Path], tmp_path: Path) -> None:
    one = build_report(list(runs), tmp_path / "a", n_boot=300, seed=1)
    two = build_report(list(runs), tmp_path / "b", n_boot=300, seed=1)
    for name, path in one.items():
        assert path.read_bytes() == two[name].read_bytes(), name


def test_single_run_and_cli(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "one"
    assert main(["report", str(runs[1]), "--out", str(out), "--label", "perfect", "-q"]) == 0
    md = (out / "report.md").read_text()
    assert PAPER_HEADER in md and "| perfect | 100.0 |" in md
    assert "Paired significance" not in md and "Δ" not in md
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "has no summary.json" in capsys.readouterr().err


def test_bad_inputs(runs: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(SparkleError, match="--label"):
        build_report(list(runs), tmp_path / "r", labels=["only-one"])
    with pytest.raises(SparkleError, match="--bootstrap"):
        build_report(list(runs), tmp_path / "r", n_boot=0)
