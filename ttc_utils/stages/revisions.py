"""Notebook 03's stages: the revision model from the base policy's trajectories, its chains on test questions, the
revision ORM (with and without the previous attempts in context), verifier scores of every attempt, and the
notebook's results table.

    model, traj = revision_model(cfg, policy)          # trajectories from the base policy's samples, fine-tuned
    chains = all_test_chains(cfg, model)               # per sampling seed, one pool of chains for every (S, P)
    control = control_rows(cfg, model, chains, bins)   # pass@1 at steps 2, 4, 8 after another question's attempts
    orm = revision_orm(cfg, model, base, history=True) # an ORM trained on the revision model's own chains
    scored = score_chains(cfg, orm, chains, "revision ORM", history=True)
"""
from __future__ import annotations

from functools import partial

import pandas as pd
from tqdm.auto import tqdm

from ..cache import content_key
from ..chains import chains_cached, control_chains, pool_lengths, sample_chains
from ..findings import Arm, Claim, decide
from ..model_spec import ModelSpec
from ..policy import SamplingParams, derive_seed
from ..results import chain_results
from ..revision_training import CONTEXTS, RevisionTrainConfig, parting_probs, train_revision_model
from ..revisions import (
    MAX_ATTEMPTS,
    chain_prompts,
    context_effect,
    on_reference,
    orm_labels,
    parting_pairs,
    trajectories,
)
from ..sampling import sample_problems
from ..scoring import score_solutions
from ..verifier_training import train_verifier
from ..workers import run_jobs
from . import common
from .prm_search import verifier_train_config

# attempts per chain of the revision model on the ORM's training questions (4 chains each)
ORM_CHAIN_LENGTH = 8
# revision steps whose attempts are sampled again after another question's attempts (`control_rows`)
CONTROL_STEPS = (2, 4, 8)
CONTROL = ", another question's attempts"  # the suffix of the control's settings
# solutions per batch when a verifier reads the previous attempts: those prompts are ~10x the question alone, and
# batches of the default 512 rows (~100k tokens) spill out of the CPU's caches; 64 scored a seed's history prompts
# 1.6x faster on 2 cores (features equal to 1e-4), while the question alone gains nothing below 512
HISTORY_SCORE_BATCH = 64


def train_questions(cfg, name: str, n: int) -> list:
    """`n` training-split questions, drawn with a seed of their own (`name`) so each use has its own set."""
    return common.task(cfg).problems("train", n, derive_seed(cfg.seed, name) % 2**31)


def test_subset(cfg) -> list:
    """The test questions the chains run on: the first `revision_test_questions` of the test split."""
    return common.test_questions(cfg)[:cfg.revision_test_questions]


def revision_trajectories(cfg, policy: ModelSpec) -> tuple[list, pd.DataFrame]:
    """(the training questions, their revision trajectories): `revision_samples` samples of `policy` per question at
    `revision_temperature`, made into trajectories."""
    task, problems = common.task(cfg), train_questions(cfg, "revision-trajectories", cfg.revision_questions)
    params = SamplingParams(n=cfg.revision_samples, temperature=cfg.revision_temperature,
                            max_new_tokens=common.max_new_tokens(cfg))
    samples = sample_problems(cfg.cache(), policy, task, problems, params, cfg.seed, name="revision-samples")
    return problems, trajectories(task, problems, samples, MAX_ATTEMPTS, cfg.seed)


def revision_model(cfg, policy: ModelSpec) -> tuple[ModelSpec, pd.DataFrame]:
    """(the revision model, its trajectories): `revision_trajectories`, fine-tuned on from `policy`."""
    task, (problems, traj) = common.task(cfg), revision_trajectories(cfg, policy)
    train_cfg = RevisionTrainConfig(learning_rate=cfg.revision_learning_rate, epochs=cfg.revision_epochs,
                                    seed=cfg.seed)
    spec = train_revision_model(cfg.cache(), policy, task, problems, traj, train_cfg)
    return ModelSpec(spec.path, device=cfg.device, param="the revision model"), traj


