import gzip
import json

import pytest

from crosearch.errors import DataFormatError
from crosearch.io import (
    atomic_dir,
    atomic_open,
    read_json,
    read_jsonl,
    remove_stale_temp_dirs,
    temp_dir_prefix,
    write_jsonl,
)


def test_atomic_open_leaves_old_file_when_interrupted(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"], "no temp file left behind"


def test_write_and_read_jsonl_roundtrip(tmp_path):
    path = tmp_path / "a.jsonl"
    records = [{"id": "1", "text": "héllo 你好"}, {"id": "2", "text": "مرحبا"}]
    assert write_jsonl(path, records) == 2
    assert [obj for _, obj in read_jsonl(path)] == records
    assert "你好" in path.read_text(encoding="utf-8"), "non-ASCII is kept readable"


def test_read_jsonl_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2,\n')
    with pytest.raises(DataFormatError) as info:
        list(read_jsonl(path))
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_read_jsonl_rejects_non_objects(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(DataFormatError, match="line 1.*JSON object"):
        list(read_jsonl(path))


def test_gzip_and_missing(tmp_path):
    path = tmp_path / "x.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump({"a": 1}, handle)
    assert read_json(path) == {"a": 1}
    with pytest.raises(DataFormatError, match="not found"):
        read_json(tmp_path / "missing.json")


def test_atomic_files_get_normal_permissions(tmp_path):
    import os
    import stat

    target = tmp_path / "perm.txt"
    with atomic_open(target) as handle:
        handle.write("x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def _tree(path):
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


def test_atomic_dir_replaces_the_old_directory_on_success(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with atomic_dir(final) as tmp:
        assert tmp.parent == tmp_path and tmp != final
        (tmp / "weights").mkdir()
        (tmp / "weights" / "a.bin").write_text("new")
        assert _tree(final) == {"old.txt": "old"}, "the old directory stays until the write finishes"
    assert _tree(final) == {"weights/a.bin": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no temporary or old directory left behind"


def test_atomic_dir_keeps_the_old_directory_when_the_write_fails(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert _tree(final) == {"old.txt": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_dir_creates_a_new_directory_with_normal_permissions(tmp_path):
    import os
    import stat

    final = tmp_path / "sub" / "out"
    with atomic_dir(final) as tmp:
        (tmp / "x").write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert _tree(final) == {"x": "x"}
    assert stat.S_IMODE(final.stat().st_mode) == 0o777 & ~mask


def test_atomic_dir_keeps_a_named_staging_directory_for_resuming(tmp_path):
    final = tmp_path / "index"
    staging = tmp_path / ".index.partial"
    with pytest.raises(RuntimeError):
        with atomic_dir(final, staging=staging) as tmp:
            (tmp / "unit").write_text("done")
            raise RuntimeError("killed")
    assert not final.exists() and _tree(staging) == {"unit": "done"}
    with atomic_dir(final, staging=staging) as tmp:
        assert _tree(tmp) == {"unit": "done"}, "a rerun sees what the failed one finished"
    assert _tree(final) == {"unit": "done"} and not staging.exists()


def test_stale_temp_dirs_of_killed_writes_are_found_and_removed(tmp_path):
    final = tmp_path / "cache"
    with pytest.raises(RuntimeError):
        with atomic_dir(final):
            raise RuntimeError
    killed = tmp_path / f"{temp_dir_prefix(final)}abc"
    killed.mkdir()
    other = tmp_path / ".other.tmp-abc"
    other.mkdir()
    remove_stale_temp_dirs(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-abc"]


def test_read_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": }\n', encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        read_json(path, what="index manifest")
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "column 8" in message and "index manifest" in message


def test_read_json_rejects_non_utf8_and_directories(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('{"a": "café"}'.encode("latin-1"))
    with pytest.raises(DataFormatError, match="not UTF-8"):
        read_json(path)
    with pytest.raises(DataFormatError, match="is a directory"):
        read_json(tmp_path)
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataFormatError, match="gzip"):
        read_json(broken)
