"""Search bookkeeping with a deterministic fake policy and verifier: per-question beam pools, N/M kept and M
expanded each round, measured costs, lookahead scoring and cost, the configured aggregation."""
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ttc_utils.aggregation import aggregate
from ttc_utils.policy import SAMPLE_COLUMNS
from ttc_utils.search import SearchConfig, search
from ttc_utils.tasks.arithmetic import ArithmeticTask

TASK = ArithmeticTask()  # its prompt is the problem's `prompt`, its answers the 'A:' line


def problem(name: str, answer: int = 1):
    return SimpleNamespace(qid=name, prompt=f"Q:\n{name}\n", answer=answer)


def lines_of(prompt_and_completion: str) -> tuple[str, list[str]]:
    parts = prompt_and_completion.split("\n")
    return parts[1], [p for p in parts[2:] if p]


class FakePolicy:
    """Step t of question q is 'q-t-c-nonce' with c in {a, b} (temperature 0: always 'a', nonce 0); after
    `length` steps the answer line 'A:<number of a steps mod 10>'. Records every prompt and token count."""
    name, non_embedding_params = "fake", 0

    def __init__(self, length: int = 3):
        self.length, self.calls, self.tokens = length, [], Counter()

    def sample(self, prompts, params, seed):
        rng = np.random.default_rng(seed)
        rows = []
        self.calls.append((list(prompts), params))
        for i, p in enumerate(prompts):
            q, done = lines_of(p)
            for s in range(params.n):
                if len(done) < self.length:
                    c, nonce = ("a", 0) if params.temperature == 0 else ("ab"[rng.integers(2)], rng.integers(10**9))
                    step = f"{q}-{len(done)}-{c}-{nonce}\n"
                else:
                    step = f"A:{sum('-a-' in d for d in done) % 10}\n"
                self.tokens[q] += len(step)
                rows.append((i, s, step, len(step), "stop", len(p)))
        return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)

    sample_shared = sample


class FakeVerifier:
    """Step score 0.9 for an 'a' step, 0.2 for a 'b' step, 0.5 for the answer line; questions named 'low...'
    score 10x lower (a mixed pool would drop their beams). Records tokens per question."""
    name, non_embedding_params = "fake-verifier", 0

    def __init__(self):
        self.tokens, self.calls, self.completions = Counter(), Counter(), []

    @staticmethod
    def step_scores(question: str, completion: str) -> list[float]:
        scale = 0.1 if question.startswith("low") else 1.0
        return [scale * (0.9 if "-a-" in line else 0.5 if line.startswith("A:") else 0.2)
                for line in completion.split("\n") if line]

    def score(self, prompts, steps):
        out, tokens = [], []
        for p, c in zip(prompts, ("".join(s) for s in steps)):
            q = p.split("\n")[1]
            out.append(self.step_scores(q, c))
            tokens.append(len(p) + len(c))
            self.tokens[q] += len(p) + len(c)
            self.calls[q] += 1
            self.completions.append(c)
        return out, tokens


def run(cfg, problems, length=3, seed=0):
    policy, verifier = FakePolicy(length), FakeVerifier()
    records = {r["qid"]: r for r in search(policy, verifier, TASK, problems, cfg, seed)}
    return records, policy, verifier


def test_beam_keeps_n_over_m_and_expands_each_m_times_per_question():
    problems = [problem("high"), problem("low")]
    records, policy, _ = run(SearchConfig("beam", num_beams=8, beam_width=2), problems, length=3)
    sampling_calls = [prompts for prompts, params in policy.calls if params.temperature > 0]
    assert len(sampling_calls) == 4  # 3 steps + the answer line
    assert len(sampling_calls[0]) == 2 * 8 and set(sampling_calls[0]) == {p.prompt for p in problems}
    for prompts in sampling_calls[1:]:
        for p in problems:
            parents = Counter(x for x in prompts if x.startswith(p.prompt))
            assert len(parents) == 8 // 2  # N/M beams kept ...
            assert set(parents.values()) == {2}  # ... each expanded M times
    for p in problems:
        r = records[p.qid]
        assert r["num_candidates"] == 8 and len(r["candidates"]) == 8
        # every candidate of a question is built from that question's steps only (pools never mixed)
        assert all(line.startswith(f"{p.qid}-") for c in r["candidates"] for line in c.split("\n")[:-2])