def context_reading(cfg, model: ModelSpec, pool: pd.DataFrame, per_question: int = 4
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per pair and context, the probabilities of `revision_training.parting_probs` and `on_reference`; findings):
    does the revision model read a wrong attempt in its context? Pairs of a correct and the closest wrong sample from
    the pool (notebook 01's) on the chain questions; at the token where they part, the findings compare the wrong
    token's probability (and the right one's) with the wrong attempt in context and with another question's attempt
    in context, per question, with a paired bootstrap CI. The other question's attempt is the control: a model that is
    better or worse with any attempt before it (a context it never saw in pretraining, say) moves there too, so only
    the difference between the two is reading. Two findings on every pair, and where the task knows each step's truth,
    two more on the pairs whose right attempt is still on the reference path where they part
    (`revisions.on_reference`): in the others the "right" token is a lucky slip, not the computation a reader of the
    context should prefer. No sampling: three forward passes per pair, cached."""
    task, problems = common.task(cfg), test_subset(cfg)
    pairs = parting_pairs(pool[pool.qid.isin({p.qid for p in problems})], per_question, seed=cfg.seed)
    key = {"model": model.key(), "task": task.key, "pairs": content_key(pairs.to_dict("list")),
           "contexts": list(CONTEXTS)}
    probs = cfg.cache().table("parting-probs", key, lambda: parting_probs(model, task, problems, pairs))
    by_qid = {p.qid: p for p in problems}
    clean = [on_reference(task, by_qid[q], w, r) for q, w, r in zip(pairs.qid, pairs.wrong, pairs.right)]
    probs = probs.assign(on_reference=[clean[i] for i in probs.pair])
    subsets = {"every pair": probs}
    if any(c is not None for c in clean):
        subsets["pairs on the reference path"] = probs[probs.on_reference.astype(bool)]
    rows = pd.concat([part.assign(setting=part.context.map(lambda c: f"{col} | {c} | {name}"), correct=part[col])
                      for name, part in subsets.items() for col in ("p_wrong", "p_right")],
                     ignore_index=True)  # findings read `correct` per setting
    control = "unrelated attempt" if (probs.context == "unrelated attempt").any() else "none"
    other = "another question's" if control != "none" else "no"
    where = f"where a right attempt parts from the wrong one in its context than with {other} attempt in context"
    claims = []
    for name in subsets:
        of = "" if name == "every pair" else (", on the pairs whose right attempt is still on the reference path "
                                              "there (no lucky right answer)")
        claims += [Claim(f"the revision model gives the wrong attempt's token less probability {where}{of}",
                         Arm(f"p_wrong | {control} | {name}"), Arm(f"p_wrong | wrong attempt | {name}")),
                   Claim(f"the revision model gives the right attempt's token more probability {where}{of}",
                         Arm(f"p_right | wrong attempt | {name}"), Arm(f"p_right | {control} | {name}"))]
    return probs, decide(rows, claims, seed=cfg.seed)


def chain_lengths(cfg) -> list[int]:
    """Attempts per chain of the test pool: every (S, P) of the sweep, and `revision_chains` chains of
    `revision_steps` attempts for pass@1 per step."""
    return pool_lengths(cfg.revision_shapes(), cfg.revision_chains, cfg.revision_steps)


def _chain_params(cfg) -> SamplingParams:
    return SamplingParams(temperature=cfg.temperature, max_new_tokens=common.max_new_tokens(cfg))


def _chains(cfg, model: ModelSpec, problems: list, lengths: list[int], seed: int, progress: bool = True
            ) -> pd.DataFrame:
    chains = sample_chains(cfg.cache(), model, common.task(cfg), problems, lengths, _chain_params(cfg), seed,
                           context=cfg.revision_context, progress=progress)
    return chains.assign(sample_index=chains.chain * (max(lengths) + 1) + chains.step)


def _test_seed(cfg, seed: int) -> int:
    return derive_seed(cfg.seed, "chains", seed) % 2**31


def test_chains(cfg, model: ModelSpec, seed: int, progress: bool = True) -> pd.DataFrame:
    """The test pool of chains (`chain_lengths`) for one sampling seed."""
    return _chains(cfg, model, test_subset(cfg), chain_lengths(cfg), _test_seed(cfg, seed), progress)


def all_test_chains(cfg, model: ModelSpec, progress: bool = True) -> pd.DataFrame:
    """The test pools of every sampling seed (`revision_seeds`), one table, under one progress bar. Seeds not cached
    yet are sampled side by side by the workers, one torch thread each (the same samples as in one process), as many
    at a time as there are workers; a seed left over runs here on every thread, since one seed alone on one thread is
    slower. Measured on 2 cores (default profile, AVX2): two seeds side by side 805 s, one seed on two threads 530 s."""
    pending = [s for s in range(cfg.revision_seeds)
               if not chains_cached(cfg.cache(), model, common.task(cfg), test_subset(cfg), chain_lengths(cfg),
                                    _chain_params(cfg), _test_seed(cfg, s), context=cfg.revision_context)]
    workers = cfg.cpu_workers()
    side_by_side = len(pending) // workers * workers if workers > 1 else 0
    with tqdm(total=len(pending), desc=f"revision chains ({len(test_subset(cfg))} questions)",
              disable=not (pending and progress) or None) as bar:
        run_jobs([partial(test_chains, cfg, model, s, False) for s in pending[:side_by_side]], workers, progress=False)
        bar.update(side_by_side)
        for s in pending[side_by_side:]:
            test_chains(cfg, model, s, progress=False)
            bar.update(1)
    return pd.concat([test_chains(cfg, model, s, progress=False) for s in range(cfg.revision_seeds)],
                     ignore_index=True)


def revision_orm(cfg, model: ModelSpec, base: ModelSpec, history: bool) -> ModelSpec:
    """An ORM trained on the revision model's own chains on `orm_questions` training questions (4 chains of
    `ORM_CHAIN_LENGTH` attempts), over `base` with the PRM's recipe; with `history`, it reads each attempt after the
    attempts its chain showed before it."""
    task, problems = common.task(cfg), train_questions(cfg, "revision-orm", cfg.orm_questions)
    chains = _chains(cfg, model, problems, [ORM_CHAIN_LENGTH] * 4, cfg.seed)
    labels = orm_labels(task, problems, chains, cfg.revision_context, history)
    path = train_verifier(cfg.cache(), base, task, labels, "orm", verifier_train_config(cfg))
    return ModelSpec(path, backend="auto", device=base.device, param="the revision ORM")


def score_chains(cfg, verifier: ModelSpec, chains: pd.DataFrame, name: str, history: bool) -> pd.DataFrame:
    """`chains` with the verifier's score of every attempt (`score`: its last step's, an outcome score) and its tokens;
    with `history`, the verifier reads each attempt after the attempts before it (as the revision model saw them)."""
    task, problems = common.task(cfg), test_subset(cfg)
    frames = []
    for _, c in chains.groupby("seed", sort=False):  # one cached table per sampling seed
        samples = c.assign(prompt=chain_prompts(task, problems, c, cfg.revision_context)) if history else c
        scores = score_solutions(cfg.cache(), verifier, task, problems, samples, name=f"scores-{name}",
                                 **({"batch_size": HISTORY_SCORE_BATCH} if history else {}))
        frames.append(c.merge(scores[["qid", "sample_index", "last", "verifier_tokens"]], on=["qid", "sample_index"],
                              validate="one_to_one").rename(columns={"last": "score"}))
    return pd.concat(frames, ignore_index=True)


def verifiers(cfg, model: ModelSpec, policy: ModelSpec, prm: ModelSpec) -> dict[str, tuple[ModelSpec, bool]]:
    """The notebook's three verifiers, setting name -> (model, reads the previous attempts): the revision ORM on the
    policy's weights with and without history, and notebook 02's PRM."""
    return {"revision ORM": (revision_orm(cfg, model, policy, history=True), True),
            "revision ORM, no history": (revision_orm(cfg, model, policy, history=False), False),
            "PRM": (prm, False)}


def score_all(cfg, verifiers: dict[str, tuple[ModelSpec, bool]], chains: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """`chains` scored by each of `verifiers` (`score_chains`), setting name -> scored chains."""
    return {name: score_chains(cfg, v, chains, name.replace(" ", "-").replace(",", ""), history)
            for name, (v, history) in verifiers.items()}


def results(cfg, chains_by_verifier: dict[str, pd.DataFrame], bins: pd.DataFrame, params: dict[str, int]
            ) -> pd.DataFrame:
    """The notebook's results table (cached): every (S, P) of the sweep by majority (over all attempts) and by
    hierarchical best-of-N weighted with each verifier (`chains_by_verifier`: setting name -> scored chains of every
    seed); `params`: non-embedding parameters of "policy" and of each verifier setting. Extra columns: sequential,
    parallel."""
    shapes, first = cfg.revision_shapes(), next(iter(chains_by_verifier))  # majority reads no score: once

    def compute() -> pd.DataFrame:
        frames = []
        for name, chains in chains_by_verifier.items():
            for seed, c in chains.groupby("seed"):
                frames.append(chain_results(c, "best_of_n_weighted", shapes, seed, name, "score", bins,
                                            params["policy"], params[name]))
                if name == first:
                    frames.append(chain_results(c, "majority", shapes, seed, "majority", bins=bins,
                                                policy_params=params["policy"]))
        return _seeds_in_order(pd.concat(frames, ignore_index=True))

    key = {"config": cfg.cache_key(), "params": params, "bins": bins.bin.tolist(),
           "inputs": {name: pd.util.hash_pandas_object(c[["seed", "qid", "chain", "step", "answer", "correct", "score",
                                                          "verifier_tokens"]], index=False).sum().item()
                      for name, c in chains_by_verifier.items()}}
    return cfg.cache().table("results-03_revisions", key, compute)


def _seeds_in_order(rows: pd.DataFrame) -> pd.DataFrame:
    """Sampling seeds renamed 0, 1, 2 ... in their order, as the other notebooks' seeds."""
    order = {s: i for i, s in enumerate(sorted(rows.seed.unique()))}
    return rows.assign(seed=rows.seed.map(order))


