import gzip
import json

import pytest

from crosearch.errors import DataFormatError
from crosearch.io import atomic_open, read_json, read_jsonl, write_jsonl


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
