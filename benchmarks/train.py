"""SFT training throughput benchmark. Prints one JSON line.

    python benchmarks/train.py                                  # tiny random Qwen2-VL, CPU, float32
    python benchmarks/train.py --device cuda --size mid         # ~0.7B random Qwen2-VL-like, bf16, GPU

Self-contained and offline: the model is built from a config with random weights
(``sparkle_vlm.train.tiny``: ``tiny`` ~0.1M parameters; ``mid`` ~0.7B with Qwen2-VL's 151,936-token
vocabulary) and the data is a freshly generated Sparkle-Instruct set (448 px images). Training runs
the same path as ``sparkle train sft``: prompt/completion rows, TRL's vision collator (images decoded
and processed on the fly), LoRA on the language model (``--full`` for every weight), completion-only
loss. The first ``--warmup`` steps are not timed. Reported: samples/s, tokens/s (non-padding input
tokens, image tokens included, as counted by the trainer), seconds per step, parameter counts, peak
GPU memory and the GPU name.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--size", choices=("tiny", "mid"), default="tiny", help="model preset")
    ap.add_argument(
        "--steps", type=int, default=None, help="timed optimizer steps (default 10 cpu / 30 cuda)"
    )
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--batch-size", type=int, default=None, help="per step (default 4 cpu / 8 cuda)")
    ap.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    ap.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing")
    ap.add_argument("--images", type=int, default=8, help="training images generated (17 samples each)")
    ap.add_argument(
        "--image-tokens",
        type=int,
        default=None,
        help="max image tokens per image (default 16 tiny / 256 mid, i.e. 448 px unscaled)",
    )
    ap.add_argument("--workers", type=int, default=None, help="dataloader workers (default 0 cpu / 4 cuda)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (on a busy machine 1 avoids OpenMP oversubscription stalls)",
    )
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    cuda = args.device == "cuda"
    steps = args.steps or (30 if cuda else 10)
    batch = args.batch_size or (8 if cuda else 4)
    image_tokens = args.image_tokens or (256 if args.size == "mid" else 16)

    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from sparkle_vlm.generate import generate_dataset
    from sparkle_vlm.tasks import get_task
    from sparkle_vlm.train import common
    from sparkle_vlm.train import data as D
    from sparkle_vlm.train.config import SFTTrainConfig
    from sparkle_vlm.train.tiny import build_model, count_parameters

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "instruct")
        task = get_task("instruct")
        generate_dataset(
            task, task.make_config(n=args.images, size=448), 0, data_dir, workers=1, progress=False
        )
        cfg = SFTTrainConfig(
            model=f"random-{args.size}",
            data=[data_dir],
            out=os.path.join(tmp, "out"),
            lora=not args.full,
            batch_size=batch,
            grad_accum=1,
            lr=1e-4,
            warmup_ratio=0.0,
            max_steps=args.warmup + steps,
            save_steps=10**6,
            logging_steps=10**6,
            bf16=cuda,
            gradient_checkpointing=args.grad_ckpt,
            dataloader_workers=args.workers if args.workers is not None else (4 if cuda else 0),
        )
        cfg.validate()
        rt = common.runtime_for(cfg)
        model, processor = build_model(args.size, seed=0, dtype=rt.dtype)
        n_params = count_parameters(model)
        common.apply_image_bounds(processor, None, image_tokens * 28 * 28)
        records, _ = D.load_records([data_dir])
        rows = D.shuffled(D.sft_rows(records), 0)
        lengths = D.measure_lengths(processor, rows)

        peft_config = None
        if cfg.lora:
            pattern, _ = common.lora_modules(model, cfg)
            peft_config = common.peft_config(cfg, pattern)
        targs = common.trainer_args(cfg, rt, Path(cfg.out))
        targs.update(save_strategy="no", include_num_input_tokens_seen="non_padding", disable_tqdm=True)
        sft_args = SFTConfig(**targs, max_length=None, completion_only_loss=True, shuffle_dataset=False)

        marks: list[tuple[int, float, int]] = []

        class Clock(TrainerCallback):
            def on_step_end(self, a: Any, state: Any, control: Any, **kw: Any) -> None:
                if cuda:
                    torch.cuda.synchronize()
                marks.append((state.global_step, time.perf_counter(), int(state.num_input_tokens_seen)))

        if cuda:
            model = model.to("cuda")
            torch.cuda.reset_peak_memory_stats()
        trainer = SFTTrainer(
            model=model,
            args=sft_args,
            train_dataset=D.to_dataset(rows),
            processing_class=processor,
            peft_config=peft_config,
            callbacks=[Clock()],
        )
        # The printer callback writes log dicts to stdout; this script's stdout is one JSON line.
        trainer.remove_callback(PrinterCallback)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0

    start = next(m for m in marks if m[0] == args.warmup)
    end = marks[-1]
    dt = end[1] - start[1]
    timed_steps = end[0] - start[0]
    result = {
        "benchmark": "train_sft",
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "size": args.size,
        "params": n_params,
        "trainable_params": int(trainable),
        "method": "full" if args.full else "lora",
        "dtype": "bfloat16" if rt.bf16 else "float32",
        "gradient_checkpointing": rt.gradient_checkpointing,
        "batch_size": batch,
        "image_tokens_per_image": image_tokens,
        "mean_tokens_per_sample": round(sum(lengths) / len(lengths), 1),
        "timed_steps": timed_steps,
        "s_per_step": round(dt / timed_steps, 4),
        "samples_per_s": round(timed_steps * batch / dt, 3),
        "tokens_per_s": round((end[2] - start[2]) / dt, 1),
        "wall_s": round(wall, 2),
        "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
