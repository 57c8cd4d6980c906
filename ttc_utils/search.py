"""Search against a process reward model (paper §5): beam search, lookahead search and DVTS.

All three share one loop, run for many questions at once (one batched policy call per round), with one
candidate pool per question and subtree:

- round 0 samples G first steps per subtree (G = N for beam search, G = M for each of DVTS's N/M subtrees);
- each step's candidate is scored by the verifier, after rolling out up to k more steps at temperature 0
  for lookahead search (the score is the aggregated PRM value of the rolled-out path; the rollout is
  then dropped);
- candidates that reach the final-answer line (or the round limit, or the length cap) are finished;
- of the rest, the top ceil(r/M) are kept, where r = G minus the subtree's finished candidates, and are
  expanded r times in all (M each when nothing has finished: N/M beams kept, M expansions each);
- the N finished candidates are then reduced to one answer by best-of-N weighted.

Costs are measured, not assumed: policy tokens (sampled steps and rollouts: decode), prefill tokens (each distinct
prompt the policy read per call, once: the shared-prefill sampler reads a kept beam once for its M expansions),
verifier tokens and verifier calls (one per scored candidate, every round), sampled steps, rollout steps, and
generations as the paper counts them, N·(k+1).
The task says where a step ends (its delimiter is the stop string) and which step is final.

    cfg = SearchConfig(method="beam", num_beams=16, beam_width=4, lookahead=0)
    result = run_search(cache, ModelSpec(policy_path), ModelSpec(prm_folder), task, problems, cfg, seed=0)
    result[["qid", "correct", "policy_tokens", "generations"]]
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .aggregation import aggregate, check_aggregation
from .cache import Cache, content_key
from .checks import check, check_choice, check_int
from .estimators import select
from .policy import SamplingParams, derive_seed
from .registry import Lazy, kept_policy, kept_verifier
from .sampling import answer_text
from .verifier import verifier_prompt

METHODS = ("beam", "dvts")


@dataclass(frozen=True)
class SearchConfig:
    method: str = "beam"  # "beam" (lookahead search is beam with lookahead > 0) or "dvts"
    num_beams: int = 16  # N: the generation budget (candidates per question)
    beam_width: int = 4  # M: expansions per kept beam; must divide N
    lookahead: int = 0  # k: greedy steps rolled out before scoring a candidate step
    max_rounds: int = 40  # rounds before every beam is declared finished (the paper: 40)
    aggregation: str = "last"  # how the PRM's step scores rank candidates: last, min or prod
    temperature: float = 1.0  # sampling temperature of candidate steps
    max_step_tokens: int = 32  # cap on one step's tokens
    max_completion_tokens: int = 160  # a beam longer than this is finished (garbage that never answers)

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        for name in ("num_beams", "beam_width", "max_rounds", "max_step_tokens", "max_completion_tokens"):
            check_int(name, getattr(self, name))
        check(self.num_beams % self.beam_width == 0, "beam_width", self.beam_width,
              f"a divisor of num_beams={self.num_beams}")
        check_int("lookahead", self.lookahead, lo=0)
        check_aggregation(self.aggregation)
        check(isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature) and self.temperature >= 0,
              "temperature", self.temperature, "a finite float >= 0")

    @property
    def subtrees(self) -> int:
        return self.num_beams // self.beam_width if self.method == "dvts" else 1

    @property
    def generations(self) -> int:
        """The paper's cost: N generations, N·(k+1) with k lookahead steps."""
        return self.num_beams * (self.lookahead + 1)


@dataclass
class Beam:
    text: str  # the completion so far (steps joined with their newlines)
    tokens: int  # tokens of `text`
    subtree: int
    score: float = 0.0
    finished: bool = False


@dataclass
class _Question:
    problem: object  # a task's problem
    beams: list[Beam] = field(default_factory=list)  # this round's candidates
    finished: list[Beam] = field(default_factory=list)
    costs: dict = field(default_factory=lambda: {"policy_tokens": 0, "prefill_tokens": 0, "verifier_tokens": 0,
                                                  "verifier_calls": 0, "step_samples": 0, "rollout_steps": 0,
                                                  "rounds": 0})


def _count_prefill_shared(questions: list, prompts: list[str], out: pd.DataFrame) -> None:
    """Add each distinct prompt's tokens once (as the shared-prefill sampler reads it) to the question that sent it
    (`questions[i]` sent `prompts[i]`, `out`'s prompt i)."""
    seen = set()
    for i, n in zip(out.prompt_index, out.prompt_tokens):
        if prompts[i] not in seen:
            seen.add(prompts[i])
            questions[i].costs["prefill_tokens"] += int(n)


