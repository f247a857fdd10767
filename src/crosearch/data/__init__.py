"""Corpus and QA loaders, the sentence-window passage cutter and the benchmark builder.

The main entry points, for other components:

- :func:`load_benchmark` reads a directory built by ``crosearch data build``;
- :func:`build_benchmark` / :func:`write_benchmark` build one from a :class:`~crosearch.config.DataConfig`;
- :mod:`crosearch.data.formats` loads SQuAD/XQuAD/MLQA, MKQA, XOR-TyDi and crosearch JSONL files.
"""

from crosearch.data.benchmark import Benchmark, build_benchmark, load_benchmark, write_benchmark

__all__ = ["Benchmark", "build_benchmark", "load_benchmark", "write_benchmark"]
