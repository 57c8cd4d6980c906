"""Compute-optimal selection, the efficiency ratio and the per-bin budget allocation on synthetic results tables whose
best settings are known; the cross-validated choice never reads a question's own outcome."""
import numpy as np
import pandas as pd
import pytest

from ttc_utils.compute_optimal import (
    allocate_budget,
    assign_folds,
    budget_to_reach,
    charge,
    compute_optimal,
    efficiency_ratio,
    peak,
)
from ttc_utils.difficulty import predicted_bins
from ttc_utils.results import RESULT_COLUMNS


def table(accuracy, questions=100, seeds=2, budgets=(1, 2, 4, 8), bins=2, seed=0, noise=True):
    """Results rows of settings with success probability accuracy(setting, bin, budget) per question."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(questions):
        b = 1 + q % bins
        for setting in ("beam", "bon", "lookahead"):
            for n in budgets:
                p = accuracy(setting, b, n)
                for s in range(seeds):
                    rows.append({"method": setting, "setting": setting, "budget": n, "seed": s, "qid": f"q{q:03d}",
                                 "bin": b, "correct": float(rng.random() < p) if noise else p, "generations": n,
                                 "policy_tokens": 10 * n, "prefill_tokens": 5 * n, "verifier_tokens": 0,
                                 "verifier_calls": n, "flops": 1e3 * n})
    return pd.DataFrame(rows)


def easy_beam_hard_bon(setting, b, n):
    best = "beam" if b == 1 else "bon"
    return 0.9 if setting == best else 0.3


def test_the_selector_returns_the_known_best_setting_of_each_bin():
    rows, choices = compute_optimal(table(easy_beam_hard_bon), folds=2, seed=0, setting="co")
    assert set(choices[choices.bin == 1].chosen) == {"beam"} and set(choices[choices.bin == 2].chosen) == {"bon"}
    assert list(rows.columns) == RESULT_COLUMNS + ["chosen"]
    assert set(rows.method) == {"compute_optimal"} and set(rows.setting) == {"co"}
    # every question scored once per budget and seed, with the chosen setting's own costs
    assert len(rows) == 100 * 4 * 2 and (rows.generations == rows.budget).all()
    assert rows.groupby("bin").chosen.agg(set).to_dict() == {1: {"beam"}, 2: {"bon"}}


def test_the_choice_may_differ_per_budget():
    def acc(setting, b, n):
        return 0.9 if setting == ("bon" if n <= 2 else "beam") else 0.2
    _, choices = compute_optimal(table(acc), folds=2, seed=0)
    assert choices.groupby("budget").chosen.agg(set).to_dict() == {1: {"bon"}, 2: {"bon"}, 4: {"beam"}, 8: {"beam"}}


def test_a_question_own_outcome_never_chooses_its_setting():
    rows = table(lambda s, b, n: 0.5, questions=40, seed=3)
    base, _ = compute_optimal(rows, folds=2, seed=1)
    chosen = base.groupby(["qid", "budget"]).chosen.first()
    for q in ("q000", "q007", "q021"):
        for favourite in ("beam", "bon", "lookahead"):
            # the question is certain with one setting and hopeless with the others: its choice must not move
            forged = rows.copy()
            mine = forged.qid == q
            forged.loc[mine, "correct"] = (forged.loc[mine, "setting"] == favourite).astype(float) * 1.0
            again, _ = compute_optimal(forged, folds=2, seed=1)
            assert again.groupby(["qid", "budget"]).chosen.first()[q].equals(chosen[q])


def test_folds_split_every_bin_evenly_and_depend_on_the_seed():
    bins = pd.Series([1] * 10 + [2] * 7, index=[f"q{i}" for i in range(17)])
    folds = assign_folds(bins, 2, seed=0)
    assert folds.groupby(bins).value_counts().to_dict() == {(1, 0): 5, (1, 1): 5, (2, 0): 4, (2, 1): 3}
    assert assign_folds(bins, 2, seed=0).equals(folds) and not assign_folds(bins, 2, seed=5).equals(folds)
    assert set(assign_folds(bins, 3, seed=0)) == {0, 1, 2}


@pytest.mark.parametrize("folds", [1, 0, 2.5, True])
def test_fewer_than_two_folds_is_a_clear_error(folds):
    with pytest.raises(ValueError, match="folds"):
        compute_optimal(table(easy_beam_hard_bon, questions=10), folds=folds)


def test_missing_columns_and_bins_are_clear_errors():
    rows = table(easy_beam_hard_bon, questions=10)
    with pytest.raises(ValueError, match="bin"):
        compute_optimal(rows.drop(columns="bin"))
    with pytest.raises(ValueError, match="rows.bin"):
        compute_optimal(rows.assign(bin=np.nan))


def test_budget_to_reach_interpolates_on_log2_budget():
    budgets = np.array([1, 2, 4, 8])
    curve = np.array([0.2, 0.4, 0.6, 0.8])
    at, reached = budget_to_reach(budgets, curve, np.array([0.4, 0.5, 0.1, 0.9]))
    assert at[0] == pytest.approx(2) and at[1] == pytest.approx(2 ** 1.5) and at[2] == 1
    assert at[3] == 8 and list(reached) == [True, True, True, False]
    # a curve that dips: the first budget that gets there counts
    at, _ = budget_to_reach(budgets, np.array([0.2, 0.7, 0.5, 0.9]), np.array([0.6]))
    assert 1 < at[0] < 2


def test_efficiency_ratio_of_a_curve_shifted_by_four_is_four():
    # the reference at budget 4N is as good as "co" at N
    ref = table(lambda s, b, n: 0.1 * np.log2(n) + 0.2, budgets=(1, 2, 4, 8, 16, 32), noise=False)
    opt = table(lambda s, b, n: 0.1 * np.log2(4 * n) + 0.2, budgets=(1, 2, 4, 8), noise=False)
    eff = efficiency_ratio(opt[opt.setting == "bon"], ref[ref.setting == "bon"], resamples=200)
    assert eff.ratio.round(6).tolist() == [4.0] * 4 and eff.reached.all()
    assert (eff.low <= eff.ratio + 1e-9).all() and (eff.high >= eff.ratio - 1e-9).all()
    assert peak(eff)["ratio"] == pytest.approx(4)


def test_efficiency_ratio_flags_targets_the_reference_never_reaches():
    ref = table(lambda s, b, n: 0.3, budgets=(1, 2, 4), noise=False)
    opt = table(lambda s, b, n: 0.6, budgets=(1, 2), noise=False)
    eff = efficiency_ratio(opt[opt.setting == "bon"], ref[ref.setting == "bon"], resamples=200)
    assert not eff.reached.any() and eff.reference_budget.tolist() == [4, 4]


def test_efficiency_ratio_ci_is_deterministic_and_covers_the_estimate():
    ref = table(lambda s, b, n: min(0.95, 0.15 * np.log2(n) + 0.2), budgets=(1, 2, 4, 8, 16, 32), seed=1)
    opt = table(lambda s, b, n: min(0.95, 0.15 * np.log2(2 * n) + 0.2), budgets=(1, 2, 4, 8), seed=2)
    a = efficiency_ratio(opt[opt.setting == "bon"], ref[ref.setting == "bon"], resamples=300, seed=4)
    b = efficiency_ratio(opt[opt.setting == "bon"], ref[ref.setting == "bon"], resamples=300, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert (a.low < a.high).all() and ((a.low <= a.ratio) & (a.ratio <= a.high)).all()


def test_allocation_spends_the_budget_where_it_pays_at_equal_mean_compute():
    # bin 1 is solved at budget 1; bin 2 needs budget 8: a mean budget of 4.5 buys both
    def acc(setting, b, n):
        return 1.0 if (b == 1 or n >= 8) else 0.0
    rows = table(acc, questions=100, noise=False)
    out, allocation = allocate_budget(rows, mean_budget=4.5, folds=2, seed=0, setting="adaptive")
    assert allocation.groupby("bin").budget.agg(set).to_dict() == {1: {1}, 2: {8}}
    assert out.correct.mean() == 1.0 and out.generations.mean() <= 4.5
    assert set(out.budget) == {4.5} and set(out.setting) == {"adaptive"}
    fixed, _ = compute_optimal(rows[rows.budget == 4], folds=2, seed=0)
    assert fixed.correct.mean() == 0.5  # the same mean compute spent evenly solves only bin 1


def test_allocation_never_exceeds_the_mean_budget():
    rows = table(lambda s, b, n: min(1.0, 0.1 * n / b), questions=60, bins=3, seed=2)
    for mean_budget in (1, 2, 3, 8):
        out, _ = allocate_budget(rows, mean_budget, folds=2, seed=0)
        per_q = out.groupby("qid").generations.first()
        assert per_q.mean() <= mean_budget + 1e-9 and len(per_q) == 60


def test_allocation_rejects_a_mean_budget_below_the_grid():
    with pytest.raises(ValueError, match="mean_budget"):
        allocate_budget(table(easy_beam_hard_bon, questions=10), mean_budget=0.5)


def test_predicted_bins_rank_questions_by_mean_score():
    samples = pd.DataFrame({"qid": ["a", "a", "b", "b", "c", "c", "d", "d"],
                            "last": [0.9, 0.8, 0.1, 0.2, 0.5, 0.6, 0.4, 0.3]})
    bins = predicted_bins(samples, "last", num_bins=2).set_index("qid")
    assert bins.bin.to_dict() == {"a": 1, "b": 2, "c": 1, "d": 2}
    assert bins.score["a"] == pytest.approx(0.85) and (bins.samples == 2).all()
    with pytest.raises(ValueError, match="score"):
        predicted_bins(samples, "score", num_bins=2)


def test_charging_a_cost_raises_each_question_costs_and_relabels():
    rows = table(easy_beam_hard_bon, questions=4, seeds=1, budgets=(2,))
    cost = pd.DataFrame({"qid": [f"q{q:03d}" for q in range(4)], "generations": 8, "policy_tokens": 80,
                         "prefill_tokens": 40, "verifier_tokens": 100, "verifier_calls": 8, "flops": 5.0})
    out = charge(rows, cost, "charged")
    assert set(out.setting) == {"charged"} and (out.generations == 10).all() and (out.verifier_calls == 10).all()
    assert (out.correct == rows.correct).all() and (out.budget == 2).all()
    with pytest.raises(ValueError, match="cost"):
        charge(rows, cost.iloc[:2], "charged")


def test_a_search_method_missing_from_the_results_table_is_a_clear_error():
    from ttc_utils.config import ComputeOptimalNotebookConfig
    from ttc_utils.stages.compute_optimal import search_candidates
    small = dict(max_budget=16, pool_size=32, prediction_samples=16)
    cfg = ComputeOptimalNotebookConfig(**small, search_methods=["beam", "dvts"])
    rows = table(easy_beam_hard_bon, questions=4, seeds=1, budgets=(4,)).assign(scope="search")
    rows = rows.assign(setting=rows.setting.map({"beam": "beam M=4", "bon": "beam M=sqrt N", "lookahead": "x"}),
                       method="beam")
    beam_only = ComputeOptimalNotebookConfig(**small, search_methods=["beam"])
    assert set(search_candidates(beam_only, rows).setting) == {"beam M=4", "beam M=sqrt N"}
    with pytest.raises(ValueError, match="search_methods.*dvts"):
        search_candidates(cfg, rows)
