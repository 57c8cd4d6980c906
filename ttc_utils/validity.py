"""Is the embedded world fit to test the paper's findings? Criteria fixed before any finding is measured (notebook 00).

    (a) guess rate <= 2%: among correct final answers, the share reached through a wrong step (a lucky answer);
    (b) the base policy's per-question pass@1 puts >= 8% of the questions in each fifth of [0, 1];
    (c) a monotone ladder: each rung beats the rung below in greedy accuracy on the test questions (a paired
        bootstrap CI above 0, `findings`) and in held-out loss; top / base >= 14x non-embedding parameters; every
        rung on exactly the same pretraining tokens;
    (d) the ladder trains in <= 25 minutes;
    (e) every rung's attention head size is one vLLM's CPU attention accepts.

    table = criteria_table(task, test, base_samples, ladder, greedy_by_rung)   # criterion, value, target, met
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluation import pass1_buckets, pass1_per_question
from .findings import Arm, Claim, decide_claim

GUESS_RATE_MAX = 0.02
FIFTH_MIN = 0.08
PARAM_RATIO_MIN = 14.0
LADDER_MINUTES_MAX = 25.0
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256)
CRITERIA_COLUMNS = ["criterion", "value", "target", "met"]


def guess_rate(task, problems: list, samples: pd.DataFrame) -> float:
    """Among correct samples, the share whose steps leave the task's correct path somewhere (`task.step_truth`)."""
    by_qid = {p.qid: p for p in problems}
    correct = samples[samples.correct]
    if len(correct) == 0:
        return float("nan")
    wrong_step = [not all(task.step_truth(by_qid[q], t)) for q, t in zip(correct.qid, correct.text)]
    return float(np.mean(wrong_step))


def greedy_rows(greedy_by_rung: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Greedy samples per rung (name -> samples table) as results rows (setting = rung name, budget 1)."""
    return pd.concat([s.assign(method="greedy", setting=name, budget=1, seed=0, correct=s.correct.astype(float))
                      [["method", "setting", "budget", "seed", "qid", "correct"]]
                      for name, s in greedy_by_rung.items()], ignore_index=True)


def ladder_claims(names: list[str]) -> list[Claim]:
    return [Claim(f"{hi} beats {lo} in greedy accuracy", Arm(setting=hi), Arm(setting=lo))
            for lo, hi in zip(names, names[1:])]


def criteria_table(task, problems: list, base_samples: pd.DataFrame, ladder: pd.DataFrame,
                   greedy_by_rung: dict[str, pd.DataFrame], seed: int = 0) -> pd.DataFrame:
    """The criteria (a)-(e) with their measured values. `ladder`: the models table of `training.train_ladder`
    (name, non_embedding_params, tokens, wall_s, hidden, heads, heldout_loss), smallest first."""
    rows = []
    g = guess_rate(task, problems, base_samples)
    rows.append(("(a) guess rate: correct answers reached through a wrong step", f"{g:.2%}",
                 f"<= {GUESS_RATE_MAX:.0%}", bool(g <= GUESS_RATE_MAX)))
    shares = pass1_buckets(pass1_per_question(base_samples).pass1)
    rows.append(("(b) base pass@1: share of questions per fifth of [0, 1]",
                 " / ".join(f"{s:.0%}" for s in shares.share), f">= {FIFTH_MIN:.0%} each",
                 bool((shares.share >= FIFTH_MIN).all())))
    names = list(ladder.name)
    greedy = greedy_rows(greedy_by_rung)
    for claim in ladder_claims(names):
        d = decide_claim(greedy, claim, seed=seed)
        rows.append((f"(c) {claim.finding}", f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]",
                     "95% CI > 0", d["verdict"] == "holds"))
    loss = ladder.heldout_loss.to_numpy(dtype=float)
    shown = f"{loss[0]:.4f}" + "".join(f" {'>' if b < a else '<='} {b:.4f}" for a, b in zip(loss, loss[1:]))
    rows.append(("(c) held-out loss falls rung by rung", shown, "strictly falling",
                 bool(np.all(np.diff(loss) < 0))))
    ratio = ladder.non_embedding_params.iloc[-1] / ladder.non_embedding_params.iloc[0]
    rows.append(("(c) top / base non-embedding parameters", f"{ratio:.1f}x", f">= {PARAM_RATIO_MIN:.0f}x",
                 bool(ratio >= PARAM_RATIO_MIN)))
    tokens = ladder.tokens.unique()
    rows.append(("(c) every rung on the same pretraining tokens", f"{tokens.tolist()}", "one count",
                 bool(len(tokens) == 1)))
    minutes = ladder.wall_s.sum() / 60
    threads = [int(t) for t in ladder.threads.dropna().unique()] if "threads" in ladder else []  # older records lack it
    on = f" on {threads[0]} thread{'s' * (threads[0] > 1)}" if len(threads) == 1 else ""
    rows.append(("(d) ladder training time", f"{minutes:.1f} min{on}", f"<= {LADDER_MINUTES_MAX:.0f} min",
                 bool(minutes <= LADDER_MINUTES_MAX)))
    heads = sorted(set((ladder.hidden // ladder.heads).tolist()))
    rows.append(("(e) attention head sizes vLLM's CPU attention accepts", f"{heads}", f"in {VLLM_CPU_HEAD_SIZES}",
                 all(h in VLLM_CPU_HEAD_SIZES for h in heads)))
    return pd.DataFrame(rows, columns=CRITERIA_COLUMNS)
