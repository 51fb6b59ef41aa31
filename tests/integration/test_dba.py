"""Database-side augmentation stored in the index (IndexSettings.dba, `lookalike index --dba`):
the FAISS vectors are exactly postprocess.qe.dba of the catalog's vectors, through additions,
removals, reopening and an approximate index type; the setting is fixed per index; and on a
benchmark built from the shipped photos, searching the augmented index is not worse."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import faiss
import numpy as np
import pytest

from conftest import clustered_vectors
from lookalike.engine import Index
from lookalike.errors import ConfigError, IndexMismatchError
from lookalike.evaluation.datasets import load_benchmark
from lookalike.evaluation.harness import build_index
from lookalike.evaluation.metrics import average_precision
from lookalike.evaluation.synthetic import make_benchmark
from lookalike.index.manifest import IndexSettings, read_manifest, validate_settings
from lookalike.postprocess.qe import dba, parse_expansion

SPEC = "alpha-qe:n=3,alpha=3"


def _paths(start: int, stop: int) -> list[str]:
    return [f"/nowhere/{i:04d}.jpg" for i in range(start, stop)]


def _stored(idx: Index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) as they sit in the FAISS index, in id order."""
    vectors = idx.vector_index()
    inner = faiss.downcast_index(vectors.faiss_index.index)
    if hasattr(inner, "make_direct_map"):  # an inverted file reconstructs through one
        inner.make_direct_map()
    ids = np.array(sorted(r.id for r in idx.catalog.records()), dtype=np.int64)
    return ids, np.stack([vectors.faiss_index.reconstruct(int(i)) for i in ids])


def _expected(idx: Index, spec: str = SPEC) -> np.ndarray:
    """dba() of the index's search vectors, from the catalog (the source of truth)."""
    raw = np.concatenate([v for _, v in idx.catalog.iter_descriptors()])
    return dba(idx.transform(raw), parse_expansion(spec))


def test_stored_vectors_are_the_dba_of_the_catalog(tmp_path):
    x = clustered_vectors(300, 32, 30, seed=1)
    path = tmp_path / "idx"
    with Index.create(path, IndexSettings(whiten_dim=0, dba=SPEC)) as idx:
        idx.add_vectors(_paths(0, 200), x[:200])
        _, got = _stored(idx)
        np.testing.assert_allclose(got, _expected(idx), atol=1e-5)
        plain = idx.transform(np.concatenate([v for _, v in idx.catalog.iter_descriptors()]))
        assert np.abs(got - plain).max() > 0.05  # really augmented, not the plain vectors
        # an addition changes its neighbours' vectors too: all are recomputed
        idx.add_vectors(_paths(200, 300), x[200:])
        assert len(idx) == 300
        _, got = _stored(idx)
        np.testing.assert_allclose(got, _expected(idx), atol=1e-5)
        # so does a removal and a replacement
        ids = sorted(r.id for r in idx.catalog.records())
        idx.remove(ids[:10])
        idx.add_vectors(_paths(50, 51), x[299:300])
        _, got = _stored(idx)
        np.testing.assert_allclose(got, _expected(idx), atol=1e-5)
        before = got
    m = read_manifest(path)
    assert m.settings.dba == "alpha-qe:alpha=3,n=3"
    assert m.index_generation >= 0
    with Index.open(path) as idx:  # read-only: the saved vectors, not a recomputation
        assert idx.info()["dba"] == "alpha-qe:alpha=3,n=3"
        _, got = _stored(idx)
        np.testing.assert_allclose(got, before, atol=1e-6)
        hits = idx.search_vector(x[120], 5)
        assert hits and hits[0].path == _paths(120, 121)[0]
        assert idx.search_vector(x[120], 5, expand="aqe:n=2")


def test_dba_with_an_approximate_index_type(tmp_path):
    # IVF with nprobe = nlist visits every list: its neighbours are exact, so the result must
    # equal dba() while going through the temporary approximate index
    x = clustered_vectors(400, 16, 20, seed=2)
    settings = IndexSettings(
        whiten_dim=0, dba="aqe:n=2", index_key="IVF4,Flat", index_params="nprobe=4"
    )
    with Index.create(tmp_path / "idx", settings) as idx:
        idx.add_vectors(_paths(0, 400), x)
        assert idx.info()["index_key"] == "IVF4,Flat"
        _, got = _stored(idx)
        np.testing.assert_allclose(got, _expected(idx, "aqe:n=2"), atol=1e-5)


