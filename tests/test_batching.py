"""Length-sorted batching: every index once, in length order, within its budget."""
import pytest

from ttc_utils.batching import cheapest_groups, packed_rows, padded_groups


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


def test_packed_rows_place_every_index_once_within_the_width():
    lengths = [5, 1, 9, 3, 3, 7, 2, 12]
    rows = packed_rows(lengths, 10)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert [7] in rows  # longer than the width: a row of its own
    assert all(sum(lengths[i] for i in r) <= 10 for r in rows if r != [7])
    assert rows[:2] == [[7], [2, 1]]  # longest first, each into the first row with room
    assert rows[2:] == [[5, 3], [0, 4, 6]] and packed_rows(lengths, 10) == rows
    assert packed_rows([4, 4, 4], 4) == [[0], [1], [2]] and packed_rows([2, 2, 2], 6) == [[0, 1, 2]]


def test_packed_rows_name_a_bad_width():
    with pytest.raises(ValueError, match="width"):
        packed_rows([1, 2], 0)


def _cost(lengths, groups, overhead):
    return sum(len(g) * max(lengths[i] for i in g) + overhead for g in groups)


@pytest.mark.parametrize("seed", range(20))
def test_cheapest_groups_are_the_cheapest_cut_of_the_sorted_rows(seed):
    import itertools
    import random
    rng = random.Random(seed)
    lengths = [rng.choice([1, 2, 3, 5, 8, 13, 30]) for _ in range(rng.randint(1, 9))]
    overhead = rng.choice([0, 4, 16, 1000])
    groups = cheapest_groups(lengths, overhead)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    assert [i for g in groups for i in g] == order and all(groups)
    best = min(_cost(lengths, [order[a:b] for a, b in zip((0, *cuts), (*cuts, len(order)))], overhead)
               for r in range(len(order)) for cuts in itertools.combinations(range(1, len(order)), r))
    assert _cost(lengths, groups, overhead) == best


def test_cheapest_groups_trade_padding_against_calls():
    lengths = [2, 2, 2, 2, 30]
    assert cheapest_groups(lengths, 1000) == [[0, 1, 2, 3, 4]]  # a call costs more than any padding
    assert cheapest_groups(lengths, 8) == [[0, 1, 2, 3], [4]]  # 4 rows padded to 30 cost 112 tokens more than a call
    assert cheapest_groups([], 8) == []
    with pytest.raises(ValueError, match="overhead"):
        cheapest_groups(lengths, -1)
