"""How the alignment estimator's iterations become one score per layer (walign.alignment.combine
and skipped_iterations), on hand-made (WD, WW, DD) terms; expected scores worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from walign.alignment import combine, skipped_iterations

NAN = float("nan")


def terms(*iterations):
    """(iterations, pairs, 3) float64 from nested lists."""
    return torch.tensor(iterations, dtype=torch.float64)


def test_score_is_the_summed_cross_term_over_the_root_of_the_summed_squares():
    # pair 0: sums WD 0.2 + 0.1 = 0.3, WW 0.25 + 0.15 = 0.4, DD 0.5 + 0.4 = 0.9 -> 0.3 / sqrt(0.36) = 0.5
    # pair 1: sums WD 1 - 2 = -1, WW 2 + 2 = 4, DD 4 + 5 = 9 -> -1 / 6
    t = terms([[0.2, 0.25, 0.5], [1.0, 2.0, 4.0]],
              [[0.1, 0.15, 0.4], [-2.0, 2.0, 5.0]])
    keep = torch.zeros(2, 2, dtype=torch.bool)
    got = combine(t, keep)
    assert got[0] == pytest.approx(0.5)
    assert got[1] == pytest.approx(-1 / 6)


def test_skipped_iterations_are_left_out_of_the_sums_pair_by_pair():
    t = terms([[1.0, 1.0, 4.0], [2.0, 4.0, 1.0]],
              [[NAN, NAN, NAN], [1.0, 5.0, 4.0]],
              [[3.0, 9.0, 4.0], [2.0, 4.0, 1.0]])
    skip = torch.tensor([[False, False], [True, False], [False, True]])
    got = combine(t, skip)
    # pair 0 keeps iterations 0 and 2: WD 4, WW 10, DD 8 -> 4 / sqrt(80)
    # pair 1 keeps iterations 0 and 1: WD 3, WW 9, DD 5 -> 3 / sqrt(45)
    assert got == pytest.approx([4 / math.sqrt(80.0), 3 / math.sqrt(45.0)])


@pytest.mark.parametrize("ww, dd", [(0.0, 0.5), (0.5, 0.0), (0.0, 0.0)])
def test_a_change_that_never_moved_scores_nan(ww, dd):
    got = combine(terms([[0.0, ww, dd]]), torch.zeros(1, 1, dtype=torch.bool))
    assert len(got) == 1 and math.isnan(got[0])


def test_every_iteration_skipped_scores_nan():
    got = combine(terms([[1.0, 1.0, 1.0]]), torch.ones(1, 1, dtype=torch.bool))
    assert math.isnan(got[0])


def test_sums_are_kept_in_double_precision():
    # 1 + 1e-9 is not a float32: WD sums to 2 + 2e-9 over two iterations, WW and DD to 2 -> 1 + 1e-9
    t = terms([[1.0 + 1e-9, 1.0, 1.0]], [[1.0 + 1e-9, 1.0, 1.0]])
    assert combine(t, torch.zeros(2, 1, dtype=torch.bool))[0] == pytest.approx(1.0 + 1e-9, rel=1e-12, abs=0)


def test_scores_between_zero_and_one_in_the_sums_are_kept():
    # sums below one must not be taken for degenerate: WD 0.1, WW 0.2, DD 0.05 -> 0.1 / 0.1 = 1
    assert combine(terms([[0.1, 0.2, 0.05]]), torch.zeros(1, 1, dtype=torch.bool)) == pytest.approx([1.0])


def layer(nan_at: set[tuple[int, int]], iterations=3, pairs=2):
    t = torch.ones(iterations, pairs, 3, dtype=torch.float64)
    for it, pair in nan_at:
        t[it, pair, 1] = NAN
    return t


def test_the_released_rule_drops_an_iteration_for_every_layer_if_any_layer_is_nan_there():
    # each pair (the score, the permuted baseline) is its own estimate: layer 0's NaN in pair 1 at
    # iteration 0 drops pair 1 there in every layer, layer 2's in pair 0 at iteration 2 pair 0 there
    layers = [layer({(0, 1)}), layer(set()), layer({(2, 0)})]
    skips = skipped_iterations(layers)                     # default: the released code's rule
    want = torch.tensor([[False, True], [False, False], [True, False]])
    assert len(skips) == 3 and all(torch.equal(s, want) for s in skips)
    assert all(torch.equal(s, want) for s in skipped_iterations(layers, "all_layers"))


def test_the_released_rule_combines_layers_not_iterations():
    # two layers, four iterations, one pair: a NaN in layer 1 at iteration 2 drops iteration 2 only
    layers = [layer(set(), iterations=4, pairs=1), layer({(2, 0)}, iterations=4, pairs=1)]
    want = torch.tensor([[False], [False], [True], [False]])
    skips = skipped_iterations(layers, "all_layers")
    assert all(s.shape == (4, 1) and torch.equal(s, want) for s in skips)


def test_per_layer_skipping_drops_only_where_that_layer_is_nan():
    layers = [layer({(0, 1)}), layer(set()), layer({(2, 0)})]
    skips = skipped_iterations(layers, "per_layer")
    assert torch.equal(skips[0], torch.tensor([[False, True], [False, False], [False, False]]))
    assert not skips[1].any()
    assert torch.equal(skips[2], torch.tensor([[False, False], [False, False], [True, False]]))


def test_an_unknown_skipping_rule_is_refused():
    with pytest.raises(ValueError, match="nan_skip must be 'all_layers' or 'per_layer', got 'some'"):
        skipped_iterations([layer(set())], "some")