def test_dba_setting_is_fixed_per_index(tmp_path):
    path = tmp_path / "idx"
    Index.create(path, IndexSettings(whiten_dim=0, dba="alpha:n=2")).close()
    assert read_manifest(path).settings.dba == "alpha-qe:alpha=3,n=2"
    with pytest.raises(IndexMismatchError, match="dba"):
        Index.open(path, settings=IndexSettings(whiten_dim=0))
    with pytest.raises(IndexMismatchError, match="dba"):
        Index.open(path, settings=IndexSettings(whiten_dim=0, dba="aqe:n=2"))
    with Index.open(path, settings=IndexSettings(whiten_dim=0, dba="alpha-qe:alpha=3,n=2")) as idx:
        idx.check_settings(dba="alpha-qe:n=2,alpha=3")  # same spec, other spelling
        with pytest.raises(IndexMismatchError, match="dba"):
            idx.check_settings(dba="none")
    with pytest.raises(ConfigError, match="dba.*unknown kind 'qe'"):
        validate_settings(dba="qe:n=2")


@pytest.fixture(scope="module")
def groups_bench(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("dba-bench") / "groups"
    names = ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins")
    edits = ("crop", "jpeg", "colour", "flip", "in_canvas")
    make_benchmark({n: photos[n] for n in names}, root, edits=edits, max_side=160)
    return load_benchmark("groups", root)


def _engine_map(idx: Index, bench) -> float:
    """groups mAP through the engine's own search (search_id, query excluded)."""
    by_path = {r.path: r.id for r in idx.catalog.records()}
    position = {by_path[str(p)]: i for i, p in enumerate(bench.database)}
    aps = []
    for gt, query in zip(bench.get_groundtruth(), bench.get_queries(), strict=True):
        own = by_path[str(query.path)]
        ranking = [position[h.id] for h in idx.search_id(own, len(bench.database))]
        aps.append(average_precision(ranking, gt.positives, gt.junk))
    return float(np.mean(aps))


def test_dba_search_is_not_worse_on_a_built_benchmark(groups_bench, tmp_path):
    settings = IndexSettings(max_side=160)
    plain, failed = build_index(groups_bench, tmp_path / "plain", settings)
    assert not failed
    with plain:
        base = _engine_map(plain, groups_bench)
        records = list(plain.catalog.records())
        raws = np.stack([plain.catalog.descriptor(r.id) for r in records])
    aug_path = tmp_path / "dba"
    with Index.create(aug_path, settings.model_copy(update={"dba": SPEC})) as aug:
        aug.add_vectors([r.path for r in records], raws)
        augmented = _engine_map(aug, groups_bench)
    assert base > 0.6  # the benchmark is meaningful: far above chance (about 0.17)
    assert augmented >= base - 0.005, (base, augmented)


def test_cli_index_dba(tmp_path, photo_folder_master):
    folder = tmp_path / "few"
    folder.mkdir()
    for name in ("chelsea.jpg", "grass.jpg", "nested/gravel.jpg"):
        shutil.copy(photo_folder_master / name, folder / os.path.basename(name))
    env = {k: v for k, v in os.environ.items() if k != "LOOKALIKE_INDEX"}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "lookalike", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    assert "--dba" in cli("index", "--help").stdout
    idx = tmp_path / "idx"
    ok = cli("index", folder, "--index", idx, "--max-side", 224, "--dba", "aqe:n=1", "--json")
    assert ok.returncode == 0, ok.stderr
    assert read_manifest(idx).settings.dba == "aqe:n=1"
    again = cli("index", folder, "--index", idx, "--dba", "aqe:n=2")
    assert again.returncode != 0
    assert "dba" in again.stderr and "aqe:n=1" in again.stderr
    bad = cli("index", folder, "--index", tmp_path / "other", "--dba", "sideways")
    assert bad.returncode != 0 and "dba" in bad.stderr
    with Index.open(idx) as opened:
        _, got = _stored(opened)
        np.testing.assert_allclose(got, _expected(opened, "aqe:n=1"), atol=1e-5)
