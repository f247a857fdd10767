"""Adapters shipped inside the package: ``model.adapter: bundled:<name>``.

A bundled adapter is a directory under ``crosearch/resources/adapters/<name>/`` holding

- ``adapter_config.json`` and ``adapter_model.safetensors`` (a PEFT LoRA adapter, weights in bf16:
  half the size of float32, and what the bundled model trains under on CPUs with bf16);
- ``MODEL_CARD.md``: data, recipe, steps, seed, commit, metrics with intervals, license;
- ``settings.json``: the ``model.name`` it was trained on (it loads on that model only) and the
  configuration overrides it was trained and evaluated under (``crosearch quickstart`` applies them);
- ``checksums.json``: the SHA-256 of each of those files, checked every time the adapter is resolved,
  so a truncated or edited file is reported by name instead of loading wrong weights.

:func:`ship_adapter` makes such a directory from a trained adapter (``crosearch model ship-adapter``);
:func:`resolve_adapter` turns ``bundled:<name>`` into its verified directory and leaves any other
adapter path as it is. torch is imported only by :func:`ship_adapter`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crosearch.errors import ConfigError, CrosearchError
from crosearch.io import atomic_dir, atomic_write_json, file_sha256, read_json
from crosearch.names import check_name

PREFIX = "bundled:"
ADAPTERS_DIR = Path(__file__).resolve().parent / "resources" / "adapters"
CHECKSUMS = "checksums.json"
CARD = "MODEL_CARD.md"
SETTINGS = "settings.json"
FILES = ("adapter_config.json", "adapter_model.safetensors", CARD, SETTINGS)
LICENSE = (
    "The adapter's weights are a derivative of Gemma 3 270M and are used under the Gemma Terms of Use "
    "(https://ai.google.dev/gemma/terms). It was trained on questions and paragraphs of XQuAD "
    "(Artetxe et al., 2020), licensed CC BY-SA 4.0; the training data derived from it keeps that license "
    "and attribution. The crosearch code that trained it is Apache-2.0."
)


def bundled_names(root: Path | None = None) -> list[str]:
    """The adapters shipped under ``root`` (default: the package's), by name."""
    base = ADAPTERS_DIR if root is None else root
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and (p / CHECKSUMS).is_file())


def is_bundled(spec: str | Path | None) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def verify_adapter(directory: Path) -> None:
    """Check every file of a bundled adapter against its ``checksums.json``; raise naming the file that differs."""
    checksums_path = directory / CHECKSUMS
    recorded = read_json(checksums_path, what="adapter checksums")
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise CrosearchError(f"{checksums_path}: expected an object of file name -> SHA-256 hex digest")
    missing = [name for name in FILES if name not in recorded]
    if missing:
        raise CrosearchError(f"{checksums_path}: no checksum for {', '.join(missing)}")
    for name, expected in recorded.items():
        path = directory / name
        if not path.is_file():
            raise CrosearchError(f"bundled adapter {directory.name}: {path} is missing")
        actual = file_sha256(path)
        if actual != expected:
            raise CrosearchError(
                f"bundled adapter {directory.name}: {path} does not match its checksum "
                f"(SHA-256 {actual[:12]}..., {CHECKSUMS} records {expected[:12]}...); reinstall crosearch "
                "or ship the adapter again"
            )


def resolve_adapter(spec: str | Path | None, root: Path | None = None, *, model: str | None = None) -> str | None:
    """The adapter directory ``spec`` names: ``bundled:<name>`` is looked up and verified, a path is kept as it is.

    With ``model`` (the ``model.name`` it is about to go on), a bundled adapter trained on another
    model is refused by name, instead of failing on tensor shapes inside PEFT.
    """
    if spec is None or not is_bundled(spec):
        return None if spec is None else str(spec)
    name = str(spec)[len(PREFIX) :]
    base = ADAPTERS_DIR if root is None else root
    available = bundled_names(base)
    if name not in available:
        have = ", ".join(f"{PREFIX}{n}" for n in available) or "none in this installation"
        raise ConfigError(f"model.adapter: no bundled adapter '{name}'; available: {have}")
    directory = base / name
    verify_adapter(directory)
    trained_on = shipped_settings(name, base).model
    if model is not None and model != trained_on:
        raise ConfigError(
            f"model.adapter: the bundled adapter '{name}' was trained on model '{trained_on}', "
            f"and model.name is '{model}'"
        )
    return str(directory)


class ShippedSettings(BaseModel):
    """``settings.json`` of a shipped adapter."""

    model_config = ConfigDict(extra="forbid")

    model: str
    settings: dict[str, Any] = Field(default_factory=dict)


def shipped_settings(name: str, root: Path | None = None) -> ShippedSettings:
    """The model a shipped adapter goes on and the overrides it was trained under."""
    path = (ADAPTERS_DIR if root is None else root) / name / SETTINGS
    raw = read_json(path, what="adapter settings")
    try:
        return ShippedSettings.model_validate(raw)
    except ValidationError as exc:
        raise CrosearchError(f"{path}: {_problems(exc)}") from None


