"""A new policy backend and a new verifier adapter are one module plus registration (tests/fake_backend.py): the
pool sampler, Monte Carlo labels and beam search run end to end on them, with no transformers model at all."""
import fake_backend
import pytest

from ttc_utils.cache import Cache
from ttc_utils.labels import mc_labels
from ttc_utils.model_spec import ModelSpec
from ttc_utils.policy import SamplingParams
from ttc_utils.registry import load_policy, load_verifier
from ttc_utils.sampling import sample_problems
from ttc_utils.search import SearchConfig, run_search
from ttc_utils.tasks.arithmetic import ArithmeticTask
from ttc_utils.world import make_problem

PROBLEMS = [make_problem(3, [("+", 4), ("*", 2), ("-", 1)], 10), make_problem(5, [("*", 3)], 10),
            make_problem(2, [("-", 7), ("+", 1)], 10)]
TASK = ArithmeticTask()


def test_the_fake_backend_runs_pool_labels_and_beam_search_end_to_end(tmp_path):
    policy, verifier = fake_backend.register(PROBLEMS), fake_backend.register_verifier()
    cache = Cache(tmp_path)
    pool = sample_problems(cache, policy, TASK, PROBLEMS, SamplingParams(n=4, max_new_tokens=40), seed=0)
    assert len(pool) == 12 and pool.correct.tolist() == [True, False, True, False] * 3
    assert pool.answer.notna().all() and set(pool.num_steps) == {1, 2, 3}

    labels = mc_labels(cache, policy, TASK, PROBLEMS, SamplingParams(n=2, max_new_tokens=40), rollouts=2, seed=0)
    right = labels[labels.correct]
    assert len(labels) == 6 and all(list(t) == [1.0] * len(t) for t in right.targets)

    cfg = SearchConfig("beam", num_beams=4, beam_width=2, max_step_tokens=16, max_completion_tokens=60)
    runs = run_search(cache, policy, verifier, TASK, PROBLEMS, cfg, seed=0, progress=False)
    assert runs.correct.all()  # the oracle verifier keeps only beams on the reference path
    assert (runs.verifier_calls == runs.step_samples).all() and (runs.policy_tokens > 0).all()
    assert all(len(c) == 4 for c in runs.candidates)


def test_an_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="backend='nope'"):
        load_policy(ModelSpec("org/model", backend="nope", revision="0" * 40, param="policy_path"))
    with pytest.raises(ValueError, match="backend='nope'"):
        load_verifier(ModelSpec("org/model", backend="nope", revision="0" * 40, param="verifier_path"))
