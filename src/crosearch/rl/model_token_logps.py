"""Per-token log-probabilities and entropies at model tokens only: the LM head skips inserted evidence.

A search rollout's completion is mostly text the environment inserted (``<information>`` blocks,
``env_mask`` 0); the GRPO loss multiplies those positions by zero. TRL's fused LM head scores every
position whose label is set, and off Triton devices (the CPU recipes) every position of the sequence,
prompt included, so the 262k-vocabulary projection dominated the update. :func:`model_token_logps`
runs the backbone over the sequence (the inserted tokens are context) and TRL's own log-prob kernel
(:class:`trl.kernels.ChunkedLogProbFunction`: temperature, softcapping, fp32 accumulation, entropy) on
the hidden states of the scored positions only. Its outputs are zero elsewhere, as TRL's are where a
label is ``-100``; the loss and every metric TRL derives from them (entropy, clip ratios, KL) mask
those positions, so they equal TRL's.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

# Config fields that rescale the logits before the softmax; TRL's fused head knows them, this path does not.
_LOGIT_SCALES = ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
# TRL's vocabulary tile width (trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE in TRL 1.16).
VOCAB_CHUNK = 32768


def supports(causal_lm: Any) -> bool:
    """Whether ``causal_lm`` is a text-only causal LM whose logits are ``lm_head(h)``, optionally softcapped."""
    config = getattr(causal_lm, "config", None)
    if config is None or not hasattr(config, "get_text_config") or config.get_text_config() is not config:
        return False  # vision-language models route the backbone differently
    if any(getattr(config, name, None) not in (None, 1.0) for name in _LOGIT_SCALES):
        return False
    head = causal_lm.get_output_embeddings()
    return head is not None and getattr(head, "weight", None) is not None and causal_lm.base_model is not causal_lm


def model_token_logps(
    causal_lm: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    score_mask: torch.Tensor,
    *,
    temperature: float,
    compute_entropy: bool,
    batch_size: int | None = None,
    cast_lm_head_to_fp32: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the last ``score_mask.size(1)`` tokens, computed where ``score_mask`` is 1.

    ``input_ids`` is prompt + completion (B, L); ``score_mask`` (B, K) covers the K completion positions.
    Returns (B, K) tensors, zero where the mask is 0. ``batch_size`` chunks the rows as TRL does.
    """
    from trl.kernels import ChunkedLogProbFunction

    rows, length = input_ids.shape
    keep = score_mask.size(1)
    head = causal_lm.get_output_embeddings()
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    outputs = ("log_probs", "entropy") if compute_entropy else ("log_probs",)
    batch_size = batch_size or rows
    all_logps, all_entropies = [], []
    for start in range(0, rows, batch_size):
        end = min(start + batch_size, rows)
        mask = score_mask[start:end].bool() & attention_mask[start:end, length - keep :].bool()
        columns = mask.any(dim=0).nonzero()
        # Causal attention: the hidden states a position needs do not depend on the tokens after it, so the
        # backbone stops at the last scored position (trailing padding and evidence are never read).
        width = int(columns[-1]) + 1 if columns.numel() else 1
        first = length - keep
        hidden = causal_lm.base_model(
            input_ids=input_ids[start:end, : first + width - 1],
            attention_mask=attention_mask[start:end, : first + width - 1],
            use_cache=False,
        ).last_hidden_state
        # Completion token j is predicted from the hidden state one position before it.
        hidden = hidden[:, first - 1 :]
        scored = mask[:, :width]
        targets = input_ids[start:end, first : first + width][scored]
        hidden = hidden.to(head.weight.device)
        autocast: Any = nullcontext()
        if cast_lm_head_to_fp32:
            hidden = hidden.float()
            autocast = torch.autocast(hidden.device.type, enabled=False)
        with autocast:
            logps, entropy, *_ = ChunkedLogProbFunction.apply(
                hidden[scored], head.weight, head.bias, targets.to(head.weight.device), temperature, VOCAB_CHUNK,
                softcap, 1.0, outputs,
            )  # fmt: skip
        # masked_scatter keeps an all-masked chunk connected to the graph (a differentiable zero), as TRL does.
        all_logps.append(_widen(logps.new_zeros(scored.shape).masked_scatter(scored, logps), keep))
        if compute_entropy:
            all_entropies.append(_widen(entropy.new_zeros(scored.shape).masked_scatter(scored, entropy), keep))
    return torch.cat(all_logps), torch.cat(all_entropies) if compute_entropy else None


def _widen(values: torch.Tensor, keep: int) -> torch.Tensor:
    """(B, width) -> (B, keep): the columns after the last scored one are zero."""
    return torch.nn.functional.pad(values, (0, keep - values.size(1)))
