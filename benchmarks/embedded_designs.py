"""Which embedded-model design learns the basic skills? A plain training loop, one JSON line per eval.

    python benchmarks/embedded_designs.py --steps 300                          # `small` as shipped
    python benchmarks/embedded_designs.py --tower levit --image-size 256 --steps 1500
    python benchmarks/embedded_designs.py --order last --device cuda --steps 2400
    python benchmarks/embedded_designs.py --tower poolformer --white one --warmup-stages read:600

The demo trains through TRL (benchmarks/embedded_learning.py measures that path); this loop
trades it for speed and for variants the builder does not offer, to compare designs: the same
data as the demo (``basic-train`` practice MCQ + Sparkle-Instruct, generated here), the same
``LlavaForConditionalGeneration`` and tokenizer, AdamW with warmup + cosine, loss on the answer
tokens. Variants:

- ``--tower clip`` (the shipped ViT; ``--spec`` overrides embedded-spec fields) or ``levit``
  (LeViT's convolutional stem as the vision tower: its output, 16 x stride, is the image tokens);
- ``--tower regnet`` / ``poolformer``: transformers' FastVLM (``FastVlmForConditionalGeneration``,
  whose projector takes a tower's 4D feature map, flattened) with a RegNet-X or a PoolFormer
  tower (dense 3x3 stride-1 first embedding; ``--widths`` sets the stride-2 stages, ``--vision``
  overrides config fields); ``--white one`` maps white to 1 instead of 0, so the zero padding of
  the convolutions marks the image border (the only source of absolute position in a CNN);
- ``--warmup-stages read:N,where:M``: 1-disc stages first ("What is the label of the
  object?" -> `` N3``; "Where is the object located?" with the 9 region options -> a letter),
  each scored on 200 held-out scenes;
- ``--order first`` (image, then question, as the shipped chat template) or ``last`` (question,
  then image, so the answer is predicted at the last image token);
- ``--tower cnn-max`` / ``cnn-conv``: a plain CNN (3x3 conv + BatchNorm + ReLU per stage, max-pool
  or strided-conv downsampling; not a library class, for diagnosis) swapped into FastVLM;
- ``--pretrain-tower N``: N steps of vision-tower pretraining before anything else, on per-token
  targets computed from the demo's own scene records (``--pretrain-target dense``: label of the
  disc centred in each token's cell, its coordinates, the token's row and column) or on 1-disc
  labels through a mean-pooled head (``label``); the head is dropped afterwards.
  ``--pretrain-lr`` is its learning rate; ``--align-projector N`` then trains the projector
  alone to map a disc's token onto the decoder's embeddings of its label plus its region letter. ``--freeze-tower`` keeps the tower fixed (and in eval
  mode) after that; ``--only-tasks`` restricts the demo's rows to some tasks (e.g.
  ``localization``);
- lookup stages for ``--warmup-stages``: ``findK`` (K discs, "Where is the N3 object located?"
  with the region options), ``tailK`` (the same with the prompt ending at the asked label, a
  one-hop lookup) and ``recallK`` (the same scene written out as text, no image:
  "N3 A N1 F ... Where is the object N1" -> " F");
- ``--oracle-tokens label-region|label-pos`` (diagnosis): on k-disc stages the projector's output
  is replaced by exact text embeddings of each disc's label (+ its region letter or a learned
  per-cell vector); ``--code-projector N`` trains the projector's first layer as a per-token
  label / region code and sets its second layer to those embeddings (the same match, learned).

- ``--rationale`` (seventh round): basic MCQ (and, unless ``--basic-only``, Sparkle-Instruct)
  answers first write the cells of the named labels (``--rationale-format cell``: " N2 18", as
  ``sparkle train sft --rationale`` does; ``pair``: " N2 (1, 8)"), scored by greedy decoding plus
  teacher-forced accuracy per kind of token; ``--code-xy`` adds the cell digits to the tower's
  dense targets and code; ``--freeze-embeddings`` keeps the decoder's token embeddings fixed.

Scored on the basic MCQ test set (``basic-test``, 600 questions) by the option letter with the
highest logit at the answer position (no generation, so nothing is unparsable). Chance: 12.5 /
33.3 / 11.1 % (direction / distance / localization). docs/embedded-model.md records the runs.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from embedded_learning import _generate  # type: ignore[import-not-found]
from sparkle_vlm.train.tower import cell_of as _cell


def _assemble(
    config_cls: Any,
    model_cls: Any,
    tokenizer: Any,
    spec: Any,
    seed: int,
    vision: dict[str, Any],
    grid: int,
    **extra: Any,
) -> tuple[Any, Any, int]:
    """A LLaVA-family model: tower config ``vision`` -> MLP projector -> the spec's Llama decoder.

    Returns the model, the embedded image processor and the number of image tokens (``grid``
    squared).
    """
    import torch

    from sparkle_vlm.models import embedded as E

    config = config_cls(
        vision_config=vision,
        text_config=E.build_config(spec, tokenizer).text_config.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(E.IMAGE),
        image_seq_length=grid * grid,
        tie_word_embeddings=True,
        **extra,
    )
    torch.manual_seed(seed)
    return model_cls(config), E.build_processor(spec, tokenizer).image_processor, grid * grid


def _levit(tokenizer: Any, spec: Any, seed: int) -> tuple[Any, Any, int]:
    """LLaVA with LeViT's conv stem as the tower (hidden state 0: the stem output, 16 x stride)."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    vision = {
        "model_type": "levit",
        "image_size": spec.image_size,
        "patch_size": 16,
        "hidden_sizes": [spec.vision_hidden, 32, 32],
        "depths": [1, 0, 0],
        "num_attention_heads": [spec.vision_heads, 2, 2],
        "key_dim": [16, 16, 16],
        "attention_ratio": [2, 2, 2],
        "mlp_ratio": [2, 2, 2],
        "hidden_size": spec.vision_hidden,  # LLaVA's projector reads the tower width here
    }
    return _assemble(
        LlavaConfig,
        LlavaForConditionalGeneration,
        tokenizer,
        spec,
        seed,
        vision,
        spec.image_size // 16,
        vision_feature_layer=-4,
        vision_feature_select_strategy="full",
    )


def _fastvlm(tokenizer: Any, spec: Any, seed: int, vision: dict[str, Any], grid: int) -> tuple[Any, Any, int]:
    """FastVLM (conv tower -> MLP projector -> decoder): the tower's last feature map, flattened,
    is the image tokens (``grid`` squared of them)."""
    from transformers import FastVlmConfig, FastVlmForConditionalGeneration

    return _assemble(FastVlmConfig, FastVlmForConditionalGeneration, tokenizer, spec, seed, vision, grid)


