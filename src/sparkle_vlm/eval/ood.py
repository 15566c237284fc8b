"""Real-image OOD suites of the paper (protocol section 7), read from the authors' published files.

Kamath et al. (EMNLP 2023, github.com/amitakamath/whatsup_vlms) publish one folder (their
``data/``) holding:

=================== ================================= =================== =======================
subset              annotation file                   item form           images
=================== ================================= =================== =======================
What'sUp A          controlled_images_dataset.json    {"image_path",      controlled_images/
                                                      "caption_options"}
What'sUp B          controlled_clevr_dataset.json     (same)              controlled_clevr/
COCO-spatial 1-obj  coco_qa_one_obj.json              [image_id, right,   val2017/{id:012d}.jpg
                                                      wrong]
COCO-spatial 2-obj  coco_qa_two_obj.json              (same)              val2017/
GQA-spatial 1-obj   vg_qa_one_obj.json                (same)              vg_images/{id}.jpg
GQA-spatial 2-obj   vg_qa_two_obj.json                (same)              vg_images/
=================== ================================= =================== =======================

In every file the correct caption comes first, so a generative model that always says "A"
would score 100%: options are shuffled with a permutation drawn per item from
``sample_rng("ood/<subset>", "test", seed, index)``. Each item becomes a canonical MCQ record
(``answer_type`` "mcq", answer = the letter) so the ordinary runner and scorer apply.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.records import make_record
from sparkle_vlm.seeding import sample_rng

#: Bump when the records made from the same files and seed change.
OOD_VERSION = 1
ENV_VAR = "SPARKLE_OOD_DIR"

WHATSUP_URL = "https://github.com/amitakamath/whatsup_vlms"
DRIVE_URL = "https://drive.google.com/drive/u/3/folders/164q6X9hrvP-QYpi3ioSnfMuyHpG5oRkZ"
COCO_VAL_URL = "http://images.cocodataset.org/zips/val2017.zip"

PROMPT_HEAD = "Select the option that correctly describes the image. Options: "
PROMPT_TAIL = "\nRespond with the correct option letter in \\boxed{option}."


@dataclass(frozen=True)
class OODSubset:
    name: str
    task: str
    label: str
    annotation: str
    image_dir: str
    #: "whatsup": list of {"image_path", "caption_options"}; "qa": list of [image_id, right, wrong].
    form: str
    #: How a QA image id becomes a file name inside ``image_dir``.
    image_name: str = "{}.jpg"


SUBSETS: dict[str, OODSubset] = {
    s.name: s
    for s in (
        OODSubset(
            "whatsup-a",
            "whatsup",
            "What'sUp A",
            "controlled_images_dataset.json",
            "controlled_images",
            "whatsup",
        ),
        OODSubset(
            "whatsup-b",
            "whatsup",
            "What'sUp B",
            "controlled_clevr_dataset.json",
            "controlled_clevr",
            "whatsup",
        ),
        OODSubset(
            "coco-spatial-one",
            "coco_spatial",
            "COCO-spatial 1-obj",
            "coco_qa_one_obj.json",
            "val2017",
            "qa",
            "{:012d}.jpg",
        ),
        OODSubset(
            "coco-spatial-two",
            "coco_spatial",
            "COCO-spatial 2-obj",
            "coco_qa_two_obj.json",
            "val2017",
            "qa",
            "{:012d}.jpg",
        ),
        OODSubset(
            "gqa-spatial-one", "gqa_spatial", "GQA-spatial 1-obj", "vg_qa_one_obj.json", "vg_images", "qa"
        ),
        OODSubset(
            "gqa-spatial-two", "gqa_spatial", "GQA-spatial 2-obj", "vg_qa_two_obj.json", "vg_images", "qa"
        ),
    )
}

#: Relation words, most specific first (used for the per-relation breakdown only).
RELATIONS = ("left", "right", "above", "below", "front", "behind", "top", "bottom", "under", "on")


def download_hint() -> str:
    return (
        f"download the What'sUp data folder (JSON files and image archives) from {DRIVE_URL} "
        f"(see {WHATSUP_URL}) and the COCO val2017 images from {COCO_VAL_URL}"
    )


def resolve_ood_dir(ood_dir: str | os.PathLike[str] | None) -> Path:
    """The OOD data folder from ``--ood-dir`` or ``$SPARKLE_OOD_DIR``, or a one-line error saying what to get."""
    raw = ood_dir if ood_dir is not None else os.environ.get(ENV_VAR) or None
    if raw is None:
        raise SparkleError(
            f"--ood-dir: the real-image OOD suites need a local data folder (--ood-dir or "
            f"${ENV_VAR}); {download_hint()}"
        )
    path = Path(raw).expanduser().absolute()
    if not path.is_dir():
        raise SparkleError(f"--ood-dir: {path} does not exist; {download_hint()}")
    return path


def format_prompt(options: list[str]) -> str:
    """The paper's OOD prompt for 2 or 4 options.

    >>> format_prompt(["A dog on a sofa", "A dog under a sofa"])
    'Select the option that correctly describes the image. Options: A: A dog on a sofa. B: A dog under a sofa. \\nRespond with the correct option letter in \\\\boxed{option}.'
    """
    # A caption's own full stop would double the protocol's "{X}." separator.
    body = "".join(
        f"{string.ascii_uppercase[i]}: {opt.strip().removesuffix('.')}. " for i, opt in enumerate(options)
    )
    return PROMPT_HEAD + body + PROMPT_TAIL


def relation_of(caption: str) -> str:
    """The spatial relation a caption names (for the per-relation breakdown).

    >>> relation_of("A mug to the left of a plate")
    'left'
    >>> relation_of("A beer bottle on a armchair")
    'on'
    """
    words = caption.lower().replace("-", " ").split()
    for rel in RELATIONS:
        if rel in words:
            return rel
    return "other"


def _image_rel(subset: OODSubset, root: Path, item: Any) -> str:
    """The record-relative path (to ``root``) of an item's image."""
    if subset.form == "whatsup":
        raw = PurePosixPath(str(item["image_path"]))
        # The authors' paths start with their repo's "data/" folder, which is our root.
        parts = raw.parts[1:] if raw.parts and raw.parts[0] == "data" else raw.parts
        candidate = PurePosixPath(*parts) if parts else raw
        if (root / candidate).is_file():
            return str(candidate)
        return f"{subset.image_dir}/{raw.name}"
    image_id = item[0]
    if isinstance(image_id, str) and image_id.isdigit() and "{:0" in subset.image_name:
        image_id = int(image_id)
    return f"{subset.image_dir}/{subset.image_name.format(image_id)}"


