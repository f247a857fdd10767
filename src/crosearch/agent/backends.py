"""Generation backends: batched, token-exact continuation of token id sequences.

A backend takes token ids (never text), so the ids the engine records are exactly
the ids the model produced, and returns for each sequence the new ids, the sampling
log-prob of each, and why it stopped.

Log-probs are ``log_softmax(logits / temperature)`` of the sampled token *before*
top-k/top-p filtering: the quantity TRL's GRPOTrainer recomputes for the policy
(it scales logits by its ``temperature`` and applies no top-p), so the two can be
compared or used for importance-sampling corrections. Greedy decoding
(temperature 0) reports ``log_softmax(logits)``.

A backend itself keeps no state between calls: each call reads its contexts whole.
:meth:`HFBackend.session` returns a view for one engine run that keeps the KV cache
across calls (:mod:`crosearch.agent.kv_cache`); vLLM does the same with its prefix cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "eos", "length"]
Prompts = Sequence[Sequence[int]]
TokenCaps = int | Sequence[int]  # one cap for every prompt, or one per prompt
# ``prepare(live, width)``: extra ``model.generate`` arguments for the rows that generate at a padded width
# (a session's KV cache); only Hugging Face backends use it.
Prepare = Callable[[list[int], int], dict[str, Any]]

# Tokens re-decoded to look for a stop string that ends at the newest token; longer
# than any tag in the protocol even when the tokenizer spells it one character a token.
_STOP_WINDOW = 24


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How tokens are drawn. ``temperature == 0`` means greedy; ``seed`` makes a call reproducible."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass(slots=True)
class Generation:
    """One sequence's continuation: ``ids`` and their ``logprobs`` (same length) and why it ended.

    ``finish`` is ``stop`` (a stop string was completed; ``stop_string`` says which),
    ``eos`` (the last id is an end-of-sequence token) or ``length`` (the token cap).
    """

    ids: list[int]
    logprobs: list[float]
    finish: FinishReason
    stop_string: str | None = None


@runtime_checkable
class GenerationBackend(Protocol):
    """What the rollout engine needs from a model."""

    tokenizer: Any

    @property
    def eos_token_ids(self) -> list[int]: ...

    def generate(
        self, prompts: Prompts, max_new_tokens: TokenCaps, stop_strings: Sequence[str], sampling: SamplingParams
    ) -> list[Generation]:
        """Continue each prompt until a stop string, EOS, or its own token cap."""
        ...


def _caps(max_new_tokens: TokenCaps, n: int) -> list[int]:
    caps = [int(max_new_tokens)] * n if isinstance(max_new_tokens, int) else [int(c) for c in max_new_tokens]
    if len(caps) != n:
        raise ValueError(f"max_new_tokens has {len(caps)} entries for {n} prompts")
    return caps


def model_eos_ids(model: Any | None, tokenizer: Any) -> list[int]:
    """Every end-of-sequence id of the model's generation config and the tokenizer."""
    ids: set[int] = set()
    for source in (
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
    ):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(int(x) for x in source)
    return sorted(ids)


class StopChecker:
    """Decides, token by token, whether a sequence has ended (EOS, stop string or cap).

    One rule for sampled and forced text alike, so both backends end turns identically.
    """

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str], eos_ids: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = [s for s in stop_strings if s]
        self.eos_ids = frozenset(eos_ids)
        self._last_chars = frozenset(s[-1] for s in self.stop_strings)
        self._piece_cache: dict[int, str] = {}

    def _piece(self, token: int) -> str:
        piece = self._piece_cache.get(token)
        if piece is None:
            piece = self.tokenizer.decode([token], skip_special_tokens=False)
            self._piece_cache[token] = piece
        return piece

    def check(self, new_ids: Sequence[int]) -> tuple[FinishReason, str | None] | None:
        """Whether the newest id of ``new_ids`` ends the sequence, and why."""
        if not new_ids:
            return None
        last = int(new_ids[-1])
        if last in self.eos_ids:
            return "eos", None
        if self.stop_strings:
            piece = self._piece(last)
            # A stop string can only end in this token if the token carries its last
            # character, or if the token is a partial byte (decoded alone as U+FFFD).
            if any(c in piece for c in self._last_chars) or "\ufffd" in piece:
                tail = self.tokenizer.decode(list(new_ids[-_STOP_WINDOW:]), skip_special_tokens=False)
                for stop in self.stop_strings:
                    if stop in tail:
                        return "stop", stop
        return None

    def end_of(self, ids: Sequence[int], cap: int) -> tuple[int, FinishReason, str | None]:
        """Where forced ``ids`` end under the same rule: (length kept, reason, stop string)."""
        for n in range(1, min(len(ids), cap) + 1):
            hit = self.check(ids[:n])
            if hit is not None:
                return n, hit[0], hit[1]
        return min(len(ids), cap), "length", None