def step_rows(chains: pd.DataFrame, steps: list[int], chains_per_question: int, bins: pd.DataFrame) -> pd.DataFrame:
    """Results-table rows of pass@1 at revision step t (setting "pass@1 at step t", budget 1): each question's
    accuracy over its first `chains_per_question` chains' t-th attempts, one row per question and seed (and `step`)."""
    part = chains[chains.step.isin(steps) & (chains.chain < chains_per_question)]
    out = part.groupby(["seed", "step", "qid"], as_index=False).agg(
        correct=("correct", "mean"), policy_tokens=("num_tokens", "mean"), prefill_tokens=("prompt_tokens", "mean"))
    out = out.assign(method="revision pass@1", setting=[f"pass@1 at step {t}" for t in out.step], budget=1,
                     generations=1, verifier_tokens=0, verifier_calls=0, flops=float("nan"),
                     bin=out.qid.map(bins.set_index("qid").bin), sequential=1, parallel=1)
    return _seeds_in_order(out)


def control_steps(cfg) -> list[int]:
    """The steps of `CONTROL_STEPS` that the pass@1 chains reach."""
    return [t for t in CONTROL_STEPS if t <= cfg.revision_steps]


def control_rows(cfg, model: ModelSpec, chains: pd.DataFrame, bins: pd.DataFrame) -> pd.DataFrame:
    """Results-table rows of the control (`chains.control_chains`) on the first `revision_chains` chains of every
    sampling seed: setting "pass@1 at step t, another question's attempts" beside `step_rows`'s "pass@1 at step t",
    same questions, chains and seeds."""
    task, problems, steps = common.task(cfg), test_subset(cfg), control_steps(cfg)
    frames = [control_chains(cfg.cache(), model, task, problems, c, steps, cfg.revision_chains, _chain_params(cfg),
                             seed, context=cfg.revision_context)
              for seed, c in chains.groupby("seed", sort=True)]
    rows = step_rows(pd.concat(frames, ignore_index=True), steps, cfg.revision_chains, bins)
    return rows.assign(setting=[f"{s}{CONTROL}" for s in rows.setting])


