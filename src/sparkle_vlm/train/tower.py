"""``sparkle train tower``: make a model's image tokens readable by its decoder, before SFT.

A model trained from random weights (the embedded model) cannot learn the basic skills end to
end within a CPU budget (docs/embedded-model.md, rounds 1-6). Two stages here make its image
tokens readable, with targets computed from the scene records of the training data (the scene
is the truth: no pixel is labelled by hand and no outside data is used):

1. **Dense pretraining.** A 1x1-conv head on the tower's output grid learns, for every cell, the
   label of the disc centred in it (or none), that disc's 3x3 region, its coordinates, and the
   cell's own row and column; tower and head learn together, the head is dropped afterwards.
2. **Code projector.** With the tower fixed, the projector's first layer learns (one-vs-rest)
   which label and which region each token holds, and its second layer is set to the decoder's
   own embeddings of ``" N<j>"`` and of the region's option letter. A disc's image token thus
   starts as embed(label) + embed(letter) and empty cells start near 0: the decoder meets image
   tokens in its own words, the match it could not learn from scratch. Where the tokenizer spells
   digits as single tokens, the code also holds the disc's cell (floor x as ``" 1"``, floor y as
   ``"8"``): the tokens a rationale answer writes (``sparkle_vlm.train.rationale``).
3. **Lookup heads** (``sparkle_vlm.train.lookup``, where the code holds the cells): the label
   units are rewritten as key vectors, and two heads of the decoder are fitted so that, after a
   label in an answer, the model already reads that disc's x and y digit from its image token
   (``lookup_samples`` rationale answers fit them; 0 skips the stage).

Then SFT continues with the tower frozen (``--full --freeze-vision``). Works on models whose
tower returns a token grid (B, C, H, W), such as the embedded model's FastVLM + ResNet, and whose
tokenizer spells each label and option letter as one token.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sparkle_vlm import geometry
from sparkle_vlm.errors import ConfigError, SparkleError
from sparkle_vlm.fsutil import atomic_write_json, check_writable_dir
from sparkle_vlm.train.common import Log, stderr_log

#: Written next to the weights: the config and the accuracies of both stages.
RECORD = "sparkle_tower.json"
#: Labels N1..N12 and the 9 regions of the localization grid.
N_LABELS, N_REGIONS = 12, len(geometry.REGIONS)
#: floor(x), floor(y) of a disc: 0-9 each.
N_DIGITS = 10


@dataclass
class TowerTrainConfig:
    """Dense tower pretraining + code projector. ``data``: folders written by ``sparkle generate``."""

    model: str = ""
    data: list[str] = field(default_factory=list)
    out: str = ""
    steps: int = 2500  # dense pretraining steps (tower + head)
    code_steps: int = 600  # projector code steps (tower fixed; 300 until round sixteen)
    lr: float = 1e-3
    batch_size: int = 16
    held_out: int = 200  # images kept out of training to measure the accuracies
    seed: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    # stage 3 (train/lookup.py): the decoder's two lookup heads, fitted on this many rationale
    # answers of training images (0: skip the stage)
    lookup_samples: int = 96
    # then the letter readout (train/lookup.py): the last layer's MLP output map learns, by one
    # ridge regression on this many multiple-choice rationale answers, to write the answer's
    # letter at the token before it (0: skip; needs the lookup heads)
    readout_samples: int = 4500

    def validate(self) -> None:
        for name in ("model", "out"):
            if not getattr(self, name):
                raise ConfigError(name, "required")
        if not self.data:
            raise ConfigError("data", "required (one or more dataset folders)")
        for name in ("steps", "code_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(self, name)}")
        for name in ("lookup_samples", "readout_samples"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be non-negative, got {getattr(self, name)}")
        if self.held_out < 0:
            raise ConfigError("held_out", f"must be non-negative, got {self.held_out}")
        if self.lr <= 0:
            raise ConfigError("lr", f"must be positive, got {self.lr}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError("device", f"must be auto, cpu or cuda[:N], got {self.device!r}")


def cell_of(x: float, y: float, frame: float, grid: int) -> tuple[int, int]:
    """(row, column) of the token cell holding frame point (x, y); row 0 is the image's top.

    >>> cell_of(0.0, 10.0, 10, 8), cell_of(9.99, 0.0, 10, 8), cell_of(5.0, 5.0, 10, 8)
    ((0, 0), (7, 7), (4, 4))
    """
    return min(grid - 1, max(0, int((1 - y / frame) * grid))), min(grid - 1, max(0, int(x / frame * grid)))


def scene_targets(scene: dict[str, Any], grid: int) -> tuple[list[int], list[int], list[float]]:
    """Per-cell targets of one point scene, cells in raster order: the label number of the disc
    centred there (0: none), its region index in ``geometry.REGIONS`` (-1: none) and its (x, y)
    as fractions of the frame (0 where no disc is)."""
    frame = float(scene.get("frame", 10))
    label, region, xy = [0] * grid * grid, [-1] * grid * grid, [0.0] * (2 * grid * grid)
    for node in scene["nodes"]:
        x, y = float(node["x"]), float(node["y"])
        row, col = cell_of(x, y, frame, grid)
        i = row * grid + col
        label[i] = int(str(node["label"])[1:])
        region[i] = geometry.REGIONS.index(geometry.region(x * 10 / frame, y * 10 / frame))
        xy[2 * i], xy[2 * i + 1] = x / frame, y / frame
    return label, region, xy


def scene_cells(scene: dict[str, Any], grid: int) -> tuple[list[int], list[int]]:
    """Per-cell floor(x) and floor(y) digits (``rationale.cell_digits``) of the disc centred in
    each token cell, raster order; -1 where no disc is."""
    from sparkle_vlm.train.rationale import cell_digits

    frame = float(scene.get("frame", 10))
    fx, fy = [-1] * grid * grid, [-1] * grid * grid
    for node in scene["nodes"]:
        x, y = float(node["x"]), float(node["y"])
        row, col = cell_of(x, y, frame, grid)
        digits = cell_digits(x, y, frame)
        fx[row * grid + col], fy[row * grid + col] = int(digits[0]), int(digits[1])
    return fx, fy


def _point_scenes(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """image path -> scene, for every record whose scene is labelled discs N1..N12."""
    scenes: dict[str, dict[str, Any]] = {}
    for rec in records:
        scene, images = rec.get("scene") or {}, rec.get("images") or []
        nodes = scene.get("nodes") if isinstance(scene, dict) else None
        if len(images) != 1 or not nodes:
            continue
        labels = [str(n.get("label", "")) for n in nodes]
        if all(
            lab[:1] == "N" and lab[1:].isdigit() and 1 <= int(lab[1:]) <= N_LABELS for lab in labels
        ) and all("x" in n and "y" in n for n in nodes):
            scenes.setdefault(str(images[0]), scene)
    return scenes


def label_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of " N1" .. " N12" (with the space, as questions and rationales write them)."""
    return _single_token_ids(tokenizer, [f" N{j}" for j in range(1, N_LABELS + 1)])


