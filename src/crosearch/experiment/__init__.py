"""The experiment runner (``crosearch experiment``): one recipe, every stage of a comparison, resumable.

A recipe (:mod:`~crosearch.experiment.recipe`) is a base crosearch configuration plus named arms
(dotted overrides), a shared training budget, an evaluation plan and report options. The planner
(:mod:`~crosearch.experiment.plan`) turns it into ordered stages: benchmarks, indexes, the warm
start, one GRPO run per arm and seed, every evaluation, the report. The runner
(:mod:`~crosearch.experiment.runner`) executes them by calling the functions behind ``crosearch
data build``, ``index``, ``sft``, ``train``, ``eval qa`` and ``report``, and skips a stage whose
committable result (:mod:`~crosearch.experiment.results`) already exists.

The package sits above ``rl`` and ``eval``: it composes them and nothing below imports it.
"""
