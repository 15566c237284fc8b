"""Lookup heads: the decoder starts with the attention heads a rationale answer needs.

A rationale answer (``train/rationale.py``) writes `` N2 18``: after the label ``N2`` the x digit
of N2's cell, then its y digit. With the tower's code (``train/tower.py``) the image token of the
disc N2 holds its label and both digits, so each digit is one attention lookup away. Trained from
random weights, the decoder found that lookup late or never within the CPU demo's budget, and
whether it did was decided by rounding-level noise (docs/embedded-model.md, rounds seven and
eight). This stage sets heads so that the lookups exist before SFT starts; SFT then trains
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
4. **Number lines** (:func:`_number_heads`, decoders of 3+ layers with 4+ heads). A direction's
   letter compares the two cells (one difference near 0 is a straight direction), which from
   four random digit embeddings is a table SFT did not learn (tenth round). One head of layer 0
   and three of layer 1 read the answer's newest and oldest x and y digits and write each as a
   number, (digit - 4.5) / 4.5 along a fixed direction of the residual stream, so that x2 - x1
   and y2 - y1 are linear reads.
5. **Label copy** (:func:`_previous_label_head`, layer 0 head 1, and :func:`_label_copy_head`,
   layer 2 head 1; the same decoders). The answer names the question's labels in the order the
   question first mentions them; SFT learned that copy late, and how well decided most of the
   spread between draws (eleventh round). The first head marks every label and comma with the
   label just before it; the second writes, where the answer starts, the question's label
   that has no label before it and, at each comma, the label that follows the one just written.
6. **Letter readout** (:func:`fit_letter_readout`, separate samples). The last layer's MLP
   output map gains a ridge-fitted term that writes a multiple-choice answer's letter at the
   ``{`` before it, from that MLP's own hidden units.

Every map is a ridge regression from the model's own normalised layer inputs, captured on
training samples, to targets computed from the scene records (the scene is the truth). The
stage reports, on held-out images, how often the initialised model already ranks the right x and
y digit first among the ten, and the right label first where the answer names one (before any
SFT step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from itertools import islice
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
#: Scores of a digit key under the number-line heads (after attention's 1 / sqrt(head_dim)): high
#: enough that the few digits of an answer outweigh the ~150 other tokens, which score 0.
NUMBER_SCORE_NEAR = 15.0
NUMBER_SCORE_RECENT = 20.0
#: Norm of a number line's end (digit 0 or 9) relative to the raw token embeddings.
NUMBER_GAIN = 1.0
#: The letter readout: the added term writes the letter's centred output embedding x this gain
#: at the ``{`` before it, and is fitted to write ~0 at this many other positions per answer.
READOUT_GAIN = 3.0
READOUT_NEGATIVES = 20
#: The label-copy heads. PREVIOUS_SCORE: the previous-label head's score for a label 1-9 positions
#: back (0 for the token itself); PREVIOUS_BAND: its rotary pairs (radians per position), whose
#: sines are positive over those positions. COPY_BIAS: the copy head's score for any label against
#: the ~170 other tokens (which score 0); COPY_MATCH: for the label the question names right
#: after the one the answer wrote last; COPY_FIRST: against a label that has a label before it,
#: where the answer starts (its first label is the question's first). PREVIOUS_WINDOW: how far
#: back (positions) a label's key target looks for the label before it.
PREVIOUS_SCORE = 12.0
PREVIOUS_BAND = (0.15, 0.6)
PREVIOUS_WINDOW = 8
COPY_BIAS = 12.0
COPY_MATCH = 12.0
COPY_FIRST = 12.0
#: (layer, head, digit, kind) of the four number-line heads (:func:`_number_heads`), in layer order.
#: The newest y digit is read in layer 0, where a digit token holds its own embedding alone: in
#: layer 2 (until round twelve) an x digit also held the copy of its y digit that the layer-1
#: lookup head writes, and the line read from either was ~1.5 cells off (probe RMSE at the ``{``
#: of direction answers: y2 1.49 -> 0.23 cells, y2 - y1 1.51 -> 0.43; twelfth round).
NUMBER_PLAN = (
    (0, 2, "newest", "y"),
    (1, 1, "newest", "x"),
    (1, 2, "oldest", "x"),
    (1, 3, "oldest", "y"),
)
#: (layer, head) of the label-copy head; it reads the mark the layer-0 head puts at commas. In
#: layer 1 it is fitted before the number lines and must not share a head with NUMBER_PLAN.
COPY_AT = (2, 1)
#: Rotary frequencies (radians per position) of the number-line heads. RECENT: the newest-digit
#: score falls monotonically over the ~10 positions of a rationale. NEAR: turns 1-3 radians over
#: the ~100 positions back to the image, so no image token outscores an answer digit. BACK (negated)
#: and OLDER: the oldest-digit score rises from the newest digit to the older one and falls by
#: ~20 positions back, before the prompt.
RECENT_BAND = (0.08, 0.4)
NEAR_BAND = (0.012, 0.04)
BACK_BAND = (0.15, 0.4)
OLDER_BAND = (0.045, 0.12)
#: Weight of the rows that carry a target against the many rows that map to 0.
POSITIVE_WEIGHT = 10.0
RIDGE = 1e-2
#: Weight of the rows a number-line key must not match: image tokens and answer labels, which
#: hold digit embeddings too.
DECOY_WEIGHT = 10.0
#: Samples per forward pass when capturing layer inputs (one sample per pass spent ~40 ms in
#: Python and small convolutions; batched, the readout's 4,500 answers take a fraction of that).
CAPTURE_BATCH = 32


def _ridge(a: Any, t: Any, w: Any | None = None) -> Any:
    """argmin_W sum_i w_i |a_i W - t_i|^2 + RIDGE |W|^2, shape (in, out)."""
    import torch

    if w is not None:
        s = w.sqrt().unsqueeze(1)
        a, t = a * s, t * s
    return torch.linalg.solve(a.T @ a + RIDGE * torch.eye(a.shape[1], dtype=a.dtype), a.T @ t)


def _prefetched(items: Iterable[Any], ahead: int) -> Iterator[Any]:
    """``items`` in order, drawn by a background thread up to ``ahead`` items ahead; an error
    raised while drawing is raised here, and closing this iterator stops the thread."""
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def draw() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))
            return
        put(("end", None))

    thread = threading.Thread(target=draw, name="sparkle-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def forward_batches(
    model: Any,
    samples: Iterable[dict[str, Any]],
    capture: Any | None = None,
    *,
    pre: bool = False,
    logits: bool = False,
    batch_size: int = CAPTURE_BATCH,
) -> Iterator[tuple[dict[str, Any], Any, Any]]:
    """Run ``samples`` (dicts of ``input_ids`` (1, T), ``attention_mask``, ``pixel_values``)
    through ``model`` in right-padded batches; yields ``(sample, captured, logits)`` per sample,
    in order, each cut to the sample's own length. A lazy ``samples`` (not a list or tuple) is
    drawn in a background thread, ahead of the model: making a sample (image decode and resize,
    tokenizing) is Python-bound and the forward pass mostly is not (the letter readout's 960
    answers: 15.4 -> 11.1 s on 2 cores, the same captures).

    ``captured``: the output of module ``capture`` (its input where ``pre``), ``(T, ...)``, or
    None; ``logits``: ``(T, vocab)`` where asked, else None. Right padding leaves every real
    position's causal context as it is alone (the values agree up to float rounding).
    """
    import torch

    image_id = model.config.image_token_id
    pad = 1 if image_id == 0 else 0  # any id but the image token: padding is masked out
    got: dict[str, Any] = {}
    hook = None
    if capture is not None:
        if pre:
            hook = capture.register_forward_pre_hook(lambda _m, a: got.__setitem__("h", a[0].detach()))
        else:
            hook = capture.register_forward_hook(lambda _m, _i, o: got.__setitem__("h", o.detach()))
    it = iter(samples) if isinstance(samples, (list, tuple)) else _prefetched(samples, 2 * batch_size)
    try:
        while chunk := list(islice(it, batch_size)):
            lengths = [int(s["input_ids"].shape[1]) for s in chunk]
            width = max(lengths)
            ids = torch.full((len(chunk), width), pad, dtype=chunk[0]["input_ids"].dtype)
            mask = torch.zeros((len(chunk), width), dtype=chunk[0]["attention_mask"].dtype)
            for i, (s, n) in enumerate(zip(chunk, lengths, strict=True)):
                ids[i, :n] = s["input_ids"][0]
                mask[i, :n] = s["attention_mask"][0]
            with torch.no_grad():
                out = model(
                    input_ids=ids,
                    attention_mask=mask,
                    pixel_values=torch.cat([s["pixel_values"] for s in chunk]),
                    logits_to_keep=0 if logits else 1,
                )
            for i, (s, n) in enumerate(zip(chunk, lengths, strict=True)):
                yield (
                    s,
                    got["h"][i, :n] if capture is not None else None,
                    out.logits[i, :n] if logits else None,
                )
    finally:
        if hook is not None:
            hook.remove()


def _weights(t: Any) -> Any:
    import torch

    return torch.where(t.abs().sum(-1) > 0, POSITIVE_WEIGHT, 1.0).to(t.dtype)


def _pair_vector(dh: int, pairs: list[int], score: float, sign: float = 1.0) -> Any:
    """A query (or key) on the first component of each rotary pair of ``pairs``: with the same
    vector on the other side, q.k / sqrt(dh) = +-score at distance 0, falling as the pairs turn."""
    import torch

    v = torch.zeros(dh)
    v[pairs] = sign * math.sqrt(score * math.sqrt(dh) / len(pairs))
    return v


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


def _decoder_dims(model: Any) -> tuple[Any, int, int, int]:
    """The language model of a VLM and its hidden size, head count and head dimension."""
    lm = model.model.language_model
    cfg = lm.config
    d, heads = cfg.hidden_size, cfg.num_attention_heads
    return lm, d, heads, getattr(cfg, "head_dim", None) or d // heads


def _fit_head(
    attn: Any,
    head: int,
    dh: int,
    xs: Any,
    qs: Any,
    ks: Any,
    vs: Any,
    *,
    key_weights: Any | None = None,
    value_xs: Any | None = None,
) -> None:
    """Fit one head by ridge regressions and write it (:func:`_set_head`): queries ``qs`` and keys
    ``ks`` from the layer inputs ``xs``, the value-output map from ``value_xs`` (default ``xs``)
    to ``vs``. Rows with a target weigh POSITIVE_WEIGHT; the keys take ``key_weights`` instead
    where given (decoys)."""
    _set_head(
        attn,
        head,
        dh,
        _ridge(xs, qs, _weights(qs)).T,
        _ridge(xs, ks, _weights(ks) if key_weights is None else key_weights).T,
        _ridge(xs if value_xs is None else value_xs, vs, _weights(vs)).T,
    )


def _fresh_directions(emb: Any, avoid: list[int], n: int, gen: Any) -> Any:
    """``n`` random unit vectors of the residual stream orthogonal to the embeddings of the
    tokens ``avoid``, so that reading those tokens (and the tied output head's logits for them)
    sees none of them."""
    import torch

    span = torch.linalg.qr(emb[avoid].T)[0]
    raw = torch.randn(n, emb.shape[1], generator=gen)
    raw = raw - (raw @ span) @ span.T
    return torch.nn.functional.normalize(raw, dim=1)


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
    lm, d, heads, dh = _decoder_dims(model)
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

    def layer_inputs(layer: int) -> list[Any]:
        # the normalised input of ``layer`` for every sample, (T, d) each
        return [x for _s, x, _l in forward_batches(model, samples, lm.layers[layer].input_layernorm)]

    # 2. layer 0, head 0: text label -> u_j as query, disc j's image token -> u_j as key
    rows_x, q_t, k_t, v_t = [], [], [], []
    for s, x in zip(samples, layer_inputs(0), strict=True):
        ids = s["input_ids"][0].tolist()
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
    _fit_head(lm.layers[0].self_attn, 0, dh, xs, qs, ks, vs)

    # 2b. layer 0, head 1: at labels and commas, the label just before them (for the copy head)
    comma = tokenizer(",", add_special_tokens=False)["input_ids"][-1]
    marks = _previous_label_head(model, samples, layer_inputs, labels, comma, emb, gen)
    # 3. layer 1, head 0: x digit -> recent as query, any label token -> recent as key; the value
    # reads the y digit the lookup above wrote into the label's position
    rows_x, q_t, k_t, v_x, v_t = [], [], [], [], []
    for s, x in zip(samples, layer_inputs(1), strict=True):
        ids = s["input_ids"][0].tolist()
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
    _fit_head(lm.layers[1].self_attn, 0, dh, xs, qs, ks, vt, value_xs=vx)
    # 4 and 5: the number lines and the label copy, in layer order (each is fitted on the inputs
    # of its layer, which the heads of earlier layers change). The newest-y line of layer 0 comes
    # after the layer-1 head above was fitted without it; it writes along a line orthogonal to the
    # digit and label embeddings that head reads (held-out y digits right at init: 72-88 % in
    # five draws with it, 79-98 % in the six demo draws of rounds nine to eleven without it)
    copy = None
    if marks is not None and COPY_AT[0] == 1:
        copy = _label_copy_head(model, samples, layer_inputs, labels, comma, emb, u, slow, image_id)
    number = _number_heads(model, samples, layer_inputs, dx_ids, dy_ids, labels, emb, gen, image_id)
    if marks is not None and COPY_AT[0] != 1:
        copy = _label_copy_head(model, samples, layer_inputs, labels, comma, emb, u, slow, image_id)
    check = digit_check(model, held, dx_ids, dy_ids, label_set)
    labels_right = label_check(model, held, labels, comma)
    log(f"lookup heads set: at init on held-out answers {check}, answer labels right {labels_right}")
    return {**check, "label_accuracy": labels_right, "number_heads": number, "label_copy": copy}


def _number_heads(
    model: Any,
    samples: list[dict[str, Any]],
    layer_inputs: Any,
    dx_ids: list[int],
    dy_ids: list[int],
    label_ids: list[int],
    emb: Any,
    gen: Any,
    image_id: int,
) -> dict[str, Any] | None:
    """Four heads that write the answer's cell digits as numbers on lines of the residual stream.

    A direction's letter compares the two cells: x2 - x1 and y2 - y1, one of them near 0 for a
    straight direction. From four random digit embeddings that comparison is a table the
    decoder did not learn (ninth round: 1 of 48 straight directions); as numbers it is linear.
    NUMBER_PLAN places them: layer 0, head 2, reads the answer's newest y digit; layer 1, heads
    1-3, its newest x digit, its oldest x digit and its oldest y digit. Each writes
    (digit - 4.5) / 4.5 times its own line. Queries are the answer's tokens, keys the digit
    tokens; the rotary pairs of RECENT_BAND make the score fall with distance within a rationale
    (negated: rise, for the oldest digit), those of NEAR_BAND / OLDER_BAND keep prompt and image
    tokens below the answer's digits. Returns the (layer, head) pairs set, or None for a decoder
    with fewer than 3 layers or 4 heads.
    """
    import torch

    lm, d, heads, dh = _decoder_dims(model)
    if heads < 4 or len(lm.layers) < 3:
        return None
    half = dh // 2
    label_set = set(label_ids)
    inv_freq = lm.rotary_emb.inv_freq.detach().float().cpu()[:half]
    slow = list(range(max(0, half - 3), half))

    def pairs_in(lo_hi: tuple[float, float]) -> list[int]:
        return [i for i in range(half) if lo_hi[0] <= float(inv_freq[i]) <= lo_hi[1]]

    # an unusual rotary base without pairs in the band: the three nearest its middle
    band = pairs_in(RECENT_BAND) or sorted(range(half), key=lambda i: abs(float(inv_freq[i]) - 0.2))[:3]

    def pair_vector(pairs: list[int], score: float, sign: float = 1.0) -> Any:
        return _pair_vector(dh, pairs, score, sign)

    # recent: the band's score falls over the few positions of a rationale; the near pairs turn
    # 1-3 radians over the ~100 positions between answer and image, so a digit of the answer
    # outscores every image token (the band alone aliases at that distance)
    near = pair_vector(pairs_in(NEAR_BAND) or slow, NUMBER_SCORE_NEAR)
    recent = pair_vector(band, NUMBER_SCORE_RECENT) + near
    # oldest: the back pairs' score, negated, rises from the recent digit to the older one
    # within a rationale; the older pairs' score falls by ~20 positions, before the prompt
    back, older = pairs_in(BACK_BAND) or band, pairs_in(OLDER_BAND) or slow
    oldest_q = near + pair_vector(older, NUMBER_SCORE_NEAR) + pair_vector(back, NUMBER_SCORE_RECENT, -1.0)
    oldest_k = near + pair_vector(older, NUMBER_SCORE_NEAR) + pair_vector(back, NUMBER_SCORE_RECENT)

    unit = emb.norm(dim=1).mean() * NUMBER_GAIN
    # the lines are kept orthogonal to the digit and label embeddings, so reading the digits the
    # lookup heads copy (and the tied output head's digit logits) sees none of them
    lines = _fresh_directions(emb, [*dx_ids, *dy_ids, *label_ids], 4, gen) * unit
    x_num = {t: (i - 4.5) / 4.5 for i, t in enumerate(dx_ids)}
    y_num = {t: (i - 4.5) / 4.5 for i, t in enumerate(dy_ids)}
    # (layer, head, query, key, line, kind): the digits' kind ("x" or "y") and the line the head
    # writes their number on. Before the label copy was fitted (round eleven), heads in layer 0
    # kept SFT from learning that copy (every answer label came out ``N1``, tenth round); with
    # the copy fitted, layer 0 takes the newest-y head (round twelve).
    pick = {"newest": (recent, recent), "oldest": (oldest_q, oldest_k)}
    plan = [
        (layer, head, *pick[which], lines[i], kind)
        for i, (layer, head, which, kind) in enumerate(NUMBER_PLAN)
    ]
    inputs: dict[int, list[Any]] = {}
    for layer, head, qv, kv, line, kind in plan:
        # a head changes its layer's output, not its input: one capture per layer (plan is in
        # layer order, so layer 1's is taken after layer 0's head is set)
        if layer not in inputs:
            inputs[layer] = layer_inputs(layer)
        rows_x, q_t, k_t, v_t, k_w = [], [], [], [], []
        for s, x in zip(samples, inputs[layer], strict=True):
            ids, start = s["input_ids"][0].tolist(), s["answer_start"]
            for p, t in enumerate(ids):
                number = x_num.get(t) if kind == "x" else y_num.get(t)
                keyed = number is not None
                rows_x.append(x[p])
                q_t.append(qv if p >= start else torch.zeros(dh))
                k_t.append(kv if keyed else torch.zeros(dh))
                v_t.append(number * line if number is not None else torch.zeros(d))
                # image tokens carry digit embeddings in their code, labels the lookup head's
                # copies: their keys must stay 0 (64 image tokens against a few digits)
                decoy = t == image_id or t in label_set
                k_w.append(POSITIVE_WEIGHT if keyed else DECOY_WEIGHT if decoy else 1.0)
        xs, qs, ks, vs = (torch.stack(r) for r in (rows_x, q_t, k_t, v_t))
        _fit_head(lm.layers[layer].self_attn, head, dh, xs, qs, ks, vs, key_weights=torch.tensor(k_w))
    return {"layer_head": [[layer, head] for layer, head, *_ in plan]}


def _previous_label_head(
    model: Any,
    samples: list[dict[str, Any]],
    layer_inputs: Any,
    label_ids: list[int],
    comma: int,
    emb: Any,
    gen: Any,
) -> Any | None:
    """Layer 0, head 1: at every label and every comma, the label a few positions before it.

    In a rationale (`` N2 18, N1 85``) the comma follows the cells of the label the answer just
    named; in a question (``from N2 to N1``) a label follows the one named before it. The head
    writes that earlier label's mark (one fixed random residual direction per label, orthogonal
    to the digit and label embeddings), from which the copy head (:func:`_label_copy_head`)
    finds the label that comes next. Query on the first, key on the second component of the
    pairs of PREVIOUS_BAND: the score is a sum of sines, 0 for the token itself and positive for
    a label 1-9 positions back. Returns the marks (N_LABELS, d), or None for a decoder with
    fewer than 3 layers or 4 heads.
    """
    import torch

    lm, d, heads, dh = _decoder_dims(model)
    if heads < 4 or len(lm.layers) < 3:
        return None
    half = dh // 2
    inv_freq = lm.rotary_emb.inv_freq.detach().float().cpu()[:half]
    band = [i for i in range(half) if PREVIOUS_BAND[0] <= float(inv_freq[i]) <= PREVIOUS_BAND[1]]
    band = band or sorted(range(half), key=lambda i: abs(float(inv_freq[i]) - 0.3))[:2]
    qv = _pair_vector(dh, band, PREVIOUS_SCORE)
    kv = torch.zeros(dh)
    kv[[i + half for i in band]] = qv[band]
    marks = _fresh_directions(emb, label_ids, len(label_ids), gen) * emb.norm(dim=1).mean() * COPY_GAIN
    label_set = set(label_ids)
    rows_x, q_t, k_t, v_t = [], [], [], []
    for s, x in zip(samples, layer_inputs(0), strict=True):
        for p, t in enumerate(s["input_ids"][0].tolist()):
            rows_x.append(x[p])
            q_t.append(qv if t == comma or t in label_set else torch.zeros(dh))
            k_t.append(kv if t in label_set else torch.zeros(dh))
            v_t.append(marks[label_ids.index(t)] if t in label_set else torch.zeros(d))
    xs, qs, ks, vs = (torch.stack(r) for r in (rows_x, q_t, k_t, v_t))
    _fit_head(lm.layers[0].self_attn, 1, dh, xs, qs, ks, vs)
    return marks


def _label_copy_head(
    model: Any,
    samples: list[dict[str, Any]],
    layer_inputs: Any,
    label_ids: list[int],
    comma: int,
    emb: Any,
    u: Any,
    slow: list[int],
    image_id: int,
) -> dict[str, Any]:
    """Write the label the answer names next, copied from the question (head COPY_AT).

    A rationale names the question's labels in the order the question first mentions them (all
    practice and Sparkle-Instruct records). SFT learned that copy late, and how well it had by
    step 800 made most of the draw-to-draw spread of direction accuracy (second answer label
    right 64-87 %, tenth round). Keys: every label token, as ``lab`` (a direction of the slow
    rotary pairs orthogonal to the label identities ``u``) plus the identity of the label just
    before it, which :func:`_previous_label_head` marked. Queries: where the answer starts,
    ``lab`` minus every identity (the question's first label has no label before it); at an
    answer's comma, ``lab`` plus the identity of the label the answer wrote last (the mark at
    the comma), so the question's next label wins. The value copies the label's embedding.
    Scores do not depend on positions: the slow pairs barely turn over a prompt.
    """
    import torch

    lm, d, heads, dh = _decoder_dims(model)
    # with g^2 = sqrt(dh), (a g v) . (g w) / sqrt(dh) = a (v . w): scores in plain units
    g = dh**0.25
    # any direction of the slow pairs orthogonal to the identities serves as "label"; a fixed one
    # (its own generator) keeps it independent of the other fits' draws
    gen = torch.Generator().manual_seed(len(label_ids))
    lab = torch.zeros(dh)
    lab[slow] = torch.randn(len(slow), generator=gen)
    lab = lab - (u @ lab) @ u / (u * u).sum(1, keepdim=True).clamp(min=1e-9).mean()
    lab = torch.nn.functional.normalize(lab, dim=0) * g
    ident = u * g
    first_q = lab * COPY_BIAS - ident.sum(0) * COPY_FIRST
    label_set = set(label_ids)
    layer, head = COPY_AT
    rows_x, q_t, k_t, v_t, k_w = [], [], [], [], []
    for s, x in zip(samples, layer_inputs(layer), strict=True):
        ids, start = s["input_ids"][0].tolist(), s["answer_start"]
        for p, t in enumerate(ids):
            q, k = torch.zeros(dh), torch.zeros(dh)
            nxt = ids[p + 1] if p + 1 < len(ids) else None
            if p == start - 1 and nxt in label_set:
                q = first_q
            elif p >= start and t == comma and nxt in label_set:
                last = next((ids[r] for r in range(p - 1, start - 1, -1) if ids[r] in label_set), None)
                q = lab * COPY_BIAS
                if last is not None:
                    q = q + ident[label_ids.index(last)] * COPY_MATCH
            if t in label_set:
                k = lab.clone()
                before = [ids[r] for r in range(max(0, p - PREVIOUS_WINDOW), p) if ids[r] in label_set]
                if before:
                    k = k + ident[label_ids.index(before[-1])]
            rows_x.append(x[p])
            q_t.append(q)
            k_t.append(k)
            v_t.append(COPY_GAIN * emb[t] if t in label_set else torch.zeros(d))
            k_w.append(POSITIVE_WEIGHT if t in label_set else DECOY_WEIGHT if t == image_id else 1.0)
    xs, qs, ks, vs = (torch.stack(r) for r in (rows_x, q_t, k_t, v_t))
    _fit_head(lm.layers[layer].self_attn, head, dh, xs, qs, ks, vs, key_weights=torch.tensor(k_w))
    return {"layer_head": [[0, 1], [layer, head]]}


def label_check(model: Any, held: list[dict[str, Any]], label_ids: list[int], comma: int) -> float | None:
    """How often the model ranks the right label first (among N1..N12) where an answer names
    its next label: at the answer's first position and at its commas."""
    label_set = set(label_ids)
    hits = n = 0
    for s, _x, logits in forward_batches(model, held, logits=True):
        ids, start = s["input_ids"][0].tolist(), s["answer_start"]
        for p in range(start - 1, len(ids) - 1):
            if ids[p + 1] in label_set and (p == start - 1 or ids[p] == comma):
                n += 1
                hits += int(label_ids[int(logits[p, label_ids].argmax())] == ids[p + 1])
    return round(hits / n, 4) if n else None


