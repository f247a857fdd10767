"""The runner: executes an experiment's stages in order, skipping those whose result exists.

Each stage calls the function behind its command (``build_benchmark``/``write_benchmark`` of
``crosearch data build``, ``build_index`` of ``crosearch index``, ``run_sft``, ``run_train``,
``run_qa_eval`` and ``build_report``) with the configuration the recipe resolves for it, then
copies what is worth keeping into the results directory and writes the stage's marker last.

Resuming: a stage is done when its marker exists. A stage that needs another's outputs
(a benchmark, an index, an adapter) that are gone (``runs/`` wiped) has them rebuilt first:
benchmarks and indexes are deterministic, adapters come back from ``results_dir`` when kept, and
a GRPO run killed mid-way continues from its last complete TRL checkpoint. One lock per work
directory keeps two runners off the same experiment.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import hashlib
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crosearch.errors import ConfigError, CrosearchError
from crosearch.experiment.plan import Stage, plan_experiment
from crosearch.experiment.recipe import ResolvedRecipe
from crosearch.experiment.results import (
    ADAPTER,
    adapter_complete,
    copy_file,
    keep_adapter,
    load_average,
    read_marker,
    slim_predictions,
    stage_path,
    write_marker,
)
from crosearch.io import atomic_dir, atomic_write_json, atomic_write_text, lock_holder, pid_lock, read_json

STATE = ".state"
# The configuration sections each kind of stage reads: a change elsewhere (say, an evaluation key)
# leaves it current. Keys that only say where things are (paths, caches) are left out.
_SECTIONS = {
    "benchmark": ("data",),
    "index": ("data", "retrieval"),
    "warm-start": ("data", "retrieval", "model", "agent", "crosslingual", "metrics", "sft"),
    "train": ("data", "retrieval", "model", "agent", "crosslingual", "metrics", "train"),
    "eval": ("data", "retrieval", "model", "agent", "crosslingual", "metrics", "eval"),
}
_PLACES = frozenset({"benchmark", "output_dir", "index_dir", "dense_cache_dir", "adapter", "cache_dir", "cache_path"})
# Keys that set how much work one call does, not what the stage computes: raising a batch size to
# run faster leaves finished stages current. Training batch sizes are not among them.
_THROUGHPUT = {
    "agent": frozenset({"batch_size"}),
    "eval": frozenset({"batch_size"}),
    "crosslingual": frozenset({"batch_size"}),
    "retrieval": frozenset({"dense_batch_size"}),
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _slug(name: str) -> str:
    return name.replace("/", "__")


class Runner:
    """Runs, and reports the state of, the stages of one experiment."""

    def __init__(
        self,
        resolved: ResolvedRecipe,
        *,
        extra: Sequence[Stage] = (),
        console: Any = None,
        progress: bool = True,
    ) -> None:
        from rich.console import Console

        self.resolved = resolved
        self.recipe = resolved.recipe
        self.work = Path(self.recipe.work_dir)
        self.results = Path(self.recipe.results_dir)
        self.console = console or Console(stderr=True)
        self.progress = progress
        self.main_stages = plan_experiment(resolved)
        self.stages = [*self.main_stages, *extra]
        self.by_name = {s.name: s for s in self.stages}
        self._policy: tuple[str, Any] | None = None
        self._fingerprints: dict[str, str] = {}
        base = resolved.config()
        if not (base.sft.lora.enabled and base.train.lora.enabled):
            # Arms load the warm start as model.adapter, and kept results are adapters.
            raise ConfigError(
                f"{resolved.path}: the experiment chains LoRA adapters; sft.lora.enabled and "
                "train.lora.enabled must be true"
            )

    # ------------------------------------------------------------------ paths and states

    @property
    def lock_path(self) -> Path:
        return self.work / "experiment.lock"

    def work_path(self, name: str) -> Path:
        return stage_path(self.work, name)

    def result_path(self, name: str) -> Path:
        return stage_path(self.results, name)

    def marker(self, stage: Stage) -> dict[str, Any] | None:
        return read_marker(self.result_path(stage.name))

    def done(self, stage: Stage) -> bool:
        marker = self.marker(stage)
        if marker is None:
            return False
        if stage.kind == "report":
            # A report is stale once an evaluation or a training run it covers has finished again.
            return bool(marker.get("inputs") == self._report_inputs(stage))
        return not self.stale(stage)

    def stale(self, stage: Stage) -> bool:
        """Whether the stage finished under a recipe that resolves differently for it now."""
        marker = self.marker(stage)
        recorded = marker.get("fingerprint") if marker else None
        return recorded is not None and recorded != self.fingerprint(stage)

    def fingerprint(self, stage: Stage) -> str | None:
        """A digest of what the stage's result depends on: the configuration sections it reads (paths,
        batch sizes of generation and evaluation, and default values left out), its own plan fields,
        and the fingerprints of the stages it reads from."""
        if stage.kind not in _SECTIONS:
            return None
        cached = self._fingerprints.get(stage.name)
        if cached is not None:
            return cached
        keys: dict[str, Any] = {}
        if stage.kind == "benchmark":
            keys["data.setting"] = stage.setting
        # Only keys set away from their defaults: a new option whose default keeps today's behaviour
        # leaves finished stages current.
        config = self.resolved.config(
            arm=stage.arm, variant=stage.variant, evaluation=stage.kind == "eval", stage=keys
        ).model_dump(mode="json", exclude_defaults=True)
        plan = {
            name: getattr(stage, name)
            for name in ("kind", "setting", "source", "split", "per_lang", "langs", "pipeline", "strategy", "seed")
        }
        if stage.kind == "eval":
            ev = self.recipe.evaluation
            plan["per_lang"] = stage.per_lang or ev.per_lang
            plan["sample_seed"] = ev.seed
        content = {
            "config": {section: _keys_read(section, config.get(section, {})) for section in _SECTIONS[stage.kind]},
            "plan": plan,
            "needs": {name: self.fingerprint(self.by_name[name]) for name in stage.needs if name in self.by_name},
        }
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
        self._fingerprints[stage.name] = digest
        return digest

    def adapter(self, name: str) -> Path | None:
        """The final adapter of a training stage: in the work directory, else the copy kept in the results."""
        final = self.work_path(name) / "final"
        if adapter_complete(final) and (final / "crosearch-complete.json").is_file():
            return final
        kept = self.result_path(name) / ADAPTER
        return kept if adapter_complete(kept) else None

    def available(self, stage: Stage) -> bool:
        """Whether what the stage produces for later stages is there to be read now."""
        if stage.kind == "benchmark":
            return (self.work_path(stage.name) / "meta.json").is_file()
        if stage.kind == "index":
            return (self.work_path(stage.name) / "manifest.json").is_file()
        if stage.kind in ("warm-start", "train"):
            return self.adapter(stage.name) is not None
        return self.done(stage)

    def state(self, stage: Stage) -> str:
        if self.done(stage):
            return "done"
        if stage.kind != "report" and self.stale(stage):
            return "stale"
        holder = lock_holder(self.lock_path)
        current = self._read_state("current.json")
        if holder is not None and current is not None and current.get("stage") == stage.name:
            return "running"
        if (self.work / STATE / "failed" / f"{_slug(stage.name)}.json").is_file():
            return "failed"
        return "left"

    def running_seconds(self) -> float | None:
        """How long the stage now running has been running (None when none is)."""
        current = self._read_state("current.json")
        if current is None or lock_holder(self.lock_path) is None:
            return None
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return (datetime.now(UTC) - datetime.fromisoformat(current["started"])).total_seconds()
        return None

    def _read_state(self, name: str) -> dict[str, Any] | None:
        path = self.work / STATE / name
        if not path.is_file():
            return None
        with contextlib.suppress(CrosearchError):
            data = read_json(path)
            return data if isinstance(data, dict) else None
        return None

    # ------------------------------------------------------------------ running

    def select(self, only: Sequence[str] | None, flag: str = "--only") -> list[Stage]:
        """The stages to run: all, or those matching a pattern of ``only`` (a name, a prefix or a glob)."""
        if not only:
            return list(self.stages)
        chosen = [
            s
            for s in self.stages
            if any(s.name == p or s.name.startswith(p.rstrip("/") + "/") or fnmatch.fnmatch(s.name, p) for p in only)
        ]
        if not chosen:
            raise CrosearchError(f"{flag} {' '.join(only)} matches no stage; `crosearch experiment status` lists them")
        return chosen

    def run(self, only: Sequence[str] | None = None, redo: Sequence[str] | None = None) -> list[str]:
        """Run every selected stage that is not done; returns the names of the stages it ran.

        ``redo`` names stages to run again from scratch even when done (a code change that the
        recipe's fingerprint cannot see); they join the selection, and alone they are the selection.
        """
        again = {s.name for s in self.select(redo, flag="--redo")} if redo else set()
        selected = self.select([*(only or []), *(redo or [])]) if only or redo else self.select(None)
        ran: list[str] = []
        with pid_lock(self.lock_path, what=f"experiment '{self.recipe.name}'"):
            for i, stage in enumerate(selected, start=1):
                if stage.name in again:
                    self.console.print(f"[yellow]{stage.name}: run again from scratch (--redo)[/]")
                    shutil.rmtree(self.work_path(stage.name), ignore_errors=True)
                    shutil.rmtree(self.result_path(stage.name), ignore_errors=True)
                elif self.done(stage):
                    self.console.print(f"[{i}/{len(selected)}] {stage.name}: done, skipped")
                    continue
                for need in self._missing_needs(stage):
                    self.console.print(f"[cyan]{need.name}[/]: output missing, needed by {stage.name}: rebuilding")
                    self.execute(need)
                    ran.append(need.name)
                self.console.print(
                    f"[bold][{i}/{len(selected)}] {stage.name}[/] (estimate {format_seconds(stage.estimate)})"
                )
                self.execute(stage)
                ran.append(stage.name)
        self._release_policy()
        return ran

    def _missing_needs(self, stage: Stage) -> Iterator[Stage]:
        """The stages to (re)run first, needs of needs first, each once."""
        seen: set[str] = set()

        def walk(s: Stage) -> Iterator[Stage]:
            for name in s.needs:
                need = self.by_name[name]
                if need.kind in ("warm-start", "train") and self.stale(need):
                    raise CrosearchError(
                        f"{stage.name} needs {name}, which ran under a recipe that has changed since: run it "
                        f"again first (`crosearch experiment run --only {name}`)"
                    )
                if name in seen or (self.available(need) and not self.stale(need)):
                    continue
                if need.kind in ("warm-start", "train") and not self.done(need):
                    # Hours of training are started by their own stage, never as a side effect.
                    raise CrosearchError(
                        f"{stage.name} needs {name}, which has not finished: run it first "
                        f"(`crosearch experiment run --only {name}`)"
                    )
                yield from walk(need)
                seen.add(name)
                yield need

        yield from walk(stage)

    def execute(self, stage: Stage) -> dict[str, Any]:
        """Run one stage, then copy its results and write its marker (last, atomically)."""
        state = self.work / STATE
        failed = state / "failed" / f"{_slug(stage.name)}.json"
        fingerprint = self.fingerprint(stage)
        if fingerprint is not None:
            self._start_clean(stage, fingerprint)
        started = _now()
        atomic_write_json(state / "current.json", {"stage": stage.name, "started": started})
        began = time.perf_counter()
        try:
            key, extra = getattr(self, f"_run_{stage.kind.replace('-', '_')}")(stage)
        except KeyboardInterrupt:
            self.console.print(f"[yellow]interrupted during {stage.name}; run the same command again to resume[/]")
            raise
        except Exception as exc:
            atomic_write_json(failed, {"stage": stage.name, "time": _now(), "error": f"{type(exc).__name__}: {exc}"})
            raise
        finally:
            (state / "current.json").unlink(missing_ok=True)
        marker = {
            "stage": stage.name,
            "kind": stage.kind,
            "started": started,
            "finished": _now(),
            "wall_seconds": round(time.perf_counter() - began, 1),
            "load_average": load_average(),
            "key": key,
            **({"fingerprint": fingerprint} if fingerprint is not None else {}),
            **extra,
        }
        write_marker(self.result_path(stage.name), marker)
        failed.unlink(missing_ok=True)
        self.console.print(
            f"[green]{stage.name}[/]: done in {format_seconds(marker['wall_seconds'])}; {format_key(key)}"
        )
        return marker

    def _start_clean(self, stage: Stage, fingerprint: str) -> None:
        """Outputs left by the stage under another recipe (a stale result, or a killed run whose recipe
        changed since) are removed, so that nothing of them is resumed or copied; then the fingerprint it
        runs under is recorded (beside the work directory: the commands refuse to write into a directory
        they did not make). A killed run of the same recipe is kept and resumed."""
        work, result = self.work_path(stage.name), self.result_path(stage.name)
        recorded = self.work / STATE / "fingerprints" / _slug(stage.name)
        earlier = recorded.read_text().strip() if recorded.is_file() else None
        if self.stale(stage) or (earlier is not None and earlier != fingerprint):
            self.console.print(f"[yellow]{stage.name}: the recipe changed since it ran; starting it again[/]")
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(result, ignore_errors=True)
        atomic_write_text(recorded, fingerprint + "\n")

    # ------------------------------------------------------------------ stage kinds

    def _retrieval_keys(self, index: str | None) -> dict[str, Any]:
        keys: dict[str, Any] = {"retrieval.index_dir": str(self.work_path(index))} if index else {}
        base = self.resolved.config().retrieval
        if base.dense_model and not base.dense_cache_dir:
            # One embedding cache for every index: later settings reuse the passages already encoded.
            keys["retrieval.dense_cache_dir"] = str(self.work / "embedding-cache")
        return keys

    def _run_benchmark(self, stage: Stage) -> tuple[dict[str, Any], dict[str, Any]]:
        from crosearch.data.benchmark import build_benchmark, write_benchmark

        keys: dict[str, Any] = {"data.setting": stage.setting}
        if stage.source:
            keys.update({"data.source": stage.source, "data.languages": None})
        config = self.resolved.config(stage=keys)
        bench = build_benchmark(config.data, progress=self.progress)
        write_benchmark(bench, self.work_path(stage.name))
        counts = bench.meta["counts"]
        return {"name": "test questions", "value": counts["test"]}, {"counts": counts}

    def _run_index(self, stage: Stage) -> tuple[dict[str, Any], dict[str, Any]]:
        from crosearch.retrieval.local import IndexSettings, build_index
        from crosearch.retrieval.store import read_collection, train_paragraphs

        assert stage.benchmark is not None
        config = self.resolved.config(stage=self._retrieval_keys(stage.name))
        bench = self.work_path(stage.benchmark)
        settings = IndexSettings.from_config(config.retrieval)
        report = build_index(
            read_collection(bench),
            self.work_path(stage.name),
            settings,
            progress=self.progress,
            train_paragraphs=train_paragraphs(bench) if settings.dense_model else None,
        )
        passages = sum(report.languages.values())
        return {"name": "passages", "value": passages}, {"methods": settings.methods, "languages": report.languages}

    def _finished_run(self, out: Path) -> bool:
        return (out / "summary.json").is_file() and adapter_complete(out / "final")

    def _keep_training(self, stage: Stage, out: Path) -> dict[str, Any]:
        """Copy a finished training run's summary (and adapter) into the results; returns the summary."""
        summary = read_json(out / "summary.json", what="training summary")
        result = self.result_path(stage.name)
        copy_file(out / "summary.json", result / "summary.json")
        if self.recipe.keep_adapters:
            keep_adapter(out / "final", result / ADAPTER)
        return dict(summary)

    def _run_warm_start(self, stage: Stage) -> tuple[dict[str, Any], dict[str, Any]]:
        from crosearch.rl.checkpoints import checkpoint_dirs
        from crosearch.rl.sft import run_sft

        assert stage.benchmark is not None
        out = self.work_path(stage.name)
        config = self.resolved.config(
            stage={
                "sft.benchmark": str(self.work_path(stage.benchmark)),
                "sft.output_dir": str(out),
                **self._retrieval_keys(stage.index),
            }
        )
        self._release_policy()
        if not self._finished_run(out):
            run_sft(config, resume=bool(checkpoint_dirs(out)))
        summary = self._keep_training(stage, out)
        keep = (
            "trajectories",
            "trajectories_per_strategy",
            "answer_in_evidence",
            "answer_in_first_evidence",
            "searches_histogram",
            "steps",
            "train_seconds",
        )
        return {"name": "train loss", "value": summary.get("train_loss")}, {k: summary.get(k) for k in keep}

    def _run_train(self, stage: Stage) -> tuple[dict[str, Any], dict[str, Any]]:
        from crosearch.rl.checkpoints import checkpoint_dirs
        from crosearch.rl.curve import plot_curve, summarize
        from crosearch.rl.train import run_train

        assert stage.benchmark is not None and stage.adapter_from is not None
        out = self.work_path(stage.name)
        warm = self.adapter(stage.adapter_from)
        if warm is None:
            raise CrosearchError(f"{stage.name}: the warm start's adapter is missing; run `{stage.adapter_from}` first")
        config = self.resolved.config(
            arm=stage.arm,
            variant=stage.variant,
            stage={
                "train.benchmark": str(self.work_path(stage.benchmark)),
                "train.output_dir": str(out),
                "train.seed": stage.seed,
                "model.adapter": str(warm),
                **self._retrieval_keys(stage.index),
            },
        )
        self._release_policy()
        if not self._finished_run(out):
            # A run killed mid-way goes on from its latest complete checkpoint (TRL's resume).
            run_train(config, resume=bool(checkpoint_dirs(out)))
            gc.collect()
        summary = self._keep_training(stage, out)
        history = summary.get("log_history") or []
        plot_curve(history, self.result_path(stage.name) / "curve.png", title=stage.name)
        reward = summarize(history, "reward") if any("reward" in h for h in history) else None
        key = {"name": "reward (last steps)", "value": reward["last_mean"] if reward else None}
        extra = {"steps": summary.get("steps"), "seconds": summary.get("seconds"), "reward": reward}
        return key, extra

    def _policy_for(self, model: Any) -> Any:
        """The loaded policy for ``model`` (name, adapter, dtype...): reused by consecutive evaluations."""
        from crosearch.agent.pipelines import load_policy_backend

        key = model.model_dump_json()
        if self._policy is None or self._policy[0] != key:
            self._release_policy()
            self._policy = (key, load_policy_backend(model))
        return self._policy[1]

    def _release_policy(self) -> None:
        if self._policy is not None:
            self._policy = None
            gc.collect()

    def _run_eval(self, stage: Stage) -> tuple[dict[str, Any], dict[str, Any]]:
        from crosearch.eval.qa import METRICS, PREDICTIONS, QARun, run_qa_eval

        assert stage.benchmark is not None and stage.pipeline is not None
        adapter = None
        if stage.adapter_from:
            adapter = self.adapter(stage.adapter_from)
            if adapter is None:
                raise CrosearchError(f"{stage.name}: the adapter of {stage.adapter_from} is missing")
        ev = self.recipe.evaluation
        keys: dict[str, Any] = {
            **self._retrieval_keys(stage.index),
            "model.adapter": str(adapter) if adapter else None,
            "eval.per_lang": stage.per_lang or ev.per_lang,
            "eval.seed": ev.seed,
        }
        if stage.strategy:
            keys["crosslingual.strategy"] = stage.strategy
        config = self.resolved.config(arm=stage.arm, variant=stage.variant, evaluation=True, stage=keys)
        out = self.work_path(stage.name)
        run = QARun(
            pipeline=stage.pipeline,
            benchmark=self.work_path(stage.benchmark),
            out_dir=out,
            split=stage.split,
            per_lang=config.eval.per_lang,
            langs=list(stage.langs) if stage.langs else None,
        )
        metrics = run_qa_eval(
            run, config, policy=self._policy_for(config.model), progress=self.progress, console=self.console
        )
        result = self.result_path(stage.name)
        copy_file(out / METRICS, result / METRICS)
        n = slim_predictions(out / PREDICTIONS, result / PREDICTIONS)
        macro = metrics.get("macro") or {}
        return {"name": "macro F1", "value": macro.get("f1")}, {"questions": n}

    def _report_inputs(self, stage: Stage) -> dict[str, str]:
        names = [*(e for part in stage.parts for e in part.evals), *stage.curves]
        inputs = {}
        for name in names:
            marker = read_marker(self.result_path(name))
            if marker is not None:
                inputs[name] = str(marker["finished"])
        return inputs

    def _run_report(self, stage: Stage) -> tuple[dict[str, Any], dict[str, Any]]:
        from crosearch.eval.plots import training_curves, write_png
        from crosearch.eval.report import build_report, report_figures, report_markdown
        from crosearch.rl.curve import read_log_history

        rep = self.recipe.report
        inputs = self._report_inputs(stage)
        lines = [f"# Experiment `{self.recipe.name}`: {stage.name}", ""]
        tables = 0
        with atomic_dir(self.result_path(stage.name)) as tmp:
            for part in stage.parts:
                evals = [self.result_path(e) for e in part.evals if e in inputs]
                if not evals:
                    continue
                baseline = self.result_path(part.baseline) if part.baseline in inputs else None
                report = build_report(evals, rep.metrics, baseline=baseline, resamples=rep.resamples, seed=rep.seed)
                slug = _slug(part.title).replace(" ", "-").replace("(", "").replace(")", "")
                atomic_write_json(tmp / f"{slug}.json", report.to_dict())
                figures = report_figures(report)
                if "f1_by_language.png" in figures:
                    write_png(tmp / f"{slug}-f1.png", figures["f1_by_language.png"])
                lines += [f"## {part.title}", "", report_markdown(report).rstrip(), ""]
                tables += 1
            # The arms trained so far: a report made part-way (`--only report`) shows what exists.
            curves = [
                (self.by_name[name].label, read_log_history(self.result_path(name))[0])
                for name in stage.curves
                if name in inputs
            ]
            if curves:
                png = training_curves(curves, rep.curves)
                if png is not None:
                    write_png(tmp / "training.png", png)
                    lines += ["## Training curves", "", "![training curves](training.png)", ""]
            lines += ["## Stages", "", *self.stage_table_markdown()]
            atomic_write_text(tmp / "report.md", "\n".join(lines) + "\n")
        return {"name": "settings reported", "value": tables}, {"inputs": inputs}

    # ------------------------------------------------------------------ status

    def rows(self) -> list[tuple[Stage, str, dict[str, Any] | None]]:
        return [(s, self.state(s), self.marker(s)) for s in self.stages]

    def stage_table_markdown(self) -> list[str]:
        """Stages with their wall time, load average and key number, as markdown lines (for the report)."""
        lines = ["| stage | wall time | load average | key number |", "|---|---:|---|---|"]
        for stage in self.main_stages:
            marker = self.marker(stage)
            if marker is None or stage.kind == "report":
                continue
            load = marker.get("load_average")
            lines.append(
                f"| {stage.name} | {format_seconds(marker.get('wall_seconds'))} | "
                f"{' '.join(str(x) for x in load) if load else '-'} | {format_key(marker.get('key'))} |"
            )
        return lines

    def estimate_left(self, stages: Sequence[Stage] | None = None) -> tuple[int, float]:
        """How many of ``stages`` are not done and their estimated seconds."""
        left = [s for s in (stages if stages is not None else self.stages) if not self.done(s)]
        return len(left), sum(s.estimate for s in left)

    def estimate_by_kind(self, stages: Sequence[Stage]) -> dict[str, float]:
        """Estimated seconds left per stage kind (where the budget goes)."""
        out: dict[str, float] = {}
        for stage in stages:
            if not self.done(stage):
                out[stage.kind] = out.get(stage.kind, 0.0) + stage.estimate
        return out


def _keys_read(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """A configuration section as a stage's result depends on it: without its throughput keys and,
    at any depth, the keys that only say where files are."""
    skip = _THROUGHPUT.get(section, frozenset())
    return _without_places({k: v for k, v in values.items() if k not in skip})


def _without_places(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_places(v) for k, v in value.items() if k not in _PLACES}
    return value


def format_seconds(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def format_key(key: Any) -> str:
    if not isinstance(key, dict) or key.get("value") is None:
        return "-"
    value = key["value"]
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{key.get('name')} {shown}"
