"""Revision chains: the pool's shape, what each attempt sees, caching, and selection from S x P."""
import pandas as pd
import pytest

from ttc_utils.cache import Cache
from ttc_utils.chains import chain_accuracy, chains_cached, control_chains, pool_lengths, sample_chains
from ttc_utils.model_spec import ModelSpec
from ttc_utils.policy import SAMPLE_COLUMNS, SamplingParams
from ttc_utils.registry import register_policy_backend
from ttc_utils.tasks.arithmetic import ArithmeticTask

TASK = ArithmeticTask()
TEST = TASK.problems("test", 5, 0)


class RevisingPolicy:
    """Answers right once it has seen two previous attempts; records every prompt."""
    name, non_embedding_params, calls = "revising", 0, []

    def __init__(self, spec, batch_size=512, progress=True):
        pass

    def sample(self, prompts, params, seed):
        RevisingPolicy.calls.append(list(prompts))
        rows = []
        for i, p in enumerate(prompts):
            prob = next(q for q in TEST if p.startswith(q.prompt))
            seen = p[len(prob.prompt):].count("A:")
            answer = prob.answer if seen >= 2 else (int(prob.answer) + 1 + seen) % 10
            rows.append((i, 0, f"A:{answer}\n", 4, "stop", len(p)))
        return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)

    sample_shared = sample


@pytest.fixture
def policy():
    register_policy_backend("revising", RevisingPolicy)
    RevisingPolicy.calls = []
    return ModelSpec("fake/revising", backend="revising", revision="2" * 40, param="policy_path")


