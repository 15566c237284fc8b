"""Real-image OOD loaders on fixtures written in the authors' published formats."""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import pytest

from sparkle_vlm.answers import score
from sparkle_vlm.cli.main import main
from sparkle_vlm.errors import SparkleError
from sparkle_vlm.eval.ood import SUBSETS, format_prompt, load_subset, resolve_ood_dir

FIXTURES = Path(__file__).parent / "fixtures" / "ood"


def _published(name: str) -> list:
    return json.loads((FIXTURES / SUBSETS[name].annotation).read_text())


@pytest.mark.parametrize("name", list(SUBSETS))
def test_loader_keeps_the_correct_caption_behind_its_letter(name: str) -> None:
    records, info = load_subset(name, FIXTURES, seed=0)
    items = _published(name)
    assert len(records) == len(items)
    assert info["annotation"] == SUBSETS[name].annotation and len(info["annotation_sha256"]) == 64
    for rec, item in zip(records, items, strict=True):
        captions = item["caption_options"] if isinstance(item, dict) else [item[1], item[2]]
        assert rec["answer_type"] == "mcq" and rec["split"] == "test"
        assert sorted(rec["choices"]) == sorted(captions)
        # The published first caption is the right one, wherever the shuffle put it.
        assert rec["choices"][string.ascii_uppercase.index(rec["answer"])] == captions[0]
        assert (FIXTURES / rec["images"][0]).is_file()
        assert rec["messages"][0]["content"][0] == {"type": "image"}
        assert score(rec, f"\\boxed{{{rec['answer']}}}").correct


def test_shuffle_is_seeded_and_moves_the_answer() -> None:
    letters = {r["answer"] for n in SUBSETS for r in load_subset(n, FIXTURES, seed=0)[0]}
    assert letters - {"A"}, "the correct caption must not always be option A"
    assert len(letters) >= 3
    a0, _ = load_subset("whatsup-a", FIXTURES, seed=0)
    again, _ = load_subset("whatsup-a", FIXTURES, seed=0)
    a1, _ = load_subset("whatsup-a", FIXTURES, seed=1)
    assert a0 == again
    assert [r["choices"] for r in a0] != [r["choices"] for r in a1]


def test_prompt_is_the_papers_wording() -> None:
    recs, _ = load_subset("coco-spatial-one", FIXTURES, seed=0)
    a, b = recs[0]["choices"]
    assert recs[0]["messages"][0]["content"][1]["text"] == (
        f"Select the option that correctly describes the image. Options: A: {a}. B: {b}. "
        "\nRespond with the correct option letter in \\boxed{option}."
    )
    four = format_prompt(["w", "x", "y", "z"])
    assert "A: w. B: x. C: y. D: z. \nRespond" in four


def test_relations_and_image_paths_follow_the_published_layout() -> None:
    recs, _ = load_subset("whatsup-a", FIXTURES, seed=0)
    assert recs[0]["images"] == ["controlled_images/mug_on_table.jpeg"]
    assert {r["meta"]["relation"] for r in recs} == {"on", "under", "left", "right"}
    coco, _ = load_subset("coco-spatial-two", FIXTURES, seed=0)
    assert coco[0]["images"] == ["val2017/000000000139.jpg"]
    gqa, _ = load_subset("gqa-spatial-two", FIXTURES, seed=0)
    assert gqa[0]["images"] == ["vg_images/2354786.jpg"]
    assert {r["meta"]["relation"] for r in gqa} == {"front", "behind", "left"}


def test_missing_folder_and_files_give_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPARKLE_OOD_DIR", raising=False)
    with pytest.raises(SparkleError, match=r"--ood-dir.*SPARKLE_OOD_DIR.*https://"):
        resolve_ood_dir(None)
    with pytest.raises(SparkleError, match="does not exist"):
        resolve_ood_dir(tmp_path / "nope")
    monkeypatch.setenv("SPARKLE_OOD_DIR", str(FIXTURES))
    assert resolve_ood_dir(None) == FIXTURES.absolute()
    # A folder with the annotation but without the images names the first missing image.
    shutil.copy(FIXTURES / "coco_qa_one_obj.json", tmp_path)
    with pytest.raises(SparkleError, match="val2017/000000000139.jpg"):
        load_subset("coco-spatial-one", tmp_path, 0)
    with pytest.raises(SparkleError, match="vg_qa_one_obj.json not found"):
        load_subset("gqa-spatial-one", tmp_path, 0)
    (tmp_path / "vg_qa_one_obj.json").write_text('{"not": "a list"}')
    with pytest.raises(SparkleError, match="JSON list"):
        load_subset("gqa-spatial-one", tmp_path, 0)


def test_cli_without_ood_data_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SPARKLE_OOD_DIR", raising=False)
    rc = main(["eval", "--model", "oracle:", "--suite", "ood", "--out", str(tmp_path / "run"), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: --ood-dir") and "http" in err
    assert not (tmp_path / "run" / "run.json").exists()
