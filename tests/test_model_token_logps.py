"""The update scores model tokens only, and equals TRL's unmodified path there.

One GRPO loss step of TRL's own code (DAPO loss, clipping, entropy metric) on the tiny model with a LoRA
adapter, over a batch shaped like a search rollout's: left-padded prompts, completions of ragged lengths
whose middle is inserted evidence (``tool_mask`` 0). TRL's path is the base class's methods, called on
the same trainer; the logits computed are counted on the LM head's weight, whatever calls it.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from crosearch.models import build_tiny_model, load_tokenizer


class HeadRows(TorchDispatchMode):
    """Counts the positions whose logits are computed: rows of matmuls against the LM head weight."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.storage = weight.untyped_storage().data_ptr()
        self.vocab, self.hidden = weight.shape
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.addmm_):
            operands = [a for a in args if isinstance(a, torch.Tensor)]
            on_head = any(a.untyped_storage().data_ptr() == self.storage for a in operands)
            # A logits tile is (positions, vocabulary slice); the head's other products end in the hidden size.
            if on_head and out.shape[-1] != self.hidden:
                self.elements += out.numel()
        return out

    @property
    def rows(self) -> float:
        return self.elements / self.vocab


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from trl import GRPOConfig

    from crosearch.rl.trl_compat import grpo_trainer_class

    tokenizer = load_tokenizer("tiny")
    torch.manual_seed(0)
    # Random A and B: both LoRA matrices get a gradient from the first step.
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    model = get_peft_model(build_tiny_model(tokenizer), lora)
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("logps")),
        per_device_train_batch_size=4,
        num_generations=2,
        max_steps=1,
        use_cpu=True,
        bf16=False,
        report_to=[],
        temperature=0.7,  # not 1: the temperature must reach the kernel
        loss_type="dapo",
        epsilon=0.2,
        max_completion_length=64,
        gradient_checkpointing=False,
    )
    trainer = grpo_trainer_class()(
        model=model,
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["q"] * 4}),
        processing_class=tokenizer,
    )
    trainer.current_gradient_accumulation_steps = 1  # what the training loop sets before its first step
    return trainer


def _batch(vocab: int) -> dict[str, torch.Tensor]:
    """Four rollouts: prompts left-padded, completions right-padded; 1 = model token, 0 = inserted evidence."""
    gen = torch.Generator().manual_seed(1)
    prompt_lengths, completions = (
        [7, 5, 7, 6],
        [
            [1] * 4 + [0] * 9 + [1] * 5,  # search, evidence, answer
            [1] * 3 + [0] * 6 + [1] * 2 + [0] * 5 + [1] * 2,  # two searches
            [1] * 6,  # answered at once
            [1] * 2 + [0] * 12,  # cut off inside the evidence: no model token after it
        ],
    )
    prompt_width, width = max(prompt_lengths), max(map(len, completions))
    prompt_ids = torch.randint(10, vocab, (4, prompt_width), generator=gen)
    prompt_mask = torch.zeros(4, prompt_width, dtype=torch.long)
    completion_ids = torch.randint(10, vocab, (4, width), generator=gen)
    completion_mask = torch.zeros(4, width, dtype=torch.long)
    tool_mask = torch.ones(4, width, dtype=torch.long)  # TRL pads the env mask with 1
    for row, (n, env) in enumerate(zip(prompt_lengths, completions)):
        prompt_mask[row, prompt_width - n :] = 1
        completion_mask[row, : len(env)] = 1
        tool_mask[row, : len(env)] = torch.tensor(env)
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "tool_mask": tool_mask,
        "advantages": torch.tensor([1.0, -0.5, 0.25, -0.75]),
        "num_items_in_batch": (completion_mask * tool_mask).sum().float(),
    }


def _loss_and_grads(trainer, compute_loss) -> tuple[torch.Tensor, dict[str, torch.Tensor], float]:  # noqa: ANN001
    model = trainer.model
    model.zero_grad()
    inputs = _batch(model.get_input_embeddings().weight.size(0))
    with HeadRows(model.get_output_embeddings().weight) as rows:
        loss = compute_loss(model, inputs)
        loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, rows.rows