def test_kept_beams_are_the_top_scored_candidates():
    records, policy, verifier = run(SearchConfig("beam", num_beams=8, beam_width=4), [problem("q")], length=2)
    first = [p for p, params in policy.calls if params.temperature > 0]
    round0 = [lines_of(p)[1] for p in first[0]]
    assert round0 == [[]] * 8
    kept = {lines_of(p)[1][-1] for p in first[1]}
    a_steps = [s for s in (verifier.completions[:8]) if "-a-" in s]
    assert 2 <= len(a_steps) < 8  # the seed gives both kinds of first step
    assert all("-a-" in k for k in kept)  # only 'a' steps (score 0.9) survive into round 1


def test_costs_equal_the_tokens_generated_and_scored():
    problems = [problem("x"), problem("y"), problem("lowz")]
    for cfg in (SearchConfig("beam", 4, 2), SearchConfig("beam", 4, 2, lookahead=2), SearchConfig("dvts", 8, 4)):
        records, policy, verifier = run(cfg, problems, length=4)
        for p in problems:
            r = records[p.qid]
            assert r["policy_tokens"] == policy.tokens[p.qid] > 0
            assert r["verifier_tokens"] == verifier.tokens[p.qid] > 0
            assert r["verifier_calls"] == verifier.calls[p.qid] == r["step_samples"]  # one per candidate step
            assert r["generations"] == cfg.num_beams * (cfg.lookahead + 1)


def test_lookahead_scores_the_rolled_out_path_and_costs_n_k_plus_one():
    cfg = SearchConfig("beam", num_beams=4, beam_width=2, lookahead=2)
    records, policy, verifier = run(cfg, [problem("q")], length=5)
    greedy = [p for p, params in policy.calls if params.temperature == 0]
    assert greedy, "lookahead must roll out at temperature 0"
    r = records["q"]
    assert r["rollout_steps"] > 0 and r["generations"] == 4 * 3
    # rollouts are scored: some scored completions end in a greedy step (nonce 0) beyond a sampled one
    assert any(c.rstrip("\n").endswith("-a-0") and c.count("\n") >= 2 for c in verifier.completions)
    # and dropped afterwards: finished candidates are sampled paths, each scored on its own text
    for text, score in zip(r["candidates"], r["scores"]):
        assert score == pytest.approx(aggregate(FakeVerifier.step_scores("q", text), "last"))


@pytest.mark.parametrize("how", ["last", "min", "prod"])
def test_the_configured_aggregation_ranks_the_candidates(how):
    records, _, _ = run(SearchConfig("beam", 4, 2, aggregation=how), [problem("q")], length=3)
    r = records["q"]
    for text, score in zip(r["candidates"], r["scores"]):
        assert score == pytest.approx(aggregate(FakeVerifier.step_scores("q", text), how))


def test_dvts_runs_independent_subtrees_of_width_m():
    cfg = SearchConfig("dvts", num_beams=8, beam_width=2)
    records, policy, _ = run(cfg, [problem("q")], length=3)
    r = records["q"]
    assert Counter(r["subtrees"]) == {s: 2 for s in range(4)}
    for prompts, params in policy.calls[1:]:
        if params.temperature > 0:
            assert set(Counter(prompts).values()) == {2} and len(set(prompts)) == 4  # one beam per subtree


