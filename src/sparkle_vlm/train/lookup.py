"""Lookup heads: the decoder starts with the two attention heads a rationale answer needs.

A rationale answer (``train/rationale.py``) writes `` N2 18``: after the label ``N2`` the x digit
of N2's cell, then its y digit. With the tower's code (``train/tower.py``) the image token of the
disc N2 holds its label and both digits, so each digit is one attention lookup away. Trained from
random weights, the decoder found that lookup late or never within the CPU demo's budget, and
whether it did was decided by rounding-level noise (docs/embedded-model.md, rounds seven and
eight). This stage sets two heads so that the lookups exist before SFT starts; SFT then trains
every weight of the decoder as before, these heads included.

1. **Label keys.** The code's label units are written as fresh random vectors instead of the
   label's text embedding: were they the same, the query of ``N2`` in the answer would match the
   ``N2`` of the question (and itself) more strongly than the disc.
2. **Layer 0, head 0: find the disc.** Query (text label ``N<j>``) and key (image token of disc
   ``N<j>``) both map to ``u_j``, 12 orthonormal vectors in the head's slowest rotary pairs (the
   rotation by the distance between answer and image then leaves the match intact); other tokens
   map near 0. Value and output copy the disc's x and y digit embeddings into the label's
   position, so the next token (the x digit) is readable there.
3. **Layer 1, head 0: the previous label.** At the x digit the model must write the y digit of
   the label just before it. Query (x-digit tokens) and key (label tokens) share one vector in
   the fastest rotary pairs, where the score falls quickly with distance, so the x digit attends
   to the label one position back; value and output copy that position's y digit.

Every map is a ridge regression from the model's own normalised layer inputs, captured on
training samples, to targets computed from the scene records (the scene is the truth). The
stage reports, on held-out images, how often the initialised model already ranks the right x and
y digit first among the ten (before any SFT step).
"""

from __future__ import annotations

import math
from typing import Any

from sparkle_vlm.errors import SparkleError
from sparkle_vlm.train.common import Log, stderr_log
from sparkle_vlm.train.tower import N_LABELS, digit_token_ids, label_token_ids

#: Score scales of the two heads (in units of the normalised layer inputs): a matching key scores
#: about LOOKUP_GAIN ** 2 / sqrt(head_dim), ~11 with the small model's 32-dim heads.
LOOKUP_GAIN = 8.0
RECENT_GAIN = 13.0
#: Norm of a copied digit embedding relative to the raw token embeddings (makes it stand out of
#: the residual stream of a randomly initialised decoder).
COPY_GAIN = 3.0
#: Weight of the rows that carry a target against the many rows that map to 0.
POSITIVE_WEIGHT = 10.0
RIDGE = 1e-2


def _ridge(a: Any, t: Any, w: Any | None = None) -> Any:
    """argmin_W sum_i w_i |a_i W - t_i|^2 + RIDGE |W|^2, shape (in, out)."""
    import torch

    if w is not None:
        s = w.sqrt().unsqueeze(1)
        a, t = a * s, t * s
    return torch.linalg.solve(a.T @ a + RIDGE * torch.eye(a.shape[1], dtype=a.dtype), a.T @ t)


def _weights(t: Any) -> Any:
    import torch

    return torch.where(t.abs().sum(-1) > 0, POSITIVE_WEIGHT, 1.0).to(t.dtype)


def _set_head(attn: Any, head: int, dh: int, wq: Any, wk: Any, m: Any) -> None:
    """Write q/k maps (dh, d) and the value-output map ``m`` (d, d; rank-dh part) into one head."""
    import torch

    u, s, vh = torch.linalg.svd(m)
    rows = slice(head * dh, (head + 1) * dh)
    with torch.no_grad():
        attn.q_proj.weight[rows] = wq
        attn.k_proj.weight[rows] = wk
        attn.v_proj.weight[rows] = s[:dh].sqrt().unsqueeze(1) * vh[:dh]
        attn.o_proj.weight[:, rows] = u[:, :dh] * s[:dh].sqrt()
        # the maps are linear: a decoder with q/k/v biases (Qwen2) gets them zeroed in this head
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            if proj.bias is not None:
                proj.bias[rows] = 0.0


