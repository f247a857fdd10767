"""Teacher-forced log-probabilities of given continuations under a causal LM.

Used to score forced text (the teacher-forced backend, SFT/eval checks) and to verify
that the log-probs returned by sampling are the ones a training forward pass computes.
The LM head (262k rows for Gemma) dominates cost and memory, so logits are computed
only for the positions that predict continuation tokens, a few rows at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Most float32 logit entries held at once (about 1 GiB): rows per forward pass are
# chosen so that rows x kept positions x vocabulary stays below this.
_LOGIT_BUDGET = 256 * 1024 * 1024


def sequence_logprobs(
    model: Any,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    temperature: float = 1.0,
    pad_token_id: int = 0,
) -> list[list[float]]:
    """Log-probability of each continuation token given its context and the tokens before it.

    The values are ``log_softmax(logits / temperature)`` at the chosen token, the same
    quantity TRL's GRPOTrainer computes for the policy; ``temperature <= 0`` (greedy)
    scores at temperature 1. Each context must hold at least one token.
    """
    import torch

    if len(contexts) != len(continuations):
        raise ValueError("contexts and continuations must have the same length")
    temp = temperature if temperature > 0 else 1.0
    results: list[list[float]] = [[] for _ in contexts]
    order = [i for i, cont in enumerate(continuations) if len(cont) > 0]
    if not order:
        return results
    if any(len(contexts[i]) == 0 for i in order):
        raise ValueError("every context needs at least one token (the BOS token, say)")
    vocab = int(model.get_output_embeddings().weight.shape[0])
    device = next(model.parameters()).device
    order.sort(key=lambda i: len(contexts[i]) + len(continuations[i]))
    start = 0
    with torch.no_grad():
        while start < len(order):
            keep = len(continuations[order[start]]) + 1
            rows = max(1, _LOGIT_BUDGET // max(1, keep * vocab))
            chunk = order[start : start + rows]
            keep = max(len(continuations[i]) for i in chunk) + 1
            seqs = [list(contexts[i]) + list(continuations[i]) for i in chunk]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, seq in enumerate(seqs):
                ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                mask[row, width - len(seq) :] = 1
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=position_ids.to(device),
                logits_to_keep=keep,
                use_cache=False,
            )
            logits = out.logits  # [rows, keep, vocab]: positions width-keep .. width-1
            for row, i in enumerate(chunk):
                n = len(continuations[i])
                pred = logits[row, keep - n - 1 : keep - 1].float() / temp
                target = torch.tensor(list(continuations[i]), dtype=torch.long, device=pred.device)
                logp = pred.log_softmax(-1).gather(-1, target[:, None]).squeeze(-1)
                results[i] = [float(x) for x in logp.tolist()]
            start += len(chunk)
    return results
