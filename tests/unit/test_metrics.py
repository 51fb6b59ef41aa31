"""Metrics against rankings worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lookalike.evaluation.metrics import (
    average_precision,
    first_correct_rank,
    mean_ignoring_nan,
    ns_score,
    positive_ranks,
    precision_at_k,
    precision_recall,
    rank_by_scores,
)


def test_step_ap_two_positives():
    # positives at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision([0, 1, 2, 3, 4], {0, 2}) == pytest.approx(5 / 6)


def test_trapezoid_ap_matches_oxford_compute_ap():
    # j=0,r=0: (1 + 1)/2 * 1/2 = 0.5 ; j=1,r=2: (1/2 + 2/3)/2 * 1/2 = 7/24
    assert average_precision([0, 1, 2, 3, 4], {0, 2}, style="trapezoid") == pytest.approx(
        0.5 + 7 / 24
    )


def test_perfect_and_worst_rankings():
    assert average_precision([2, 1, 0], {2, 1}) == 1.0
    assert average_precision([0, 1, 2, 3], {3}) == pytest.approx(1 / 4)


def test_junk_is_removed_before_scoring():
    assert average_precision([5, 0, 1, 2], {0, 2}, junk={5}) == pytest.approx(5 / 6)
    assert positive_ranks([5, 0, 6, 2], {0, 2}, junk={5, 6}).tolist() == [0, 1]


def test_a_positive_also_listed_as_junk_stays_positive():
    assert positive_ranks([1, 0], {0}, junk={0, 1}).tolist() == [0]


def test_unretrieved_positive_counts_as_missed():
    assert average_precision([0, 1], {0, 9}) == pytest.approx(0.5)


def test_empty_positives_give_nan_and_are_skipped_in_means():
    assert math.isnan(average_precision([0, 1], set()))
    assert mean_ignoring_nan([1.0, math.nan, 0.5]) == pytest.approx(0.75)
    assert math.isnan(mean_ignoring_nan([math.nan]))
    assert all(math.isnan(v) for v in precision_at_k([0, 1], set()).values())


def test_ties_broken_by_database_index():
    assert rank_by_scores(np.array([0.5, 0.9, 0.5, 0.9])).tolist() == [1, 3, 0, 2]
    # a positive tied with a negative placed before it scores as ranked second
    ranking = rank_by_scores(np.array([0.7, 0.7]))
    assert average_precision(ranking, {1}) == pytest.approx(0.5)


def test_ns_score_counts_positives_in_top_four_query_included():
    assert ns_score([3, 0, 1, 7, 2], {0, 1, 2, 3}) == 3
    assert ns_score([0, 1, 2, 3], {0, 1, 2, 3}) == 4
    assert ns_score([9, 8, 7, 6, 0], {0, 1, 2, 3}) == 0


def test_precision_at_k_revisited_style():
    # positives at 1-based ranks 2 and 4
    p = precision_at_k([9, 0, 8, 1], {0, 1}, ks=(1, 5, 10))
    assert p == {1: 0.0, 5: pytest.approx(0.5), 10: pytest.approx(0.5)}
    # only one positive, ranked first: precision 1 at every k
    assert precision_at_k([4, 1, 2], {4}, ks=(1, 5)) == {1: 1.0, 5: 1.0}


def test_first_correct_rank():
    assert first_correct_rank([9, 0, 8, 1], {0, 1}) == 2
    assert first_correct_rank([9, 0, 8, 1], {0, 1}, junk={9}) == 1
    assert first_correct_rank([9, 8], {0}) is None


def test_precision_recall_curve():
    precision, recall = precision_recall([9, 0, 8, 1], {0, 1})
    assert precision.tolist() == pytest.approx([0, 0.5, 1 / 3, 0.5])
    assert recall.tolist() == pytest.approx([0, 0.5, 0.5, 1.0])
