"""Untrusted collections and index directories: identifiers never become paths outside the index, a build
replaces only what it owns and holds a lock, and a damaged index is refused when it is opened."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crosearch.cli import app
from crosearch.errors import CrosearchError, DataFormatError
from crosearch.names import check_lang, check_name, path_under
from crosearch.retrieval.local import LocalRetriever, build_index, read_manifest, verify_index
from crosearch.types import Passage, SearchQuery

runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _passages() -> list[Passage]:
    return [
        Passage("en/1", "en", "Moon", "Apollo 11 landed on the Moon in 1969."),
        Passage("en/2", "en", "Nile", "The Nile flows north into the Mediterranean Sea."),
        Passage("de/1", "de", "Mond", "Apollo 11 landete 1969 auf dem Mond."),
    ]


def _write_collection(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- identifiers


@pytest.mark.parametrize("code", ["en", "zh_cn", "pt-BR", "sr-Latn", "zh-Hant-TW", "fil"])
def test_language_codes_that_are_accepted(code):
    assert check_lang(code) == code


@pytest.mark.parametrize("code", ["", "e", "english", "/tmp/x", "../../escaped", "en/..", ".", "en ", "zh_", 3])
def test_language_codes_that_are_refused(code):
    with pytest.raises(CrosearchError, match="invalid language code"):
        check_lang(code)


def test_names_and_derived_paths_stay_under_their_root(tmp_path):
    assert check_name("search-agent+grpo", "arm name") == "search-agent+grpo"
    for bad in ("", "..", ".hidden", "a/b", "/abs", "a b"):
        with pytest.raises(CrosearchError, match="invalid arm name"):
            check_name(bad, "arm name")
    assert path_under(tmp_path, "bm25", "en") == tmp_path / "bm25" / "en"
    for parts in (("..", "x"), ("/etc",), ("bm25", "../../x"), (".",)):
        with pytest.raises(CrosearchError, match="outside"):
            path_under(tmp_path, *parts)


@pytest.mark.parametrize("lang", ["ABSOLUTE", "../../escaped"])
def test_traversal_through_a_collection_lang_is_refused_before_anything_is_touched(tmp_path, lang):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("x")
    lang = str(victim) if lang == "ABSOLUTE" else lang
    collection = _write_collection(
        tmp_path / "e.jsonl",
        [
            {"id": "p1", "lang": lang, "title": "t", "text": "hello"},
            {"id": "p2", "lang": "en", "title": "t", "text": "x"},
        ],
    )
    work = tmp_path / "work"
    work.mkdir()
    out = work / "idx"
    result = runner.invoke(app, ["index", "-q", "--collection", str(collection), "--out", str(out)])
    assert result.exit_code != 0
    assert isinstance(result.exception, DataFormatError)
    message = str(result.exception)
    assert "e.jsonl, line 1, record p1, field 'lang'" in message and "invalid language code" in message
    assert _tree(victim) == {"precious.txt": b"x"}
    assert not out.exists() and sorted(p.name for p in work.iterdir()) == []
    assert not (tmp_path / "escaped").exists()
    # Passages given by API (not read from a file) are checked by the build itself.
    with pytest.raises(CrosearchError, match="invalid language code"):
        build_index([Passage("p1", lang, "t", "hello")], out, progress=False)
    assert _tree(victim) == {"precious.txt": b"x"} and not out.exists()


# --------------------------------------------------------------------------- what a build may replace


def test_a_decoy_manifest_does_not_make_a_directory_replaceable(tmp_path):
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "manifest.json").write_text("{}\n")
    (decoy / "thesis.tex").write_text("years of work")
    before = _tree(decoy)
    with pytest.raises(CrosearchError, match="without a crosearch index manifest; refusing"):
        build_index(_passages(), decoy, progress=False)
    assert _tree(decoy) == before
    # Nor does a manifest of another shape that names a format.
    (decoy / "manifest.json").write_text(json.dumps({"format": "crosearch-index"}))
    with pytest.raises(CrosearchError, match="refusing"):
        build_index(_passages(), decoy, progress=False)
    assert (decoy / "thesis.tex").read_text() == "years of work"


def test_a_rebuild_never_deletes_a_users_file_inside_the_index(tmp_path):
    out = tmp_path / "idx"
    build_index(_passages(), out, progress=False)
    (out / "notes.txt").write_text("mine")
    (out / "bm25" / "en" / "extra.bin").write_bytes(b"mine too")
    with pytest.raises(CrosearchError, match=r"holds files the index does not own \(bm25/en/extra.bin, notes.txt\)"):
        build_index(_passages(), out, progress=False)
    assert (out / "notes.txt").read_text() == "mine" and (out / "bm25" / "en" / "extra.bin").exists()
    (out / "notes.txt").unlink()
    (out / "bm25" / "en" / "extra.bin").unlink()
    report = build_index(_passages(), out, progress=False)
    assert report.built == [] and len(report.reused) == 4


def test_manifest_lists_every_file_with_size_and_hash(tmp_path):
    out = tmp_path / "idx"
    build_index(_passages(), out, progress=False)
    manifest = read_manifest(out)
    assert manifest["format"] == "crosearch-index" and manifest["version"] == 2
    on_disk = {name for name in _tree(out) if name != "manifest.json"}
    assert set(manifest["files"]) == on_disk
    sizes = {name: (out / name).stat().st_size for name in on_disk}
    assert {name: info["size"] for name, info in manifest["files"].items()} == sizes
    assert all(len(info["sha256"]) == 64 for info in manifest["files"].values())


# --------------------------------------------------------------------------- the build lock


def _holder_script(lock: Path) -> str:
    return textwrap.dedent(
        f"""
        import sys
        from crosearch.io import pid_lock
        with pid_lock({str(lock)!r}, what="a build"):
            print("held", flush=True)
            sys.stdin.readline()
        """
    )


def test_a_second_build_of_the_same_output_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "idx"
    env = {**os.environ, "PYTHONPATH": SRC}
    holder = subprocess.Popen(
        [sys.executable, "-c", _holder_script(tmp_path / ".idx.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(CrosearchError, match=rf"already running \(pid {holder.pid}, lock file .*\.idx\.lock\)"):
            build_index(_passages(), out, progress=False)
        assert not out.exists() and not (tmp_path / ".idx.partial").exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=60)
    # The holder is gone (its pid stays in the file): the lock is taken over.
    assert (tmp_path / ".idx.lock").exists()
    build_index(_passages(), out, progress=False)
    assert verify_index(out) == []


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".idx.lock").write_text(dead.stdout)
    # What a build killed while swapping in its result leaves: the old index moved aside.
    (tmp_path / ".idx.tmp-old-x1" / "old").mkdir(parents=True)
    build_index(_passages(), tmp_path / "idx", progress=False)
    assert verify_index(tmp_path / "idx") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "idx"]


def test_two_concurrent_builds_leave_one_clean_index(tmp_path):
    rng = random.Random(0)
    words = [f"w{i}" for i in range(2000)]
    collection = _write_collection(
        tmp_path / "c.jsonl",
        [
            {"id": f"{lang}-{i}", "lang": lang, "title": "", "text": " ".join(rng.choices(words, k=30))}
            for lang in ("ar", "de", "en", "zh")
            for i in range(1500)
        ],
    )
    out = tmp_path / "idx"
    command = [sys.executable, "-m", "crosearch.cli", "index", "-q", "--collection", str(collection), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    # stderr is word-wrapped by the console: compare with the whitespace folded.
    results = [(p.wait(timeout=300), " ".join((p.stderr.read() if p.stderr else "").split())) for p in procs]
    for code, err in results:
        assert "Traceback" not in err and "Errno" not in err, err
        assert code == 0 or (code == 2 and "already running (pid" in err), (code, err)
    assert any(code == 0 for code, _ in results)
    # No stray temporary or staging directory anywhere, and the index is intact.
    leftovers = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob(".*") if p.name != ".idx.lock"]
    assert leftovers == []
    assert verify_index(out) == []


# --------------------------------------------------------------------------- damage found at start-up


def test_a_truncated_store_is_refused_at_start_up(tmp_path):
    out = tmp_path / "idx"
    build_index(_passages(), out, progress=False)
    store = out / "store" / "en" / "passages.jsonl"
    with open(store, "r+b") as handle:
        handle.truncate(store.stat().st_size - 20)
    with pytest.raises(CrosearchError, match=r"damaged \(store/en/passages.jsonl: \d+ bytes, the manifest says"):
        LocalRetriever(out)
    assert verify_index(out) and "store/en/passages.jsonl" in verify_index(out)[0]
    result = runner.invoke(app, ["index", "verify", str(out)])
    assert result.exit_code == 1 and "truncated" in result.output
    # Neither the server nor an evaluation starts on it: one clear line, no traceback.
    from crosearch.config import DataConfig
    from crosearch.data.benchmark import build_benchmark, write_benchmark

    bench = write_benchmark(
        build_benchmark(DataConfig(source=str(Path(__file__).parent / "data" / "parallel"))), tmp_path / "b"
    )
    evaluate = ["eval", "retrieval", "--benchmark", str(bench), "--index", str(out)]
    for command in (["serve", "--index", str(out), "--port", "0"], evaluate):
        proc = subprocess.run(
            [sys.executable, "-m", "crosearch.cli", *command],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "400"},
            timeout=120,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "the index is damaged (store/en/passages.jsonl" in proc.stderr
    (out / "bm25" / "de").joinpath("params.index.json").unlink()
    with pytest.raises(CrosearchError, match="bm25/de/params.index.json: missing"):
        LocalRetriever(out)


def test_verify_checks_hashes_which_opening_does_not(tmp_path):
    out = tmp_path / "idx"
    build_index(_passages(), out, progress=False)
    result = runner.invoke(app, ["index", "verify", str(out)])
    assert result.exit_code == 0 and "ok" in result.output
    store = out / "store" / "en" / "passages.jsonl"
    data = bytearray(store.read_bytes())
    data[data.index(b"Apollo")] = ord("X")  # same size, other content
    store.write_bytes(bytes(data))
    hits = LocalRetriever(out).search([SearchQuery("Nile", "en", ["en"])], k=1)[0]
    assert hits[0].doc_id == "en/2"
    assert verify_index(out, hashes=False) == []
    assert verify_index(out) == [
        "store/en/passages.jsonl: content differs from the manifest's SHA-256 (corrupted or modified)"
    ]
    result = runner.invoke(app, ["index", "verify", str(out)])
    assert result.exit_code == 1 and "SHA-256" in result.output


def test_an_index_of_the_first_format_asks_for_a_rebuild(tmp_path):
    out = tmp_path / "idx"
    build_index(_passages(), out, progress=False)
    manifest = read_manifest(out)
    old = {k: v for k, v in manifest.items() if k not in ("files", "version")} | {"format": 1}
    (out / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(CrosearchError, match="format 1 .* rebuild it"):
        LocalRetriever(out)
    # It is still recognised as an index, so the rebuild may replace it.
    build_index(_passages(), out, progress=False)
    assert verify_index(out) == []


def test_a_manifest_cannot_point_outside_the_index(tmp_path):
    out = tmp_path / "idx"
    build_index(_passages(), out, progress=False)
    manifest = read_manifest(out)
    for name in ("../secret", "/etc/passwd"):
        (out / "manifest.json").write_text(json.dumps({**manifest, "files": {name: {"size": 1, "sha256": ""}}}))
        with pytest.raises(DataFormatError, match="field 'files': file .* lies outside the index"):
            verify_index(out)
    manifest["languages"]["../x"] = manifest["languages"].pop("de")
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataFormatError, match="invalid language code '../x'"):
        LocalRetriever(out)
