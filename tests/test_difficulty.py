"""Oracle difficulty bins: quantile sizes, bin 1 easiest, deterministic ties, validation."""
import numpy as np
import pandas as pd
import pytest

from ttc_utils.difficulty import bin_table, oracle_bins


def random_pass1(n, seed=0):
    rng = np.random.default_rng(seed)
    # values on a 1/8 grid, so many questions tie
    return pd.Series(rng.integers(0, 9, n) / 8, index=[f"q{i:04d}" for i in rng.permutation(n)])


@pytest.mark.parametrize("n, num_bins", [(500, 5), (503, 5), (7, 3), (5, 5), (4, 1), (11, 4)])
def test_bin_sizes_follow_array_split(n, num_bins):
    bins = oracle_bins(random_pass1(n), num_bins)
    sizes = bins.value_counts().sort_index()
    assert list(sizes.index) == list(range(1, num_bins + 1))
    assert list(sizes) == [len(g) for g in np.array_split(np.arange(n), num_bins)]


def test_500_and_503_questions():
    assert list(oracle_bins(random_pass1(500)).value_counts().sort_index()) == [100] * 5
    assert list(oracle_bins(random_pass1(503)).value_counts().sort_index()) == [101, 101, 101, 100, 100]


def test_bin_one_is_easiest_and_index_is_kept():
    pass1 = random_pass1(200, seed=1)
    bins = oracle_bins(pass1, 5)
    assert bins.index.equals(pass1.index) and bins.dtype == np.int64 and bins.name == "bin"
    table = bin_table(pass1, bins)
    # every question of bin b is at least as easy as every question of bin b + 1
    assert (table.pass1_min.to_numpy()[:-1] >= table.pass1_max.to_numpy()[1:]).all()
    assert table.pass1_mean.is_monotonic_decreasing


def test_ties_are_broken_by_qid_string_order():
    pass1 = pd.Series([0.5, 0.5, 0.5, 0.9], index=["q9", "q10", "q2", "q1"])
    bins = oracle_bins(pass1, 4)
    # q1 is easiest; then the tied ones in string order: "q10" < "q2" < "q9"
    assert bins.to_dict() == {"q1": 1, "q10": 2, "q2": 3, "q9": 4}


def test_deterministic_and_independent_of_input_order():
    pass1 = random_pass1(97, seed=2)
    bins = oracle_bins(pass1, 5)
    shuffled = pass1.sample(frac=1, random_state=3)
    pd.testing.assert_series_equal(oracle_bins(shuffled, 5).sort_index(), bins.sort_index())
    pd.testing.assert_series_equal(oracle_bins(pass1, 5), bins)


@pytest.mark.parametrize("num_bins", [0, -1, 6, 2.5, True, "3", None])
def test_bad_num_bins(num_bins):
    with pytest.raises(ValueError, match=r"^num_bins="):
        oracle_bins(pd.Series([0.1, 0.2, 0.3, 0.4, 0.5], index=list("abcde")), num_bins)


def test_bad_pass1():
    with pytest.raises(ValueError, match=r"^pass1="):
        oracle_bins(pd.Series([], dtype=float), 1)
    with pytest.raises(ValueError, match=r"^pass1="):
        oracle_bins(pd.Series([0.1, np.nan], index=["a", "b"]), 1)
    with pytest.raises(ValueError, match=r"^pass1.index="):
        oracle_bins(pd.Series([0.1, 0.2], index=["a", "a"]), 1)
    with pytest.raises(ValueError, match=r"^pass1="):
        oracle_bins([0.1, 0.2], 1)


def test_bin_table():
    pass1 = pd.Series([1.0, 0.8, 0.5, 0.4, 0.0], index=list("abcde"))
    bins = oracle_bins(pass1, 2)
    table = bin_table(pass1, bins)
    assert list(table.columns) == ["bin", "questions", "pass1_min", "pass1_max", "pass1_mean"]
    assert table.to_dict("list") == {"bin": [1, 2], "questions": [3, 2], "pass1_min": [0.5, 0.0],
                                     "pass1_max": [1.0, 0.4], "pass1_mean": [pytest.approx(2.3 / 3), 0.2]}
    # bins given in another order are aligned by qid
    assert bin_table(pass1, bins.iloc[::-1]).equals(table)
    with pytest.raises(ValueError, match=r"^bins="):
        bin_table(pass1, bins.iloc[:3])
