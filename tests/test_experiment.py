"""``crosearch experiment``: recipe validation, the plan, and a whole experiment killed and resumed.

The end-to-end test runs the real command in a subprocess with the tiny model, real XQuAD
benchmarks and BM25 indexes: two arms of two GRPO steps each. It kills the runner in the middle
of the first arm's GRPO run, runs it again, and checks that finished stages were not run twice,
that GRPO went on from its checkpoint, and that the report has intervals and paired differences.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from crosearch.cli import app
from crosearch.errors import ConfigError, CrosearchError
from crosearch.experiment.plan import plan_experiment
from crosearch.experiment.recipe import load_recipe
from training_data import wait_for

runner = CliRunner()


def _recipe(root: Path, **changes) -> dict:
    """Two arms on en+de XQuAD with the tiny model: the smallest experiment that has every kind of stage."""
    recipe = {
        "name": "tiny",
        "results_dir": str(root / "results"),
        "work_dir": str(root / "work"),
        "base": {
            "data": {"languages": ["en", "de"], "passages": "sentences"},
            "model": {"name": "tiny", "dtype": "float32", "device": "cpu"},
            "metrics": {"lang_detector": "low"},  # the smaller language models load faster
            "retrieval": {"k": 2},
            "crosslingual": {"k": 2, "token_budget": 48, "translator": "none"},
            # One turn before the forced answer keeps the random model's rollouts short.
            "agent": {
                "max_turns": 1,
                "max_new_tokens": 48,
                "answer_tokens": 8,
                "max_total_tokens": 700,
                "temperature": 1.0,
                "batch_size": 8,
            },
            "sft": {
                "max_examples": 4,
                "max_steps": 1,
                "batch_size": 2,
                "bf16": False,
                "strategies": ["mono", "concat"],
            },
            "train": {
                "num_generations": 2,
                "save_steps": 1,
                "bf16": False,
                "max_questions": 20,
                "reward_weights": {"exact_match": 1.0, "format": 0.1},
            },
        },
        "budget": {"train.max_steps": 2, "train.questions_per_step": 1, "train.learning_rate": 1.0e-3},
        # The random model writes every token it may: shorter turns for the arms keep the test short
        # (the warm start's scripted turns need the base's 48).
        "arms": {
            "search-r1": {"crosslingual.strategy": "mono", "agent.max_new_tokens": 16},
            "crosearch-r1": {
                "crosslingual.strategy": "crosslingual",
                "train.multilingual_groups": True,
                "agent.max_new_tokens": 16,
            },
        },
        "evaluation": {
            "settings": ["gap"],
            "trained_settings": [],
            "per_lang": 2,
            "baselines": [],
            "warm_start_strategies": [],
        },
        "report": {"resamples": 200},
    }
    recipe.update(changes)
    return recipe


def _write(root: Path, recipe: dict) -> Path:
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


# ---------------------------------------------------------------------------- the recipe


def test_an_unknown_arm_option_names_the_arm_and_the_key(tmp_path):
    recipe = _recipe(tmp_path)
    recipe["arms"]["crosearch-r1"]["train.multilingual_gruops"] = True
    with pytest.raises(ConfigError) as err:
        load_recipe(_write(tmp_path, recipe))
    message = str(err.value)
    assert "arm 'crosearch-r1'" in message and "train.multilingual_gruops" in message
    assert "multilingual_groups" in message  # the allowed keys are listed


def test_an_invalid_arm_value_names_the_arm_and_the_key(tmp_path):
    recipe = _recipe(tmp_path)
    recipe["arms"]["search-r1"]["crosslingual.strategy"] = "mixed"
    with pytest.raises(ConfigError, match=r"(?s)arm 'search-r1'.*crosslingual\.strategy"):
        load_recipe(_write(tmp_path, recipe))


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("train.max_steps", 5, "fixed by the shared budget"),
        ("train.output_dir", "x", "set by the experiment runner"),
        ("model.adapter", "x", "set by the experiment runner"),
        ("sft.max_steps", 3, "cannot differ between arms"),
        ("data.gap_keep", 0.3, "cannot differ between arms"),
    ],
)
def test_an_arm_cannot_change_the_budget_or_what_the_runner_sets(tmp_path, key, value, reason):
    recipe = _recipe(tmp_path)
    recipe["arms"]["search-r1"][key] = value
    with pytest.raises(ConfigError, match=rf"(?s)arm 'search-r1'.*'{re.escape(key)}'.*{reason}"):
        load_recipe(_write(tmp_path, recipe))


def test_recipe_references_and_names_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"extra_seeds names 'nope'"):
        load_recipe(_write(tmp_path, _recipe(tmp_path, extra_seeds={"nope": [1]})))
    with pytest.raises(ConfigError, match=r"report.baseline 'concat' is not an arm"):
        load_recipe(_write(tmp_path, _recipe(tmp_path, report={"baseline": "concat"})))
    recipe = _recipe(tmp_path)
    recipe["arms"]["../escape"] = {}
    with pytest.raises(ConfigError, match=r"invalid arm name '../escape'"):
        load_recipe(_write(tmp_path, recipe))
    with pytest.raises(ConfigError, match=r"unknown_section"):
        load_recipe(_write(tmp_path, _recipe(tmp_path, unknown_section=1)))


def test_a_key_given_twice_in_the_recipe_is_refused_with_its_line(tmp_path):
    text = yaml.safe_dump(_recipe(tmp_path), sort_keys=False)
    text = text.replace("  search-r1:\n", "  search-r1:\n    train.beta: 0.1\n    train.beta: 0.2\n", 1)
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"twice\.yaml, line \d+: duplicate key 'train\.beta'"):
        load_recipe(path)


def test_a_base_recipe_path_is_read_and_a_missing_one_is_named(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(_recipe(tmp_path)["base"]))
    resolved = load_recipe(_write(tmp_path, _recipe(tmp_path, base=str(base))))
    assert resolved.config(arm="crosearch-r1").train.multilingual_groups is True
    assert resolved.config(arm="search-r1").train.max_steps == 2  # the budget applies to every arm
    with pytest.raises(ConfigError, match=r"base: config file not found: .*missing\.yaml"):
        load_recipe(_write(tmp_path, _recipe(tmp_path, base=str(tmp_path / "missing.yaml"))))


@pytest.mark.parametrize("name", ["experiment-cpu.yaml", "experiment-gpu.yaml"])
def test_the_shipped_experiment_recipes_are_valid(name):
    from crosearch.config import TrainConfig

    assert "group_mode" in TrainConfig.model_fields  # the search-langs arm's option
    resolved = load_recipe(Path(__file__).resolve().parents[1] / "configs" / name)
    stages = plan_experiment(resolved)
    assert set(resolved.recipe.arms) == {
        "search-r1",
        "search-r1-concat",
        "crosearch-no-mlr",
        "crosearch-r1",
        "crosearch-r1-search-langs",
    }
    # One GRPO run per arm and seed: the extra seeds only for the two arms the target compares.
    assert set(resolved.recipe.extra_seeds) == {"search-r1", "crosearch-r1"}
    extra = sum(len(seeds) for seeds in resolved.recipe.extra_seeds.values())
    assert len([s for s in stages if s.kind == "train" and s.variant is None]) == 5 + extra
    for arm in resolved.recipe.arms:
        train = resolved.config(arm=arm).train
        assert (train.max_steps, train.questions_per_step, train.num_generations) == (
            resolved.config(arm="search-r1").train.max_steps,
            resolved.config(arm="search-r1").train.questions_per_step,
            resolved.config(arm="search-r1").train.num_generations,
        )


# ---------------------------------------------------------------------------- the plan


def test_each_arm_is_evaluated_right_after_its_training(tmp_path):
    recipe = _recipe(
        tmp_path,
        seeds=[0],
        extra_seeds={"search-r1": [1]},
        evaluation={"settings": ["gap", "no-native"], "trained_settings": ["full"], "per_lang": 2},
    )
    stages = plan_experiment(load_recipe(_write(tmp_path, recipe)))
    names = [s.name for s in stages]
    assert names[:6] == [f"{kind}/{s}" for kind in ("benchmark", "index") for s in ("gap", "no-native", "full")]
    assert names[6] == "warm-start" and names[-1] == "report"
    i = names.index("train/search-r1")
    assert names[i + 1 : i + 4] == ["eval/gap/search-r1", "eval/no-native/search-r1", "eval/full/search-r1"]
    # The extra seed comes after the untrained baselines; warm start and baselines skip `full`.
    assert names.index("train/search-r1-seed1") > names.index("eval/no-native/rag-crosslingual")
    assert "eval/full/rag-mono" not in names and "eval/full/warm-start-mono" not in names
    assert len([n for n in names if n.startswith("eval/gap/warm-start-")]) == 3
    report = stages[-1]
    assert {p.title for p in report.parts} == {"gap", "no-native", "full"}
    assert all(p.evals[0].endswith("/search-r1") for p in report.parts)  # the baseline arm first


TUNING = {
    "arm": "search-r1",
    "max_steps": 1,
    "per_lang": 2,
    "variants": {"t1": {}, "hot": {"agent.temperature": 1.5, "train.learning_rate": 5.0e-3}},
}


def _tuned_recipe(root: Path, **tuning) -> dict:
    recipe = _recipe(root, tuning={**TUNING, **tuning})
    recipe["base"]["data"]["validation_fraction"] = 0.5
    return recipe


def test_tuning_runs_come_before_the_arms_and_report_against_the_warm_start(tmp_path):
    resolved = load_recipe(_write(tmp_path, _tuned_recipe(tmp_path)))
    stages = plan_experiment(resolved)
    names = [s.name for s in stages]
    tuning = [n for n in names if n.startswith("tune/")]
    assert tuning == [
        "tune/eval/warm-start",
        "tune/train/t1",
        "tune/eval/t1",
        "tune/train/hot",
        "tune/eval/hot",
        "tune/report",
    ]
    assert names.index("warm-start") < names.index("tune/eval/warm-start")
    assert names.index("tune/report") < names.index("train/search-r1")
    by_name = {s.name: s for s in stages}
    assert all(by_name[n].split == "validation" and by_name[n].per_lang == 2 for n in tuning if "/eval/" in n)
    assert by_name["tune/eval/hot"].adapter_from == "tune/train/hot"
    (part,) = by_name["tune/report"].parts
    assert part.baseline == "tune/eval/warm-start" and len(part.evals) == 3
    # The main report neither tables nor draws the tuning runs.
    main = by_name["report"]
    assert not any(e.startswith("tune/") for p in main.parts for e in p.evals)
    assert main.curves == ("train/search-r1", "train/crosearch-r1")
    # A variant's keys sit on top of the budget and the arm; the tuning fixes the step count; evaluation stays greedy.
    hot = resolved.config(arm="search-r1", variant="hot", evaluation=True)
    assert (hot.train.learning_rate, hot.train.max_steps, hot.eval.temperature) == (5.0e-3, 1, 0.0)
    assert hot.crosslingual.strategy == "mono"
    assert resolved.config(arm="search-r1", variant="hot").agent.temperature == 1.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arm": "nope"}, r"tuning\.arm 'nope' is not an arm"),
        ({"variants": {"long": {"sft.max_steps": 5}}}, r"tuning variant 'long': 'sft\.max_steps' cannot be tuned here"),
        ({"variants": {"x": {"train.seed": 3}}}, r"tuning variant 'x': 'train\.seed' is set by the experiment runner"),
        ({"variants": {"x": {"train.loss": 3}}}, r"variant 'x'\):\n  unknown key 'train\.loss'"),
    ],
)
def test_a_bad_tuning_section_names_the_variant_and_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, _tuned_recipe(tmp_path, **change)))


def test_tuning_needs_a_validation_split(tmp_path):
    recipe = _recipe(tmp_path, tuning=TUNING)
    message = r"tuning: the variants are compared on the validation split.*validation_fraction"
    with pytest.raises(ConfigError, match=message):
        load_recipe(_write(tmp_path, recipe))


def test_tuning_runs_train_and_evaluate_on_validation_questions_only(tmp_path):
    from crosearch.experiment.runner import Runner

    path = _write(tmp_path, _tuned_recipe(tmp_path, variants={"hot": TUNING["variants"]["hot"]}))
    run = Runner(load_recipe(path), progress=False)
    ran = run.run(["warm-start", "tune"])
    assert ran[-4:] == ["tune/eval/warm-start", "tune/train/hot", "tune/eval/hot", "tune/report"]
    results = tmp_path / "results"
    validation = {
        json.loads(line)["id"]
        for line in (tmp_path / "work" / "benchmark" / "gap" / "validation.jsonl").read_text().splitlines()
    }
    for label in ("warm-start", "hot"):
        rows = [json.loads(line) for line in (results / "tune" / "eval" / label / "predictions.jsonl").open()]
        assert len(rows) == 4 and {r["id"] for r in rows} <= validation  # 2 per language, never a test question
    summary = json.loads((results / "tune" / "train" / "hot" / "summary.json").read_text())
    assert summary["steps"] == 1
    report = (results / "tune" / "report" / "report.md").read_text()
    assert "## validation (tuning)" in report and "| F1: run - warm-start | hot |" in report


def test_dry_run_prints_the_plan_and_its_budget(tmp_path):
    path = _write(tmp_path, _recipe(tmp_path))
    result = runner.invoke(app, ["experiment", "run", "--config", str(path), "--dry-run"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "train/crosearch-r1" in result.output and "left" in result.output
    assert re.search(r"8 stages, 0 done, 8 left; estimated budget \d+ min in all", result.output)
    assert not (tmp_path / "work").exists() and not (tmp_path / "results").exists()


def test_status_tells_running_failed_and_left_stages_apart(tmp_path):
    from crosearch.experiment.runner import Runner
    from crosearch.io import atomic_write_json, pid_lock

    path = _write(tmp_path, _recipe(tmp_path))
    run = Runner(load_recipe(path), progress=False)
    state = tmp_path / "work" / ".state"
    atomic_write_json(state / "current.json", {"stage": "warm-start", "started": "2026-01-01T00:00:00+00:00"})
    atomic_write_json(state / "failed" / "index__gap.json", {"stage": "index/gap", "error": "boom"})
    with pid_lock(run.lock_path, what="the test"):
        states = {stage.name: run.state(stage) for stage in run.stages}
        shown = runner.invoke(app, ["experiment", "status", "--config", str(path)], env={"COLUMNS": "160"})
        assert re.search(r"warm-start\s+│ running │ [\d.]+ h so far", shown.output), shown.output
        with pytest.raises(CrosearchError, match=r"experiment 'tiny' is already running \(pid \d+"):
            run.run()
    assert states["warm-start"] == "running" and states["index/gap"] == "failed"
    assert states["benchmark/gap"] == "left"
    # A current.json left by a killed runner (nobody holds the lock) is not "running".
    assert run.state(run.by_name["warm-start"]) == "left"


def test_a_stage_whose_recipe_changed_is_stale_and_runs_again_from_scratch(tmp_path):
    from crosearch.experiment.runner import Runner

    recipe = _recipe(tmp_path)
    run = Runner(load_recipe(_write(tmp_path, recipe)), progress=False)
    assert run.run(["benchmark", "index"]) == ["benchmark/gap", "index/gap"]
    names = ("benchmark/gap", "index/gap")
    first = {s: json.loads((tmp_path / "results" / s / "stage.json").read_text()) for s in names}
    assert all(len(m["fingerprint"]) == 16 for m in first.values())

    later = {s.name: run.fingerprint(s) for s in run.stages if s.kind in ("warm-start", "train", "eval")}
    # What the stages do not read leaves them current: an evaluation key, the report, the estimates.
    recipe["evaluation"]["per_lang"] = 3
    recipe["report"]["resamples"] = 300
    recipe["base"]["eval"] = {"batch_size": 3}
    recipe["base"]["agent"] = {**recipe["base"].get("agent", {}), "batch_size": 3}  # throughput, not results
    recipe["base"]["retrieval"]["dense_agreement"] = 0.0  # a key set to its default: nothing changes
    run = Runner(load_recipe(_write(tmp_path, recipe)), progress=False)
    assert [run.state(run.by_name[s]) for s in first] == ["done", "done"]
    assert run.run(["benchmark", "index"]) == []
    # Batch sizes of generation and evaluation set the speed, not the result.
    recipe["evaluation"]["per_lang"] = _recipe(tmp_path)["evaluation"]["per_lang"]
    run = Runner(load_recipe(_write(tmp_path, recipe)), progress=False)
    assert {name: run.fingerprint(run.by_name[name]) for name in later} == later

    # A retrieval key is read by the index (and everything after it), not by the benchmark.
    recipe["base"]["retrieval"]["k"] = 3
    run = Runner(load_recipe(_write(tmp_path, recipe)), progress=False)
    states = {s.name: run.state(s) for s in run.stages}
    assert states["benchmark/gap"] == "done" and states["index/gap"] == "stale"
    assert all(run.fingerprint(run.by_name[name]) != fp for name, fp in later.items())  # all read retrieval
    shown = runner.invoke(app, ["experiment", "status", "--config", str(tmp_path / "experiment.yaml")])
    assert re.search(r"index/gap\s+│ stale", shown.output), shown.output
    (tmp_path / "work" / "index" / "gap" / "leftover").write_text("from the old recipe")
    assert run.run(["index"]) == ["index/gap"]
    again = json.loads((tmp_path / "results" / "index" / "gap" / "stage.json").read_text())
    assert again["fingerprint"] != first["index/gap"]["fingerprint"]
    assert not (tmp_path / "work" / "index" / "gap" / "leftover").exists()  # started from scratch
    assert run.state(run.by_name["index/gap"]) == "done"

    # A data key makes both stale; the stale benchmark is rebuilt first even when only the index is asked for.
    recipe["base"]["data"]["window_stride"] = 3
    run = Runner(load_recipe(_write(tmp_path, recipe)), progress=False)
    assert run.run(["index"]) == ["benchmark/gap", "index/gap"]
    assert all(run.state(run.by_name[s]) == "done" for s in first)


def test_redo_runs_a_done_stage_again_from_scratch_and_only_it(tmp_path):
    from crosearch.experiment.runner import Runner

    run = Runner(load_recipe(_write(tmp_path, _recipe(tmp_path))), progress=False)
    assert run.run(["benchmark", "index"]) == ["benchmark/gap", "index/gap"]
    first = json.loads((tmp_path / "results" / "index" / "gap" / "stage.json").read_text())
    (tmp_path / "work" / "index" / "gap" / "leftover").write_text("from the run before the code change")
    (tmp_path / "results" / "index" / "gap" / "leftover").write_text("a result of the run before")
    # The recipe is unchanged, so only --redo runs it again; alone, it is the whole selection.
    assert run.run(["index"]) == []
    assert run.run(redo=["index/gap"]) == ["index/gap"]
    again = json.loads((tmp_path / "results" / "index" / "gap" / "stage.json").read_text())
    assert again["fingerprint"] == first["fingerprint"]
    assert not (tmp_path / "work" / "index" / "gap" / "leftover").exists()
    assert not (tmp_path / "results" / "index" / "gap" / "leftover").exists()
    assert run.state(run.by_name["benchmark/gap"]) == "done"
    with pytest.raises(CrosearchError, match="--redo nothing/here matches no stage"):
        run.run(redo=["nothing/here"])
    shown = runner.invoke(
        app, ["experiment", "run", "--config", str(tmp_path / "experiment.yaml"), "--redo", "index", "--dry-run"]
    )
    assert shown.exit_code == 0 and "warm-start" not in shown.output, shown.output
    assert re.search(r"index/gap\s+│ redo", shown.output), shown.output


def test_generalisation_plans_the_trained_arms_and_never_trains_them_itself(tmp_path):
    path = _write(tmp_path, _recipe(tmp_path))
    source = Path(__file__).parent / "data" / "parallel"
    args = ["experiment", "eval", "--config", str(path), "--source", str(source)]
    plan = runner.invoke(app, [*args, "--dry-run"], env={"COLUMNS": "160"})  # no wrapped stage names
    assert plan.exit_code == 0, plan.output
    for stage in ("benchmark", "index", "eval/search-r1", "eval/crosearch-r1", "report"):
        assert f"generalisation/parallel/{stage}" in plan.output
    result = runner.invoke(app, [*args, "--quiet"])
    assert isinstance(result.exception, CrosearchError)
    assert "needs train/search-r1, which has not finished" in str(result.exception)
    # Its own benchmark (the language taken from each file's name) was built before that.
    meta = json.loads((tmp_path / "work" / "generalisation" / "parallel" / "benchmark" / "meta.json").read_text())
    assert meta["languages"] == ["en", "th"]


# ---------------------------------------------------------------------------- end to end


def _markers(results: Path) -> dict[str, str]:
    return {
        str(p.parent.relative_to(results)): json.loads(p.read_text())["finished"] for p in results.rglob("stage.json")
    }


@pytest.mark.subprocess
def test_a_killed_experiment_resumes_without_running_finished_stages_again(tmp_path):
    path = _write(tmp_path, _recipe(tmp_path))
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "crosearch", "experiment", "run", "--config", str(path), "--quiet"]
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # Killed in the middle of the first arm's GRPO run, once its first checkpoint is complete.
        wait_for(tmp_path / "work" / "train" / "search-r1" / "checkpoint-1" / "crosearch-complete.json", proc, 900)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = _markers(results)
    assert set(before) == {"benchmark/gap", "index/gap", "warm-start"}

    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _markers(results)
    assert {name: after[name] for name in before} == before  # nothing finished was run again
    assert "warm-start: done, skipped" in done.stderr
    # The GRPO run went on from its checkpoint: step 2 only, its log continuing step 1's.
    summary = json.loads((results / "train" / "search-r1" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["resumed_from"].endswith("checkpoint-1")
    assert [entry["step"] for entry in summary["log_history"] if "loss" in entry] == [1, 2]
    assert set(after) == {
        "benchmark/gap",
        "index/gap",
        "warm-start",
        "train/search-r1",
        "eval/gap/search-r1",
        "train/crosearch-r1",
        "eval/gap/crosearch-r1",
        "report",
    }

    # The report: every cell a value with its 95% interval, and the paired differences against search-r1.
    report = (results / "report" / "report.md").read_text()
    f1_table = report.split("\n| F1 | ", 1)[1].split("\n\n", 1)[0]  # the per-language table, not the macro one
    assert len(re.findall(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", f1_table)) == 3 * 2  # (de, en, macro) x 2 runs
    assert "| F1: run - search-r1 | crosearch-r1 |" in report
    assert re.search(r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\] p>0 \d\.\d\d", report)
    assert (results / "report" / "training.png").read_bytes()[:4] == b"\x89PNG"
    # The committed results reproduce the table: `crosearch report` on them prints the same numbers.
    gap = results / "eval" / "gap"
    again = runner.invoke(
        app,
        ["report", str(gap / "search-r1"), str(gap / "crosearch-r1"), "--baseline", str(gap / "search-r1")]
        + ["--resamples", "200", "--metrics", "f1"],
    )
    assert again.exit_code == 0, again.output
    assert "\n| F1 | " + f1_table in again.output

    # The committable side is small and complete: slim predictions, summaries, curves, bf16 adapters.
    warm = json.loads((results / "warm-start" / "stage.json").read_text())
    assert set(warm["trajectories_per_strategy"]) == {"mono", "concat"}
    predictions = (results / "eval" / "gap" / "search-r1" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 4 and all("trace" not in json.loads(line) for line in predictions)
    header = (results / "train" / "crosearch-r1" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert b'"dtype":"BF16"' in header[:4096] and b"F32" not in header[:4096]

    status = runner.invoke(app, ["experiment", "status", "--config", str(path)])
    assert status.exit_code == 0, status.output
    assert "8 stages, 8 done, 0 left" in status.output
    assert re.findall(r"│ (done|left|running|failed)\s+│", status.output) == ["done"] * 8

    # runs/ wiped (as between work sessions): the experiment is still done, and nothing is rebuilt.
    import shutil

    from crosearch.experiment.runner import Runner

    shutil.rmtree(tmp_path / "work")
    assert Runner(load_recipe(path), progress=False).run() == []
    assert _markers(results) == after
    # An evaluation to redo then: benchmark and index are rebuilt, the arm is not trained again but
    # loaded from the adapter kept in the results, and the report follows.
    shutil.rmtree(gap / "crosearch-r1")
    ran = Runner(load_recipe(path), progress=False).run()
    assert ran == ["benchmark/gap", "index/gap", "eval/gap/crosearch-r1", "report"]
    metrics = json.loads((gap / "crosearch-r1" / "metrics.json").read_text())
    assert metrics["adapter"] == str(results / "train" / "crosearch-r1" / "adapter") and metrics["n"] == 4
    assert _markers(results)["train/crosearch-r1"] == after["train/crosearch-r1"]
