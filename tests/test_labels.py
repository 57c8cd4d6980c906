"""PRM labels from Monte Carlo rollouts, with the fake oracle backend for exact bookkeeping."""
import pandas as pd
import pytest
from fake_backend import register

from ttc_utils.cache import Cache
from ttc_utils.labels import mc_labels
from ttc_utils.policy import SamplingParams
from ttc_utils.tasks.arithmetic import ArithmeticTask
from ttc_utils.world import make_problem

PROBLEMS = [make_problem(3, [("+", 4), ("*", 2), ("-", 1)], 10), make_problem(5, [("*", 3)], 10)]
TASK = ArithmeticTask()


@pytest.fixture
def oracle():
    spec = register(PROBLEMS)
    from fake_backend import OraclePolicy
    return spec, OraclePolicy


def test_mc_labels_are_rollout_success_rates_per_step(oracle, tmp_path):
    spec, backend = oracle
    labels = mc_labels(Cache(tmp_path), spec, TASK, PROBLEMS, SamplingParams(n=4, max_new_tokens=40), rollouts=3,
                       seed=0)
    assert len(labels) == 8
    for r in labels.itertuples():
        prob = next(q for q in PROBLEMS if q.qid == r.qid)
        n_steps = r.completion.count("\n")
        assert len(r.targets) == len(r.truth) == n_steps
        assert r.targets[-1] == float(r.correct)  # the answer line: the solution's own correctness
        if r.sample_index % 2 == 0:
            assert r.correct and list(r.targets) == [1.0] * n_steps and all(r.truth)
            assert r.completion == prob.solution
        else:
            assert not r.correct and list(r.targets) == [0.0, 0.0] and list(r.truth) == [False, False]
    # rollouts are shared by identical prefixes: one prompt per distinct (question, prefix), n=3 each
    rollout_prompts = [p for call in backend.calls for p in call if p.count("\n") > 2]
    assert len(rollout_prompts) == len(set(rollout_prompts)) == (3 + 1) + (1 + 1)


def test_mc_labels_drop_solutions_without_an_answer_and_resume_from_cache(oracle, tmp_path):
    spec, backend = oracle
    cache = Cache(tmp_path)
    first = mc_labels(cache, spec, TASK, PROBLEMS, SamplingParams(n=2, max_new_tokens=40), rollouts=2, seed=1)
    calls = len(backend.calls)
    again = mc_labels(cache, spec, TASK, PROBLEMS, SamplingParams(n=2, max_new_tokens=40), rollouts=2, seed=1)
    assert len(backend.calls) == calls  # nothing sampled again
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(ValueError, match="rollouts"):
        mc_labels(cache, spec, TASK, PROBLEMS, SamplingParams(n=2), rollouts=0, seed=1)


def test_flipping_labels_flips_about_the_share_asked_and_nothing_else():
    import numpy as np
    import pandas as pd

    from ttc_utils.labels import flip_labels
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({"qid": range(500), "correct": True,
                           "targets": [rng.random(rng.integers(1, 8)) for _ in range(500)]})
    out = flip_labels(labels, 0.2, seed=3)
    before, after = np.concatenate(labels.targets.to_list()), np.concatenate(out.targets.to_list())
    flipped = ~np.isclose(before, after)
    assert 0.17 < flipped.mean() < 0.23 and np.allclose(after[flipped], 1 - before[flipped])
    assert out.correct.all() and flip_labels(labels, 0.2, seed=3).targets.map(list).equals(out.targets.map(list))
    assert np.allclose(np.concatenate(flip_labels(labels, 0.0, seed=3).targets.to_list()), before)