def test_a_pool_serves_every_shape_with_the_fewest_attempts():
    shapes = [(1, 8), (2, 4), (4, 2), (8, 1)]
    assert pool_lengths(shapes) == [8, 4, 2, 2, 1, 1, 1, 1]
    assert pool_lengths(shapes, min_chains=3, min_length=6) == [8, 6, 6, 2, 1, 1, 1, 1]
    assert sum(pool_lengths([(s, 128 // s) for s in (1, 2, 4, 8, 16, 32, 64, 128)])) == 576


def test_every_attempt_sees_the_most_recent_attempts_of_its_chain(policy, tmp_path):
    lengths = [7, 3]
    assert not chains_cached(Cache(tmp_path), policy, TASK, TEST, lengths, SamplingParams(), seed=0, context=4)
    chains = sample_chains(Cache(tmp_path), policy, TASK, TEST, lengths, SamplingParams(), seed=0, context=4,
                           progress=False)
    assert chains_cached(Cache(tmp_path), policy, TASK, TEST, lengths, SamplingParams(), seed=0, context=4)
    assert not chains_cached(Cache(tmp_path), policy, TASK, TEST, lengths, SamplingParams(), seed=1, context=4)
    assert len(chains) == len(TEST) * sum(lengths)
    assert chains.groupby(["qid", "chain"]).step.max().tolist() == lengths * len(TEST)
    prompts = [p for call in RevisingPolicy.calls for p in call]
    q = TEST[0]
    mine = [p for p in prompts if p.startswith(q.prompt)]
    seen = [p[len(q.prompt):].count("A:") for p in mine]
    assert max(seen) == 4  # never more than `context` attempts
    first = chains[(chains.qid == q.qid) & (chains.chain == 0)].sort_values("step")
    assert mine[-1] == TASK.prompt(q, first.text.tolist()[-5:-1])  # the 4 most recent, oldest first
    acc = chains.groupby("step").correct.mean()
    assert acc[1] == 0 and acc[3] == 1  # a revision uses what came before it
    calls = len(RevisingPolicy.calls)
    again = sample_chains(Cache(tmp_path), policy, TASK, TEST, lengths, SamplingParams(), seed=0, context=4,
                          progress=False)
    assert len(RevisingPolicy.calls) == calls  # cached: no model call
    pd.testing.assert_frame_equal(chains, again)


def synthetic_chains(problems, chains=2, steps=9):
    """A chains table whose every attempt is told apart by its text: question i, chain c, step t -> "A:i.c.t"."""
    return pd.DataFrame([(q.qid, c, t, f"A:{i}.{c}.{t}\n") for i, q in enumerate(problems) for c in range(chains)
                         for t in range(1, steps + 1)], columns=["qid", "chain", "step", "text"])


def test_a_control_attempt_sees_another_questions_attempts_as_many_as_the_chain_saw(policy, tmp_path):
    chains = synthetic_chains(TEST)
    out = control_chains(Cache(tmp_path), policy, TASK, TEST, chains, [2, 4, 8], 2, SamplingParams(), seed=0,
                         context=4)
    assert len(out) == len(TEST) * 2 * 3 and set(out.step) == {2, 4, 8} and set(out.chain) == {0, 1}
    prompts = RevisingPolicy.calls[-1]
    for (i, q), c, t in [((0, TEST[0]), 0, 2), ((2, TEST[2]), 1, 8), ((4, TEST[4]), 1, 4)]:
        seen = [f"A:{(i + 1) % len(TEST)}.{c}.{s}\n" for s in range(max(1, t - 4), t)]  # the next question's
        assert TASK.prompt(q, seen) in prompts
    assert all(p.startswith(q.prompt) for p, q in zip(prompts, [q for q in TEST for _ in range(6)]))
    assert out.qid.tolist() == [q.qid for q in TEST for _ in range(6)]
    calls = len(RevisingPolicy.calls)
    pd.testing.assert_frame_equal(out, control_chains(Cache(tmp_path), policy, TASK, TEST, chains, [2, 4, 8], 2,
                                                      SamplingParams(), seed=0, context=4))
    assert len(RevisingPolicy.calls) == calls  # cached


def test_a_model_that_only_counts_attempts_is_as_right_in_the_control_as_in_its_chain(policy, tmp_path):
    """RevisingPolicy answers right once two attempts precede it, whoever's: no reading, and the control says so."""
    chains = sample_chains(Cache(tmp_path), policy, TASK, TEST, [8, 8], SamplingParams(), seed=0, progress=False)
    out = control_chains(Cache(tmp_path), policy, TASK, TEST, chains, [2, 4, 8], 2, SamplingParams(), seed=0)
    own = chains[chains.step.isin([2, 4, 8])].groupby("step").correct.mean()
    pd.testing.assert_series_equal(out.groupby("step").correct.mean(), own)
    assert own[2] == 0 and own[8] == 1


def test_the_control_needs_two_questions_steps_past_the_first_and_long_enough_chains(policy, tmp_path):
    chains = synthetic_chains(TEST, steps=5)
    assert control_chains(Cache(tmp_path), policy, TASK, TEST[:1], chains, [2], 2, SamplingParams(), seed=0).empty
    with pytest.raises(ValueError, match="steps"):
        control_chains(Cache(tmp_path), policy, TASK, TEST, chains, [1, 2], 2, SamplingParams(), seed=0)
    with pytest.raises(ValueError, match="chains"):
        control_chains(Cache(tmp_path), policy, TASK, TEST, chains, [8], 2, SamplingParams(), seed=0)


def table(rows):
    return pd.DataFrame(rows, columns=["qid", "chain", "step", "answer", "correct", "score"])


def test_majority_votes_over_every_attempt_of_every_chain():
    t = table([("q", 0, 1, "2", False, 0.9), ("q", 0, 2, "2", False, 0.9), ("q", 1, 1, "1", True, 0.1),
               ("q", 1, 2, "1", True, 0.1), ("q", 2, 1, "1", True, 0.0), ("q", 2, 2, "3", False, 0.0)])
    assert chain_accuracy(t, 2, 1, "majority", seed=0).correct.tolist() == [False]  # "2", "2"
    assert chain_accuracy(t, 2, 3, "majority", seed=0).correct.tolist() == [True]  # 3 x "1" vs 2 x "2"
    assert chain_accuracy(t, 1, 3, "majority", seed=0).correct.tolist() == [True]  # "2", "1", "1"
    assert chain_accuracy(t, 2, 3, "majority", seed=0).generations.tolist() == [6]


def test_weighted_selection_is_within_chains_then_across():
    # chain 0 prefers "2" (0.9), chain 1 prefers "1" (0.6 + 0.5), chain 2 prefers "1"; across: "1" (0.6 + 0.7)
    t = table([("q", 0, 1, "2", False, 0.9), ("q", 0, 2, "1", True, 0.3),
               ("q", 1, 1, "1", True, 0.6), ("q", 1, 2, "1", True, 0.5), ("q", 2, 1, "1", True, 0.7),
               ("q", 2, 2, "3", False, 0.2)])
    assert chain_accuracy(t, 2, 3, "best_of_n_weighted", seed=0, score_col="score").correct.tolist() == [True]
    # with chain 0 alone, its winner "2" is wrong
    assert chain_accuracy(t, 2, 1, "best_of_n_weighted", seed=0, score_col="score").correct.tolist() == [False]


def test_a_shape_the_pool_cannot_serve_is_an_error():
    t = table([("q", 0, 1, "1", True, 0.1)])
    with pytest.raises(ValueError, match="chains"):
        chain_accuracy(t, 2, 1, "majority", seed=0)
    with pytest.raises(ValueError, match="score_col"):
        chain_accuracy(t, 1, 1, "best_of_n_weighted", seed=0)


def test_a_chain_stops_revising_once_the_verifier_is_confident():
    from ttc_utils.chains import revise_until_confident
    t = table([("q", 0, 1, "2", False, 0.3), ("q", 0, 2, "1", True, 0.95), ("q", 0, 3, "2", False, 0.99),
               ("q", 1, 1, "3", False, 0.2), ("q", 1, 2, "3", False, 0.4), ("q", 1, 3, "3", False, 0.5)])
    out = revise_until_confident(t, "score", 0.9, sequential=3, parallel=2, seed=0)
    assert out.generations.tolist() == [2 + 3]  # chain 0 stops at its second attempt, chain 1 never does
    assert out.correct.tolist() == [True]  # "1" (0.95) beats "3" (0.5)
    never = revise_until_confident(t, "score", 1.1, sequential=3, parallel=2, seed=0)
    assert never.generations.tolist() == [6] and never.correct.tolist() == [False]  # "2" (0.99) vs "3" (0.5)


def _reference_chain_accuracy(chains, sequential, parallel, rule, seed, score_col=None):
    """chain_accuracy as it was written first, over pandas groups: the reference the numpy version must match."""
    import numpy as np

    from ttc_utils.estimators import select, weighted_winner
    from ttc_utils.policy import derive_seed
    part = chains[(chains.step <= sequential) & (chains.chain < parallel)]
    rows = []
    for qid, q in part.groupby("qid", sort=False):
        rng = np.random.default_rng(derive_seed(seed, "chains", qid, sequential, parallel, rule))
        if rule == "majority":
            ok = select("majority", q.answer, q.correct.to_numpy(), None, rng)
        else:
            winners = []
            for _, c in q.groupby("chain", sort=True):
                w = weighted_winner(c.answer, c[score_col].to_numpy(), rng)
                if w is not None:
                    same = c.answer.to_numpy() == c.answer.iloc[w]
                    winners.append((c.answer.iloc[w], bool(c.correct.iloc[w]), float(c[score_col][same].max())))
            ok = bool(winners) and select("best_of_n_weighted", pd.Series([w[0] for w in winners], dtype=object),
                                          np.array([w[1] for w in winners]), np.array([w[2] for w in winners]), rng)
        rows.append((qid, bool(ok), sequential * parallel))
    return pd.DataFrame(rows, columns=["qid", "correct", "generations"])


@pytest.mark.parametrize("rule", ["majority", "best_of_n_weighted"])
def test_selection_matches_the_pandas_group_reference_tie_for_tie(rule):
    import numpy as np
    rng = np.random.default_rng(0)
    rows = []
    for q in range(60):  # few distinct answers and coarse scores: many ties, so the random draws decide
        for chain in range(8):
            for step in range(1, 9):
                answer = None if rng.random() < 0.1 else str(rng.integers(3))
                rows.append((f"q{q}", chain, step, answer, answer == "0", float(rng.integers(3)) / 2))
    t = table(rows).sample(frac=1.0, random_state=1)  # rows out of order: order within a chain must not matter
    t["answer"] = t.answer.astype("str")  # the pandas string dtype of cached chains (missing answers NaN)
    for s, p in [(1, 1), (2, 4), (8, 1), (1, 8), (8, 8)]:
        got = chain_accuracy(t, s, p, rule, seed=3, score_col="score")
        want = _reference_chain_accuracy(t, s, p, rule, seed=3, score_col="score")
        pd.testing.assert_frame_equal(got, want)