def _is_final(task, step: str, reason: str) -> bool:
    """A step ends the solution if it states the answer or the policy stopped without a step boundary."""
    return task.is_final_step(step) or not step.endswith(task.step_delimiter) or reason == "length"


def search(policy, verifier, task, problems: list, cfg: SearchConfig, seed: int) -> list[dict]:
    """Run `cfg`'s search on every problem; one record per problem (see `run_search` for its fields).

    `policy` has the `policy.Policy` methods (its shared-prefill sampler serves every step: one prompt is
    expanded M times), `verifier` the `verifier.Verifier` method; both may be fakes.
    """
    qs = [_Question(p) for p in problems]
    stop = (task.step_delimiter,)
    step_params = SamplingParams(n=1, temperature=cfg.temperature, max_new_tokens=cfg.max_step_tokens, stop=stop)
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.max_step_tokens, stop=stop)
    g = cfg.num_beams // cfg.subtrees
    # round 0 expands the empty beam of every subtree G times
    expansions = [(q, Beam("", 0, s), g) for q in qs for s in range(cfg.subtrees)]
    for rnd in range(cfg.max_rounds):
        if not expansions:
            break
        jobs = [(q, parent) for q, parent, count in expansions for _ in range(count)]
        prompts = [task.prompt(q.problem) + parent.text for q, parent in jobs]
        out = policy.sample_shared(prompts, step_params, seed=derive_seed(seed, "round", rnd))
        _count_prefill_shared([q for q, _ in jobs], prompts, out)
        last_round = rnd == cfg.max_rounds - 1
        new: list[tuple[_Question, Beam]] = []
        for (q, parent), step, n_tok, reason in zip(jobs, out.text, out.num_tokens, out.finish_reason):
            q.costs["policy_tokens"] += int(n_tok)
            q.costs["step_samples"] += 1
            beam = Beam(parent.text + step, parent.tokens + int(n_tok), parent.subtree)
            beam.finished = (_is_final(task, step, reason) or last_round or beam.tokens >= cfg.max_completion_tokens)
            new.append((q, beam))
        for q in {id(q): q for q, _, _ in expansions}.values():
            q.costs["rounds"] += 1
        _score(policy, verifier, task, new, cfg, greedy)
        expansions = _select(qs, new, cfg, g)
    return [_record(task, q, cfg, seed) for q in qs]


def _score(policy, verifier, task, new: list[tuple[_Question, Beam]], cfg: SearchConfig, greedy: SamplingParams):
    """Set each new beam's score: the aggregated PRM scores of its path, rolled out k greedy steps first."""
    paths = [b.text for _, b in new]
    if cfg.lookahead:
        open_ = [i for i, (_, b) in enumerate(new) if not b.finished]
        done = {i: False for i in open_}
        for _ in range(cfg.lookahead):
            todo = [i for i in open_ if not done[i]]
            if not todo:
                break
            prompts = [task.prompt(new[i][0].problem) + paths[i] for i in todo]
            out = policy.sample_shared(prompts, greedy, seed=0)
            _count_prefill_shared([new[i][0] for i in todo], prompts, out)
            for i, step, n_tok, reason in zip(todo, out.text, out.num_tokens, out.finish_reason):
                new[i][0].costs["policy_tokens"] += int(n_tok)
                new[i][0].costs["rollout_steps"] += 1
                paths[i] += step
                done[i] = _is_final(task, step, reason)
    step_scores, tokens = verifier.score([verifier_prompt(verifier, task, q.problem) for q, _ in new],
                                         [task.split_steps(task.through_answer(p)) for p in paths])
    for (q, beam), s, t in zip(new, step_scores, tokens):
        q.costs["verifier_tokens"] += int(t)
        q.costs["verifier_calls"] += 1
        beam.score = aggregate(s, cfg.aggregation)


