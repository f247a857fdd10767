"""Outcome rewards for GRPO, each a TRL reward function.

TRL calls every reward function as ``f(prompts, completions, **kwargs)`` where
``kwargs`` holds the dataset columns plus every extra field our rollout
function returned, one value per completion. The rollout function
(:mod:`crosearch.rl.rollout`) returns, per completion:

- ``answer``: the text inside ``<answer>`` (``None`` when the rollout never answered),
- ``golds``: the gold answers of the language version that rollout was asked in,
- ``lang``: that language,
- ``valid_format``: whether the rollout followed the protocol (see ``format_reward``),
- ``search_lang`` (search-language groups only): the language the rollout's searches went to.

Scoring reads those fields, never the decoded completion text, so the reward
is computed on exactly what the engine parsed. TRL logs each function under its
``__name__`` (``rewards/exact_match/mean`` ...); each function also logs its mean
per question language (``lang/<name>/<lang>``) through TRL's ``log_metric``, and in
search-language groups per search language (``search_lang/<name>/<lang>``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from crosearch.errors import ConfigError

RewardFunc = Callable[..., list[float | None]]


def _field(kwargs: dict[str, Any], name: str, n: int) -> list[Any]:
    values = kwargs.get(name)
    if values is None:
        raise ValueError(
            f"reward functions need the '{name}' field from the rollout function; got fields {sorted(kwargs)}"
        )
    if len(values) != n:
        raise ValueError(f"field '{name}' has {len(values)} values for {n} completions")
    return list(values)


def _log_per_language(kwargs: dict[str, Any], name: str, langs: Sequence[str], scores: Sequence[float | None]) -> None:
    log_metric = kwargs.get("log_metric")
    if log_metric is None:
        return
    keyed = [("lang", langs)]
    if kwargs.get("search_lang") is not None:
        keyed.append(("search_lang", kwargs["search_lang"]))
    for prefix, keys in keyed:
        by_lang: dict[str, list[float]] = defaultdict(list)
        for lang, score in zip(keys, scores):
            if score is not None:
                by_lang[lang].append(score)
        for lang, values in sorted(by_lang.items()):
            log_metric(f"{prefix}/{name}/{lang}", sum(values) / len(values))


def _answer_reward(name: str, score: Callable[[str, list[str], str], float]) -> RewardFunc:
    """Build a reward that scores the parsed answer against that rollout's language golds (0 when unanswered)."""

    def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        n = len(completions)
        answers = _field(kwargs, "answer", n)
        golds = _field(kwargs, "golds", n)
        langs = _field(kwargs, "lang", n)
        scores: list[float | None] = [
            0.0 if not answer else float(score(answer, list(gold), lang))
            for answer, gold, lang in zip(answers, golds, langs)
        ]
        _log_per_language(kwargs, name, langs, scores)
        return scores

    reward.__name__ = name
    reward.__qualname__ = name
    reward.__doc__ = (
        f"{name} of the rollout's parsed answer against the golds of its language (0 when it never answered)."
    )
    return reward


def _exact_match(answer: str, golds: list[str], lang: str) -> float:
    from crosearch.eval.metrics import exact_match

    return exact_match(answer, golds, lang)


def _f1(answer: str, golds: list[str], lang: str) -> float:
    from crosearch.eval.metrics import f1_score

    return f1_score(answer, golds, lang)


def _char3(answer: str, golds: list[str], lang: str) -> float:
    from crosearch.eval.metrics import char3_recall

    return char3_recall(answer, golds, lang)


exact_match_reward = _answer_reward("exact_match", _exact_match)
f1_reward = _answer_reward("f1", _f1)
char3_recall_reward = _answer_reward("char3_recall", _char3)


def format_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
    """1 when the rollout followed the protocol: every turn parsed, and it ended with a non-empty ``<answer>``."""
    n = len(completions)
    valid = _field(kwargs, "valid_format", n)
    langs = _field(kwargs, "lang", n)
    scores: list[float | None] = [1.0 if ok else 0.0 for ok in valid]
    _log_per_language(kwargs, "format", langs, scores)
    return scores


format_reward.__name__ = "format"


def answer_language_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
    """1 when the answer is written in the question's language, 0 when not or unanswered.

    ``None`` (ignored by TRL) when the language cannot be decided for that answer
    (numbers, a language the detector does not know).
    """
    from crosearch.eval.metrics import answer_language_match

    n = len(completions)
    answers = _field(kwargs, "answer", n)
    langs = _field(kwargs, "lang", n)
    scores: list[float | None] = []
    for answer, lang in zip(answers, langs):
        if not answer:
            scores.append(0.0)
            continue
        match = answer_language_match(answer, lang)
        scores.append(None if match is None else float(match))
    _log_per_language(kwargs, "answer_language", langs, scores)
    return scores


answer_language_reward.__name__ = "answer_language"

REWARDS: dict[str, RewardFunc] = {
    "exact_match": exact_match_reward,
    "f1": f1_reward,
    "char3_recall": char3_recall_reward,
    "format": format_reward,
    "answer_language": answer_language_reward,
}


def build_rewards(weights: dict[str, float]) -> tuple[list[RewardFunc], list[float]]:
    """The reward functions and TRL ``reward_weights`` for a ``train.reward_weights`` mapping.

    Every named function is passed to TRL, including weight-0 ones, so that each
    component is logged even when it does not shape the advantage.
    """
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise ConfigError(f"train.reward_weights: unknown reward(s) {unknown}; known: {sorted(REWARDS)}")
    if not any(w != 0 for w in weights.values()):
        raise ConfigError("train.reward_weights: every weight is 0, so there is no learning signal")
    names = [name for name in REWARDS if name in weights]
    return [REWARDS[name] for name in names], [float(weights[name]) for name in names]