def init_lookup_heads(
    model: Any,
    tokenizer: Any,
    samples: list[dict[str, Any]],
    held: list[dict[str, Any]],
    *,
    label_columns: list[int],
    seed: int = 0,
    log: Log = stderr_log,
) -> dict[str, Any]:
    """Set the label keys and the two lookup heads of ``model`` (in place); returns a check.

    ``samples`` / ``held``: dicts with ``input_ids`` (1, T), ``attention_mask``, ``pixel_values``,
    ``answer_start`` (index of the first answer token), ``image_labels`` (one per image token:
    label number 1..12 or 0), ``image_dx`` / ``image_dy`` (the disc's cell digits, -1 where none).
    ``label_columns``: the projector's ``linear_2`` columns that write the labels N1..N12.
    The check reports, on ``held``, how often the model ranks the right x / y digit first.
    """
    import torch

    image_id = model.config.image_token_id
    lm = model.model.language_model
    cfg = lm.config
    d, heads = cfg.hidden_size, cfg.num_attention_heads
    dh = getattr(cfg, "head_dim", None) or d // heads
    if len(lm.layers) < 2 or dh < 4:
        raise SparkleError("--model: lookup heads need a decoder of 2 layers or more with heads of 4+ dims")
    labels = label_token_ids(tokenizer)
    dx_ids, dy_ids = digit_token_ids(tokenizer)
    label_set, dx_set = set(labels), set(dx_ids)
    emb = model.get_input_embeddings().weight.detach()
    gen = torch.Generator().manual_seed(seed)

    # 1. label keys: fresh random directions, each as long as the column it replaces
    lin2 = model.model.multi_modal_projector.linear_2
    with torch.no_grad():
        for col in label_columns:
            r = torch.randn(d, generator=gen)
            lin2.weight[:, col] = r / r.norm() * lin2.weight[:, col].norm()

    half = dh // 2
    n_slow = min(half, math.ceil(N_LABELS / 2) + 1)
    slow = [*range(half - n_slow, half), *range(dh - n_slow, dh)]
    n_fast = max(1, min(5, half - n_slow))
    u = torch.zeros(N_LABELS, dh)
    basis = torch.randn(len(slow), max(N_LABELS, len(slow)), generator=gen)
    if len(slow) >= N_LABELS:
        u[:, slow] = torch.linalg.qr(basis)[0][:, :N_LABELS].T
    else:  # a narrow head: near-orthogonal random directions
        u[:, slow] = torch.nn.functional.normalize(basis[:, :N_LABELS].T, dim=1)
    recent = torch.zeros(dh)
    recent[:n_fast] = math.sqrt(RECENT_GAIN)

    def layer_inputs(layer: int, s: dict[str, Any]) -> Any:
        got: dict[str, Any] = {}
        hook = lm.layers[layer].input_layernorm.register_forward_hook(
            lambda _m, _i, o: got.__setitem__("x", o.detach()[0])
        )
        try:
            with torch.no_grad():
                model(
                    input_ids=s["input_ids"],
                    attention_mask=s["attention_mask"],
                    pixel_values=s["pixel_values"],
                )
        finally:
            hook.remove()
        return got["x"]

    # 2. layer 0, head 0: text label -> u_j as query, disc j's image token -> u_j as key
    rows_x, q_t, k_t, v_t = [], [], [], []
    for s in samples:
        x, ids = layer_inputs(0, s), s["input_ids"][0].tolist()
        image_pos = [p for p, t in enumerate(ids) if t == image_id]
        lab = dict(zip(image_pos, s["image_labels"], strict=True))
        dxy = dict(zip(image_pos, zip(s["image_dx"], s["image_dy"], strict=True), strict=True))
        for p, t in enumerate(ids):
            q, k, v = torch.zeros(dh), torch.zeros(dh), torch.zeros(d)
            if t == image_id and lab[p] > 0:
                k = LOOKUP_GAIN * u[lab[p] - 1]
                fx, fy = dxy[p]
                v = COPY_GAIN * (emb[dx_ids[fx]] + emb[dy_ids[fy]])
            elif t in label_set:
                q = LOOKUP_GAIN * u[labels.index(t)]
            rows_x.append(x[p])
            q_t.append(q)
            k_t.append(k)
            v_t.append(v)
    xs, qs, ks, vs = (torch.stack(r) for r in (rows_x, q_t, k_t, v_t))
    wq = _ridge(xs, qs, _weights(qs)).T
    wk = _ridge(xs, ks, _weights(ks)).T
    m = _ridge(xs, vs, _weights(vs)).T
    _set_head(lm.layers[0].self_attn, 0, dh, wq, wk, m)

    # 3. layer 1, head 0: x digit -> recent as query, any label token -> recent as key; the value
    # reads the y digit the lookup above wrote into the label's position
    rows_x, q_t, k_t, v_x, v_t = [], [], [], [], []
    for s in samples:
        x, ids = layer_inputs(1, s), s["input_ids"][0].tolist()
        for p, t in enumerate(ids):
            rows_x.append(x[p])
            q_t.append(recent if t in dx_set else torch.zeros(dh))
            k_t.append(recent if t in label_set else torch.zeros(dh))
            answer_label = t in label_set and p >= s["answer_start"] and p + 2 < len(ids)
            if answer_label and ids[p + 1] in dx_set and ids[p + 2] in dy_ids:
                v_x.append(x[p])
                v_t.append(COPY_GAIN * emb[ids[p + 2]])
            elif t not in label_set and t != image_id:
                v_x.append(x[p])
                v_t.append(torch.zeros(d))
    xs, qs, ks = (torch.stack(r) for r in (rows_x, q_t, k_t))
    vx, vt = torch.stack(v_x), torch.stack(v_t)
    _set_head(
        lm.layers[1].self_attn,
        0,
        dh,
        _ridge(xs, qs, _weights(qs)).T,
        _ridge(xs, ks, _weights(ks)).T,
        _ridge(vx, vt, _weights(vt)).T,
    )
    check = digit_check(model, held, dx_ids, dy_ids, label_set)
    log(f"lookup heads set: x / y digit right at init on held-out answers {check}")
    return check


def digit_check(
    model: Any, held: list[dict[str, Any]], dx_ids: list[int], dy_ids: list[int], label_set: set[int]
) -> dict[str, Any]:
    """How often the model ranks the right x digit first after an answer's label, and the right
    y digit after that x digit (among the ten digits of each kind)."""
    import torch

    hits = {"x": 0, "y": 0}
    n = 0
    dx_set = set(dx_ids)
    for s in held:
        with torch.no_grad():
            logits = model(
                input_ids=s["input_ids"], attention_mask=s["attention_mask"], pixel_values=s["pixel_values"]
            ).logits[0]
        ids = s["input_ids"][0].tolist()
        for p in range(s["answer_start"], len(ids) - 2):
            if ids[p] in label_set and ids[p + 1] in dx_set and ids[p + 2] in dy_ids:
                n += 1
                hits["x"] += int(dx_ids[int(logits[p, dx_ids].argmax())] == ids[p + 1])
                hits["y"] += int(dy_ids[int(logits[p + 1, dy_ids].argmax())] == ids[p + 2])
    return {
        "answer_labels": n,
        "x_digit_accuracy": round(hits["x"] / n, 4) if n else None,
        "y_digit_accuracy": round(hits["y"] / n, 4) if n else None,
    }