def _select(qs: list[_Question], new: list[tuple[_Question, Beam]], cfg: SearchConfig, g: int):
    """Move finished beams to their question's pool; keep the top ceil(r/M) open beams of every subtree
    and return the expansions (question, parent, count) of the next round (counts sum to r)."""
    open_by: dict[tuple[int, int], list[Beam]] = {}
    for q, beam in new:
        if beam.finished:
            q.finished.append(beam)
        else:
            open_by.setdefault((id(q), beam.subtree), []).append(beam)
    expansions = []
    for q in qs:
        finished = Counter(b.subtree for b in q.finished)
        for s in range(cfg.subtrees):
            beams = open_by.get((id(q), s), [])
            r = g - finished[s]
            if r <= 0 or not beams:
                continue
            k = min(len(beams), math.ceil(r / cfg.beam_width))
            # stable sort: equal scores keep sampling order, so the result depends only on the seed
            kept = sorted(beams, key=lambda b: -b.score)[:k]
            counts = [r // k + (1 if i < r % k else 0) for i in range(k)]
            expansions += [(q, b, c) for b, c in zip(kept, counts)]
    return expansions


def _record(task, q: _Question, cfg: SearchConfig, seed: int) -> dict:
    texts = [b.text for b in q.finished]
    answers = [answer_text(task.extract_answer(t)) for t in texts]
    correct = [task.is_correct(q.problem, t) for t in texts]
    scores = [b.score for b in q.finished]
    rng = np.random.default_rng(derive_seed(seed, "select", q.problem.qid))
    chosen = select("best_of_n_weighted", pd.Series(answers, dtype=object), correct, np.array(scores), rng)
    return {"qid": q.problem.qid, "correct": bool(chosen), "num_candidates": len(texts),
            "any_correct": bool(any(correct)), "candidates": texts, "answers": answers, "scores": scores,
            "subtrees": [b.subtree for b in q.finished], **q.costs, "generations": cfg.generations}


SEQUENCES_PER_CHUNK = 8192


def questions_per_chunk(cfg: SearchConfig, sequences_per_chunk: int = SEQUENCES_PER_CHUNK) -> int:
    return max(1, sequences_per_chunk // cfg.num_beams)


def search_chunks(problems: list, cfg: SearchConfig, sequences_per_chunk: int = SEQUENCES_PER_CHUNK) -> list[list]:
    """The questions of `run_search` cut into its cached chunks (about `sequences_per_chunk` beams each)."""
    per_chunk = questions_per_chunk(cfg, sequences_per_chunk)
    return [problems[i:i + per_chunk] for i in range(0, len(problems), per_chunk)]


def _run_entry(policy, verifier, task, problems: list, cfg: SearchConfig, seed: int, sequences_per_chunk: int,
               batch_size: int) -> tuple[str, dict]:
    """(name, key) of a search run's cache entry: everything that changes its records."""
    key = {"policy": policy.key(), "verifier": verifier.key(), "task": task.key, "search": asdict(cfg),
           "questions": content_key([p.qid for p in problems]), "seed": seed,
           "per_chunk": questions_per_chunk(cfg, sequences_per_chunk), "batch_size": batch_size}
    return f"search-{cfg.method}-N{cfg.num_beams}-M{cfg.beam_width}-k{cfg.lookahead}", key


def pending_search_chunks(cache: Cache, policy, verifier, task, problems: list, cfg: SearchConfig, seed: int,
                          sequences_per_chunk: int = SEQUENCES_PER_CHUNK, batch_size: int = 512) -> list[int]:
    """The chunks of `run_search` with these arguments that the cache does not hold yet."""
    name, key = _run_entry(policy, verifier, task, problems, cfg, seed, sequences_per_chunk, batch_size)
    return cache.missing(name, key, len(search_chunks(problems, cfg, sequences_per_chunk)))


def run_search(cache: Cache, policy, verifier, task, problems: list, cfg: SearchConfig, seed: int,
               sequences_per_chunk: int = SEQUENCES_PER_CHUNK, batch_size: int = 512, progress: bool = True,
               only: list[int] | None = None) -> pd.DataFrame:
    """`search` on every problem with the `ModelSpec`s `policy` and `verifier`, cached in chunks of questions
    (about `sequences_per_chunk` beams each), so a killed run resumes at the last unfinished chunk. One row per
    question: correct (best-of-N weighted over the finished candidates), candidates, answers, scores,
    policy_tokens, prefill_tokens, verifier_tokens, verifier_calls, step_samples, rollout_steps, rounds,
    generations. With `only`, just those chunks are searched and returned (a shard's share, `sampling.shard_chunks`;
    a worker's, `pending_search_chunks`)."""
    chunks = search_chunks(problems, cfg, sequences_per_chunk)
    name, key = _run_entry(policy, verifier, task, problems, cfg, seed, sequences_per_chunk, batch_size)
    models = Lazy(lambda: (kept_policy(policy, batch_size=batch_size, progress=False),
                           kept_verifier(verifier, batch_size=batch_size, progress=False)))

    def compute(i: int) -> pd.DataFrame:
        records = search(*models.get(), task, chunks[i], cfg, derive_seed(seed, "chunk", i))
        return pd.DataFrame(records).assign(method=cfg.method, num_beams=cfg.num_beams, beam_width=cfg.beam_width,
                                            lookahead=cfg.lookahead, aggregation=cfg.aggregation, seed=seed)

    return cache.chunked(name, key, len(chunks), compute, progress=progress, only=only)
