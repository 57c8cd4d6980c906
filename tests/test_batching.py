"""Length-sorted batching: every index once, in length order, within its budget."""
import pytest

from ttc_utils.batching import padded_groups


def test_padded_groups_sort_by_length_and_keep_the_padded_size_within_budget():
    lengths = [5, 40, 3, 12, 12, 7, 3, 100, 9]
    groups = padded_groups(lengths, 30)
    order = [i for g in groups for i in g]
    assert sorted(order) == list(range(len(lengths)))
    assert [lengths[i] for i in order] == sorted(lengths) and order[:2] == [2, 6]  # ties by index
    for g in groups:
        assert len(g) * max(lengths[i] for i in g) <= 30 or len(g) == 1
    assert [7] in groups and [1] in groups  # longer than the budget: alone
    assert padded_groups(lengths, 10**6) == [order]


def test_padded_groups_name_a_bad_budget():
    with pytest.raises(ValueError, match="tokens"):
        padded_groups([1, 2], 0)