def turned_wrong(chains: pd.DataFrame) -> float:
    """Share of correct attempts whose next revision in the same chain is wrong (the paper: about 38%)."""
    after = context_effect(chains).set_index("previous attempt").accuracy
    return float(1 - after["after a correct attempt"]) if "after a correct attempt" in after else float("nan")


def claims(cfg, verifier: str, steps: tuple[int, int] = (1, 8)) -> list:
    """The paper's revision findings (§6) as paired comparisons on the results table, at the sweep's largest budget
    N: sequential = (S=N, P=1), parallel = (S=1, P=N), balanced = S and P as close as the powers of two allow;
    easy = bins 1-2, hard = the top two bins. `verifier` is the setting of the revision ORM. Two findings beyond the
    paper place the control (`control_rows`) between step `first` and step `last`: the chain's own attempts against
    as many of another question's, and what another question's attempts do by themselves."""
    n = cfg.revision_max_budget
    s_bal = 2 ** ((n.bit_length() - 1) // 2)
    seq, par, bal = {"sequential": n}, {"parallel": n}, {"sequential": s_bal, "parallel": n // s_bal}
    easy, hard = (1, 2), (cfg.num_bins - 1, cfg.num_bins)
    first, last = steps
    return [
        Claim(f"revisions improve pass@1: step {last} beats step {first}", Arm(f"pass@1 at step {last}", 1),
              Arm(f"pass@1 at step {first}", 1)),
        Claim(f"a revision fares better after its own previous attempts than after as many of another question's: "
              f"pass@1 at step {last}", Arm(f"pass@1 at step {last}", 1), Arm(f"pass@1 at step {last}{CONTROL}", 1)),
        Claim(f"another question's attempts in context cost pass@1 by themselves (a distraction): step {first}, "
              f"nothing in context, beats step {last} after another question's attempts",
              Arm(f"pass@1 at step {first}", 1), Arm(f"pass@1 at step {last}{CONTROL}", 1)),
        Claim(f"sequential revisions beat parallel sampling (best-of-N weighted, N={n})",
              Arm(verifier, n, where=seq), Arm(verifier, n, where=par)),
        Claim(f"sequential revisions beat parallel sampling (majority, N={n})",
              Arm("majority", n, where=seq), Arm("majority", n, where=par)),
        Claim(f"easy questions favour sequential more than hard ones: sequential minus balanced (S={s_bal}) is larger "
              f"on bins {easy[0]}-{easy[1]} than on bins {hard[0]}-{hard[1]} (N={n})",
              Arm(verifier, n, bin=easy, where=seq), Arm(verifier, n, bin=easy, where=bal),
              then=(Arm(verifier, n, bin=hard, where=seq), Arm(verifier, n, bin=hard, where=bal))),
        Claim(f"the revision ORM reads the previous attempts to advantage: with history beats without (N={n}, "
              f"sequential)", Arm(verifier, n, where=seq), Arm(f"{verifier}, no history", n, where=seq)),
        Claim(f"an ORM trained on revisions beats the base PRM at selecting among them (N={n}, sequential)",
              Arm(verifier, n, where=seq), Arm("PRM", n, where=seq)),
    ]
