"""TRL's ``SFTTrainer`` with a loss that scores only the answer tokens on CPU.

TRL computes the SFT loss with a fused, chunked LM head. On CUDA its Triton kernel scores only
the positions that carry a label; elsewhere it scores every position of the batch (image
tokens, prompt and padding included) in torch. On CPU with the embedded model that was 36 % of a
training step (0.078 of 0.219 s, 16 samples of ~170 tokens of which ~15 carry loss). Here the
backbone runs once, the LM head is applied to the labelled positions alone and the loss is the
same token-mean negative log-likelihood (``tests/test_train_sft.py`` checks loss and gradients
against TRL's). Every case this does not cover goes to TRL's own ``compute_loss``: CUDA and
other accelerators, logit soft-capping or scaling, MoE auxiliary losses, custom or smoothed
losses, loss types other than ``nll``, pre-shifted labels and callers that want the outputs.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import SFTTrainer


def _backbone_and_head(model: Any) -> tuple[Any, Any] | None:
    """(backbone returning hidden states, LM head) of a causal (V)LM, PEFT-wrapped or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    backbone = getattr(base, "base_model", None)
    if head is None or backbone is None or backbone is base:
        return None
    text = base.config.get_text_config()
    if getattr(text, "final_logit_softcapping", None) or getattr(text, "logit_scale", None) not in (
        None,
        1,
        1.0,
    ):
        return None
    return backbone, head


class SparkleSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose CPU loss scores the labelled positions only (module docstring)."""

    def _compact_parts(self, model: Any, inputs: dict[str, Any]) -> tuple[Any, Any] | None:
        labels = inputs.get("labels")
        if (
            labels is None
            or labels.device.type != "cpu"
            or "shift_labels" in inputs
            or self.compute_loss_func is not None
            or self.label_smoother is not None
            or getattr(self.args, "loss_type", "nll") != "nll"
            or getattr(self, "aux_loss_enabled", False)
        ):
            return None
        return _backbone_and_head(self.accelerator.unwrap_model(model))

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        parts = None if return_outputs else self._compact_parts(model, inputs)
        if parts is None:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        backbone, head = parts
        kwargs = {k: v for k, v in inputs.items() if k != "labels"}
        kwargs["use_cache"] = False
        hidden = backbone(**kwargs, return_dict=True).last_hidden_state[:, :-1]
        labels = inputs["labels"][:, 1:].to(hidden.device)
        mask = labels != -100
        logits = head(hidden[mask]).float()
        target = labels[mask]
        log_probs = torch.log_softmax(logits, dim=-1)
        nll = -log_probs.gather(-1, target.unsqueeze(-1)).sum()
        n = mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = nll / torch.as_tensor(n).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        self._log_metrics(inputs, log_probs.detach(), target, int(mask.sum()))
        return loss

    def _log_metrics(self, inputs: dict[str, Any], log_probs: Any, target: Any, n_valid: int) -> None:
        """TRL's training metrics (entropy, mean token accuracy, tokens seen), where it keeps them."""
        metrics = getattr(self, "_metrics", None)
        if metrics is None:
            return
        mode = "train" if getattr(self.model, "training", False) else "eval"
        entropy = -(log_probs.exp() * log_probs).sum()
        correct = (log_probs.argmax(-1) == target).sum()
        metrics[mode]["entropy"].append(float(entropy) / n_valid if n_valid else 0.0)
        metrics[mode]["mean_token_accuracy"].append(float(correct) / n_valid if n_valid else 0.0)
        if mode == "train" and "attention_mask" in inputs and hasattr(self, "_total_train_tokens"):
            self._total_train_tokens += int(inputs["attention_mask"].sum())
            metrics[mode]["num_tokens"] = [self._total_train_tokens]