def digit_check(
    model: Any, held: list[dict[str, Any]], dx_ids: list[int], dy_ids: list[int], label_set: set[int]
) -> dict[str, Any]:
    """How often the model ranks the right x digit first after an answer's label, and the right
    y digit after that x digit (among the ten digits of each kind)."""

    hits = {"x": 0, "y": 0}
    n = 0
    dx_set = set(dx_ids)
    for s, _x, logits in forward_batches(model, held, logits=True):
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


def letter_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of the option letters A..I as an answer writes them (``\\boxed{H}``)."""
    return [tokenizer(c, add_special_tokens=False)["input_ids"][-1] for c in "ABCDEFGHI"]


def _letter_position(ids: list[int], start: int, brace: int, letters: set[int]) -> int | None:
    """The answer position whose next token is the boxed letter (the ``{`` before it)."""
    found = [p for p in range(start, len(ids) - 1) if ids[p] == brace and ids[p + 1] in letters]
    return found[-1] if found else None


def fit_letter_readout(
    model: Any,
    tokenizer: Any,
    samples: Iterable[dict[str, Any]],
    held: Iterable[dict[str, Any]],
    *,
    seed: int = 0,
    log: Log = stderr_log,
) -> dict[str, Any]:
    """Add to the last decoder layer's MLP output map a term that writes the answer's letter.

    With the number-line heads the cells' differences are linear reads at the ``{`` before a
    multiple-choice letter, and the last MLP's own (random) hidden units already separate the
    letters: a ridge readout on them, fitted on training answers, named the right direction
    letter for 70 % of held-out answers before any SFT step, where SFT took thousands of steps
    to find the straight directions, or never did (tenth round, docs/embedded-model.md). This
    is that readout, written into the model: at the ``{`` of ``samples`` (multiple-choice
    rationale answers, dicts as :func:`init_lookup_heads` takes) the added term maps the hidden
    units to the letter's output embedding (centred over A..I, x READOUT_GAIN); at
    READOUT_NEGATIVES other positions per answer it maps them near 0. SFT then trains it with
    everything else. Returns the sample counts and how often, on ``held``, the letter ranks
    first among A..I given the answer before it (teacher forcing).
    """
    import torch

    lm = model.model.language_model
    mlp = getattr(lm.layers[-1], "mlp", None)
    down = getattr(mlp, "down_proj", None)
    if down is None:
        log("letter readout skipped: the last decoder layer has no mlp.down_proj")
        return {"skipped": "no mlp.down_proj"}
    letters = letter_token_ids(tokenizer)
    letter_set = set(letters)
    brace = tokenizer("{", add_special_tokens=False)["input_ids"][-1]
    out_emb = model.get_output_embeddings().weight.detach()[letters]
    centred = (out_emb - out_emb.mean(0)) * READOUT_GAIN
    gen = torch.Generator().manual_seed(seed)
    rows, targets, weights = [], [], []
    for s, h, _logits in forward_batches(model, samples, down, pre=True):
        ids = s["input_ids"][0].tolist()
        p = _letter_position(ids, s["answer_start"], brace, letter_set)
        if p is None:
            continue
        rows.append(h[p].clone())  # a view would keep the whole batch's capture alive
        targets.append(centred[letters.index(ids[p + 1])])
        weights.append(POSITIVE_WEIGHT)
        others = [q for q in range(len(ids)) if q != p]
        for q in torch.randperm(len(others), generator=gen)[:READOUT_NEGATIVES].tolist():
            rows.append(h[others[q]].clone())
            targets.append(torch.zeros_like(centred[0]))
            weights.append(1.0)
    n_fit = sum(w == POSITIVE_WEIGHT for w in weights)
    if not n_fit:
        log("letter readout skipped: no multiple-choice answer among the samples")
        return {"skipped": "no multiple-choice answer"}
    delta = _ridge(torch.stack(rows), torch.stack(targets), torch.tensor(weights))
    with torch.no_grad():
        down.weight += delta.T.to(down.weight.dtype)
    hits = n_held = 0
    for s, _h, logits in forward_batches(model, held, logits=True):
        ids = s["input_ids"][0].tolist()
        p = _letter_position(ids, s["answer_start"], brace, letter_set)
        if p is None:
            continue
        n_held += 1
        hits += int(letters[int(logits[p, letters].argmax())] == ids[p + 1])
    check = {
        "fit_answers": n_fit,
        "held_out_answers": n_held,
        "letter_accuracy": round(hits / n_held, 4) if n_held else None,
    }
    log(f"letter readout set: {check}")
    return check
