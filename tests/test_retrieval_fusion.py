"""Fusion math: reciprocal rank fusion and min-max score fusion."""

from __future__ import annotations

import pytest

from crosearch.retrieval.fusion import fuse, minmax_fusion, rrf


def test_rrf_known_values():
    a = [("x", 9.0), ("y", 5.0), ("z", 1.0)]
    b = [("y", 0.9), ("w", 0.8)]
    fused = dict(rrf([a, b], rrf_k=60))
    assert fused["x"] == pytest.approx(1 / 61)
    assert fused["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["z"] == pytest.approx(1 / 63)
    assert fused["w"] == pytest.approx(1 / 62)
    assert [key for key, _ in rrf([a, b], rrf_k=60)] == ["y", "x", "w", "z"]


def test_rrf_ignores_score_scale_and_uses_k():
    fused = rrf([[("a", 1000.0), ("b", 999.0)], [("b", 0.1), ("a", 0.01)]], rrf_k=1)
    assert dict(fused) == pytest.approx({"a": 1 / 2 + 1 / 3, "b": 1 / 3 + 1 / 2})
    # Equal scores keep first-seen order (deterministic).
    assert [k for k, _ in fused] == ["a", "b"]


def test_minmax_fusion_known_values():
    a = [("x", 10.0), ("y", 6.0), ("z", 2.0)]
    b = [("y", 0.5), ("w", 0.25)]
    fused = dict(minmax_fusion([a, b]))
    assert fused == pytest.approx({"x": 1.0, "y": 0.5 + 1.0, "z": 0.0, "w": 0.0})


def test_minmax_fusion_flat_list_counts_one():
    assert dict(minmax_fusion([[("a", 3.0), ("b", 3.0)]])) == {"a": 1.0, "b": 1.0}


def test_fuse_single_list_passes_through_and_empty_lists():
    ranked = [("a", 12.5), ("b", 3.0)]
    assert fuse([ranked, []], "rrf") == ranked
    assert fuse([[], []], "score") == []
    assert fuse([ranked, [("c", 1.0)]], "score")[0] == ("a", 1.0)
    with pytest.raises(ValueError):
        fuse([ranked, ranked], "nope")  # type: ignore[arg-type]


def test_aligned_fusion_ranks_by_cosine_across_lists_and_adds_relative_bm25():
    from crosearch.retrieval.fusion import aligned_fusion

    dense = [[("de1", 0.50), ("de2", 0.20)], [("en1", 0.60), ("en2", 0.10)]]
    # One ranking by cosine across languages, not round-robin by rank.
    assert [k for k, _ in aligned_fusion(dense, [], 0.0)] == ["en1", "de1", "de2", "en2"]
    bm25 = [[("de1", 12.0), ("de3", 6.0)]]
    fused = dict(aligned_fusion(dense, bm25, 0.5, "list"))
    assert fused["de1"] == pytest.approx(0.50 + 0.5 * 1.0)
    # Found by BM25 only: the lowest cosine of the dense lists plus its relative BM25 score.
    assert fused["de3"] == pytest.approx(0.10 + 0.5 * 0.5)
    assert fused["en1"] == pytest.approx(0.60)


def test_aligned_fusion_query_norm_scales_bm25_by_the_best_list():
    from crosearch.retrieval.fusion import aligned_fusion

    dense = [[("de1", 0.5)], [("en1", 0.5)]]
    bm25 = [[("de1", 12.0)], [("en1", 3.0)]]
    fused = dict(aligned_fusion(dense, bm25, 0.4, "query"))
    # en's best BM25 match is weak next to de's, so it gets a quarter of the weight.
    assert fused["de1"] == pytest.approx(0.5 + 0.4)
    assert fused["en1"] == pytest.approx(0.5 + 0.1)
    assert dict(aligned_fusion(dense, bm25, 0.4, "list"))["en1"] == pytest.approx(0.9)
