"""The one results table: selection rows carry their measured costs, FLOPs are 2 · parameters · tokens, the three
cost axes put each method where its calls put it, and summaries average seeds per question first."""
import numpy as np
import pandas as pd
import pytest

from ttc_utils.results import RESULT_COLUMNS, accounted, flops, search_results, selection_results, summarize


def pool(questions=4, samples=8):
    rng = np.random.default_rng(0)
    answers = rng.integers(3, size=(questions, samples))
    rows = [{"qid": f"q{q}", "sample_index": s, "answer": str(answers[q, s]), "correct": bool(answers[q, s] == 0),
             "num_tokens": 10, "prompt_tokens": 5, "verifier_tokens": 15, "last": float(rng.random())}
            for q in range(questions) for s in range(samples)]
    return pd.DataFrame(rows)


def test_flops_are_two_times_parameters_times_tokens_for_each_model():
    assert flops(100, 1000, 10, 5, 15) == 2 * 100 * 15 + 2 * 1000 * 15
    assert flops(100, None, 10, 5, 0) == 2 * 100 * 15  # no verifier tokens: no verifier cost, known or not
    assert np.isnan(flops(None, None, 10, 5, 0))


def test_selection_rows_cost_n_samples_and_a_verifier_rule_n_calls():
    rows = selection_results(pool(), "best_of_n_weighted", [1, 2, 4], 10, 0, "w", "last", policy_params=100,
                             verifier_params=1000)
    assert list(rows.columns) == RESULT_COLUMNS
    at4 = rows[rows.budget == 4].iloc[0]
    assert at4.generations == 4 and at4.verifier_calls == 4 and at4.policy_tokens == 40 and at4.prefill_tokens == 20
    assert at4.flops == pytest.approx(2 * 100 * 60 + 2 * 1000 * 60)
    maj = selection_results(pool(), "majority", [4], 10, 0, "m", policy_params=100)
    assert (maj.verifier_calls == 0).all() and (maj.flops == 2 * 100 * 60).all()


def test_iclr_accounting_charges_the_verifier_calls_each_method_made():
    sel = selection_results(pool(), "best_of_n_weighted", [4], 10, 0, "w", "last", policy_params=1, verifier_params=1)
    runs = pd.DataFrame({"qid": ["q0", "q1"], "correct": [True, False], "generations": 4, "policy_tokens": 40,
                         "prefill_tokens": 30, "verifier_tokens": 200, "verifier_calls": [20, 24], "label": "beam",
                         "style": "beam", "search_seed": 0, "budget": 4})
    search = search_results(runs, policy_params=1, verifier_params=1)
    both = pd.concat([sel, search])
    assert (accounted(both, "arxiv").cost == 4).all()
    iclr = accounted(both, "iclr")
    assert (iclr[iclr.setting == "w"].cost == 8).all()  # N samples + N calls: the flat 2x of best-of-N weighted
    assert iclr[iclr.setting == "beam"].cost.tolist() == [24, 28]  # beam search pays for every round's calls
    assert accounted(both, "flops").cost.tolist() == both.flops.tolist()
    with pytest.raises(ValueError, match="cost"):
        accounted(both, "tokens")


def test_summarize_averages_seeds_per_question_and_carries_the_mean_cost():
    rows = pd.DataFrame({"setting": "s", "budget": 4, "qid": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1],
                         "correct": [1.0, 0.0, 1.0, 1.0], "cost": [10.0, 20.0, 30.0, 40.0]})
    out = summarize(rows, by=["setting"])
    assert out.accuracy.iloc[0] == pytest.approx(0.75) and out.cost.iloc[0] == pytest.approx(25.0)


def test_summarize_of_no_rows_is_an_empty_table_with_its_columns():
    rows = pd.DataFrame(columns=["method", "budget", "qid", "seed", "correct"])
    out = summarize(rows, by=["method"])
    assert out.empty and list(out.columns) == ["budget", "accuracy", "low", "high", "method"]