class _Backend:
    """What the backends share: the EOS ids, and one token cap per prompt before they continue them."""

    tokenizer: Any
    _eos: list[int]

    @property
    def eos_token_ids(self) -> list[int]:
        return list(self._eos)

    def generate(
        self,
        prompts: Prompts,
        max_new_tokens: TokenCaps,
        stop_strings: Sequence[str],
        sampling: SamplingParams,
        *,
        prepare: Prepare | None = None,
    ) -> list[Generation]:
        """Continue each prompt until a stop string, EOS, or its own token cap.

        ``prepare(live, width)`` (the rows that generate, the padded width) may return extra
        ``model.generate`` arguments: the KV cache of a session (Hugging Face backends only).
        """
        return self._continue(prompts, _caps(max_new_tokens, len(prompts)), stop_strings, sampling, prepare=prepare)

    def _continue(
        self,
        prompts: Prompts,
        caps: list[int],
        stop_strings: Sequence[str],
        sampling: SamplingParams,
        *,
        prepare: Prepare | None = None,
    ) -> list[Generation]:
        raise NotImplementedError


class HFBackend(_Backend):
    """Batched generation with a Hugging Face causal LM (``model.generate``, left padding).

    Per-row stopping (stop strings, EOS, a token cap per row) is decided by one
    stopping criterion that also records where each row ended, so the kept ids are
    exactly the sampled ones, with nothing appended after a row finished.
    Log-probs come from a logits processor placed before the temperature/top-k/top-p
    warpers, holding one step of log-probs at a time (never the whole B x T x V).
    """

    def __init__(self, model: Any, tokenizer: Any, *, eos_token_ids: Sequence[int] | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self._eos = list(eos_token_ids) if eos_token_ids is not None else model_eos_ids(model, tokenizer)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = int(pad if pad is not None else self._eos[0])

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def session(self) -> GenerationBackend:
        """A view for one engine run that keeps the KV cache across its calls (release it with ``close``)."""
        from crosearch.agent.kv_cache import CachedHFBackend

        return CachedHFBackend(self)

    def _continue(
        self,
        prompts: Prompts,
        caps: list[int],
        stop_strings: Sequence[str],
        sampling: SamplingParams,
        *,
        prepare: Prepare | None = None,
    ) -> list[Generation]:
        """Sample (or decode greedily) a continuation of every prompt in one ``generate`` call.

        ``prepare(live, width)`` (the rows that generate, the padded width) may return extra
        ``model.generate`` arguments: the KV cache of a session.
        """
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        results: list[Generation | None] = [None] * len(prompts)
        live = [i for i, cap in enumerate(caps) if cap > 0]
        for i in range(len(prompts)):
            if caps[i] <= 0:
                results[i] = Generation([], [], "length")
        if not live:
            return [r for r in results if r is not None]
        if any(len(prompts[i]) == 0 for i in live):
            raise ValueError("cannot continue an empty prompt")

        width = max(len(prompts[i]) for i in live)
        ids = torch.full((len(live), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(live), width), dtype=torch.long)
        for row, i in enumerate(live):
            ids[row, width - len(prompts[i]) :] = torch.tensor(list(prompts[i]), dtype=torch.long)
            mask[row, width - len(prompts[i]) :] = 1

        checker = StopChecker(self.tokenizer, stop_strings, self._eos)
        recorder = _LogprobRecorder(width, sampling.temperature)
        watcher = _EndWatcher(checker, width, [caps[i] for i in live])
        # Every sampling knob is set explicitly: unset ones would be filled from the
        # model's own generation_config (Gemma's ships top_k=64, top_p=0.95).
        knobs = (
            {}
            if sampling.greedy
            else {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k}
        )
        config = GenerationConfig(
            max_new_tokens=max(caps[i] for i in live),
            do_sample=not sampling.greedy,
            num_beams=1,
            pad_token_id=self.pad_token_id,
            eos_token_id=self._eos,
            return_dict_in_generate=False,
            **knobs,
        )
        device = self.device
        extra = prepare(live, width) if prepare is not None else {}
        with torch.no_grad(), _seeded(sampling.seed, device):
            sequences = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                generation_config=config,
                logits_processor=LogitsProcessorList([recorder]),
                stopping_criteria=StoppingCriteriaList([watcher]),
                **extra,
            )
        logprobs = recorder.finish(sequences)
        for row, i in enumerate(live):
            n, finish, stop = watcher.result(row, int(sequences.shape[1]) - width)
            new = [int(t) for t in sequences[row, width : width + n].tolist()]
            results[i] = Generation(new, logprobs[row][:n], finish, stop)
        return [r for r in results if r is not None]