def test_finished_beams_leave_the_search_and_free_their_slots():
    # question 'a' finishes after 1 step, 'b' after 3: 'a' stops spending while 'b' goes on
    policy, verifier = FakePolicy(1), FakeVerifier()
    short = search(policy, verifier, TASK, [problem("a")], SearchConfig("beam", 4, 2), seed=0)[0]
    assert short["rounds"] == 2 and short["num_candidates"] == 4
    records, _, _ = run(SearchConfig("beam", 4, 2), [problem("b")], length=3)
    assert records["b"]["rounds"] == 4 and records["b"]["step_samples"] == 4 * 4


def test_the_round_limit_finishes_every_beam():
    records, _, _ = run(SearchConfig("beam", 4, 2, max_rounds=2), [problem("q")], length=10)
    assert records["q"]["rounds"] == 2 and records["q"]["num_candidates"] == 4
    assert all(a is None for a in records["q"]["answers"])  # no answer line was reached: no answer


def test_selection_is_best_of_n_weighted_over_the_final_candidates():
    checked = set()
    for seed, answer in [(s, a) for s in range(6) for a in (2, 3)]:
        records, _, _ = run(SearchConfig("beam", 8, 4), [problem("q", answer=answer)], length=3, seed=seed)
        r = records["q"]
        sums = Counter()
        for a, s in zip(r["answers"], r["scores"]):
            sums[a] += s
        ranked = sorted(sums.values(), reverse=True)
        if len(ranked) > 1 and ranked[0] == ranked[1]:
            continue  # a tie is broken at random
        assert r["correct"] == (max(sums, key=sums.get) == str(answer))
        checked.add(r["correct"])
    assert checked == {True, False}  # both outcomes were exercised


def test_same_seed_same_search():
    a, _, _ = run(SearchConfig("beam", 8, 2, lookahead=1), [problem("q"), problem("r")], seed=5)
    b, _, _ = run(SearchConfig("beam", 8, 2, lookahead=1), [problem("q"), problem("r")], seed=5)
    assert a == b


@pytest.mark.parametrize("kwargs,name", [
    ({"num_beams": 8, "beam_width": 3}, "beam_width"),
    ({"lookahead": -1}, "lookahead"),
    ({"aggregation": "mean"}, "aggregation"),
    ({"method": "mcts"}, "method"),
    ({"num_beams": 0}, "num_beams"),
])
def test_bad_search_settings_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SearchConfig(**kwargs)


def test_run_search_is_cached_per_chunk_and_resumes(tiny_policy_dir, tiny_verifier_dir, tmp_path, monkeypatch):
    """Real (tiny, random) models through the cached runner: a lost chunk is recomputed alone, identically."""
    import ttc_utils.search as search_mod
    from ttc_utils.cache import Cache
    from ttc_utils.model_spec import ModelSpec
    from ttc_utils.search import run_search
    from ttc_utils.world import WorldConfig, generate

    problems = generate(WorldConfig(max_steps=3), 6, "test", seed=0)
    cfg = SearchConfig("beam", 4, 2, max_step_tokens=8, max_completion_tokens=30)
    cache = Cache(tmp_path)
    specs = ModelSpec(str(tiny_policy_dir)), ModelSpec(str(tiny_verifier_dir))
    first = run_search(cache, *specs, TASK, problems, cfg, seed=0, sequences_per_chunk=8, progress=False)
    assert len(first) == 6 and (first.num_candidates == 4).all() and (first.policy_tokens > 0).all()
    chunks = sorted(tmp_path.glob("search-*/chunk-*.parquet"))
    assert len(chunks) == 3  # 2 questions x 4 beams per chunk
    chunks[1].unlink()
    calls = []
    real = search_mod.search
    monkeypatch.setattr(search_mod, "search", lambda *a, **k: calls.append(len(a[3])) or real(*a, **k))
    again = run_search(cache, *specs, TASK, problems, cfg, seed=0, sequences_per_chunk=8, progress=False)
    assert calls == [2]  # only the lost chunk's two questions were searched again
    pd.testing.assert_frame_equal(first, again)
