"""Every benchmark kind loads a tiny generated copy of its standard layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from PIL import Image

from lookalike.errors import ConfigError
from lookalike.evaluation.datasets import load_benchmark


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)
    return path


def test_ukbench_groups_of_four_query_ranked(tmp_path):
    for n in range(8):
        _img(tmp_path / "full" / f"ukbench{n:05d}.jpg")
    b = load_benchmark("ukbench", tmp_path)
    assert len(b.get_database()) == 8 and len(b.get_queries()) == 8
    assert b.query_in_ranking
    gt = b.get_groundtruth()
    assert gt[5].positives == {4, 5, 6, 7} and not gt[5].junk
    assert b.get_queries()[5].db_index == 5


def test_ukbench_incomplete_group_is_refused(tmp_path):
    for n in (0, 1, 2, 3, 4, 5):
        _img(tmp_path / f"ukbench{n:05d}.jpg")
    with pytest.raises(ConfigError, match="group 1"):
        load_benchmark("ukbench", tmp_path)


def test_holidays_first_of_group_is_query_and_excluded(tmp_path):
    for n in (100000, 100001, 100002, 100100, 100101):
        _img(tmp_path / f"{n}.jpg")
    b = load_benchmark("holidays", tmp_path)
    qs = b.get_queries()
    assert [q.path.name for q in qs] == ["100000.jpg", "100100.jpg"]
    gt = b.get_groundtruth()
    assert gt[0].positives == {1, 2} and gt[0].junk == {0}
    assert gt[1].positives == {4} and gt[1].junk == {3}
    assert b.ap_style == "trapezoid"


def test_oxford_original_protocol(tmp_path):
    for n in ("all_souls_000001", "all_souls_000002", "all_souls_000003", "balliol_000001"):
        _img(tmp_path / "jpg" / f"{n}.jpg")
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "all_souls_1_query.txt").write_text("oxc1_all_souls_000001 1.5 2 6 7.5\n")
    (gt / "all_souls_1_good.txt").write_text("all_souls_000001\nall_souls_000002\n")
    (gt / "all_souls_1_ok.txt").write_text("all_souls_000003\n")
    (gt / "all_souls_1_junk.txt").write_text("balliol_000001\n")
    b = load_benchmark("oxford5k", tmp_path)
    assert b.kind == "oxford5k"
    (q,) = b.get_queries()
    assert q.box == (1.5, 2.0, 6.0, 7.5) and q.path.name == "all_souls_000001.jpg"
    names = [p.stem for p in b.get_database()]
    (g,) = b.get_groundtruth()
    assert {names[i] for i in g.positives} == {
        "all_souls_000001",
        "all_souls_000002",
        "all_souls_000003",
    }
    assert {names[i] for i in g.junk} == {"balliol_000001"}


def test_oxford_missing_image_named(tmp_path):
    _img(tmp_path / "a.jpg")
    (tmp_path / "x_1_query.txt").write_text("oxc1_nothere 0 0 1 1\n")
    with pytest.raises(ConfigError, match="nothere"):
        load_benchmark("paris6k", tmp_path)


def test_revisited_protocols_from_pickle(tmp_path):
    for n in ("q0", "d0", "d1", "d2", "d3"):
        _img(tmp_path / "jpg" / f"{n}.jpg")
    cfg = {
        "imlist": ["d0", "d1", "d2", "d3"],
        "qimlist": ["q0"],
        "gnd": [{"bbx": [0, 1, 5, 6], "easy": [0], "hard": [1], "junk": [2]}],
    }
    with open(tmp_path / "gnd_roxford5k.pkl", "wb") as fh:
        pickle.dump(cfg, fh)
    b = load_benchmark("roxford5k", tmp_path)
    assert b.protocols == ["easy", "medium", "hard"]
    assert b.get_queries()[0].box == (0.0, 1.0, 5.0, 6.0)
    e, m, h = (b.get_groundtruth(p)[0] for p in ("easy", "medium", "hard"))
    assert e.positives == {0} and e.junk == {1, 2}
    assert m.positives == {0, 1} and m.junk == {2}
    assert h.positives == {1} and h.junk == {0, 2}
    with pytest.raises(ConfigError, match="no protocol"):
        b.get_groundtruth("all")


def test_groups_every_image_a_query_excluding_itself(tmp_path):
    for g, n in (("cat", 3), ("dog", 2), ("empty", 0)):
        (tmp_path / g).mkdir()
        for i in range(n):
            _img(tmp_path / g / f"{i}.png")
    (tmp_path / "loose.jpg").write_bytes(b"")  # files at the top are not a group
    b = load_benchmark("groups", tmp_path)
    assert len(b.get_database()) == 5 and len(b.get_queries()) == 5
    gt = b.get_groundtruth()
    assert gt[0].positives == {1, 2} and gt[0].junk == {0}
    assert gt[4].positives == {3}


def test_copydays_originals_are_database_copies_are_queries(tmp_path):
    _img(tmp_path / "original" / "000100.jpg")
    _img(tmp_path / "original" / "000200.jpg")
    _img(tmp_path / "jpeg" / "000101.jpg")
    _img(tmp_path / "crop" / "000201.jpg")
    b = load_benchmark("copydays", tmp_path)
    assert [p.name for p in b.get_database()] == ["000100.jpg", "000200.jpg"]
    by_name = {q.path.name: g for q, g in zip(b.get_queries(), b.get_groundtruth(), strict=True)}
    assert set(by_name) == {"000101.jpg", "000201.jpg"}
    assert by_name["000101.jpg"].positives == {0}
    assert by_name["000201.jpg"].positives == {1}


def test_distractors_extend_database_only(tmp_path):
    for n in range(4):
        _img(tmp_path / "u" / f"ukbench{n:05d}.jpg")
    d = [_img(tmp_path / "d" / f"x{i}.jpg") for i in range(3)]
    b = load_benchmark("ukbench", tmp_path / "u").with_distractors(d)
    assert len(b.get_database()) == 7 and len(b.get_queries()) == 4
    assert b.distractors == 3
    assert all(max(g.positives) < 4 for g in b.get_groundtruth())


def test_unknown_kind_and_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="unknown benchmark kind"):
        load_benchmark("imagenet", tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_benchmark("groups", tmp_path / "nope")
