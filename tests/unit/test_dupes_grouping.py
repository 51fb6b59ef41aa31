"""Grouping without chaining, and the suggested keeper, on hand-made inputs."""

from __future__ import annotations

from lookalike.dupes import keep_reason, keeper_order, star_groups
from lookalike.index.catalog import ImageRecord


def _edges(pairs):
    out: dict[int, dict[int, float]] = {}
    for a, b in pairs:
        out.setdefault(a, {})[b] = 0.9
        out.setdefault(b, {})[a] = 0.9
    return out


def test_a_chain_is_not_one_group():
    # 1 - 2 - 3 - 4: each links only to its neighbours
    groups = star_groups([1, 2, 3, 4], _edges([(1, 2), (2, 3), (3, 4)]))
    assert groups == [(1, [2]), (3, [4])]
    for rep, members in groups:  # every member is linked to its representative
        assert all(m in _edges([(1, 2), (2, 3), (3, 4)])[rep] for m in members)


def test_every_member_links_to_the_representative():
    # a star around 5 (the best keeper) plus a pair hanging off one of its members
    edges = _edges([(5, 1), (5, 2), (5, 3), (3, 4)])
    groups = star_groups([5, 1, 2, 3, 4], edges)
    assert groups == [(5, [1, 2, 3])]  # 4 only matches 3, not 5: left out, alone
    groups = star_groups([4, 3, 5, 1, 2], edges)  # order decides the representatives
    assert groups == [(4, [3]), (5, [1, 2])]


def _record(i, w, h, size, mtime):
    return ImageRecord(i, f"/p/{i}.jpg", size, mtime, f"h{i}", w, h, 0.0)


def test_keeper_largest_then_quality_then_oldest():
    big = _record(1, 640, 480, 100_000, 50)
    small = _record(2, 320, 240, 60_000, 10)
    assert sorted([small, big], key=keeper_order)[0] is big
    assert keep_reason(big, [small]) == "largest resolution (640x480)"
    better = _record(3, 640, 480, 200_000, 90)
    assert sorted([big, better, small], key=keeper_order)[0] is better
    assert "best quality" in keep_reason(better, [big, small])
    old = _record(4, 640, 480, 100_000, 5)
    assert sorted([big, old], key=keeper_order)[0] is old
    assert "oldest" in keep_reason(old, [big])
