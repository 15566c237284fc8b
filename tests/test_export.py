"""Exporters: every format from real generated folders (Sparkle-Instruct train, basic MCQ test).

Each format is checked the way its consumer reads it: JSON/JSONL parsed, parquet loaded with
``datasets.load_dataset("parquet")``, the VLMEvalKit TSV read with pandas and its base64
decoded, the lmms-eval YAML parsed and its ``utils.py`` run on the exported docs.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

from sparkle_vlm.answers import score
from sparkle_vlm.errors import SparkleError
from sparkle_vlm.export import EXPORT_MANIFEST, EXPORTERS, ExportOptions, export_dataset, record_from_row
from sparkle_vlm.export.base import IMAGE_TOKEN, shuffle_order
from sparkle_vlm.export.columns import META_KEYS, metadata_columns
from sparkle_vlm.generate import generate_dataset
from sparkle_vlm.records import read_jsonl
from sparkle_vlm.render.raster import encode_png
from sparkle_vlm.suites import SUITES
from sparkle_vlm.tasks import TASKS, get_task

FORMATS = ["ms-swift", "ms-swift-messages", "llava", "llama-factory", "hf", "trl", "lmms-eval", "vlmevalkit"]


def _generate(root: Path, suite: str, n: int, **extra: Any) -> Path:
    s = SUITES.get(suite)
    task = get_task(s.task)
    config = task.make_config(**{**s.overrides, "n": n, "size": 224, **extra})
    out = root / f"{suite}-{'-'.join(map(str, extra.values())) or 'default'}"
    generate_dataset(task, config, 0, out, workers=1, suite=suite, progress=False)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    return {
        "instruct": _generate(root, "instruct", 5),
        "basic": _generate(root, "basic-test", 3),
        "text": _generate(root, "basic-test", 2, modality="text"),
    }


def _records(folder: Path) -> list[dict[str, Any]]:
    return read_jsonl(str(folder / "data.jsonl"))


def _export(src: Path, fmt: str, out: Path, **opts: Any) -> Path:
    export_dataset(src, fmt, out, ExportOptions(**opts))
    return out


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _load_module(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _resolve(out: Path, ref: str) -> Path:
    return Path(ref) if os.path.isabs(ref) else out / ref


def _png_pixels(data: bytes) -> bytes:
    from PIL import Image

    return Image.open(io.BytesIO(data)).tobytes()


def test_basic_mcq_is_registered() -> None:
    # The basic test set is part of every format test below: it must be present, not skipped.
    assert "basic_mcq" in TASKS and "instruct" in TASKS


def test_registry_lists_every_format() -> None:
    assert sorted(EXPORTERS.names()) == sorted(FORMATS)
    with pytest.raises(SparkleError, match="did you mean 'llava'"):
        EXPORTERS.get("lava")


# -- shared guarantees ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("which", ["instruct", "basic"])
def test_export_manifest_and_determinism(data: dict[str, Path], tmp_path: Path, fmt: str, which: str) -> None:
    src = data[which]
    out = _export(src, fmt, tmp_path / "a")
    manifest = json.loads((out / EXPORT_MANIFEST).read_text())
    assert manifest["format"] == fmt
    assert (
        manifest["source"]["manifest_sha256"]
        == hashlib.sha256((src / "manifest.json").read_bytes()).hexdigest()
    )
    assert manifest["counts"]["records"] == len(_records(src))
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    first = _files(out)
    # Export again into the same folder: the earlier export is replaced by identical bytes.
    _export(src, fmt, out)
    assert _files(out) == first
    assert not (out / ".sparkle-export-partial.json").exists()


@pytest.mark.parametrize("fmt", ["ms-swift", "llava", "llama-factory", "hf", "trl", "vlmevalkit"])
def test_relative_exports_do_not_depend_on_the_folder_name(
    data: dict[str, Path], tmp_path: Path, fmt: str
) -> None:
    a = _export(data["basic"], fmt, tmp_path / "one", absolute_paths=False)
    b = _export(data["basic"], fmt, tmp_path / "two", absolute_paths=False)
    assert _files(a) == _files(b)


def test_shuffle_is_a_pure_function_of_the_seed(data: dict[str, Path], tmp_path: Path) -> None:
    src = data["instruct"]
    ids = [r["id"] for r in _records(src)]

    def exported(**opts: Any) -> list[str]:
        out = _export(src, "trl", tmp_path / json.dumps(opts, sort_keys=True).replace('"', ""), **opts)
        return [json.loads(line)["id"] for line in (out / "train.jsonl").read_text().splitlines()]

    default = exported()
    assert default == [ids[i] for i in shuffle_order(len(ids), 0)] != ids  # training sets shuffle by default
    assert exported(seed=0) == default
    assert exported(seed=1) != default and sorted(exported(seed=1)) == sorted(ids)
    assert exported(shuffle=False) == ids


def test_test_sets_keep_their_order_unless_asked(data: dict[str, Path], tmp_path: Path) -> None:
    src = data["basic"]
    ids = [r["id"] for r in _records(src)]

    def exported(out: Path, **opts: Any) -> list[str]:
        _export(src, "ms-swift-messages", out, **opts)
        return [
            json.loads(json.loads(line)["sparkle"])["id"]
            for line in (out / "test.jsonl").read_text().splitlines()
        ]

    assert exported(tmp_path / "keep") == ids
    assert exported(tmp_path / "shuffled", shuffle=True, seed=3) == [
        ids[i] for i in shuffle_order(len(ids), 3)
    ]


def test_copy_images_and_absolute_paths(data: dict[str, Path], tmp_path: Path) -> None:
    src = data["basic"]
    out = _export(src, "llava", tmp_path / "copy", copy_images=True)
    rows = json.loads((out / "test.json").read_text())
    for row, rec in zip(rows, _records(src), strict=True):
        assert row["image"] == rec["images"][0]  # images/<name>.png inside the export
        assert (out / row["image"]).read_bytes() == (src / rec["images"][0]).read_bytes()
    manifest = json.loads((out / EXPORT_MANIFEST).read_text())
    assert sorted(manifest["copied_images"]) == sorted({r["images"][0] for r in _records(src)})

    out = _export(src, "llava", tmp_path / "abs", absolute_paths=True)
    for row in json.loads((out / "test.json").read_text()):
        assert os.path.isabs(row["image"]) and Path(row["image"]).is_file()


# -- one test per format ----------------------------------------------------------------


def test_ms_swift_query_response(data: dict[str, Path], tmp_path: Path) -> None:
    for which, split in (("instruct", "train"), ("basic", "test")):
        src = data[which]
        out = _export(src, "ms-swift", tmp_path / which)
        rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        recs = _records(src)
        if split == "train":  # training sets are shuffled by default
            recs = [recs[i] for i in shuffle_order(len(recs), 0)]
        assert len(rows) == len(recs)
        for row, rec in zip(rows, recs, strict=True):
            assert set(row) == {"query", "response", "images"}
            assert (
                row["query"].startswith(IMAGE_TOKEN)
                and row["query"].count(IMAGE_TOKEN) == len(row["images"]) == 1
            )
            assert IMAGE_TOKEN not in row["response"]
            assert os.path.isabs(row["images"][0])  # ms-swift opens relative paths against the working dir
            assert Path(row["images"][0]).read_bytes() == (src / rec["images"][0]).read_bytes()
            assert row["query"] == IMAGE_TOKEN + rec["messages"][0]["content"][1]["text"]
            want = rec["messages"][1]["content"][0]["text"] if split == "train" else rec["answer"]
            assert row["response"] == want


def test_ms_swift_messages_and_reward_plugin(
    data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = data["basic"]
    out = _export(src, "ms-swift-messages", tmp_path / "out")
    rows = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    for row, rec in zip(rows, _records(src), strict=True):
        assert [m["role"] for m in row["messages"]] == ["user"]  # test rows: prompt only
        assert sum(m["content"].count(IMAGE_TOKEN) for m in row["messages"]) == len(row["images"]) == 1
        assert row["solution"] == rec["answer"]
        assert "query" not in row and "answer" not in row  # names ms-swift would reinterpret
        assert score(record_from_row(row), rec["answer"]).score == 1.0

    # The bundled plugin registers ORMs that score with sparkle_vlm (ms-swift itself is faked).
    orms: dict[str, Any] = {}
    fake = types.ModuleType("swift.rewards")
    fake.ORM = object  # type: ignore[attr-defined]
    fake.orms = orms  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "swift", types.ModuleType("swift"))
    monkeypatch.setitem(sys.modules, "swift.rewards", fake)
    _load_module(out / "sparkle_orm.py", "sparkle_orm_test")
    metas = [r["sparkle"] for r in rows]
    oracle = [f"\\boxed{{{r['solution']}}}" for r in rows]
    assert orms["sparkle_accuracy"]()(oracle, sparkle=metas) == [1.0] * len(rows)
    assert orms["sparkle_accuracy"]()(["no idea"] * len(rows), sparkle=metas) == [0.0] * len(rows)
    assert orms["sparkle_parsable"]()(["no idea"] * len(rows), sparkle=metas) == [0.0] * len(rows)


def test_llava(data: dict[str, Path], tmp_path: Path) -> None:
    src = data["instruct"]
    out = _export(src, "llava", tmp_path / "img")
    rows = json.loads((out / "train.json").read_text())
    assert isinstance(rows, list) and len(rows) == len(_records(src))
    for row in rows:
        human = row["conversations"][0]
        assert [t["from"] for t in row["conversations"]] == ["human", "gpt"]
        assert human["value"].startswith(IMAGE_TOKEN + "\n")
        assert sum(t["value"].count(IMAGE_TOKEN) for t in row["conversations"]) == 1
        assert isinstance(row["image"], str) and not os.path.isabs(row["image"])
        assert (out / row["image"]).is_file()  # --image_folder is the export folder

    text = _export(data["text"], "llava", tmp_path / "text")
    for row in json.loads((text / "test.json").read_text()):
        assert "image" not in row  # text-only samples omit the key
        assert all(IMAGE_TOKEN not in t["value"] for t in row["conversations"])
        assert row["conversations"][-1]["from"] == "gpt"  # test answer as the label


def test_llama_factory(data: dict[str, Path], tmp_path: Path) -> None:
    src = data["basic"]
    out = _export(src, "llama-factory", tmp_path / "out", name="spatial")
    info = json.loads((out / "dataset_info.json").read_text())
    assert info == {
        "spatial_test": {
            "file_name": "spatial_test.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
    }
    rows = json.loads((out / "spatial_test.json").read_text())
    for row, rec in zip(rows, _records(src), strict=True):
        assert isinstance(row["images"], list) and len(row["images"]) == 1
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert sum(m["content"].count(IMAGE_TOKEN) for m in row["messages"]) == len(row["images"])
        assert row["messages"][1]["content"] == rec["answer"]
        # Relative paths resolve against dataset_dir (= the export folder).
        assert (out / row["images"][0]).read_bytes() == (src / rec["images"][0]).read_bytes()


def test_hf_parquet_embeds_images(data: dict[str, Path], tmp_path: Path) -> None:
    import datasets
    from PIL import Image

    src = data["basic"]
    out = _export(src, "hf", tmp_path / "out")
    # Nothing but the export itself: the parquet must not lean on the image files.
    ds = datasets.load_dataset("parquet", data_files={"test": str(out / "data/test-00000-of-00001.parquet")})[
        "test"
    ]
    recs = _records(src)
    assert len(ds) == len(recs)
    assert isinstance(ds.features["images"].feature, datasets.Image)
    for row, rec in zip(ds, recs, strict=True):
        assert len(row["images"]) == len(rec["images"]) == 1
        img = row["images"][0]
        assert isinstance(img, Image.Image)
        assert img.tobytes() == _png_pixels((src / rec["images"][0]).read_bytes())
        parts = row["messages"][0]["content"]
        assert [p["type"] for p in parts] == ["image", "text"] and set(parts[0]) == {"type", "text"}
        rebuilt = record_from_row(row)
        assert {k: rebuilt[k] for k in META_KEYS} == {k: rec[k] for k in META_KEYS}
        assert score(rebuilt, rec["answer"]).score == 1.0
    card = (out / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["configs"][0]["data_files"] == [
        {"split": "test", "path": "data/test-00000-of-00001.parquet"}
    ]

    text = _export(data["text"], "hf", tmp_path / "text")
    tds = datasets.load_dataset("parquet", data_files=str(text / "data/test-00000-of-00001.parquet"))["train"]
    assert all(row["images"] == [] for row in tds)


def test_trl_prompt_completion(data: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    from sparkle_vlm.export.trl import load_trl_dataset

    out = _export(data["instruct"], "trl", tmp_path / "train", absolute_paths=False)
    lines = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    for row in lines:
        assert [t["role"] for t in row["prompt"]] == ["user"] and [t["role"] for t in row["completion"]] == [
            "assistant"
        ]
        n_parts = sum(p["type"] == "image" for t in row["prompt"] for p in t["content"])
        assert n_parts == len(row["images"]) == 1
    ds = load_trl_dataset(out, "train")
    assert len(ds) == len(lines)
    assert isinstance(ds[0]["images"][0], Image.Image)

    test = _export(data["basic"], "trl", tmp_path / "test")
    rows = [json.loads(line) for line in (test / "test.jsonl").read_text().splitlines()]
    assert all("completion" not in row for row in rows)  # GRPO samples the answer
    assert all(score(record_from_row(row), row["answer"]).score == 1.0 for row in rows)


def _lmms_loader() -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    def function(loader: yaml.SafeLoader, node: yaml.Node) -> tuple[str, str]:
        return ("!function", loader.construct_scalar(node))  # type: ignore[arg-type]

    Loader.add_constructor("!function", function)
    return Loader


# Fields of lmms-eval's TaskConfig and GroupConfig (lmms_eval/api/task.py, api/group.py).
LMMS_TASK_KEYS = {
    "task", "task_alias", "tag", "group", "group_alias", "dataset_path", "dataset_name", "dataset_kwargs",
    "training_split", "validation_split", "test_split", "fewshot_split", "full_docs", "process_results_use_image",
    "process_docs", "doc_to_visual", "doc_to_text", "doc_to_target", "doc_to_choice", "doc_to_messages",
    "process_results", "use_prompt", "description", "target_delimiter", "fewshot_delimiter", "fewshot_config",
    "num_fewshot", "metric_list", "output_type", "generation_kwargs", "repeats", "filter_list",
    "should_decontaminate", "doc_to_decontamination_query", "metadata", "lmms_eval_specific_kwargs",
    "model_specific_generation_kwargs", "model_specific_target_kwargs", "include",
}  # fmt: skip
LMMS_GROUP_KEYS = {"group", "group_alias", "task", "aggregate_metric_list", "metadata"}


def test_lmms_eval_task_folder(data: dict[str, Path], tmp_path: Path) -> None:
    import datasets

    src = data["basic"]
    out = _export(src, "lmms-eval", tmp_path / "tasks", name="sparkle_basic")
    loader = _lmms_loader()
    utils = _load_module(out / "utils.py", "sparkle_lmms_utils_test")
    template = yaml.load((out / "_default_template_yaml").read_text(), Loader=loader)
    assert set(template) <= LMMS_TASK_KEYS
    assert template["output_type"] == "generate_until"
    for key in ("doc_to_visual", "doc_to_text", "doc_to_target", "process_results"):
        tag, ref = template[key]
        assert tag == "!function" and ref.startswith("utils.") and callable(getattr(utils, ref.split(".")[1]))
    metrics = {m["metric"] for m in template["metric_list"]}
    assert metrics == {"sparkle_score", "sparkle_correct", "sparkle_unparsable"}

    group = yaml.load((out / "sparkle_basic.yaml").read_text(), Loader=loader)
    assert set(group) <= LMMS_GROUP_KEYS
    assert group["task"] == [
        "sparkle_basic_direction",
        "sparkle_basic_distance",
        "sparkle_basic_localization",
    ]
    assert {m["metric"] for m in group["aggregate_metric_list"]} == metrics

    total = 0
    for name in group["task"]:
        cfg = yaml.load((out / f"{name}.yaml").read_text(), Loader=loader)
        assert (
            set(cfg) <= LMMS_TASK_KEYS and cfg["task"] == name and cfg["include"] == "_default_template_yaml"
        )
        assert cfg["dataset_path"] == "parquet" and cfg["test_split"] == "test"
        assert cfg["metadata"]["version"] == get_task("basic_mcq").version
        files = cfg["dataset_kwargs"]["data_files"]
        docs = datasets.load_dataset(cfg["dataset_path"], data_files=files)[cfg["test_split"]]
        for doc in docs:
            visuals = utils.doc_to_visual(doc)
            assert len(visuals) == 1 and visuals[0].mode == "RGB"
            text = utils.doc_to_text(doc, {"pre_prompt": "", "post_prompt": ""})
            assert "\\boxed" in text and IMAGE_TOKEN not in text
            oracle = utils.process_results(doc, [f"\\boxed{{{utils.doc_to_target(doc)}}}"])
            assert oracle == {"sparkle_score": 1.0, "sparkle_correct": 1.0, "sparkle_unparsable": 0.0}
            wrong_letter = "A" if doc["answer"] != "A" else "B"
            assert utils.process_results(doc, [f"\\boxed{{{wrong_letter}}}"])["sparkle_score"] == 0.0
            assert utils.process_results(doc, ["I cannot tell."])["sparkle_unparsable"] == 1.0
            total += 1
    assert total == len(_records(src))


def test_vlmevalkit_tsv(data: dict[str, Path], tmp_path: Path) -> None:
    import pandas as pd

    src = data["basic"]
    out = _export(src, "vlmevalkit", tmp_path / "out", name="Sparkle_Basic")
    df = pd.read_csv(out / "Sparkle_Basic.tsv", sep="\t")  # how VLMEvalKit's load() reads a TSV
    recs = _records(src)
    assert list(df.columns) == ["index", "image", "question", "answer", *"ABCDEFGHI",
                                "category", "l2-category", "split", "id"]  # fmt: skip
    # Resolve short cells as row references, exactly as VLMEvalKit's ImageBaseDataset does.
    cells = {str(i): str(v) for i, v in zip(df["index"], df["image"], strict=True)}
    for _, row in df.iterrows():
        rec = recs[int(row["index"])]
        cell = cells[str(row["index"])]
        if len(cell) <= 64:
            cell = cells[cell]
        assert base64.b64decode(cell) == (src / rec["images"][0]).read_bytes()
        assert row["question"] == rec["messages"][0]["content"][1]["text"]
        assert row["answer"] == rec["answer"] and row["id"] == rec["id"] and row["category"] == rec["task"]
        opts = [row[c] for c in "ABCDEFGHI" if isinstance(row[c], str)]
        assert opts == rec["choices"]
    assert (df["image"].str.len() <= 64).sum() == len(recs) - len({r["images"][0] for r in recs})

    with pytest.raises(SparkleError, match="circular"):
        _export(src, "vlmevalkit", tmp_path / "bad", name="MMBench_sparkle")
    with pytest.raises(SparkleError, match="no image"):
        _export(data["text"], "vlmevalkit", tmp_path / "text")


# -- marker rules and bad input ---------------------------------------------------------


def _write_folder(folder: Path, records: list[dict[str, Any]], images: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for rel, png in images.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(png)
    raw = "".join(json.dumps(r) + "\n" for r in records).encode()
    (folder / "data.jsonl").write_bytes(raw)
    manifest = {
        "suite": "handmade",
        "task": "handmade",
        "seed": 0,
        "data_sha256": hashlib.sha256(raw).hexdigest(),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _record(rid: str, images: list[str], text: str, answer: str = "left") -> dict[str, Any]:
    content: list[dict[str, str]] = [{"type": "image"} for _ in images] + [{"type": "text", "text": text}]
    return {
        "id": rid, "task": "direction", "version": 1, "split": "test", "seed": 0, "index": 0, "images": images,
        "messages": [{"role": "user", "content": content}], "answer": answer, "choices": None,
        "answer_type": "direction", "scene": {"frame": 10, "nodes": []}, "query": {}, "source": "handmade",
        "meta": {},
    }  # fmt: skip


def _png(gray: int) -> bytes:
    from PIL import Image

    return encode_png(Image.new("L", (112, 112), gray))


def test_multi_image_records(tmp_path: Path) -> None:
    import pandas as pd

    images = {"images/a.png": _png(10), "images/b.png": _png(200)}
    src = _write_folder(tmp_path / "src", [_record("two", list(images), "Compare them.")], images)
    llava = json.loads((_export(src, "llava", tmp_path / "llava") / "test.json").read_text())
    assert llava[0]["image"] == ["../src/images/a.png", "../src/images/b.png"]
    assert llava[0]["conversations"][0]["value"] == f"{IMAGE_TOKEN}{IMAGE_TOKEN}\nCompare them."
    swift = json.loads((_export(src, "ms-swift", tmp_path / "swift") / "test.jsonl").read_text())
    assert swift["query"].count(IMAGE_TOKEN) == len(swift["images"]) == 2
    df = pd.read_csv(_export(src, "vlmevalkit", tmp_path / "vlm") / "sparkle_handmade.tsv", sep="\t")
    encoded = json.loads(df["image"][0])
    assert [base64.b64decode(e) for e in encoded] == list(images.values())
    assert json.loads(df["image_path"][0]) == ["a.png", "b.png"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_literal_image_token_in_text_fails_loudly(tmp_path: Path, fmt: str) -> None:
    images = {"images/a.png": _png(10)}
    src = _write_folder(tmp_path / "src", [_record("bad-1", ["images/a.png"], "Is <image> left?")], images)
    with pytest.raises(SparkleError, match=r"record bad-1: .*'<image>'"):
        _export(src, fmt, tmp_path / "out")


def test_placeholder_count_must_match_images(tmp_path: Path) -> None:
    images = {"images/a.png": _png(10), "images/b.png": _png(20)}
    rec = _record("bad-2", ["images/a.png"], "Where?")
    rec["images"] = list(images)  # two images, one placeholder
    src = _write_folder(tmp_path / "src", [rec], images)
    with pytest.raises(SparkleError, match="record bad-2: 1 image placeholders but 2 images"):
        _export(src, "llava", tmp_path / "out")
    answer = _record("bad-3", ["images/a.png"], "Where?", answer="<video>")
    src2 = _write_folder(tmp_path / "src2", [answer], {"images/a.png": _png(10)})
    with pytest.raises(SparkleError, match="record bad-3"):
        _export(src2, "ms-swift", tmp_path / "out2")


def test_bad_sources_and_targets(data: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SparkleError, match="no manifest.json"):
        _export(tmp_path, "llava", tmp_path / "x")
    with pytest.raises(SparkleError, match="must differ"):
        _export(data["basic"], "llava", data["basic"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SparkleError, match="not empty and holds no sparkle export"):
        _export(data["basic"], "llava", foreign)
    assert (foreign / "notes.txt").read_text() == "mine"

    images = {"images/a.png": _png(10)}
    src = _write_folder(tmp_path / "src", [_record("r", ["images/a.png"], "Where?")], images)
    with open(src / "data.jsonl", "a") as f:
        f.write("\n")  # any edit after generation
    with pytest.raises(SparkleError, match="changed after generation"):
        _export(src, "llava", tmp_path / "out")
    missing = _write_folder(tmp_path / "missing", [_record("r", ["images/zz.png"], "Where?")], {})
    with pytest.raises(SparkleError, match="record r: image .* is missing"):
        _export(missing, "llava", tmp_path / "out3")


def test_refused_export_keeps_the_previous_one(data: dict[str, Path], tmp_path: Path) -> None:
    out = _export(data["basic"], "llava", tmp_path / "out")
    before = _files(out)
    with pytest.raises(SparkleError, match="circular"):
        _export(data["basic"], "vlmevalkit", out, name="my_circular_set")
    assert _files(out) == before
    empty = _write_folder(tmp_path / "empty", [], {})
    with pytest.raises(SparkleError, match="no records"):
        _export(empty, "hf", out)
    assert _files(out) == before
    # A different format replaces the earlier export's files instead of mixing with them.
    _export(data["basic"], "hf", out)
    assert not (out / "test.json").exists() and (out / "data/test-00000-of-00001.parquet").exists()


def test_record_from_row_round_trips_metadata(data: dict[str, Path]) -> None:
    for rec in _records(data["instruct"]) + _records(data["basic"]):
        rebuilt = record_from_row(metadata_columns(rec))
        assert {k: rebuilt[k] for k in META_KEYS} == {k: rec[k] for k in META_KEYS}


def test_cli_export(data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sparkle_vlm.cli.main import main

    out = tmp_path / "cli"
    rc = main(["export", str(data["basic"]), "--format", "llama-factory", "--out", str(out), "--seed", "2"])
    assert rc == 0
    assert "llama-factory, 9 records, 3 images" in capsys.readouterr().out
    assert (out / "dataset_info.json").exists()
    assert (
        main(["export", str(data["basic"]), "--format", "llamafactory", "--out", str(tmp_path / "bad")]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: unknown export format 'llamafactory'") and err.count("\n") == 1
    assert (
        main(
            ["export", str(data["basic"]), "--format", "llava", "--out", str(tmp_path / "x"), "--name", "9x"]
        )
        == 2
    )
    assert "--name" in capsys.readouterr().err
