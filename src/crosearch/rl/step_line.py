"""One compact terminal line per logged training step, in place of the trainer's printed metric dictionaries.

transformers' ``ProgressCallback`` prints every ``logs`` dict as it is (a GRPO step's is well over
a thousand characters) and draws a tqdm bar of its own. Unless the user asked for everything
(``crosearch --verbose``), :func:`attach_step_line` takes both off the trainer and adds
:class:`StepLine`, which prints what a reader follows: the reward and its components, how many
searches a rollout made and the step's time (GRPO), or the loss (the warm start). The full
dictionaries still reach ``summary.json``, the checkpoints' ``trainer_state.json`` and TensorBoard.
"""

from __future__ import annotations

import time
from typing import Any

from transformers import TrainerCallback

from crosearch.rl.curve import GRPO_PANELS

# The reward components of the GRPO figure, in its order; a run shows the ones it logs.
REWARD_COMPONENTS = dict(GRPO_PANELS)["reward components"]


def _short(name: str) -> str:
    return name.removeprefix("rewards/").removesuffix("/mean")


def format_step(step: int, max_steps: int, logs: dict[str, Any], seconds: float | None) -> str:
    """The line for one logged step: ``step 3/10 · reward 0.250 ±0.120 (f1 0.20, format 0.05) · ...``."""
    parts = [f"step {step}/{max_steps}" if max_steps > 0 else f"step {step}"]
    if "reward" in logs:
        reward = f"reward {logs['reward']:.3f}"
        if "reward_std" in logs:
            # The spread within groups is what gives GRPO an advantage to learn from: 0 means no signal.
            reward += f" ±{logs['reward_std']:.3f}"
        components = [f"{_short(name)} {logs[name]:.2f}" for name in REWARD_COMPONENTS if name in logs]
        parts.append(reward + (f" ({', '.join(components)})" if components else ""))
        if "rollout/searches" in logs:
            parts.append(f"searches {logs['rollout/searches']:.1f}")
        if "rollout/valid_format" in logs:
            parts.append(f"well-formed {logs['rollout/valid_format']:.0%}")
    if "loss" in logs:
        parts.append(f"loss {logs['loss']:.4f}")
    if "learning_rate" in logs and "reward" not in logs:
        parts.append(f"lr {logs['learning_rate']:.2g}")
    step_seconds = logs.get("time/step", seconds)
    if step_seconds is not None:
        parts.append(f"{step_seconds:.1f} s/step")
    return " · ".join(parts)


class StepLine(TrainerCallback):
    """Prints :func:`format_step` for every log of the trainer (its final summary is left to the command).

    With ``bar``, a transient rich bar counts the steps below the lines, in place of the trainer's tqdm bar:
    a GRPO step on a CPU takes a minute or more, and the bar's clock shows the run is alive.
    """

    def __init__(self, console: Any, *, bar: bool = False) -> None:
        self.console = console
        self.show_bar = bar
        self._bars: Any = None
        self._task: Any = None
        self._last_time: float | None = None
        self._last_step = 0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - TrainerCallback signature
        self._last_time = time.perf_counter()
        self._last_step = state.global_step
        if self.show_bar and state.is_world_process_zero:
            from crosearch.progress import Bars

            self._bars = Bars(transient=True, console=self.console).__enter__()
            self._task = self._bars.add("training steps", state.max_steps or None)
            self._task.advance(state.global_step)
        return control

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self._task is not None:
            self._task.advance(1)
        return control

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self._bars is not None:
            self._bars.__exit__(None, None, None)
            self._bars = self._task = None
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not logs or "train_runtime" in logs or not state.is_world_process_zero:
            return control
        now = time.perf_counter()
        steps = state.global_step - self._last_step
        seconds = (now - self._last_time) / steps if self._last_time is not None and steps > 0 else None
        self._last_time, self._last_step = now, state.global_step
        line = format_step(state.global_step, state.max_steps, logs, seconds)
        self.console.print(line, highlight=False, soft_wrap=True)
        return control


def attach_step_line(trainer: Any, console: Any) -> None:
    """Replace the trainer's printed dictionaries and tqdm bar by :class:`StepLine` (kept with ``--verbose``)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from crosearch.console import is_verbose

    verbose = is_verbose()
    if not verbose:
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StepLine(console, bar=not verbose))
