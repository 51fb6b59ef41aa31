"""Supervised whitening (Lw) and the held-out check that decides whether a model keeps it."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import ConfigError
from lookalike.training.lw import fit_lw, group_pairs
from lookalike.whitening import Whitening


def test_group_pairs_lists_every_pair_within_a_group_once():
    pairs = group_pairs([0, 1, 0, 0, 1, 2])
    assert sorted(map(tuple, pairs.tolist())) == [(0, 2), (0, 3), (1, 4), (2, 3)]
    assert group_pairs([0, 1, 2]).shape == (0, 2)


def _nuisance_data(seed=0, groups=40, per=4, dim=32):
    """Groups whose members differ mostly along a few strong 'nuisance' directions (the
    views' changes) and whose centres differ in the other directions, weakly."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, dim)) * 0.3
    centres[:, :4] = 0
    x, labels = [], []
    for g in range(groups):
        for _ in range(per):
            v = centres[g].copy()
            v[:4] += rng.standard_normal(4) * 2.0  # large within-group changes
            x.append(v)
            labels.append(g)
    x = np.asarray(x)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.asarray(labels)


def test_lw_suppresses_what_varies_within_groups():
    from lookalike.training.trainer import groups_map

    x, labels = _nuisance_data()
    train = labels < 20
    w = fit_lw(x[train], group_pairs(labels[train]), shrinkage=0.1)
    assert isinstance(w, Whitening) and w.kind == "lw" and w.dim == x.shape[1]
    before = groups_map(x[~train], labels[~train])
    after = groups_map(w.apply(x[~train]), labels[~train])
    assert after > before + 0.2  # on groups it never saw


def test_lw_saves_and_loads_as_a_whitening(tmp_path):
    x, labels = _nuisance_data(groups=10)
    w = fit_lw(x, group_pairs(labels), dim=8)
    w.save(tmp_path / "w.npz")
    back = Whitening.load(tmp_path / "w.npz")
    assert back.kind == "lw" and back.dim == 8
    np.testing.assert_allclose(back.apply(x), w.apply(x), atol=1e-6)


def test_lw_input_errors():
    x, labels = _nuisance_data(groups=3)
    with pytest.raises(ConfigError, match="at least one matching pair"):
        fit_lw(x, np.zeros((0, 2), dtype=int))
    with pytest.raises(ConfigError, match="out of range"):
        fit_lw(x, [[0, 999]])
    with pytest.raises(ConfigError, match="dim"):
        fit_lw(x, group_pairs(labels), dim=0)


def test_the_check_keeps_lw_only_when_held_out_groups_gain():
    from lookalike.training.trainer import choose_lw

    x, labels = _nuisance_data(groups=40)
    assert choose_lw(x, labels)["use"] is True
    # groups that differ only by noise in every direction: nothing to learn
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((160, 32))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    verdict = choose_lw(noise, np.repeat(np.arange(40), 4))
    assert verdict["map_none"] < 0.2
    few = choose_lw(x[:12], labels[:12])
    assert few["use"] is False and "cannot check" in few["reason"]