def test_update_scores_model_tokens_only_and_equals_trls_path(trainer):
    from trl import GRPOTrainer

    trainer.model.train()
    inputs = _batch(trainer.model.get_input_embeddings().weight.size(0))
    mask = inputs["completion_mask"] * inputs["tool_mask"]
    model_tokens = int(mask.sum())
    padded = inputs["completion_ids"].numel()
    assert model_tokens < padded // 2  # most of the completion is evidence or padding

    loss, grads, rows = _loss_and_grads(trainer, trainer.compute_loss)
    trl_loss, trl_grads, trl_rows = _loss_and_grads(trainer, lambda m, x: GRPOTrainer._compute_loss(trainer, m, x))

    # Logits at model tokens only: one row per model token in the forward, once more in the backward's recompute.
    assert rows == 2 * model_tokens
    assert trl_rows > 2 * padded  # TRL (off Triton) scores every position, prompt included
    assert torch.allclose(loss, trl_loss, rtol=1e-5, atol=1e-6)
    assert loss.abs() > 1e-4
    lora = [name for name in grads if "lora_" in name]
    assert lora and set(lora) == set(trl_grads) & set(lora)
    for name in lora:
        assert torch.allclose(grads[name], trl_grads[name], rtol=1e-4, atol=1e-6), name
    assert any(grads[name].abs().max() > 1e-6 for name in lora if "lora_A" in name)

    # The per-token log-probs and entropies: equal at model tokens, zero (never computed) elsewhere.
    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    keep = inputs["completion_ids"].size(1)
    with torch.no_grad():
        trainer.score_mask = mask
        try:
            with HeadRows(trainer.model.get_output_embeddings().weight) as forward_rows:
                logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
                    trainer.model, input_ids, attention, keep, compute_entropy=True
                )
        finally:
            trainer.score_mask = None
        trl_logps, trl_entropies, _ = GRPOTrainer._get_per_token_logps_and_entropies(
            trainer, trainer.model, input_ids, attention, keep, compute_entropy=True
        )
    assert forward_rows.rows == model_tokens
    at = mask.bool()
    assert torch.allclose(logps[at], trl_logps[at], rtol=1e-5, atol=1e-5)
    assert torch.allclose(entropies[at], trl_entropies[at], rtol=1e-5, atol=1e-5)
    assert (logps[~at] == 0).all() and (entropies[~at] == 0).all()
    assert (trl_logps[at] < 0).all()


def test_metrics_trl_logs_from_the_entropies_match(trainer):
    """TRL's entropy metric is a masked mean: the same from zeros at inserted positions as from real values."""
    from trl import GRPOTrainer

    trainer.model.train()
    inputs = _batch(trainer.model.get_input_embeddings().weight.size(0))
    metrics = trainer._metrics["train"]
    metrics.clear()
    trainer.compute_loss(trainer.model, inputs)
    ours = {k: list(v) for k, v in metrics.items()}
    metrics.clear()
    GRPOTrainer._compute_loss(trainer, trainer.model, inputs)
    assert ours.keys() == metrics.keys() and "entropy" in ours
    for key, values in ours.items():
        assert values == pytest.approx(metrics[key], rel=1e-5, abs=1e-6), key


def test_trl_path_when_switched_off_or_without_a_loss_mask(trainer):
    inputs = _batch(trainer.model.get_input_embeddings().weight.size(0))
    assert trainer.score_mask is None  # set only inside _compute_loss
    trainer.score_model_tokens = False
    try:
        with HeadRows(trainer.model.get_output_embeddings().weight) as rows, torch.no_grad():
            trainer.compute_loss(trainer.model, inputs)
    finally:
        trainer.score_model_tokens = True
    assert rows.rows > inputs["completion_ids"].numel()
