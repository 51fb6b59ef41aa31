"""Extraction on a real local Ray instance gives what the local pipeline gives: the same
results in the same order, the same skip reasons, descriptors equal to cosine 0.9999."""

from __future__ import annotations

import os
import shutil
import signal

import numpy as np
import pytest
from PIL import Image

from conftest import MAX_SIDE
from lookalike.engine import Index
from lookalike.errors import ConfigError, ImageError
from lookalike.executors import LocalExecutor, parse_executor
from lookalike.executors.ray import RayExecutor
from lookalike.images import iter_image_files
from lookalike.index.manifest import IndexSettings
from lookalike.pipeline import extract_files

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mixed_paths(photo_folder_master, tmp_path_factory) -> list[str]:
    """The shipped photos plus a text file posing as a JPEG and a missing file."""
    paths = [str(p) for p in iter_image_files(photo_folder_master)]
    extra = tmp_path_factory.mktemp("ray-extra")
    fake = extra / "not-really.jpg"
    fake.write_text("this is not an image")
    paths.insert(2, str(fake))
    paths.insert(7, str(extra / "missing.jpg"))
    return paths


@pytest.fixture(scope="module")
def local_results(mixed_paths, extractor):
    return list(extract_files(mixed_paths, extractor))


def _assert_same(local, remote):
    assert [r.path for r in remote] == [r.path for r in local]
    for a, b in zip(local, remote, strict=True):
        assert type(a) is type(b), (a.path, a, b)
        if isinstance(a, ImageError):
            assert b.reason == a.reason
            continue
        assert (b.size, b.mtime_ns, b.hash, b.width, b.height) == (
            a.size,
            a.mtime_ns,
            a.hash,
            a.width,
            a.height,
        )
        assert float(a.features.descriptor @ b.features.descriptor) >= 0.9999, a.path
        assert np.argmax(a.features.logits) == np.argmax(b.features.logits)


def test_parse_executor():
    assert isinstance(parse_executor(None), LocalExecutor)
    assert isinstance(parse_executor("local"), LocalExecutor)
    ray_local = parse_executor("ray")
    assert isinstance(ray_local, RayExecutor) and ray_local.address is None
    assert parse_executor("ray:ray://head:10001").address == "ray://head:10001"
    with pytest.raises(ConfigError, match="unknown executor 'spark'"):
        parse_executor("spark")


@pytest.fixture(scope="module")
def ray_executor(ray_cluster):
    """One executor (its two actors load the model once) for the tests of this module."""
    with RayExecutor() as ex:
        yield ex


@pytest.mark.parametrize(("shard_size", "depth"), [(1, 1), (3, 2), (64, 2)])
def test_results_equal_the_local_pipeline_in_order(
    ray_executor, mixed_paths, extractor, local_results, shard_size, depth
):
    ray_executor.shard_size, ray_executor.depth = shard_size, depth
    remote = list(ray_executor.extract(mixed_paths, extractor))
    assert len(ray_executor.worker_hosts) == 2  # one actor per CPU of the 2-CPU instance
    _assert_same(local_results, remote)


def test_a_worker_killed_mid_run_is_replaced_and_nothing_is_lost(
    ray_cluster, ray_executor, mixed_paths, extractor, local_results
):
    paths = mixed_paths * 4  # long enough that the kill lands mid-run
    ex = ray_executor
    ex.shard_size, ex.depth = 4, 2
    results = ex.extract(paths, extractor)
    first = next(results)
    victim = ex.worker_hosts[0][1]
    os.kill(victim, signal.SIGKILL)
    remote = [first, *results]
    _assert_same(local_results * 4, remote)
    # the dead worker was replaced: the next run has two live workers again
    assert len(list(ex.extract(mixed_paths[:4], extractor))) == 4
    assert ray_cluster.available_resources().get("CPU", 0) == 0


def test_sync_with_ray_equals_local_sync(ray_executor, photo_folder, tmp_path):
    """Whole index: same catalog, skip reasons, search results; then an incremental sync
    (one file changed, one removed, one added) reports the same as the local path would."""
    (photo_folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    settings = IndexSettings(max_side=MAX_SIDE)
    with Index.create(tmp_path / "local", settings) as a:
        ra = a.sync([photo_folder])
    ex = ray_executor
    ex.shard_size = 3
    with Index.create(tmp_path / "ray", settings) as b:
        rb = b.sync([photo_folder], executor=ex, batch_size=4)
        assert (rb.added, rb.updated, rb.removed) == (ra.added, 0, 0)
        assert [(s.path, s.reason) for s in rb.skipped] == [(s.path, s.reason) for s in ra.skipped]
        with Index.open(tmp_path / "local") as a:
            ids_a = {p: state[0] for p, state in a.catalog.file_states().items()}
            ids_b = {p: state[0] for p, state in b.catalog.file_states().items()}
            assert ids_a.keys() == ids_b.keys()
            for path, ia in ids_a.items():
                da, db = a.catalog.descriptor(ia), b.catalog.descriptor(ids_b[path])
                cos = float(da @ db / np.linalg.norm(da) / np.linalg.norm(db))
                assert cos >= 0.9999, path
            for path in list(ids_a)[:5]:
                hits_a = [h.path for h in a.search(path, k=5)]
                hits_b = [h.path for h in b.search(path, k=5)]
                assert hits_a == hits_b

        # incremental: change one, remove one, add one
        changed = photo_folder / "chelsea.jpg"
        Image.open(changed).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed)
        (photo_folder / "grass.jpg").unlink()
        shutil.copy(photo_folder / "nested" / "gravel.jpg", photo_folder / "gravel-copy.jpg")
        again = b.sync([photo_folder], executor=ex)
        assert (again.added, again.updated, again.removed) == (1, 1, 1)
        assert again.unchanged == ra.added - 2
        assert len(b) == ra.added


def test_stopping_early_leaves_the_executor_usable(ray_executor, mixed_paths, extractor):
    ray_executor.shard_size = 2
    results = ray_executor.extract(mixed_paths, extractor)
    next(results)
    results.close()  # the consumer stops (Ctrl-C in a sync): pending shards are cancelled
    again = list(ray_executor.extract(mixed_paths[:5], extractor))
    assert [r.path for r in again] == mixed_paths[:5]
