"""Which embedded-model design learns the basic skills? A plain training loop, one JSON line per eval.

    python benchmarks/embedded_designs.py --steps 300                          # `small` as shipped
    python benchmarks/embedded_designs.py --tower levit --image-size 256 --steps 1500
    python benchmarks/embedded_designs.py --order last --device cuda --steps 2400

The demo trains through TRL (benchmarks/embedded_learning.py measures that path); this loop
trades it for speed and for variants the builder does not offer, to compare designs: the same
data as the demo (``basic-train`` practice MCQ + Sparkle-Instruct, generated here), the same
``LlavaForConditionalGeneration`` and tokenizer, AdamW with warmup + cosine, loss on the answer
tokens. Variants:

- ``--tower clip`` (the shipped ViT; ``--spec`` overrides embedded-spec fields) or ``levit``
  (LeViT's convolutional stem as the vision tower: its output, 16 x stride, is the image tokens);
- ``--order first`` (image, then question, as the shipped chat template) or ``last`` (question,
  then image, so the answer is predicted at the last image token).

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


def _levit(tokenizer: Any, spec: Any, seed: int) -> tuple[Any, Any, int]:
    """LLaVA with LeViT's conv stem as the tower (hidden state 0: the stem output, 16 x stride)."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from sparkle_vlm.models import embedded as E

    grid = spec.image_size // 16
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
    text = E.build_config(spec, tokenizer).text_config.to_dict()
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(E.IMAGE),
        image_seq_length=grid * grid,
        vision_feature_layer=-4,
        vision_feature_select_strategy="full",
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return (
        LlavaForConditionalGeneration(config),
        E.build_processor(spec, tokenizer).image_processor,
        grid * grid,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tower", choices=("clip", "levit"), default="clip")
    ap.add_argument("--order", choices=("first", "last"), default="first")
    ap.add_argument("--image-size", type=int, default=None, help="processor side (default: the spec's)")
    ap.add_argument("--spec", default="{}", help="JSON overrides of the `small` embedded spec")
    ap.add_argument("--practice-images", type=int, default=3000)
    ap.add_argument("--instruct-images", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1200)
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
    spec = E.spec_for("small", **overrides)
    tokenizer = E.build_tokenizer()
    if args.tower == "levit":
        model, image_processor, n_image = _levit(tokenizer, spec, args.seed)
    else:
        model = E.build_model(spec, tokenizer, args.seed)
        image_processor, n_image = E.build_processor(spec, tokenizer).image_processor, spec.image_tokens
    model.to(device)

    data = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sparkle-designs-"))
    t0 = time.perf_counter()
    _generate("basic-train", args.practice_images, args.seed, data / "basic-train", None)
    _generate("instruct", args.instruct_images, args.seed, data / "instruct", None)
    _generate("basic-test", 200, 0, data / "basic-test", None)

    def tid(token: str) -> int:
        return int(tokenizer.convert_tokens_to_ids(token))

    user, eos, assistant, image_tok = tid(E.USER), tid(E.EOS), tid(E.ASSISTANT), tid(E.IMAGE)
    pixels: dict[str, Any] = {}

    def encode(rec: dict[str, Any], folder: Path) -> tuple[list[int], list[int], str, dict[str, Any]]:
        question = rec["messages"][0]["content"][1]["text"]
        question_ids = tokenizer(question, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(rec["answer"], add_special_tokens=False)["input_ids"] + [eos]
        image = [image_tok] * n_image
        if args.order == "first":
            prompt = [user, *image, *question_ids, eos, assistant]
        else:
            prompt = [user, *question_ids, eos, assistant, *image]
        path = str(folder / rec["images"][0])
        if path not in pixels:
            with Image.open(path) as im:
                pv = image_processor(images=[im.convert("RGB")], return_tensors="pt")["pixel_values"][0]
            pixels[path] = pv.half()  # halves the cache; exact for these few gray levels
        return prompt, answer_ids, path, rec

    train = [encode(r, data / "basic-train") for r in read_jsonl(data / "basic-train" / "data.jsonl")]
    train += [encode(r, data / "instruct") for r in read_jsonl(data / "instruct" / "data.jsonl")]
    test = [encode(r, data / "basic-test") for r in read_jsonl(data / "basic-test" / "data.jsonl")]
    prep_s = time.perf_counter() - t0

    def collate(samples: list[Any]) -> tuple[Any, Any, Any, Any]:
        length = max(len(p) + len(a) for p, a, _, _ in samples)
        ids = torch.full((len(samples), length), tokenizer.pad_token_id)
        labels = torch.full((len(samples), length), -100)
        mask = torch.zeros((len(samples), length), dtype=torch.long)
        for i, (p, a, _, _) in enumerate(samples):
            seq = p + a
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            labels[i, len(p) : len(seq)] = torch.tensor(a)
        pv = torch.stack([pixels[s[2]] for s in samples]).float()
        return ids.to(device), mask.to(device), labels.to(device), pv.to(device)

    letters = [tid(c) for c in "ABCDEFGHI"]

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

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warm = max(1, int(0.05 * args.steps))

    def schedule(step: int) -> float:
        return min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / args.steps)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(args.seed)
    head = {
        "tower": args.tower,
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
        idx = torch.randint(0, len(train), (args.batch_size,), generator=gen)
        ids, mask, labels, pv = collate([train[int(i)] for i in idx])
        loss = model(input_ids=ids, attention_mask=mask, pixel_values=pv, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        out_of_time = time.perf_counter() - t0 > args.max_time
        if step % args.eval_every == 0 or step == args.steps or out_of_time:
            elapsed = round(time.perf_counter() - t0, 1)
            print(
                json.dumps({"step": step, "train_s": elapsed, "loss": round(ema, 4), "accuracy": evaluate()})
            )
            if out_of_time:
                break


if __name__ == "__main__":
    main()