class AdapterCard(BaseModel):
    """What ``MODEL_CARD.md`` says about a shipped adapter (given as YAML/JSON to ``ship-adapter --card``)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field("bundled (Gemma 3 270M)", description="the model the adapter goes on, in words")
    model: str = Field("bundled", description="the model.name it was trained on: it loads on that model only")
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="configuration overrides (dotted keys) it was trained and is evaluated under, such as "
        "crosslingual.strategy; `crosearch quickstart` evaluates it under them",
    )
    data: str = Field(description="training data: benchmark, setting, languages, split, number of questions")
    recipe: str = Field(description="the recipe(s) and overrides it was trained with")
    steps: int = Field(ge=0, description="optimizer steps (warm start and GRPO)")
    seed: int = Field(description="the training seed")
    commit: str = Field(description="the crosearch commit it was trained with")
    metrics: str = Field(description="held-out metrics with intervals (markdown, e.g. from crosearch report)")
    notes: str = Field("", description="anything else a user should know")


def load_card(path: str | Path) -> AdapterCard:
    """Read card fields from a YAML or JSON file; a missing or unknown field is named with the file."""
    import yaml

    source = Path(path)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CrosearchError(f"{source}: cannot read the card fields: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CrosearchError(f"{source}: not YAML/JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CrosearchError(f"{source}: expected a mapping of card fields")
    try:
        card = AdapterCard.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_problems(exc)}") from None
    from crosearch.config import Config, with_updates

    try:
        with_updates(Config(), card.settings)
    except ValidationError as exc:
        raise ConfigError(f"{source}: field 'settings': {_problems(exc, 'key')}") from None
    if any(key.split(".")[0] == "model" for key in card.settings):
        raise ConfigError(f"{source}: field 'settings': model keys belong to the card's 'model' field, not here")
    return card


def _problems(exc: ValidationError, what: str = "field") -> str:
    return "; ".join(f"{what} '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())


def render_card(name: str, card: AdapterCard, adapter_config: dict[str, Any]) -> str:
    """The model card's markdown."""
    lora = ", ".join(
        f"{key} {adapter_config[key]}" for key in ("r", "lora_alpha", "target_modules") if key in adapter_config
    )
    lines = [
        f"# {name}: a crosearch LoRA adapter",
        "",
        f"Load it with `--set model.adapter={PREFIX}{name}` (or `--adapter` where a command takes a path: "
        f"`crosearch model info --set model.adapter={PREFIX}{name}` shows where it is).",
        "",
        "| field | value |",
        "|---|---|",
        f"| base model | {card.base_model} |",
        f"| adapter | LoRA ({lora}), weights in bf16 |",
        f"| data | {card.data} |",
        f"| recipe | {card.recipe} |",
        f"| steps | {card.steps} |",
        f"| seed | {card.seed} |",
        f"| commit | {card.commit} |",
        "",
    ]
    if card.settings:
        lines += [
            "## Settings",
            "",
            "It was trained and evaluated under these overrides (beside the recipe's); use them with it:",
            "",
            "```",
            *(f"--set {key}={_setting(value)}" for key, value in card.settings.items()),
            "```",
            "",
        ]
    lines += [
        "## Metrics",
        "",
        card.metrics.strip(),
        "",
        "## License",
        "",
        LICENSE,
    ]
    if card.notes.strip():
        lines += ["", "## Notes", "", card.notes.strip()]
    return "\n".join(lines) + "\n"


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_setting(v) for v in value) + "]"
    return str(value)


def ship_adapter(source: str | Path, name: str, card: AdapterCard, *, root: Path | None = None) -> Path:
    """Copy the PEFT adapter at ``source`` into ``root/<name>`` (default: the package) in bf16, with card and checksums.

    The directory is written to a temporary sibling and renamed into place, so it is never seen half-written.
    """
    import torch
    from safetensors.torch import load_file, save_file

    check_name(name, "adapter name")
    src = Path(source)
    config_path = src / "adapter_config.json"
    weights_path = src / "adapter_model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CrosearchError(f"{src} is not a PEFT adapter directory with safetensors weights (no {path.name})")
    adapter_config = read_json(config_path, what="adapter config")
    if not isinstance(adapter_config, dict):
        raise CrosearchError(f"{config_path}: expected a JSON object")
    tensors = load_file(str(weights_path))
    # bf16 keeps float32's range (no overflow in the LoRA factors) at half the size.
    converted = {key: t.to(torch.bfloat16) if t.is_floating_point() else t for key, t in tensors.items()}
    target = (ADAPTERS_DIR if root is None else root) / name
    with atomic_dir(target) as tmp:
        (tmp / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n", encoding="utf-8")
        save_file(converted, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / CARD).write_text(render_card(name, card, adapter_config), encoding="utf-8")
        atomic_write_json(tmp / SETTINGS, {"model": card.model, "settings": card.settings})
        atomic_write_json(tmp / CHECKSUMS, {file: file_sha256(tmp / file) for file in FILES})
    return target