class TeacherForcedBackend(HFBackend):
    """Writes given text instead of sampling; with a model, scores it with that model.

    ``responder`` gets the decoded context of each sequence and returns the text (or
    ids) the model "writes" this turn; the turn is then cut by the same stop rule as
    sampling. Drives the engine through exact trajectories with real token ids: tests
    and evaluation of gold trajectories (with the model: real log-probs from a forward
    pass) and the supervised warm-start data (``model=None``: log-probs are 0.0, since
    SFT needs only the ids and a forward pass per turn would cost most of the build).
    Without a model, ``eos_token_ids`` default to the tokenizer's alone.
    """

    def __init__(
        self,
        model: Any | None,
        tokenizer: Any,
        responder: Callable[[str], str | Sequence[int]],
        *,
        eos_token_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__(model, tokenizer, eos_token_ids=eos_token_ids)
        self.responder = responder

    def session(self) -> GenerationBackend:
        """Forced text is scored in one pass per turn: there is no cache to keep."""
        return self

    def _continue(
        self,
        prompts: Prompts,
        caps: list[int],
        stop_strings: Sequence[str],
        sampling: SamplingParams,
        *,
        prepare: Prepare | None = None,
    ) -> list[Generation]:
        """Force each responder continuation, cut at the stop rule, scored at ``sampling.temperature``."""
        checker = StopChecker(self.tokenizer, stop_strings, self._eos)
        forced: list[list[int]] = []
        ends: list[tuple[FinishReason, str | None]] = []
        for prompt, cap in zip(prompts, caps):
            reply = self.responder(self.tokenizer.decode(list(prompt), skip_special_tokens=False))
            reply_ids = (
                list(self.tokenizer(reply, add_special_tokens=False)["input_ids"])
                if isinstance(reply, str)
                else [int(t) for t in reply]
            )
            n, finish, stop = checker.end_of(reply_ids, max(cap, 0))
            forced.append(reply_ids[:n])
            ends.append((finish, stop))
        if self.model is None:
            logprobs = [[0.0] * len(ids) for ids in forced]
        else:
            from crosearch.agent.scoring import sequence_logprobs

            logprobs = sequence_logprobs(self.model, prompts, forced, sampling.temperature, self.pad_token_id)
        return [Generation(ids, lps, finish, stop) for ids, lps, (finish, stop) in zip(forced, logprobs, ends)]


def _seeded(seed: int | None, device: Any) -> Any:
    """Seed torch's RNG for one call without disturbing the caller's random state."""
    import contextlib

    import torch

    if seed is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def scope() -> Any:
        devices = [device] if getattr(device, "type", "cpu") == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    return scope()


class _LogprobRecorder:
    """Logits processor that records the log-prob of each sampled token.

    At step t it sees the logits for step t and, as the last input id, the token
    chosen at step t-1; it keeps only the previous step's log-probs (B x V).
    """

    def __init__(self, prompt_width: int, temperature: float) -> None:
        self.prompt_width = prompt_width
        self.temperature = temperature if temperature > 0 else 1.0
        self.rows: list[list[float]] | None = None
        self._previous: Any = None

    def _take(self, chosen: Any) -> None:
        picked = self._previous.gather(-1, chosen.to(self._previous.device)[:, None]).squeeze(-1)
        for row, value in enumerate(picked.tolist()):
            self.rows[row].append(float(value))  # type: ignore[index]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.rows is None:
            self.rows = [[] for _ in range(input_ids.shape[0])]
        if input_ids.shape[1] > self.prompt_width:
            self._take(input_ids[:, -1])
        self._previous = (scores.float() / self.temperature).log_softmax(-1)
        return scores

    def finish(self, sequences: Any) -> list[list[float]]:
        """Record the last step (its token is only visible in the final sequences)."""
        if self.rows is None:
            return [[] for _ in range(sequences.shape[0])]
        if sequences.shape[1] > self.prompt_width and self._previous is not None:
            steps = len(self.rows[0])
            if steps < sequences.shape[1] - self.prompt_width:
                self._take(sequences[:, -1])
        self._previous = None
        return self.rows


class _EndWatcher:
    """Stopping criterion: ends each row at its stop string, EOS or cap, and remembers where."""

    def __init__(self, checker: StopChecker, prompt_width: int, caps: Sequence[int]) -> None:
        self.checker = checker
        self.prompt_width = prompt_width
        self.caps = list(caps)
        self.ends: list[tuple[int, FinishReason, str | None] | None] = [None] * len(caps)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        n = int(input_ids.shape[1]) - self.prompt_width
        done = []
        for row in range(input_ids.shape[0]):
            if self.ends[row] is None:
                new = input_ids[row, self.prompt_width :].tolist()
                hit = self.checker.check(new)
                if hit is not None:
                    self.ends[row] = (n, hit[0], hit[1])
                elif n >= self.caps[row]:
                    self.ends[row] = (n, "length", None)
            done.append(self.ends[row] is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def result(self, row: int, generated: int) -> tuple[int, FinishReason, str | None]:
        end = self.ends[row]
        if end is None:  # generate stopped on its own limit before ours fired
            return min(generated, self.caps[row]), "length", None
        return end


class VLLMBackend(_Backend):
    """GPU generation with vLLM (optional, only importable where ``vllm`` is installed).

    Thin and UNTESTED in this repository's CI (no GPU there). It asks vLLM for the
    sampled token's log-prob (``logprobs=0``); start vLLM with
    ``logprobs_mode='processed_logprobs'`` so they are taken after temperature
    scaling, matching :class:`HFBackend`. Stop strings are kept in the output and
    the ids are vLLM's sampled ids, so rollouts stay token-exact.
    """

    def __init__(self, llm: Any, tokenizer: Any | None = None) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the machine
            from crosearch.errors import CrosearchError

            raise CrosearchError("the vLLM backend needs the 'vllm' package (GPU machines only)") from exc
        self.llm = llm
        self.tokenizer = tokenizer if tokenizer is not None else llm.get_tokenizer()
        self._eos = model_eos_ids(None, self.tokenizer)
        if prefix_caching(llm) is False:
            from crosearch.errors import CrosearchError

            # Without it every turn re-prefills the whole context and every rollout its group's prompt.
            raise CrosearchError(
                "vLLM runs with prefix caching off: multi-turn rollouts need it (enable_prefix_caching=True)"
            )

    def _continue(
        self,
        prompts: Prompts,
        caps: list[int],
        stop_strings: Sequence[str],
        sampling: SamplingParams,
        *,
        prepare: Prepare | None = None,
    ) -> list[Generation]:  # pragma: no cover
        """One ``llm.generate`` call over token prompts, each with its own token cap."""
        from vllm import SamplingParams as VSampling
        from vllm.inputs import TokensPrompt

        params = [
            VSampling(
                temperature=max(sampling.temperature, 0.0),
                top_p=sampling.top_p,
                top_k=sampling.top_k if sampling.top_k > 0 else -1,
                max_tokens=max(cap, 1),
                stop=list(stop_strings),
                include_stop_str_in_output=True,
                logprobs=0,
                seed=None if sampling.seed is None else sampling.seed + i,
            )
            for i, cap in enumerate(caps)
        ]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        results = []
        for out, cap in zip(outputs, caps):
            choice = out.outputs[0]
            ids = list(choice.token_ids)[:cap]
            lps = [float(step[tok].logprob) for tok, step in zip(ids, choice.logprobs or [])]
            finish: FinishReason = "length"
            stop = choice.stop_reason if isinstance(choice.stop_reason, str) else None
            if ids and ids[-1] in self._eos:
                finish = "eos"
            elif stop is not None:
                finish = "stop"
            results.append(Generation(ids, lps, finish, stop))
        return results


def prefix_caching(llm: Any) -> bool | None:
    """Whether a vLLM engine caches prompt prefixes (None where this vLLM version does not say)."""
    engine = getattr(llm, "llm_engine", None)
    config = getattr(getattr(engine, "vllm_config", None), "cache_config", None)
    if config is None:
        config = getattr(engine, "cache_config", None)
    value = getattr(config, "enable_prefix_caching", None)
    return bool(value) if value is not None else None