def digit_token_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Token ids of the cell digits as a rationale writes them: x with its space (" 1"), y bare ("8")."""
    return (
        _single_token_ids(tokenizer, [f" {j}" for j in range(N_DIGITS)]),
        _single_token_ids(tokenizer, [str(j) for j in range(N_DIGITS)]),
    )


def _single_token_ids(tokenizer: Any, texts: list[str]) -> list[int]:
    ids = []
    for text in texts:
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(got) != 1:
            raise SparkleError(
                f"--model: its tokenizer spells {text!r} as {len(got)} tokens; the code needs one"
            )
        ids.append(int(got[0]))
    return ids


def pretrain_tower(cfg: TowerTrainConfig, *, log: Log = stderr_log) -> dict[str, Any]:
    """Run the stages (module docstring) on ``cfg.model`` and write the result to ``cfg.out``; returns the record.

    The output folder is written next to its place and renamed into it (a crash leaves the old
    state). Same config and data give the same weights; after a crash the same call resumes the
    dense stage from its last checkpoint (every tenth of the steps) with the same result.
    """
    cfg.validate()
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from sparkle_vlm.train.data import load_records

    out = check_writable_dir(cfg.out, "out")
    if out.exists() and any(out.iterdir()) and not (out / RECORD).exists():
        raise SparkleError(
            f"--out: {out} is not empty and holds no tower-pretrained model; choose another folder"
        )
    try:
        model: Any = AutoModelForImageTextToText.from_pretrained(
            cfg.model, dtype=torch.float32, use_safetensors=True
        )
        processor = AutoProcessor.from_pretrained(cfg.model)
    except (OSError, ValueError) as exc:
        raise SparkleError(f"--model: cannot load {cfg.model}: {str(exc).splitlines()[0]}") from None
    inner = getattr(model, "model", None)
    tower = getattr(inner, "vision_tower", None)
    projector = getattr(inner, "multi_modal_projector", None)
    if tower is None or not all(hasattr(projector, a) for a in ("linear_1", "act", "linear_2")):
        raise SparkleError(f"--model: {cfg.model} has no vision_tower + 2-layer multi_modal_projector")
    from sparkle_vlm.models.hf import resolve_device

    dev = torch.device(resolve_device(torch, cfg.device))
    # float32 throughout, also on CUDA: the model is small and the code's scale is read off it
    model.to(dev)
    image_processor = processor.image_processor
    records, _ = load_records(cfg.data)
    scenes = _point_scenes(records)
    if len(scenes) <= cfg.held_out:
        raise SparkleError(
            f"--data: {len(scenes)} images with point scenes; need more than held_out={cfg.held_out}"
        )

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    keys = sorted(scenes)
    t0 = time.perf_counter()
    pixels = []
    for i in range(0, len(keys), 64):
        images = []
        for path in keys[i : i + 64]:
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
        # float16 halves the cache (pixel values within 2e-4 of float32: the tower trains on these)
        pixels.append(image_processor(images=images, return_tensors="pt")["pixel_values"].half())
    pv_all = torch.cat(pixels).to(dev)
    with torch.no_grad():
        feat = tower(pv_all[:1].float(), return_dict=True).last_hidden_state
    if feat.dim() != 4:
        raise SparkleError(
            f"--model: its vision tower returns {feat.dim()}D features; tower pretraining needs a grid"
        )
    width, grid = int(feat.shape[1]), int(feat.shape[2])
    targets = [scene_targets(scenes[k], grid) for k in keys]
    label = torch.tensor([t[0] for t in targets], device=dev).view(-1, grid, grid)
    region = torch.tensor([t[1] for t in targets], device=dev).view(-1, grid, grid)
    xy = torch.tensor([t[2] for t in targets], device=dev).view(-1, grid, grid, 2).permute(0, 3, 1, 2)
    cells = [scene_cells(scenes[k], grid) for k in keys]
    fx = torch.tensor([c[0] for c in cells], device=dev).view(-1, grid, grid)
    fy = torch.tensor([c[1] for c in cells], device=dev).view(-1, grid, grid)
    # Batches and the split come from a CPU generator: the same images on every device.
    order = torch.randperm(len(keys), generator=gen).to(dev)
    held, train = order[: cfg.held_out], order[cfg.held_out :]
    log(f"tower pretraining on {dev}: {len(train)} images ({len(held)} held out), {grid}x{grid} tokens")

    n_out = 1 + N_LABELS + N_REGIONS + 2 + 2 * grid + 2 * N_DIGITS
    head = torch.nn.Conv2d(width, n_out, 1).to(dev)
    opt = torch.optim.AdamW([*tower.parameters(), *head.parameters()], lr=cfg.lr)
    pos = torch.arange(grid, device=dev)
    # Most cells are empty: weight them down so the few disc cells drive the label loss.
    weight = torch.tensor([0.05] + [1.0] * N_LABELS, device=dev)
    f = torch.nn.functional
    tower.train()

    def grid_out(idx: Any) -> Any:
        return head(tower(pv_all[idx].float(), return_dict=True).last_hidden_state)

    lab_end, reg_end = 1 + N_LABELS, 1 + N_LABELS + N_REGIONS
    dig = reg_end + 2 + 2 * grid  # floor-x digit logits, then floor-y
    resume = _Resume(out, cfg, len(keys))
    first = resume.load(tower, head, opt, gen, log) + 1
    for step in range(first, cfg.steps + 1):
        idx = train[torch.randint(0, len(train), (cfg.batch_size,), generator=gen).to(dev)]
        o, lab, b = grid_out(idx), label[idx], len(idx)
        present = (lab > 0).unsqueeze(1).float()
        loss = (
            f.cross_entropy(o[:, :lab_end], lab, weight=weight)
            + f.cross_entropy(o[:, lab_end:reg_end], region[idx], ignore_index=-1)
            + 10 * ((o[:, reg_end : reg_end + 2] - xy[idx]) ** 2 * present).sum() / present.sum().clamp(min=1)
            + f.cross_entropy(
                o[:, reg_end + 2 : reg_end + 2 + grid], pos.view(1, grid, 1).expand(b, grid, grid)
            )
            + f.cross_entropy(o[:, reg_end + 2 + grid : dig], pos.view(1, 1, grid).expand(b, grid, grid))
            + f.cross_entropy(o[:, dig : dig + N_DIGITS], fx[idx], ignore_index=-1)
            + f.cross_entropy(o[:, dig + N_DIGITS :], fy[idx], ignore_index=-1)
        )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % max(1, cfg.steps // 10) == 0 or step == cfg.steps:
            resume.save(step, tower, head, opt, gen)
            log(f"tower step {step}/{cfg.steps}: loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)")
    _recalibrate_batchnorm(tower, pv_all, train, cfg.batch_size, gen)
    tower.eval()
    for p in tower.parameters():
        p.requires_grad_(False)

    @torch.no_grad()
    def features(idx: Any) -> Any:
        return torch.cat(
            [
                tower(pv_all[idx[i : i + 64]].float(), return_dict=True)
                .last_hidden_state.flatten(2)
                .transpose(1, 2)
                for i in range(0, len(idx), 64)
            ]
        )

    with torch.no_grad():
        o = torch.cat(
            [head(tower(pv_all[held[i : i + 64]].float()).last_hidden_state) for i in range(0, len(held), 64)]
        )
    disc = label[held] > 0
    dense = {
        "disc_label_accuracy": _rate(o[:, :lab_end].argmax(1)[disc] == label[held][disc]),
        "disc_region_accuracy": _rate(o[:, lab_end:reg_end].argmax(1)[disc] == region[held][disc]),
        "empty_accuracy": _rate(o[:, :lab_end].argmax(1)[~disc] == 0),
        "disc_x_accuracy": _rate(o[:, dig : dig + N_DIGITS].argmax(1)[disc] == fx[held][disc]),
        "disc_y_accuracy": _rate(o[:, dig + N_DIGITS :].argmax(1)[disc] == fy[held][disc]),
    }
    log(f"tower pretraining done: {json.dumps(dense)}")

    code = _code_projector(
        model, processor.tokenizer, features, (label, region, fx, fy), train, held, cfg, gen, log
    )
    model.to("cpu")
    lookup = None
    if cfg.lookup_samples and "disc_x_accuracy" in code:
        lookup = _lookup_stage(model, processor, records, keys, (label, fx, fy), train, held, cfg, gen, log)
    elif cfg.lookup_samples:
        log("lookup heads skipped: the code holds no cell digits")
    info = {
        "config": asdict(cfg),
        "images": {"train": len(train), "held_out": len(held)},
        "grid": grid,
        "dense": dense,
        "code": code,
        "lookup": lookup,
        "device": str(dev),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for p in tower.parameters():
            p.requires_grad_(True)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        src = Path(cfg.model)
        for extra in src.glob("sparkle_*.json") if src.is_dir() else []:
            shutil.copy2(extra, tmp / extra.name)
        atomic_write_json(tmp / RECORD, info)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    resume.clear()
    return info


def _lookup_stage(
    model: Any,
    processor: Any,
    records: list[dict[str, Any]],
    keys: list[str],
    targets: tuple[Any, Any, Any],
    train: Any,
    held: Any,
    cfg: TowerTrainConfig,
    gen: Any,
    log: Log,
) -> dict[str, Any]:
    """Stage 3 (train/lookup.py): fit the lookup heads on rationale answers of training images and
    check them on held-out ones. Returns the check and the sample counts."""
    from sparkle_vlm.train.lookup import init_lookup_heads

    fit, check = lookup_samples(processor, records, keys, targets, train, held, cfg.lookup_samples, gen)
    if not fit:
        log("lookup heads skipped: no training record names a label of its scene")
        return {"skipped": "no record names a label of its scene"}
    result = init_lookup_heads(
        model, processor.tokenizer, fit, check, label_columns=list(range(N_LABELS)), seed=cfg.seed, log=log
    )
    out = {"fit_samples": len(fit), "held_out_samples": len(check), **result}
    if cfg.readout_samples:
        from sparkle_vlm.train.lookup import fit_letter_readout

        fit_r, check_r = answer_records(records, keys, train, held, cfg.readout_samples, gen, mcq=True)
        make = partial(answer_sample, processor, {k: i for i, k in enumerate(keys)}, targets)
        out["readout"] = fit_letter_readout(
            model, processor.tokenizer, map(make, fit_r), map(make, check_r), seed=cfg.seed, log=log
        )
    return out


def answer_records(
    records: list[dict[str, Any]],
    keys: list[str],
    train: Any,
    held: Any,
    n: int,
    gen: Any,
    *,
    mcq: bool = False,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Up to ``n`` records with a rationale answer on training images and ``max(8, n // 3)`` on
    held-out images, in a seeded order (``mcq``: multiple-choice answers only)."""
    import torch

    from sparkle_vlm.train.rationale import rationale

    index = {k: i for i, k in enumerate(keys)}
    held_set = set(held.cpu().tolist())
    answered = [
        r
        for r in records
        if len(r.get("images") or []) == 1
        and str(r["images"][0]) in index
        and r.get("messages")
        and (not mcq or r.get("answer_type") == "mcq")
        and rationale(r) is not None
    ]
    order = torch.randperm(len(answered), generator=gen).tolist()
    fit = [answered[i] for i in order if index[str(answered[i]["images"][0])] not in held_set][:n]
    check = [answered[i] for i in order if index[str(answered[i]["images"][0])] in held_set]
    return fit, check[: max(8, n // 3)]


def answer_sample(
    processor: Any, index: dict[str, int], targets: tuple[Any, Any, Any], rec: dict[str, Any]
) -> dict[str, Any]:
    """One record's rationale answer as model inputs, with its image's per-token targets
    (``index``: image path -> row of ``targets``)."""
    from PIL import Image

    from sparkle_vlm.train.data import split_turns
    from sparkle_vlm.train.rationale import with_rationale

    rec = with_rationale(rec)
    prompt, completion = split_turns(rec)
    path = str(rec["images"][0])
    with Image.open(path) as im:
        image = im.convert("RGB")
    full = processor(
        text=[processor.apply_chat_template(prompt + completion, tokenize=False)],
        images=[image],
        return_tensors="pt",
    )
    head_text = processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    answer_start = _prefix_length(processor, head_text, full["input_ids"][0].tolist())
    if answer_start is None:  # a template whose prompt tokens change with what follows them
        answer_start = int(
            processor(text=[head_text], images=[image], return_tensors="pt")["input_ids"].shape[1]
        )
    i = index[path]
    return {
        "input_ids": full["input_ids"],
        "attention_mask": full["attention_mask"],
        "pixel_values": full["pixel_values"].float(),
        "answer_start": answer_start,
        "image_labels": targets[0][i].cpu().flatten().tolist(),
        "image_dx": targets[1][i].cpu().flatten().tolist(),
        "image_dy": targets[2][i].cpu().flatten().tolist(),
    }


def _prefix_length(processor: Any, head_text: str, full_ids: list[int]) -> int | None:
    """The length of ``head_text``'s tokens inside ``full_ids`` without a second image pass:
    the text is tokenized alone and its image token expanded as the processor expanded it in
    ``full_ids``; None where the result is not a prefix of ``full_ids``."""
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    head = processor.tokenizer(head_text)["input_ids"]
    n_head, n_full = head.count(image_id), full_ids.count(image_id)
    if not n_head or n_full % n_head:
        return None
    per = n_full // n_head
    expanded = [u for t in head for u in ([t] * per if t == image_id else [t])]
    return len(expanded) if full_ids[: len(expanded)] == expanded else None


def lookup_samples(
    processor: Any,
    records: list[dict[str, Any]],
    keys: list[str],
    targets: tuple[Any, Any, Any],
    train: Any,
    held: Any,
    n: int,
    gen: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Model inputs of up to ``n`` rationale answers on training images and ``max(8, n // 3)`` on
    held-out images (records in a seeded order), in the form ``lookup.init_lookup_heads`` takes.

    ``keys``: image paths in the order of the rows of ``targets`` (label, x digit, y digit grids).
    """
    fit, check = answer_records(records, keys, train, held, n, gen)
    make = partial(answer_sample, processor, {k: i for i, k in enumerate(keys)}, targets)
    return [make(r) for r in fit], [make(r) for r in check]


class _Resume:
    """The dense stage's checkpoint, next to ``out``: a crash resumes at the last tenth of the steps.

    It holds tower, head, optimizer and batch-generator state, so a resumed run gives the same
    weights as one that never stopped. It belongs to one config and image count (else ignored)
    and is removed once the model is written.
    """

    def __init__(self, out: Path, cfg: TowerTrainConfig, images: int) -> None:
        import hashlib

        self.path = out.parent / f".{out.name}.tower-resume.pt"
        conf = {k: v for k, v in asdict(cfg).items() if k != "device"}
        self.key = hashlib.sha256(json.dumps([conf, images], sort_keys=True).encode()).hexdigest()

    def load(self, tower: Any, head: Any, opt: Any, gen: Any, log: Log) -> int:
        """Restore the checkpoint if it is this run's; returns the step it holds (0: none)."""
        import torch

        if not self.path.exists():
            return 0
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a torn or foreign file: start over rather than fail
            log(f"tower pretraining: ignoring unreadable checkpoint {self.path} ({type(exc).__name__})")
            return 0
        if state.get("key") != self.key:
            log(f"tower pretraining: {self.path} belongs to another config; starting over")
            return 0
        tower.load_state_dict(state["tower"])
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        log(f"tower pretraining: resuming after step {state['step']}")
        return int(state["step"])

    def save(self, step: int, tower: Any, head: Any, opt: Any, gen: Any) -> None:
        import torch

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        state = {
            "key": self.key,
            "step": step,
            "tower": tower.state_dict(),
            "head": head.state_dict(),
            "opt": opt.state_dict(),
            "gen": gen.get_state(),
        }
        torch.save(state, tmp)
        tmp.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _rate(hits: Any) -> float:
    return round(float(hits.float().mean().item()), 4) if hits.numel() else 0.0


def _recalibrate_batchnorm(tower: Any, pv_all: Any, train: Any, batch_size: int, gen: Any) -> None:
    """Recompute BatchNorm running statistics as plain averages over training batches.

    The exponential averages kept while the weights moved lag behind the final weights, and the
    frozen tower runs in eval mode from here on, on exactly these statistics.
    """
    import torch

    norms = [m for m in tower.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    tower.train()
    with torch.no_grad():
        for _ in range(50):
            idx = train[torch.randint(0, len(train), (batch_size,), generator=gen).to(train.device)]
            tower(pv_all[idx].float(), return_dict=True)
    for m in norms:
        m.momentum = 0.1


def _code_projector(
    model: Any,
    tokenizer: Any,
    features: Any,
    targets: tuple[Any, Any, Any, Any],
    train: Any,
    held: Any,
    cfg: TowerTrainConfig,
    gen: Any,
    log: Log,
) -> dict[str, Any]:
    """Stage 2 (see the module docstring). Returns its held-out accuracies and relative error."""
    import torch

    label, region, fx, fy = targets
    projector = model.model.multi_modal_projector
    lin1, act = projector.linear_1, projector.act
    # " N3" (with its space) is how questions name a label; option letters are answered bare.
    ids = label_token_ids(tokenizer)
    ids += _single_token_ids(tokenizer, [chr(ord("A") + j) for j in range(N_REGIONS)])
    # The cell digits as a rationale writes them: x with its space (" 1"), y bare ("8").
    digits = [f" {j}" for j in range(N_DIGITS)] + [str(j) for j in range(N_DIGITS)]
    with_cells = all(len(tokenizer(d, add_special_tokens=False)["input_ids"]) == 1 for d in digits)
    if with_cells and lin1.out_features >= len(ids) + len(digits):
        ids += [t for family in digit_token_ids(tokenizer) for t in family]
    else:
        with_cells = False
        log("code projector: digits split or projector too narrow; the code holds labels and regions only")
    n_code = len(ids)
    if lin1.out_features < n_code:
        raise SparkleError(f"--model: projector width {lin1.out_features} is below the {n_code} code units")

    def onehot(v: Any, n: int) -> Any:
        return torch.nn.functional.one_hot(v.clamp(min=0), n).float() * (v >= 0).unsqueeze(-1)

    def code_targets(idx: Any) -> Any:
        lab = label[idx].flatten(1)
        t = torch.zeros(*lab.shape, lin1.out_features, device=lab.device)
        t[..., :N_LABELS] = torch.nn.functional.one_hot(lab, N_LABELS + 1)[..., 1:].float()
        t[..., N_LABELS : N_LABELS + N_REGIONS] = onehot(region[idx].flatten(1), N_REGIONS)
        if with_cells:
            at = N_LABELS + N_REGIONS
            t[..., at : at + N_DIGITS] = onehot(fx[idx].flatten(1), N_DIGITS)
            t[..., at + N_DIGITS : n_code] = onehot(fy[idx].flatten(1), N_DIGITS)
        return t

    opt = torch.optim.AdamW(lin1.parameters(), lr=cfg.lr)
    # Positives are rare (a few disc tokens x 2 units among width x tokens): weight them up.
    pos_weight = torch.full((lin1.out_features,), 20.0, device=train.device)
    for _ in range(cfg.code_steps):
        idx = train[torch.randint(0, len(train), (cfg.batch_size,), generator=gen).to(train.device)]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            lin1(features(idx)), code_targets(idx), pos_weight=pos_weight
        )
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        out = lin1(features(held))
        on = act(out)
        lab, reg = label[held].flatten(1), region[held].flatten(1)
        disc = lab > 0
        # linear_2: code unit -> embedding, scaled by the mean activation of a true label unit.
        scale = (
            on[disc][:, :N_LABELS].max(-1).values.mean()
            if disc.any()
            else torch.tensor(1.0, device=on.device)
        )
        table = model.get_input_embeddings().weight
        w = torch.zeros_like(projector.linear_2.weight)
        w[:, :n_code] = table[ids].T / scale
        projector.linear_2.weight.copy_(w)
        if projector.linear_2.bias is not None:
            projector.linear_2.bias.zero_()
        ids_t = torch.tensor(ids, device=table.device)
        want = (
            table[ids_t[(lab - 1).clamp(min=0)]] + table[ids_t[N_LABELS + reg.clamp(min=0)]]
        ) * disc.unsqueeze(-1)
        cell_acc: dict[str, float] = {}
        if with_cells:
            at = N_LABELS + N_REGIONS
            hx, hy = fx[held].flatten(1), fy[held].flatten(1)
            want = want + (
                table[ids_t[at + hx.clamp(min=0)]] + table[ids_t[at + N_DIGITS + hy.clamp(min=0)]]
            ) * disc.unsqueeze(-1)
            cell_acc = {
                "disc_x_accuracy": _rate(out[..., at : at + N_DIGITS].argmax(-1)[disc] == hx[disc]),
                "disc_y_accuracy": _rate(out[..., at + N_DIGITS : n_code].argmax(-1)[disc] == hy[disc]),
            }
        got = on @ w.T
        result = {
            "disc_label_accuracy": _rate(out[..., :N_LABELS].argmax(-1)[disc] + 1 == lab[disc]),
            "disc_region_accuracy": _rate(
                out[..., N_LABELS : N_LABELS + N_REGIONS].argmax(-1)[disc] == reg[disc]
            ),
            **cell_acc,
            "relative_error": round(float(((got - want) ** 2).sum() / (want**2).sum().clamp(min=1e-12)), 4),
        }
    log(f"code projector done: {json.dumps(result)}")
    return result
