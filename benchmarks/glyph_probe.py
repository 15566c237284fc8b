"""Can a vision tower learn to read a disc's label? Trains tower + pooled linear head, prints JSON.

    python benchmarks/glyph_probe.py --tower focalnet --steps 2000          # ~10 min on 1 CPU core
    python benchmarks/glyph_probe.py --tower clip --steps 400 --jitter 0    # label always at the centre

The question every basic Sparkle question starts with is "which disc is N3?". This isolates the
reading half of it from the language model: scenes with one disc labelled N1..N5 (drawn by the
project's renderer at 448 px, resized by the embedded model's processor settings: white -> 0),
a Hugging Face vision tower built from a config (random init), its last hidden states max- or
mean-pooled over tokens, and a linear 5-way head, trained with AdamW on cross-entropy.

``--jitter J`` places the disc uniformly within +-J frame units of the centre (4.5: anywhere on
the canvas, as in the tasks; 0: always the same pixels). Prints test accuracy (200 held-out
scenes) every ``--eval-every`` steps and a final JSON line. Chance is 0.2. docs/embedded-model.md
records what each tower reached and after how many steps.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def _focalnet(
    embed_dim: int, hidden_sizes: list[int], patch_size: int = 4, use_conv_embed: bool = True
) -> dict[str, Any]:
    """A FocalNet config with one block per stage (one stage per entry of ``hidden_sizes``)."""
    stages = len(hidden_sizes)
    return {
        "model_type": "focalnet",
        "patch_size": patch_size,
        "embed_dim": embed_dim,
        "use_conv_embed": use_conv_embed,
        "hidden_sizes": hidden_sizes,
        "depths": [1] * stages,
        "focal_levels": [2] * stages,
        "focal_windows": [3] * stages,
        "mlp_ratio": 2.0,
        "drop_path_rate": 0.0,
    }


#: Tower configs: the embedded `small` model's ViT, and conv / hybrid towers of the same width.
TOWERS: dict[str, dict[str, Any]] = {
    "clip": {
        "model_type": "clip_vision_model",
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "patch_size": 16,
    },
    "levit": {
        "model_type": "levit",
        "patch_size": 16,
        "hidden_sizes": [128, 32, 32],
        "depths": [1, 0, 0],
        "num_attention_heads": [4, 2, 2],
        "key_dim": [16, 16, 16],
        "attention_ratio": [2, 2, 2],
        "mlp_ratio": [2, 2, 2],
    },
    "hiera": {
        "model_type": "hiera",
        # A stride-1 3x3 stem: the first layer sees every pixel offset, like a plain CNN's.
        "patch_size": [3, 3],
        "patch_stride": [1, 1],
        "patch_padding": [1, 1],
        "embed_dim": 8,
        "embed_dim_multiplier": 2.0,
        "depths": [1, 1, 1, 1, 1],
        "num_heads": [1, 1, 2, 4, 8],
        "num_query_pool": 4,
        "query_stride": [2, 2],
        "masked_unit_size": [16, 16],
        "masked_unit_attention": [True, True, True, False, False],
        "mlp_ratio": 2.0,
    },
    # FocalNet for larger inputs: one more stage per doubling keeps 8 x 8 (7 x 7 at 448) tokens.
    "focalnet-4stage": _focalnet(16, [32, 64, 128, 128]),
    "focalnet-5stage": _focalnet(16, [32, 64, 96, 128, 128]),
    # FocalNet at full resolution: a per-pixel stem, then stride-1 depthwise convs in the focal
    # modulation of stage 1, halving the grid per stage (non-overlapping 2x2) down to 8 x 8.
    "focalnet-fine": _focalnet(8, [16, 32, 64, 128, 128], patch_size=1, use_conv_embed=False),
    "focalnet": _focalnet(32, [64, 128, 128]),
    # ConvNeXt with a 2x2 stem (default 4x4) and layer scale 1.0 (default 1e-6, which starts every
    # block as the identity): 7x7 depthwise convs at 64 x 64, halving per stage down to 8 x 8.
    "convnext-fine": {
        "model_type": "convnext",
        "patch_size": 2,
        "hidden_sizes": [16, 32, 64, 128],
        "depths": [1, 1, 1, 1],
        "layer_scale_init_value": 1.0,
        "drop_path_rate": 0.0,
    },
    # PoolFormer with a dense 3x3 stride-1 first patch embedding (default 7x7 stride 4) and dense
    # 3x3 stride-2 embeddings between stages (a plain CNN's layout), layer scale off; 8 x 8 at 128 px.
    "poolformer-fine": {
        "model_type": "poolformer",
        "hidden_sizes": [16, 32, 64, 128, 128],
        "depths": [1, 1, 1, 1, 1],
        "patch_sizes": [3, 3, 3, 3, 3],
        "strides": [1, 2, 2, 2, 2],
        "padding": [1, 1, 1, 1, 1],
        "num_encoder_blocks": 5,
        "mlp_ratio": 2.0,
        "use_layer_scale": False,
    },
    # A plain CNN from the library: RegNet-X, 3x3 stride-2 stem, then one block per stage (the
    # first at the stem's resolution), BatchNorm throughout. 8 x 8 feature map at 128 px.
    "regnet": {
        "model_type": "regnet",
        "embedding_size": 16,
        "hidden_sizes": [32, 64, 128, 128],
        "depths": [1, 1, 1, 1],
        "groups_width": 16,
        "layer_type": "x",
        "downsample_in_first_stage": False,
    },
}


def _scenes(n: int, split: int, jitter: float, size: int, processor: Any, target: str) -> tuple[Any, Any]:
    import numpy as np
    import torch

    from sparkle_vlm.render.raster import render_points
    from sparkle_vlm.scene import Node, Scene

    rng = np.random.default_rng([7, split])
    images, labels = [], []
    for _ in range(n):
        k = int(rng.integers(1, 6))
        x, y = 5 + rng.uniform(-jitter, jitter), 5 + rng.uniform(-jitter, jitter)
        image = render_points(Scene((Node(f"N{k}", float(x), float(y)),)).to_dict(), 448).convert("RGB")
        images.append(processor(images=[image], return_tensors="pt")["pixel_values"][0])
        if target == "label":
            labels.append(k - 1)
        else:  # the 3x3 region of the relative-localization task (cuts at 4 and 6)
            col, row = (int(v >= 4) + int(v >= 6) for v in (x, y))
            labels.append(3 * row + col)
    return torch.stack(images), torch.tensor(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tower", choices=sorted(TOWERS), default="focalnet")
    ap.add_argument("--image-size", type=int, default=128, help="side the processor resizes to (px)")
    ap.add_argument("--jitter", type=float, default=4.5, help="disc within +-J frame units of the centre")
    ap.add_argument("--pool", choices=("max", "mean"), default="max")
    ap.add_argument(
        "--target",
        choices=("label", "region"),
        default="label",
        help="what the head predicts: the disc's label (5-way) or its 3x3 region (9-way: position)",
    )
    ap.add_argument("--white", choices=("zero", "one"), default="zero", help="pixel value of white")
    ap.add_argument("--config", default="{}", help="JSON overrides of the tower config")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda-if-available")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from transformers import AutoConfig, AutoModel, CLIPImageProcessor

    torch.set_num_threads(args.threads)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu")
        if args.device == "cuda-if-available"
        else args.device
    )
    spec = {**TOWERS[args.tower], **json.loads(args.config)}
    model_type = spec.pop("model_type")
    torch.manual_seed(args.seed)
    size: Any = [args.image_size] * 2 if model_type == "hiera" else args.image_size
    if model_type not in ("regnet", "convnext", "poolformer"):  # convolutional: any input size
        spec["image_size"] = size
    tower = AutoModel.from_config(AutoConfig.for_model(model_type, **spec))
    side = args.image_size
    processor = CLIPImageProcessor(
        size={"height": side, "width": side},
        do_center_crop=False,
        image_mean=[1.0 if args.white == "zero" else 0.5] * 3,
        image_std=[0.5, 0.5, 0.5],
    )
    t0 = time.perf_counter()
    x_train, y_train = _scenes(3000, 0, args.jitter, side, processor, args.target)
    x_test, y_test = _scenes(200, 1, args.jitter, side, processor, args.target)
    prep_s = time.perf_counter() - t0
    tower.to(device)
    x_train, y_train, x_test, y_test = (t.to(device) for t in (x_train, y_train, x_test, y_test))

    def features(x: Any) -> Any:
        h = tower(pixel_values=x, output_hidden_states=True).hidden_states[-1]
        if h.dim() == 4:  # convolutional towers: (batch, channels, h, w) -> tokens
            h = h.flatten(2).transpose(1, 2)
        return h.max(1).values if args.pool == "max" else h.mean(1)

    with torch.no_grad():
        width = features(x_test[:2]).shape[-1]
    head = torch.nn.Linear(width, 5 if args.target == "label" else 9).to(device)
    opt = torch.optim.AdamW(list(tower.parameters()) + list(head.parameters()), lr=args.lr)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    curve: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(y_train), (args.batch_size,), generator=gen).to(device)
        loss = torch.nn.functional.cross_entropy(head(features(x_train[idx])), y_train[idx])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % args.eval_every == 0 or step == args.steps:
            tower.eval()
            with torch.no_grad():
                acc = (head(features(x_test)).argmax(-1) == y_test).float().mean().item()
            tower.train()
            curve.append((step, round(acc, 3)))
            print(f"step {step}: accuracy {acc:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    result = {
        "tower": args.tower,
        "image_size": side,
        "jitter": args.jitter,
        "pool": args.pool,
        "target": args.target,
        "white": args.white,
        "config": args.config,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "device": str(device),
        "tower_parameters": sum(p.numel() for p in tower.parameters()),
        "prep_s": round(prep_s, 1),
        "train_s": round(time.perf_counter() - t0, 1),
        "curve": curve,
        "chance": 0.2 if args.target == "label" else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
