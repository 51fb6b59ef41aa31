"""The label-free whitening self-check: copy retrieval and neighbourhood stability."""

from __future__ import annotations

import numpy as np

from lookalike.whitening import fit_whitening
from lookalike.whitening_check import check_whitening, copy_mrr, neighbour_overlap


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_copy_mrr_by_hand():
    db = np.eye(3, dtype=np.float32)
    copies = _unit(np.array([[1.0, 0.1, 0], [0.2, 0.1, 1.0]], dtype=np.float32))
    # copy 0 finds row 0 first (rank 1); copy 1 finds row 1 only after row 2 and row 0
    assert copy_mrr(db, copies, np.array([0, 1])) == (1 + 1 / 3) / 2


def test_neighbour_overlap_is_one_for_a_rotation_and_low_for_noise():
    rng = np.random.default_rng(0)
    x = _unit(rng.standard_normal((200, 16)))
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    held = np.arange(20)
    assert neighbour_overlap(x, x @ q, held, 10) == 1.0
    other = _unit(rng.standard_normal((200, 16)))
    assert neighbour_overlap(x, other, held, 10) < 0.2


def _collection(seed, clusters, per, dim, nuisance):
    """Clusters in `dim` dims plus a few huge shared 'nuisance' directions (what whitening
    removes); copies move an image a little within its own cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = np.repeat(centres, per, axis=0) + 0.3 * rng.standard_normal((clusters * per, dim))
    x[:, :4] += nuisance * rng.standard_normal((len(x), 4))
    return x.astype(np.float32), rng


def test_the_check_turns_whitening_on_when_it_removes_a_nuisance():
    x, rng = _collection(0, 60, 5, 32, nuisance=4.0)
    held = rng.choice(len(x), 40, replace=False)
    copies = x[held] + 0.3 * rng.standard_normal((40, 32)).astype(np.float32)
    copies[:, :4] += 4.0 * rng.standard_normal((40, 4)).astype(np.float32)
    verdict, _ = check_whitening(
        x,
        held,
        copies,
        lambda r: fit_whitening(r, 16, shrinkage=0.0, power=0.5),
        min_overlap=0.0,
    )
    assert verdict.mrr_whitened > verdict.mrr_raw and verdict.use


def test_the_check_refuses_whitening_that_reshuffles_neighbours():
    # No nuisance: textbook whitening of 8 dims throws away most of the structure.
    x, rng = _collection(1, 60, 5, 64, nuisance=0.0)
    held = rng.choice(len(x), 40, replace=False)
    copies = x[held] + 0.05 * rng.standard_normal((40, 64)).astype(np.float32)
    verdict, _ = check_whitening(
        x, held, copies, lambda r: fit_whitening(r, 4, shrinkage=0.0, power=0.5)
    )
    assert not verdict.use
    assert verdict.overlap < 0.5 or verdict.mrr_whitened < verdict.mrr_raw