def _conv_tower(
    kind: str, image_size: int, widths: list[int], overrides: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """A convolutional tower config and its output grid side.

    ``regnet``: RegNet-X, 3x3 stride-2 stem, a first stage at the stem's resolution, then one
    stride-2 stage per entry of ``widths``. ``poolformer``: PoolFormer with a dense 3x3 stride-1
    first embedding and dense 3x3 stride-2 embeddings between stages (one per entry of
    ``widths``), layer scale off.
    """
    stages = len(widths)
    grid = image_size // 2 ** (stages + 1) if kind == "regnet" else image_size // 2**stages
    if kind == "resnet":
        # transformers' ResNet: a 7x7 stride-2 conv + max-pool stem (stride 4), basic blocks, a first
        # stage at the stem's resolution, then one stride-2 stage per further entry of ``widths``;
        # the last stage is 2 blocks deep so its tokens see the image border.
        vision = {
            "model_type": "resnet",
            "embedding_size": widths[0],
            "hidden_sizes": widths,
            "depths": [1] * (stages - 1) + [2],
            "layer_type": "basic",
            "downsample_in_first_stage": False,
        }
        return {**vision, "hidden_size": widths[-1], **overrides}, image_size // (4 * 2 ** (stages - 1))
    if kind == "convnext":
        # A 2x2 stride-2 stem, a first stage at its resolution, then the stride-2 stages; 7x7
        # depthwise convs see far (the border, hence the region) and LayerNorm acts the same in
        # train and eval mode (no BatchNorm statistics to freeze).
        vision = {
            "model_type": "convnext",
            "patch_size": 2,
            "num_stages": stages,
            "hidden_sizes": widths,
            "depths": [1] * (stages - 1) + [2],
            "layer_scale_init_value": 0.0,
        }
        return {**vision, "hidden_size": widths[-1], **overrides}, image_size // 2**stages
    if kind == "regnet":
        vision: dict[str, Any] = {
            "model_type": "regnet",
            "embedding_size": 16,
            "hidden_sizes": [widths[0], *widths],
            "depths": [1] * (stages + 1),
            "groups_width": 16,
            "layer_type": "x",
            "downsample_in_first_stage": False,
        }
    else:
        vision = {
            "model_type": "poolformer",
            "hidden_sizes": [widths[0] // 2, *widths],
            "depths": [1] * (stages + 1),
            "patch_sizes": [3] * (stages + 1),
            "strides": [1] + [2] * stages,
            "padding": [1] * (stages + 1),
            "num_encoder_blocks": stages + 1,
            "mlp_ratio": 2.0,
            "use_layer_scale": False,
        }
    # FastVLM's projector reads the tower width from ``hidden_size``.
    return {**vision, "hidden_size": widths[-1], **overrides}, grid


def _plain_cnn(widths: list[int], down: str, extra: int = 0) -> Any:
    """A plain CNN tower (not a library class; for comparison only): 3x3 conv + BatchNorm + ReLU
    per stage, the first at full resolution, each later stage after a 2x2 max-pool (``down="max"``)
    or a 3x3 stride-2 conv (``"conv"``). Returns a module FastVLM can call as its vision tower."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    layers: list[Any] = []
    cin = 3
    for i, w in enumerate([widths[0] // 2, *widths]):
        if i:
            layers += (
                [torch.nn.MaxPool2d(2)]
                if down == "max"
                else [torch.nn.Conv2d(cin, cin, 3, 2, 1), torch.nn.BatchNorm2d(cin), torch.nn.ReLU()]
            )
        layers += [torch.nn.Conv2d(cin, w, 3, 1, 1), torch.nn.BatchNorm2d(w), torch.nn.ReLU()]
        cin = w
    # More 3x3 convs at the last resolution widen the receptive field: a token can only tell
    # its region (its distance to the image border) if the zero padding is in view.
    for _ in range(extra):
        layers += [torch.nn.Conv2d(cin, cin, 3, 1, 1), torch.nn.BatchNorm2d(cin), torch.nn.ReLU()]

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(*layers)

        def forward(self, pixel_values: Any, **_: Any) -> Any:
            return BaseModelOutput(last_hidden_state=self.net(pixel_values))

    return Tower()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--tower",
        choices=("clip", "levit", "regnet", "poolformer", "convnext", "resnet", "cnn-max", "cnn-conv"),
        default="clip",
    )
    ap.add_argument("--widths", default="32,64,128,128", help="conv towers: widths of the stride-2 stages")
    ap.add_argument("--vision", default="{}", help="conv towers: JSON overrides of the tower config")
    ap.add_argument(
        "--projector-gain", type=float, default=1.0, help="scale of the projector's output layer at init"
    )
    ap.add_argument(
        "--connector-lr-mult", type=float, default=1.0, help="learning-rate multiple for tower + projector"
    )
    ap.add_argument("--white", choices=("zero", "one"), default="zero", help="pixel value of white")
    ap.add_argument("--order", choices=("first", "last"), default="first")
    ap.add_argument("--image-size", type=int, default=None, help="processor side (default: the spec's)")
    ap.add_argument("--spec", default="{}", help="JSON overrides of the `small` embedded spec")
    ap.add_argument("--practice-images", type=int, default=3000)
    ap.add_argument("--instruct-images", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument(
        "--warmup-stages",
        default="",
        help="1-disc stages before the demo's data, e.g. read:400,where:400 (label / 3x3 region); "
        "read@1.5:200 places the disc within +-1.5 of the centre",
    )
    ap.add_argument(
        "--one-disc-jitter",
        type=float,
        default=4.5,
        help="warm-up stages: the disc lies within +-J frame units of the centre (4.5: anywhere)",
    )
    ap.add_argument(
        "--pretrain-tower",
        type=int,
        default=0,
        help="steps of vision-tower pretraining before everything (--pretrain-target says on what)",
    )
    ap.add_argument(
        "--pretrain-target",
        choices=("dense", "label"),
        default="dense",
        help="tower pretraining: per-token targets on the demo's scenes, or 1-disc labels (mean-pooled head)",
    )
    ap.add_argument("--only-tasks", default="", help="train only on rows of these tasks, e.g. localization")
    ap.add_argument(
        "--extra-convs", type=int, default=0, help="cnn towers: 3x3 convs added at the last resolution"
    )
    ap.add_argument(
        "--dense-region",
        action="store_true",
        help="dense pretraining also classifies each disc's 3x3 region (so the tower's features hold it linearly)",
    )
    ap.add_argument("--pretrain-lr", type=float, default=1e-3, help="learning rate of the tower pretraining")
    ap.add_argument(
        "--align-projector",
        type=int,
        default=0,
        help="steps training the projector alone (tower frozen) to map a disc's token onto the sum of "
        "the decoder's embeddings of its label and its region's letter (empty tokens onto 0)",
    )
    ap.add_argument(
        "--oracle-tokens",
        choices=("off", "label-region", "label-pos", "label-region-xy"),
        default="off",
        help="k-disc stages only (diagnosis): replace the projector's output by exact text embeddings, "
        "a disc's cell = embed(label) + embed(region letter) (label-region) or embed(label) + a learned "
        "per-cell vector (label-pos); empty cells 0 (label-region) or their cell vector; label-region-xy "
        "adds x * u + y * v (u, v fixed random vectors) and covers the demo's rows too",
    )
    ap.add_argument(
        "--code-projector",
        type=int,
        default=0,
        help="steps training the projector's first layer (tower frozen) as a per-token one-vs-rest "
        "code (label, region); its second layer is then set to the decoder's embeddings of those "
        "labels and region letters, so a disc's image token starts as embed(label) + embed(letter)",
    )
    ap.add_argument(
        "--code-loss",
        choices=("bce", "mse"),
        default="bce",
        help="code stage: one-vs-rest BCE on linear_1's logits, or MSE of its GELU output to the 0/1 code "
        "(a true unit then sits near 1, so every disc token gets the same scale)",
    )
    ap.add_argument(
        "--pack",
        action="store_true",
        help="train on one multi-turn conversation per image (all its questions, the image once), "
        "loss on every answer: more answers per forward pass",
    )
    ap.add_argument(
        "--rationale",
        action="store_true",
        help="basic MCQ rows answer with the coordinates of the labels the question names, then the "
        'letter (" N2 (1, 8), N1 (8, 5). \\boxed{H}", floor of the frame coordinates); scored by greedy '
        "decoding, plus teacher-forced accuracy of each part",
    )
    ap.add_argument(
        "--rationale-format",
        choices=("pair", "cell"),
        default="pair",
        help='pair: " N2 (1, 8)"; cell: " N2 18" (tokens " 1", "8": the x digit is predicted at the label '
        "itself, a one-hop lookup)",
    )
    ap.add_argument(
        "--code-xy",
        action="store_true",
        help="dense pretraining also classifies each disc's floor(x) and floor(y); the code gains their "
        'units, mapped onto the embeddings of "1" (x) and " 8" (y), the tokens the rationale writes',
    )
    ap.add_argument(
        "--basic-only", action="store_true", help="train on the basic MCQ rows only (no instruct)"
    )
    ap.add_argument(
        "--freeze-embeddings",
        action="store_true",
        help="keep the decoder's token embeddings (and the tied output head) at their random init, so "
        "a learned code stays aligned with the words it was set to",
    )
    ap.add_argument("--freeze-tower", action="store_true", help="keep the tower fixed after pretraining")
    ap.add_argument(
        "--freeze-projector", action="store_true", help="keep the projector fixed too (e.g. the learned code)"
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--max-time", type=float, default=float("inf"), help="stop after this many seconds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="data folder (default: a temporary folder)")
    args = ap.parse_args()

    import torch
    from PIL import Image

    from sparkle_vlm.models import embedded as E
    from sparkle_vlm.records import read_jsonl

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    overrides = json.loads(args.spec)
    if args.image_size:
        overrides["image_size"] = args.image_size
    # The rounds before the sixth ran on `small` as it was then: a 3-layer CLIP ViT.
    spec = E.spec_for("small", **{"tower": "vit", "vision_layers": 3, **overrides})
    tokenizer = E.build_tokenizer()
    if args.tower == "levit":
        model, image_processor, n_image = _levit(tokenizer, spec, args.seed)
    elif args.tower in ("regnet", "poolformer", "convnext", "resnet", "cnn-max", "cnn-conv"):
        widths = [int(w) for w in args.widths.split(",")]
        kind = "poolformer" if args.tower.startswith("cnn") else args.tower
        vision, grid = _conv_tower(kind, spec.image_size, widths, json.loads(args.vision))
        model, image_processor, n_image = _fastvlm(tokenizer, spec, args.seed, vision, grid)
        if args.tower.startswith("cnn"):
            model.model.vision_tower = _plain_cnn(widths, args.tower[4:], args.extra_convs)
    else:
        model = E.build_model(spec, tokenizer, args.seed)
        image_processor, n_image = E.build_processor(spec, tokenizer).image_processor, spec.image_tokens
    if args.projector_gain != 1.0:  # image tokens start small next to text embeddings
        with torch.no_grad():
            model.model.multi_modal_projector.linear_2.weight.mul_(args.projector_gain)
    if args.white == "one":  # ImageNet-style centring: white 1, black -1, zero padding visible
        image_processor.image_mean, image_processor.image_std = [0.5] * 3, [0.5] * 3
    model.to(device)

    data = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sparkle-designs-"))
    t0 = time.perf_counter()
    _generate("basic-train", args.practice_images, args.seed, data / "basic-train", None)
    _generate("instruct", args.instruct_images, args.seed, data / "instruct", None)
    _generate("basic-test", 200, 0, data / "basic-test", None)

    def tid(token: str) -> int:
        return int(tokenizer.convert_tokens_to_ids(token))

    user, eos, assistant, image_tok = tid(E.USER), tid(E.EOS), tid(E.ASSISTANT), tid(E.IMAGE)

    def prompt_ids(question_ids: list[int]) -> list[int]:
        image = [image_tok] * n_image
        if args.order == "first":
            return [user, *image, *question_ids, eos, assistant]
        return [user, *question_ids, eos, assistant, *image]

    pixels: dict[str, Any] = {}
    # key -> per-cell label (0: none), region index, (x, y) / frame
    oracle: dict[str, tuple[list[int], list[int], list[tuple[float, float]]]] = {}

    def _one_disc(kind: str, n: int, split: int) -> list[Any]:
        """1-disc scenes: "read" asks the label, "where" its 3x3 region; ``findK``: K discs
        (labels drawn from N1..N5, at least 1.5 frame units apart), "Where is the N3 object
        located?" in the basic MCQ's words.

        The disc lies within +-J frame units of the centre: J is ``--one-disc-jitter``, or the
        stage's own when it is written ``read@J`` (a curriculum can widen it stage by stage).
        """
        import numpy as np

        from sparkle_vlm import geometry
        from sparkle_vlm.render.raster import render_points
        from sparkle_vlm.scene import Node, Scene
        from sparkle_vlm.tasks import templates

        task, _, stage_jitter = kind.partition("@")
        jitter = float(stage_jitter) if stage_jitter else args.one_disc_jitter
        # Stages at their own jitter draw their own scenes (plain stages keep their earlier seeds).
        extra = [round(jitter * 100)] if stage_jitter else []
        rng = np.random.default_rng([11, split, args.seed, len(task), *extra])
        # ``tailK``: as ``findK``, but the prompt ends with the asked label, so the answer is
        # predicted at the label token itself (a one-hop lookup: no copy to an answer position).
        # ``recallK``: text only, the same lookup with the scene written out ("N3 A N1 F ... Where
        # is the object N1" -> " F", the letter of N1's region): can the decoder learn it at all?
        prefix = next((p for p in ("find", "tail", "recall") if task.startswith(p)), "")
        discs = int(task[len(prefix) :]) if prefix else 1
        if discs > 1:  # k-disc stages draw their own scenes
            rng = np.random.default_rng([11, split, args.seed, len(task), discs])
        letters = [chr(ord("A") + j) for j in range(len(geometry.REGIONS))]
        options = templates.options_text(list(geometry.REGIONS))
        rows = []
        for i in range(n):
            if discs == 1:  # the draws of the original 1-disc stages, kept for their logged runs
                labels = [int(rng.integers(1, 6))]
                points = [(float(v), float(w)) for v, w in [5.0 + rng.uniform(-jitter, jitter, size=2)]]
            else:
                labels = [int(v) + 1 for v in rng.choice(5, size=discs, replace=False)]
                points = []
                while len(points) < discs:  # discs at least 1.5 frame units apart
                    px, py = (float(v) for v in 5.0 + rng.uniform(-jitter, jitter, size=2))
                    if all((px - qx) ** 2 + (py - qy) ** 2 >= 1.5**2 for qx, qy in points):
                        points.append((px, py))
            k = labels[0]  # the disc the question is about
            mark = [letters[geometry.REGIONS.index(geometry.region(px, py))] for px, py in points]
            key: str | None = f"{kind}-{split}-{i}"
            if prefix == "recall":
                order = [int(j) for j in rng.permutation(discs)]
                context = " ".join(f"N{labels[j]} {mark[j]}" for j in order)
                rec = {
                    "q": f" {context}\nWhere is the object N{k}",
                    "a": f" {mark[0]}",
                    "choices": [f" {c}" for c in letters],
                }
                key = None  # text only
            else:
                grid = int(round(n_image**0.5))
                cell_label, cell_region = [0] * n_image, [0] * n_image
                cell_xy = [(0.0, 0.0)] * n_image
                for lab, (px, py), m in zip(labels, points, mark, strict=True):
                    row, col = _cell(px, py, 10, grid)
                    cell_label[row * grid + col], cell_region[row * grid + col] = lab, letters.index(m)
                    cell_xy[row * grid + col] = (px / 10, py / 10)
                oracle[str(key)] = (cell_label, cell_region, cell_xy)
                nodes = tuple(Node(f"N{lab}", px, py) for lab, (px, py) in zip(labels, points, strict=True))
                image = render_points(Scene(nodes).to_dict(), 448).convert("RGB")
                pixels[str(key)] = image_processor(images=[image], return_tensors="pt")["pixel_values"][
                    0
                ].half()
                if task == "read":
                    rec = {
                        "q": "What is the label of the object?",
                        "a": f" N{k}",
                        "choices": [f" N{j}" for j in range(1, 6)],
                    }
                else:
                    if prefix == "find":
                        question = (
                            f"Where is the N{k} object located?\nOptions: {options}\n"
                            "Respond with the correct option letter in \\boxed{option}."
                        )
                    elif prefix == "tail":
                        question = f"Options: {options}\nWhere is the object N{k}"
                    else:
                        question = f"Where is the object located?\nOptions: {options}"
                    rec = {"q": question, "a": mark[0], "choices": letters}
            q = tokenizer(rec["q"], add_special_tokens=False)["input_ids"]
            a = tokenizer(rec["a"], add_special_tokens=False)["input_ids"] + [eos]
            if prefix == "recall":
                prompt = [user, *q]
            elif prefix == "tail":
                prompt = [user, *[image_tok] * n_image, *q]
            else:
                prompt = prompt_ids(q)
            rec["choice_ids"] = [
                tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in rec["choices"]
            ]
            rec["answer_index"] = rec["choices"].index(rec["a"])
            rows.append((prompt, a, key, rec))
        return rows

    def one(text: str) -> int:
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(got) == 1, (text, got)
        return int(got[0])

    def rationale_ids(rec: dict[str, Any]) -> tuple[list[int], list[str]]:
        """ " N2 (1, 8), N1 (8, 5). \\boxed{H}" (``pair``) or " N2 18, N1 85. ..." (``cell``, as
        ``sparkle_vlm.train.rationale`` writes it): the named labels, each with its cell digits."""
        from sparkle_vlm.train.rationale import cell_digits, named_labels

        scene = rec["scene"]
        frame = float(scene.get("frame", 10))
        nodes = {n["label"]: n for n in scene["nodes"]}
        ids: list[int] = []
        kinds: list[str] = []
        for j, lab in enumerate(named_labels(rec["query"])):
            fx, fy = cell_digits(float(nodes[lab]["x"]), float(nodes[lab]["y"]), frame)
            if j:
                ids.append(one(","))
                kinds.append("punct")
            if args.rationale_format == "cell":  # " N2 18": x right at the label, y right after it
                ids += [one(f" {lab}"), one(f" {fx}"), one(str(fy))]
                kinds += ["label", "x", "y"]
            else:
                ids += [one(f" {lab}"), one(" ("), one(str(fx)), one(","), one(f" {fy}"), one(")")]
                kinds += ["label", "punct", "x", "punct", "y", "punct"]
        if rec.get("source") != "basic_mcq":  # Sparkle-Instruct: the rationale, then the direct answer
            tail = tokenizer(". " + rec["answer"], add_special_tokens=False)["input_ids"]
            return ids + tail + [eos], kinds + ["punct"] * (len(tail) + 1)
        ids += [one("."), one(" \\"), one("boxed"), one("{"), one(rec["answer"]), one("}"), eos]
        kinds += ["punct"] * 4 + ["letter", "punct", "punct"]
        return ids, kinds

    def encode(rec: dict[str, Any], folder: Path) -> tuple[list[int], list[int], str, dict[str, Any]]:
        question = rec["messages"][0]["content"][1]["text"]
        question_ids = tokenizer(question, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(rec["answer"], add_special_tokens=False)["input_ids"] + [eos]
        if args.rationale and rec.get("query") and rec["task"] != "description":
            answer_ids, kinds = rationale_ids(rec)
            rec = {**rec, "kinds": kinds}
        prompt = prompt_ids(question_ids)
        path = str(folder / rec["images"][0])
        if path not in pixels:
            with Image.open(path) as im:
                pv = image_processor(images=[im.convert("RGB")], return_tensors="pt")["pixel_values"][0]
            pixels[path] = pv.half()  # halves the cache; exact for these few gray levels
        return prompt, answer_ids, path, rec

    train = [encode(r, data / "basic-train") for r in read_jsonl(data / "basic-train" / "data.jsonl")]
    if not args.basic_only:
        train += [encode(r, data / "instruct") for r in read_jsonl(data / "instruct" / "data.jsonl")]
    if args.only_tasks:
        train = [row for row in train if row[3]["task"] in args.only_tasks.split(",")]
    if args.pack:
        by_image: dict[str, list[Any]] = {}
        for row in train:
            by_image.setdefault(row[2], []).append(row)
        packed = []
        for path, turns in by_image.items():
            rest: list[int] = []
            keep: list[int] = []
            for j, (p, a, _, _) in enumerate(turns):
                # p is [user, image..., question, eos, assistant]: the image comes once, up front
                question = [user, *p[1 + n_image :]] if j else p[1 + n_image :]
                rest += question + a
                keep += [0] * len(question) + [1] * len(a)
            packed.append(
                (
                    [user, *[image_tok] * n_image],
                    rest,
                    path,
                    {"label_mask": keep, "scene": turns[0][3]["scene"]},
                )
            )
        train = packed
    test = [encode(r, data / "basic-test") for r in read_jsonl(data / "basic-test" / "data.jsonl")]
    stages = [(k, int(n)) for k, n in (x.split(":") for x in args.warmup_stages.split(",") if x)]
    one_disc = {kind: (_one_disc(kind, 3000, 0), _one_disc(kind, 200, 1)) for kind, _ in stages}
    prep_s = time.perf_counter() - t0

    batch_keys: list[str] = []

    def collate(samples: list[Any]) -> tuple[Any, Any, Any, Any]:
        length = max(len(p) + len(a) for p, a, _, _ in samples)
        ids = torch.full((len(samples), length), tokenizer.pad_token_id)
        labels = torch.full((len(samples), length), -100)
        mask = torch.zeros((len(samples), length), dtype=torch.long)
        for i, (p, a, _, rec) in enumerate(samples):
            seq = p + a
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            labels[i, len(p) : len(seq)] = torch.tensor(a)
            if "label_mask" in rec:  # packed conversations: only the answers carry loss
                keep = torch.tensor(rec["label_mask"], dtype=torch.bool)
                labels[i, len(p) : len(seq)][~keep] = -100
        if samples[0][2] is None:  # text-only rows (``recallK``)
            return ids.to(device), mask.to(device), labels.to(device), None
        batch_keys[:] = [s[2] for s in samples]
        pv = torch.stack([pixels[s[2]] for s in samples]).float()
        return ids.to(device), mask.to(device), labels.to(device), pv.to(device)

    letters = [tid(c) for c in "ABCDEFGHI"]
    # " N3" (with its space) is how questions name a label.
    label_ids = [tokenizer(f" N{j}", add_special_tokens=False)["input_ids"][0] for j in range(1, 13)]

    @torch.no_grad()
    def evaluate() -> dict[str, float]:
        model.eval()
        hits: dict[str, int] = {}
        totals: dict[str, int] = {}
        for i in range(0, len(test), 64):
            chunk = test[i : i + 64]
            ids, mask, _, pv = collate(chunk)
            logits = model(input_ids=ids, attention_mask=mask, pixel_values=pv).logits
            for j, (p, _, _, rec) in enumerate(chunk):
                k = len(rec["choices"])
                pred = "ABCDEFGHI"[int(logits[j, len(p) - 1, letters[:k]].argmax())]
                hits[rec["task"]] = hits.get(rec["task"], 0) + int(pred == rec["answer"])
                totals[rec["task"]] = totals.get(rec["task"], 0) + 1
        model.train()
        return {t: round(hits[t] / totals[t], 3) for t in sorted(totals)}

    @torch.no_grad()
    def evaluate_rationale() -> dict[str, Any]:
        """Greedy decoding of the test rows (the letter read from ``\\boxed{X}``; none: unparsed),
        and teacher-forced accuracy of each kind of rationale token (label, x, y, letter) per task."""
        import re

        model.eval()
        hits: dict[str, int] = {}
        unparsed: dict[str, int] = {}
        totals: dict[str, int] = {}
        forced: dict[str, list[int]] = {}
        for i in range(0, len(test), 64):
            chunk = test[i : i + 64]
            ids, mask, _, pv = collate(chunk)
            logits = model(input_ids=ids, attention_mask=mask, pixel_values=pv).logits
            for j, (p, a, _, rec) in enumerate(chunk):
                pred = logits[j, len(p) - 1 : len(p) - 1 + len(a)].argmax(-1).tolist()
                for kind, want, got in zip(rec["kinds"], a, pred, strict=True):
                    if kind != "punct":
                        cell = forced.setdefault(f"{rec['task']}/{kind}", [0, 0])
                        cell[0] += int(want == got)
                        cell[1] += 1
            seqs = [list(p) for p, _, _, _ in chunk]
            done = [False] * len(chunk)
            for _ in range(32):
                rows = [(s_, [], k, r) for s_, (_, _, k, r) in zip(seqs, chunk, strict=True)]
                ids, mask, _, pv = collate(rows)
                logits = model(input_ids=ids, attention_mask=mask, pixel_values=pv).logits
                for j in range(len(chunk)):
                    if not done[j]:
                        nxt = int(logits[j, len(seqs[j]) - 1].argmax())
                        seqs[j].append(nxt)
                        done[j] = nxt == eos
                if all(done):
                    break
            for j, (p, _, _, rec) in enumerate(chunk):
                text = tokenizer.decode(seqs[j][len(p) :], skip_special_tokens=True)
                m = re.search(r"boxed\{([A-I])\}", text)
                t = rec["task"]
                totals[t] = totals.get(t, 0) + 1
                hits[t] = hits.get(t, 0) + int(bool(m) and m.group(1) == rec["answer"])
                unparsed[t] = unparsed.get(t, 0) + int(not m)
                if i == 0 and j < 3:
                    print(json.dumps({"sample": text, "answer": rec["answer"]}), flush=True)
        model.train()
        return {
            "accuracy": {t: round(hits[t] / totals[t], 3) for t in sorted(totals)},
            "unparsed": {t: round(unparsed[t] / totals[t], 3) for t in sorted(totals)},
            "forced": {k: round(v[0] / v[1], 3) for k, v in sorted(forced.items())},
        }

    @torch.no_grad()
    def evaluate_one_disc(rows: list[Any]) -> float:
        model.eval()
        hits = 0
        for i in range(0, len(rows), 64):
            chunk = rows[i : i + 64]
            ids, mask, _, pv = collate(chunk)
            logits = model(input_ids=ids, attention_mask=mask, pixel_values=pv).logits
            for j, (p, _, _, rec) in enumerate(chunk):
                hits += int(int(logits[j, len(p) - 1, rec["choice_ids"]].argmax()) == rec["answer_index"])
        model.train()
        return round(hits / len(rows), 3)

    # The tower and projector can learn at a multiple of the decoder's rate (--connector-lr-mult).
    image_side = [
        p for n, p in model.named_parameters() if "vision_tower" in n or "multi_modal_projector" in n
    ]
    ids_image_side = {id(p) for p in image_side}
    groups = [
        {"params": image_side, "mult": args.connector_lr_mult},
        {"params": [p for p in model.parameters() if id(p) not in ids_image_side], "mult": 1.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.0)

    def train_step(rows: list[Any], generator: Any) -> Any:
        """One optimizer step on a random batch of ``rows``; returns the loss."""
        idx = torch.randint(0, len(rows), (args.batch_size,), generator=generator)
        ids, mask, labels, pv = collate([rows[int(i)] for i in idx])
        loss = model(input_ids=ids, attention_mask=mask, pixel_values=pv, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def dense_targets(rows: list[Any]) -> tuple[list[str], Any, Any, Any]:
        """Per-token targets from the scene records: the label of the disc centred in each token's
        cell (0: none), that disc's frame coordinates / frame, and each token's own row and column."""
        grid = int(round(n_image**0.5))
        seen: dict[str, Any] = {}
        for _, _, path, rec in rows:
            seen.setdefault(path, rec["scene"])
        keys = list(seen)
        label = torch.zeros(len(keys), grid, grid, dtype=torch.long)
        xy = torch.zeros(len(keys), 2, grid, grid)
        for i, key in enumerate(keys):
            scene = seen[key]
            frame = float(scene.get("frame", 10))
            for node in scene["nodes"]:
                row, col = _cell(node["x"], node["y"], frame, grid)
                label[i, row, col] = int(node["label"][1:])
                xy[i, :, row, col] = torch.tensor([node["x"] / frame, node["y"] / frame])
        return keys, label, xy, grid

    def disc_regions(label: Any, xy: Any) -> Any:
        """Index in ``geometry.REGIONS`` of the disc centred in each cell of ``dense_targets``; -1 if none."""
        from sparkle_vlm import geometry

        region = torch.full_like(label, -1)
        for i, r, c in torch.nonzero(label).tolist():
            x, y = (float(v) * 10 for v in xy[i, :, r, c])
            region[i, r, c] = geometry.REGIONS.index(geometry.region(x, y))
        return region

    def floor_cells(label: Any, xy: Any) -> tuple[Any, Any]:
        """floor(x), floor(y) (0..9) of the disc centred in each cell of ``dense_targets``; -1 if none."""
        f = (xy * 10).floor().long().clamp(0, 9)
        none = label == 0
        return f[:, 0].masked_fill(none, -1), f[:, 1].masked_fill(none, -1)

    def pretrain_tower(tower: Any, rows: list[Any], held: list[Any], generator: Any) -> None:
        """Teach the tower, before anything else, what each token holds: a dense per-token head
        (label of the disc centred there, its coordinates, the token's row and column), trained on
        the demo's own scenes; the head is dropped afterwards."""
        keys, label, xy, grid = dense_targets(rows)
        hkeys, hlabel, hxy, _ = dense_targets(held)
        region, hregion = disc_regions(label, xy), disc_regions(hlabel, hxy)
        with torch.no_grad():
            width = tower(pixels[keys[0]][None].float().to(device)).last_hidden_state.shape[1]
        n_out = 13 + 2 + 2 * grid
        n_region = 9 if args.dense_region else 0
        head = torch.nn.Conv2d(width, n_out + n_region + (20 if args.code_xy else 0), 1).to(device)
        fx_all, fy_all = floor_cells(label, xy)
        popt = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=args.pretrain_lr)
        pos = torch.arange(grid, device=device)
        # Most tokens are empty: weight them down so the few disc tokens drive the label loss.
        weight = torch.tensor([0.05] + [1.0] * 12, device=device)
        t_pre = time.perf_counter()

        def predict(batch_keys: list[str]) -> Any:
            pv = torch.stack([pixels[k] for k in batch_keys]).float().to(device)
            return head(tower(pv).last_hidden_state)

        for step in range(1, args.pretrain_tower + 1):
            idx = torch.randint(0, len(keys), (args.batch_size,), generator=generator)
            out = predict([keys[int(i)] for i in idx])
            lab, target_xy = label[idx].to(device), xy[idx].to(device)
            present = (lab > 0).unsqueeze(1).float()
            b = len(idx)
            loss = (
                torch.nn.functional.cross_entropy(out[:, :13], lab, weight=weight)
                + 10 * ((out[:, 13:15] - target_xy) ** 2 * present).sum() / present.sum().clamp(min=1)
                + torch.nn.functional.cross_entropy(
                    out[:, 15 : 15 + grid], pos.view(1, grid, 1).expand(b, grid, grid)
                )
                + torch.nn.functional.cross_entropy(
                    out[:, 15 + grid : n_out], pos.view(1, 1, grid).expand(b, grid, grid)
                )
            )
            if args.dense_region:
                loss = loss + torch.nn.functional.cross_entropy(
                    out[:, n_out : n_out + n_region], region[idx].to(device), ignore_index=-1
                )
            if args.code_xy:
                at = n_out + n_region
                loss = loss + sum(
                    torch.nn.functional.cross_entropy(
                        out[:, at + 10 * k : at + 10 * k + 10], target[idx].to(device), ignore_index=-1
                    )
                    for k, target in enumerate((fx_all, fy_all))
                )
            loss.backward()
            popt.step()
            popt.zero_grad(set_to_none=True)
            if step % args.eval_every == 0 or step == args.pretrain_tower:
                tower.eval()
                with torch.no_grad():
                    full = torch.cat([predict(hkeys[i : i + 64]).cpu() for i in range(0, len(hkeys), 64)])
                pred = full[:, :13].argmax(1)
                tower.train()
                disc = hlabel > 0
                extra: dict[str, float] = {}
                if args.dense_region:
                    hit = full[:, n_out : n_out + n_region].argmax(1)[disc] == hregion[disc]
                    extra["disc_region_accuracy"] = round(hit.float().mean().item(), 3)
                print(
                    json.dumps(
                        {
                            "stage": "pretrain-tower",
                            "step": step,
                            "train_s": round(time.perf_counter() - t_pre, 1),
                            "loss": round(loss.item(), 4),
                            "disc_label_accuracy": round(
                                (pred[disc] == hlabel[disc]).float().mean().item(), 3
                            ),
                            "empty_accuracy": round((pred[~disc] == 0).float().mean().item(), 3),
                            **extra,
                        }
                    ),
                    flush=True,
                )

    def pretrain_tower_on_labels(tower: Any, generator: Any) -> None:
        """1-disc scenes, the tower's tokens mean-pooled into a linear 5-way label head."""
        rows, held_out = _one_disc("read", 3000, 0), _one_disc("read", 200, 1)
        with torch.no_grad():
            width = tower(collate(rows[:2])[3]).last_hidden_state.shape[1]
        probe = torch.nn.Linear(width, 5).to(device)
        popt = torch.optim.AdamW([*tower.parameters(), *probe.parameters()], lr=args.pretrain_lr)

        def pooled(pv: Any) -> Any:
            return probe(tower(pv).last_hidden_state.flatten(2).mean(-1))

        for _ in range(args.pretrain_tower):
            idx = torch.randint(0, len(rows), (args.batch_size,), generator=generator)
            batch = [rows[int(i)] for i in idx]
            target = torch.tensor([r[3]["answer_index"] for r in batch], device=device)
            loss = torch.nn.functional.cross_entropy(pooled(collate(batch)[3]), target)
            loss.backward()
            popt.step()
            popt.zero_grad(set_to_none=True)
        tower.eval()
        with torch.no_grad():
            pv, target = collate(held_out)[3], torch.tensor([r[3]["answer_index"] for r in held_out])
            acc = (pooled(pv).argmax(-1).cpu() == target).float().mean().item()
        tower.train()
        print(
            json.dumps({"stage": "pretrain-tower", "steps": args.pretrain_tower, "accuracy": round(acc, 3)})
        )

    def align_projector(tower: Any, rows: list[Any], generator: Any) -> None:
        """Make image tokens look like text: projector(token of the disc labelled N3 in region
        "top left") ~ embed("N3") + embed("A"), empty tokens ~ 0. Only the projector learns."""
        keys, label, xy, grid = dense_targets(rows)
        table = model.get_input_embeddings().weight.detach()
        label_table = torch.tensor([0, *label_ids])  # index 0: empty cells, masked below
        letter_ids = torch.tensor(letters)
        region = disc_regions(label, xy)
        projector = model.model.multi_modal_projector
        aopt = torch.optim.AdamW(projector.parameters(), lr=args.pretrain_lr)
        tower.eval()
        for step in range(1, args.align_projector + 1):
            idx = torch.randint(0, len(keys), (args.batch_size,), generator=generator)
            pv = torch.stack([pixels[keys[int(i)]] for i in idx]).float().to(device)
            with torch.no_grad():
                feats = tower(pv).last_hidden_state.flatten(2).transpose(1, 2)
            lab, reg = label[idx].flatten(1), region[idx].flatten(1)
            present = (lab > 0).unsqueeze(-1).float()
            target = (table[label_table[lab]] + table[letter_ids[reg]]) * present
            target = target.to(device)
            # Relative error: the embeddings are small (std 0.02), so a plain mean would be ~0 at once.
            loss = ((projector(feats) - target) ** 2).sum() / (target**2).sum()
            loss.backward()
            aopt.step()
            aopt.zero_grad(set_to_none=True)
            if step % args.eval_every == 0 or step == args.align_projector:
                print(json.dumps({"stage": "align-projector", "step": step, "loss": round(loss.item(), 5)}))
        tower.train()

    if args.oracle_tokens != "off":
        table = model.get_input_embeddings()
        o_label = torch.tensor([0, *label_ids])
        o_letter = torch.tensor(letters)
        cell_vectors = torch.nn.Parameter(0.02 * torch.randn(n_image, spec.text_hidden, device=device))
        if args.oracle_tokens == "label-pos":
            opt.add_param_group({"params": [cell_vectors], "mult": 1.0})

        # Coordinates as two fixed random directions, centred, at about a label embedding's norm.
        g_uv = torch.Generator().manual_seed(7)
        uv = (torch.randn(2, spec.text_hidden, generator=g_uv) * 0.04).to(device)
        if args.oracle_tokens == "label-region-xy":  # the demo's rows get oracle cells from their records
            for rows_ in (train, test):
                keys_, lab_, xy_, grid_ = dense_targets(rows_)
                reg_ = disc_regions(lab_, xy_)
                for i_, k_ in enumerate(keys_):
                    oracle[k_] = (
                        lab_[i_].flatten().tolist(),
                        reg_[i_].flatten().clamp(min=0).tolist(),
                        [tuple(v) for v in xy_[i_].flatten(1).T.tolist()],
                    )

        def oracle_hook(_module: Any, _inp: Any, out: Any) -> Any:
            # Only k-disc scenes have oracle cells; the demo's rows and other stages pass through.
            if len(batch_keys) != out.shape[0] or not all(k in oracle for k in batch_keys):
                return out
            lab = torch.tensor([oracle[k][0] for k in batch_keys])
            reg = torch.tensor([oracle[k][1] for k in batch_keys])
            present = (lab > 0).unsqueeze(-1).float().to(device)
            embeds = table(o_label[lab].to(device)) * present
            if args.oracle_tokens == "label-region":
                return embeds + table(o_letter[reg].to(device)) * present
            if args.oracle_tokens == "label-region-xy":
                xy = torch.tensor([oracle[k][2] for k in batch_keys], device=device) - 0.5
                return (embeds + table(o_letter[reg].to(device)) + xy @ uv) * present
            return embeds + cell_vectors[None]

        model.model.multi_modal_projector.register_forward_hook(oracle_hook)

    def code_projector(tower: Any, rows: list[Any], held: list[Any], generator: Any) -> None:
        """A disc's image token spelled in the decoder's own words: linear_1's first 12 + 9 outputs
        learn (one-vs-rest, tower frozen) which label and which region a token holds, every other
        output learns to stay off (GELU ~0); linear_2 then maps each code unit onto the embedding
        of " N<j>" or of the region's letter, so the decoder meets its own label embeddings."""
        keys, label, xy, _ = dense_targets(rows)
        hkeys, hlabel, hxy, _ = dense_targets(held)
        region = disc_regions(label, xy)
        fx_all, fy_all = floor_cells(label, xy)
        projector = model.model.multi_modal_projector
        lin1 = projector.linear_1
        copt = torch.optim.AdamW(lin1.parameters(), lr=args.pretrain_lr)
        tower.eval()

        def feats_of(batch_keys: list[str]) -> Any:
            pv = torch.stack([pixels[k] for k in batch_keys]).float().to(device)
            with torch.no_grad():
                return tower(pv).last_hidden_state.flatten(2).transpose(1, 2)

        def onehot(v: Any, n: int) -> Any:
            return torch.nn.functional.one_hot(v.clamp(min=0), n).float() * (v >= 0).unsqueeze(-1)

        def targets(lab: Any, reg: Any, fx: Any = None, fy: Any = None) -> Any:
            t = torch.zeros(*lab.shape, lin1.out_features)
            t[..., :12] = torch.nn.functional.one_hot(lab, 13)[..., 1:].float()
            t[..., 12:21] = onehot(reg, 9)
            if args.code_xy:
                t[..., 21:31], t[..., 31:41] = onehot(fx, 10), onehot(fy, 10)
            return t.to(device)

        for step in range(1, args.code_projector + 1):
            idx = torch.randint(0, len(keys), (args.batch_size,), generator=generator)
            logits = lin1(feats_of([keys[int(i)] for i in idx]))
            t = targets(
                label[idx].flatten(1), region[idx].flatten(1), fx_all[idx].flatten(1), fy_all[idx].flatten(1)
            )
            # Positives are rare (a few disc tokens x 2 units of 128 x 64 tokens): weight them up.
            if args.code_loss == "bce":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, t, pos_weight=torch.full((lin1.out_features,), 20.0, device=device)
                )
            else:
                loss = (((projector.act(logits) - t) ** 2) * (1 + 19 * t)).mean()
            loss.backward()
            copt.step()
            copt.zero_grad(set_to_none=True)
            if step % args.eval_every == 0 or step == args.code_projector:
                with torch.no_grad():
                    out = torch.cat([lin1(feats_of(hkeys[i : i + 64])) for i in range(0, len(hkeys), 64)])
                disc = hlabel.flatten(1) > 0
                lab_pred = out[..., :12].argmax(-1).cpu() + 1
                on = projector.act(out).cpu()
                print(
                    json.dumps(
                        {
                            "stage": "code-projector",
                            "step": step,
                            "loss": round(loss.item(), 5),
                            "disc_label_accuracy": round(
                                (lab_pred[disc] == hlabel.flatten(1)[disc]).float().mean().item(), 3
                            ),
                            "empty_max_activation": round(on[~disc].max(-1).values.mean().item(), 3),
                            "disc_label_activation": round(on[disc][:, :12].max(-1).values.mean().item(), 3),
                        }
                    ),
                    flush=True,
                )
        # linear_2: code unit -> embedding, scaled by the mean activation of a true unit.
        with torch.no_grad():
            out = torch.cat([lin1(feats_of(hkeys[i : i + 64])) for i in range(0, len(hkeys), 64)])
            on = projector.act(out)
            disc = (hlabel.flatten(1) > 0).to(device)
            scale = on[disc][:, :12].max(-1).values.mean()
            table = model.get_input_embeddings().weight
            ids = [*label_ids, *letters]
            if args.code_xy:  # the rationale's x digits ("1") and y digits (" 8")
                bare, spaced = [one(str(j)) for j in range(10)], [one(f" {j}") for j in range(10)]
                ids += spaced + bare if args.rationale_format == "cell" else bare + spaced
            w = torch.zeros_like(projector.linear_2.weight)
            w[:, : len(ids)] = table[ids].T / scale
            projector.linear_2.weight.copy_(w)
            if projector.linear_2.bias is not None:
                projector.linear_2.bias.zero_()
            # How close is the result to the oracle (embed(label) + embed(letter), empty -> 0)?
            lab, reg = hlabel.flatten(1).to(device), disc_regions(hlabel, hxy).flatten(1).to(device)
            present = (lab > 0).unsqueeze(-1).float()
            ids_t = torch.tensor(ids, device=device)
            target = (table[ids_t[(lab - 1).clamp(min=0)]] + table[ids_t[12 + reg.clamp(min=0)]]) * present
            got = projector.act(out) @ w.T
            extra_xy: dict[str, float] = {}
            if args.code_xy:
                hfx, hfy = (v.flatten(1).to(device) for v in floor_cells(hlabel, hxy))
                target = (
                    target
                    + (table[ids_t[21 + hfx.clamp(min=0)]] + table[ids_t[31 + hfy.clamp(min=0)]]) * present
                )
                for name, at, want in (("x", 21, hfx), ("y", 31, hfy)):
                    hit = out[..., at : at + 10].argmax(-1)[lab > 0] == want[lab > 0]
                    extra_xy[f"disc_{name}_accuracy"] = round(hit.float().mean().item(), 3)
            print(
                json.dumps(
                    {
                        "stage": "code-projector",
                        "relative_error": round((((got - target) ** 2).sum() / (target**2).sum()).item(), 4),
                        "disc_region_accuracy": round(
                            (out[..., 12:21].argmax(-1)[lab > 0] == reg[lab > 0]).float().mean().item(), 3
                        ),
                        **extra_xy,
                    }
                ),
                flush=True,
            )
        tower.train()

    gen0 = torch.Generator().manual_seed(args.seed + 1)
    tower = model.model.vision_tower
    if args.pretrain_tower and args.pretrain_target == "dense":
        pretrain_tower(tower, train, test, gen0)
    elif args.pretrain_tower:
        pretrain_tower_on_labels(tower, gen0)
    if args.align_projector:
        align_projector(tower, train, gen0)
    if args.code_projector:
        code_projector(tower, train, test, gen0)
    if args.freeze_tower:
        for p in tower.parameters():
            p.requires_grad_(False)
        tower.eval()
        model.train = lambda mode=True: (torch.nn.Module.train(model, mode), tower.eval())[0]  # type: ignore[method-assign]
    if args.freeze_projector:
        for p in model.model.multi_modal_projector.parameters():
            p.requires_grad_(False)
    if args.freeze_embeddings:  # tied: the output head stays fixed too
        model.get_input_embeddings().weight.requires_grad_(False)
    t_stage = time.perf_counter()
    for kind, n_steps in stages:
        rows, held_out = one_disc[kind]
        for step in range(1, n_steps + 1):
            for group in opt.param_groups:  # linear warmup over 5%, then constant
                group["lr"] = args.lr * group["mult"] * min(1.0, step / max(1, int(0.05 * n_steps)))
            loss = train_step(rows, gen0)
            if step % args.eval_every == 0 or step == n_steps:
                print(
                    json.dumps(
                        {
                            "stage": kind,
                            "step": step,
                            "train_s": round(time.perf_counter() - t_stage, 1),
                            "loss": round(loss.item(), 4),
                            "accuracy": evaluate_one_disc(held_out),
                        }
                    ),
                    flush=True,
                )
    for group in opt.param_groups:
        group["lr"] = args.lr * group["mult"]
    warm = max(1, int(0.05 * args.steps))

    def schedule(step: int) -> float:
        return (
            min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, args.steps))))
        )

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(args.seed)
    head = {
        "tower": args.tower,
        "widths": args.widths,
        "vision": args.vision,
        "white": args.white,
        "projector_gain": args.projector_gain,
        "connector_lr_mult": args.connector_lr_mult,
        "order": args.order,
        "spec": overrides,
        "lr": args.lr,
        "batch_size": args.batch_size,
    }
    print(
        json.dumps(
            {
                **head,
                "parameters": model.num_parameters(),
                "train_rows": len(train),
                "prep_s": round(prep_s, 1),
            }
        )
    )
    model.train()
    t0 = time.perf_counter()
    ema: float | None = None
    for step in range(1, args.steps + 1):
        loss = train_step(train, gen)
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        out_of_time = time.perf_counter() - t0 > args.max_time
        if step % args.eval_every == 0 or step == args.steps or out_of_time:
            elapsed = round(time.perf_counter() - t0, 1)
            scores = evaluate_rationale() if args.rationale else {"accuracy": evaluate()}
            print(json.dumps({"step": step, "train_s": elapsed, "loss": round(ema, 4), **scores}), flush=True)
            if out_of_time:
                break


if __name__ == "__main__":
    main()