def _item_options(subset: OODSubset, item: Any, index: int, path: Path) -> list[str]:
    try:
        options = list(item["caption_options"]) if subset.form == "whatsup" else [item[1], item[2]]
    except (KeyError, IndexError, TypeError):
        raise SparkleError(f"{path}: item {index} is not in the published {subset.label} form") from None
    if len(options) < 2 or not all(isinstance(o, str) and o.strip() for o in options):
        raise SparkleError(f"{path}: item {index} needs at least two non-empty caption options")
    if len(options) > 26:
        raise SparkleError(f"{path}: item {index} has more than 26 options")
    return options


def load_subset(name: str, root: Path, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Canonical MCQ records of one OOD subset, options shuffled per item (seeded).

    Returns (records, data info for the summary). Images are paths relative to ``root``.
    """
    if name not in SUBSETS:
        raise SparkleError(f"unknown OOD subset {name!r} (known: {', '.join(SUBSETS)})")
    subset = SUBSETS[name]
    ann = root / subset.annotation
    if not ann.is_file():
        raise SparkleError(f"--ood-dir: {ann} not found ({subset.label}); {download_hint()}")
    raw_bytes = ann.read_bytes()
    try:
        items = json.loads(raw_bytes)
    except ValueError as exc:
        raise SparkleError(f"{ann}: not valid JSON ({exc})") from None
    if not isinstance(items, list):
        raise SparkleError(f"{ann}: expected a JSON list of items")
    records: list[dict[str, Any]] = []
    missing: list[str] = []
    for index, item in enumerate(items):
        options = _item_options(subset, item, index, ann)
        try:
            image = _image_rel(subset, root, item)
        except (KeyError, IndexError, TypeError, ValueError):
            raise SparkleError(f"{ann}: item {index} has no usable image reference") from None
        if not (root / image).is_file():
            missing.append(image)
            continue
        rng = sample_rng(f"ood/{name}", "test", seed, index)
        perm = [int(p) for p in rng.permutation(len(options))]
        choices = [options[p] for p in perm]
        letter = string.ascii_uppercase[perm.index(0)]
        records.append(
            make_record(
                tag=name,
                task=subset.task,
                version=OOD_VERSION,
                split="test",
                seed=seed,
                index=index,
                q=0,
                images=[image],
                prompt=format_prompt(choices),
                answer=letter,
                choices=choices,
                answer_type="mcq",
                scene={"source": f"whatsup_vlms/{subset.annotation}", "item": index},
                query={"captions": options},
                source=f"ood/{name}",
                with_answer=False,
                meta={
                    "subset": name,
                    "relation": relation_of(options[0]),
                    "permutation": perm,
                    "options": len(options),
                },
            )
        )
    if missing:
        raise SparkleError(
            f"--ood-dir: {len(missing)} image(s) of {subset.label} missing under {root}, "
            f"first {missing[0]}; {download_hint()}"
        )
    info = {
        "kind": "ood",
        "subset": name,
        "annotation": subset.annotation,
        "annotation_sha256": hashlib.sha256(raw_bytes).hexdigest(),
        "ood_version": OOD_VERSION,
        "seed": seed,
    }
    return records, info
