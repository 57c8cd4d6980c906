"""Notebook 05's stages: the base policy's compute-optimal test-time compute (notebook 04's, oracle bins) against every
larger rung of the ladder at its greedy pass@1, matched in FLOPs (`flops.matched_budget`), per difficulty group; the
ICLR paper's weaker verifiers and its Fig. 16 (every rung as the policy) on the ladder.

    ladder = checked_ladder(cfg)                       # every rung on the same pretraining tokens, or an error
    optimal, search = optimal_rows(cfg)                # notebook 04's compute-optimal rows, notebook 02's tables
    greedy = greedy_rows(cfg, ladder, search["bins"])  # results-table rows: setting "greedy <rung>", budget 1
    match = matched(cfg, ladder, budgets)              # rung, M, R, K, the budget used (the largest <= K)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..checks import check
from ..compute_optimal import efficiency_ratio
from ..evaluation import greedy_samples, ladder_samples
from ..findings import Arm, Claim
from ..flops import break_even_ratio, matched_budget
from ..labels import flip_labels
from ..policy import SamplingParams, derive_seed
from ..results import flops, search_results, selection_results
from ..search import run_search
from . import common, prm_search
from . import compute_optimal as co_stages
from . import pool as pool_stages

OPTIMAL = {kind: f"compute-optimal {kind}, oracle bins" for kind in ("search", "revisions")}
FLIPPED = 0.2  # the ICLR paper's weaker PRM: this share of its step labels flipped
WEAK = {"prm": "PRM best-of-N weighted", "flipped": f"PRM with {FLIPPED:.0%} of its labels flipped, best-of-N weighted",
        "majority": "majority (no verifier)"}


def difficulty_groups(num_bins: int) -> dict[str, tuple]:
    """Easy / medium / hard as bins: the first and last 40% of the bins (rounded) are easy and hard, the rest medium
    (5 bins: 1-2, 3, 4-5). A group with no bin is left out."""
    k = max(1, round(0.4 * num_bins))
    bins = list(range(1, num_bins + 1))
    groups = {"easy": tuple(bins[:k]), "medium": tuple(bins[k:num_bins - k]), "hard": tuple(bins[num_bins - k:])}
    return {g: b for g, b in groups.items() if b}


def checked_ladder(cfg) -> pd.DataFrame:
    """Notebook 00's ladder, checked (`check_ladder`) before any compute, with M per rung."""
    return check_ladder(common.ladder(cfg)[0])


def check_ladder(ladder: pd.DataFrame) -> pd.DataFrame:
    """`ladder` (its rungs' train records: name, path, non_embedding_params, tokens) with M, each rung's non-embedding
    parameters over the base's. An error when there is no larger rung, a rung's folder is missing, a rung is not
    larger than the base, or a rung saw other pretraining tokens than the base (the comparison is FLOPs-honest only
    on the same tokens)."""
    check(len(ladder) >= 2, "ladder", f"{len(ladder)} rung(s)", "at least two rungs (a base and a larger model)")
    base = ladder.iloc[0]
    for rung in ladder.itertuples():
        check(Path(rung.path).is_dir(), "ladder", f"rung {rung.name} at {rung.path}", "a trained model folder")
        check(rung.tokens == base.tokens, "ladder", f"rung {rung.name} on {rung.tokens} tokens",
              f"every rung on the base's {base.tokens} pretraining tokens")
        size = rung.non_embedding_params
        check(size >= base.non_embedding_params, "ladder", f"rung {rung.name} ({size} parameters)",
              f"rungs at least the base's size ({base.non_embedding_params})")
    return ladder.assign(m=ladder.non_embedding_params / base.non_embedding_params)


def reference_rung(ladder: pd.DataFrame) -> pd.Series:
    """The larger rung whose parameter ratio is closest to the paper's ~14x."""
    larger = ladder.iloc[1:]
    return larger.loc[(np.log(larger.m) - np.log(14)).abs().idxmin()]


def greedy_rows(cfg, ladder: pd.DataFrame, bins: pd.DataFrame) -> pd.DataFrame:
    """Every rung's greedy answer to each test question (notebook 01's cached samples) as results-table rows:
    method "greedy", setting "greedy <rung>", budget 1, the oracle bin, measured tokens and FLOPs."""
    frames = []
    for m, s in greedy_samples(cfg.cache(), ladder, common.task(cfg), common.test_questions(cfg), cfg.seed,
                               common.max_new_tokens(cfg), cfg.device):
        frames.append(s.assign(method="greedy", setting=f"greedy {m.name}", budget=1, seed=0, generations=1,
                               correct=s.correct.astype(float), policy_tokens=s.num_tokens,
                               prefill_tokens=s.prompt_tokens, verifier_tokens=0, verifier_calls=0,
                               flops=flops(m.non_embedding_params, None, s.num_tokens, s.prompt_tokens, 0)))
    out = pd.concat(frames, ignore_index=True)
    return co_stages.with_bins(out, bins)


def optimal_rows(cfg) -> tuple[pd.DataFrame, dict]:
    """(compute-optimal rows of notebook 04 for search and revisions with oracle bins, notebook 02's tables:
    results, pool, bins, params)."""
    c = cfg.for_notebook("04_compute_optimal")
    search, revision = co_stages.search_tables(c), co_stages.revision_tables(c)
    frames = []
    for kind, cands in (("search", co_stages.search_candidates(c, search["results"])),
                        ("revisions", co_stages.revision_candidates(revision["results"]))):
        rows, _ = co_stages.compute_optimal(cands, ["setting"], c.folds, c.seed, OPTIMAL[kind])
        frames.append(rows)
    return pd.concat(frames, ignore_index=True), search


def weak_verifier_rows(cfg, search: dict) -> pd.DataFrame:
    """The ICLR paper's weaker verifiers, on the pool half the oracle bins never read (the search questions): majority
    (no verifier), best-of-N weighted with the PRM, and with a PRM trained on the same labels with `FLIPPED` of its
    step labels flipped (`labels.flip_labels`; same backbone and recipe)."""
    c = cfg.for_notebook("02_prm_search")
    labels = flip_labels(search["labels"], FLIPPED, c.seed)
    weak = prm_search.train_prm(c, prm_search.verifier_base(c, search["ladder"]), labels)
    subset = {p.qid for p in prm_search.search_subset(c)}
    half = pool_stages.curve_half(c, search["pool"])
    scored = prm_search.score_pool(c, weak, half[half.qid.isin(subset)], "scores-prm-flipped")
    flipped = selection_results(scored, "best_of_n_weighted", pool_stages.half_budgets(c), c.num_subsets, c.seed,
                                WEAK["flipped"], c.aggregation, search["bins"], search["params"]["policy"],
                                search["params"]["prm"])
    results = search["results"]
    half_rows = results[(results.scope == "curve half") & results.setting.isin(["majority", "best-of-N weighted"])]
    half_rows = half_rows.assign(setting=half_rows.setting.map({"majority": WEAK["majority"],
                                                                "best-of-N weighted": WEAK["prm"]}))
    return pd.concat([half_rows.drop(columns="scope"), flipped], ignore_index=True)


def matched(cfg, ladder: pd.DataFrame, budgets: dict[str, list[int]]) -> pd.DataFrame:
    """Per larger rung, R of `inference_ratios` and kind: M, the FLOPs-matched K, and the budget the comparison uses:
    the largest of the kind's budgets <= K (`capped` where K is beyond them all, so the test-time side spends less
    than it may)."""
    rows = []
    for rung in ladder.iloc[1:].itertuples():
        for r in cfg.inference_ratios:
            k = matched_budget(rung.m, r, cfg.accounting)
            for kind, grid in budgets.items():
                usable = [b for b in sorted(grid) if b <= k]
                rows.append({"rung": rung.name, "m": rung.m, "R": r, "K": k, "kind": kind, "budget": max(usable),
                             "capped": k > max(grid)})
    return pd.DataFrame(rows)


def exchange_rates(cfg, optimal: pd.DataFrame, greedy: pd.DataFrame, ladder: pd.DataFrame) -> pd.DataFrame:
    """Beyond the paper: per larger rung, kind and difficulty group, the test-time budget at which the base's
    compute-optimal curve reaches the rung's greedy accuracy (`efficiency_ratio` with the rung as the target; a CI
    over questions; `reached` False: never within the budgets, a lower bound), and the R below which that budget is
    the cheaper side (`flops.break_even_ratio`)."""
    rows = []
    for rung in ladder.iloc[1:].itertuples():
        target = greedy[greedy.setting == f"greedy {rung.name}"]
        for kind, setting in OPTIMAL.items():
            curve = optimal[optimal.setting == setting]
            for group, bins in {"all": None, **difficulty_groups(cfg.num_bins)}.items():
                pick = (lambda r: r) if bins is None else (lambda r, b=bins: r[r.bin.isin(b)])
                if len(set(pick(target).qid) & set(pick(curve).qid)) < 2:
                    continue  # a group the curve's questions barely reach (a small profile): no CI to draw
                e = efficiency_ratio(pick(target), pick(curve), cfg.efficiency_resamples, cfg.seed).iloc[0]
                rows.append({"rung": rung.name, "m": rung.m, "kind": kind, "group": group,
                             "greedy_accuracy": e.accuracy, "budget_to_match": e.reference_budget, "low": e.low,
                             "high": e.high, "reached": bool(e.reached), "questions": int(e.questions),
                             "break_even_R": break_even_ratio(rung.m, e.reference_budget, cfg.accounting)})
    return pd.DataFrame(rows)


def paper_expects(group: str, r: float) -> str:
    """Our reading of the paper's §7 summary: test-time compute wins on easy questions up to R ~ 1 and on medium
    ones when R << 1; pretraining wins on the hardest questions and when R >> 1."""
    return "test-time" if (group == "easy" and r <= 1) or (group == "medium" and r < 0.5) else "pretraining"


def claims(cfg, match: pd.DataFrame, rung: str) -> list[Claim]:
    """Per kind, R and difficulty group: "test-time compute on the base beats the larger rung `rung`'s greedy answer
    at the same FLOPs" (the budget from `matched`)."""
    out = []
    for row in match[match.rung == rung].itertuples():
        for group, bins in difficulty_groups(cfg.num_bins).items():
            cap = f"; K={row.K:.0f} capped" if row.capped else ""
            out.append(Claim(f"{row.kind}: test-time (N={row.budget}{cap}) beats the {row.m:.1f}x model on {group} "
                             f"questions at R={row.R:g} (paper: {paper_expects(group, row.R)})",
                             Arm(OPTIMAL[row.kind], row.budget, bin=bins), Arm(f"greedy {rung}", 1, bin=bins)))
    return out


def _group_accuracy(rows: pd.DataFrame, bins: tuple) -> float:
    part = rows[rows.bin.isin(bins)]
    return float(part.groupby("qid").correct.mean().mean())


def relative_improvement(cfg, optimal: pd.DataFrame, greedy: pd.DataFrame, match: pd.DataFrame, rung: str,
                         settings: dict | None = None) -> pd.DataFrame:
    """Fig. 1 (right): per kind, R and difficulty group, test-time accuracy at the matched budget and the larger
    rung's greedy accuracy on the same questions, and the relative improvement (test-time / larger - 1). `settings`:
    kind -> its setting in `optimal` (default `OPTIMAL`)."""
    rows, settings = [], settings or OPTIMAL
    large = greedy[greedy.setting == f"greedy {rung}"]
    for m in match[match.rung == rung].itertuples():
        tt = optimal[(optimal.setting == settings[m.kind]) & (optimal.budget == m.budget)]
        for group, bins in difficulty_groups(cfg.num_bins).items():
            a, b = _group_accuracy(tt, bins), _group_accuracy(large[large.qid.isin(tt.qid.unique())], bins)
            rows.append({"kind": m.kind, "R": m.R, "ratio": f"R={m.R:g}", "group": group,
                         "bins": "-".join(map(str, bins)), "budget": m.budget, "test_time": a, "larger": b,
                         "improvement": a / b - 1 if b else np.nan})
    return pd.DataFrame(rows)


def flops_table(match: pd.DataFrame, optimal: pd.DataFrame, greedy: pd.DataFrame, ladder: pd.DataFrame,
                rung: str) -> pd.DataFrame:
    """The formula next to what was spent, per question: the FLOPs the base may spend at K (K times its measured
    FLOPs per plain sample, as the formula counts them) and what compute-optimal measured at the budget used
    (policy and verifier, prefill and decode), with the larger rung's measured greedy FLOPs."""
    base = greedy[greedy.setting == f"greedy {ladder.name.iloc[0]}"].flops.mean()
    large = greedy[greedy.setting == f"greedy {rung}"].flops.mean()
    out = match[match.rung == rung].copy()
    spent = {(k, b): optimal[(optimal.setting == OPTIMAL[k]) & (optimal.budget == b)].flops.mean()
             for k, b in zip(out.kind, out.budget)}
    return out.assign(allowed_flops=out.K * base, spent_flops=[spent[(k, b)] for k, b in zip(out.kind, out.budget)],
                      larger_greedy_flops=large)


def weak_claim(budget: int) -> Claim:
    """Does the weaker PRM select worse? Best-of-N weighted with the PRM against the one with flipped labels."""
    return Claim(f"the PRM beats the PRM with {FLIPPED:.0%} of its labels flipped in best-of-N weighted (N={budget})",
                 Arm(WEAK["prm"], budget), Arm(WEAK["flipped"], budget))


def ladder_search_rows(cfg, ladder: pd.DataFrame, search: dict) -> pd.DataFrame:
    """ICLR Fig. 16 on the ladder: with every rung as the policy, beam search (M = `beam_width`, one seed) against
    best-of-N weighted with notebook 02's PRM, on the search questions and the base's oracle bins, at the budgets 4,
    16, 64, 256 that best-of-N weighted can read from notebook 01's `ladder_samples` cached samples of each rung.
    Rows carry `rung`."""
    c = cfg.for_notebook("02_prm_search")
    budgets = [b for b in (4, 16, 64, 256) if b <= min(cfg.ladder_samples, cfg.max_budget)]
    check(bool(budgets), "ladder_samples", cfg.ladder_samples, "at least 4 (best-of-N weighted at N=4 reads 4 samples)")
    prm = search["prm"]
    problems, task = prm_search.search_subset(c), common.task(c)
    subset = {p.qid for p in problems}
    beam = {s.x: s for s in prm_search.search_plan(c) if s.label == f"beam M={c.beam_width}" and s.x in budgets}
    params = SamplingParams(n=cfg.ladder_samples, temperature=c.temperature, max_new_tokens=common.max_new_tokens(c))
    frames = []
    sampled = ladder_samples(c.cache(), ladder, task, common.test_questions(c), params, c.seed, "sampled", c.device)
    for i, (rung, samples) in enumerate(sampled):
        spec = common.rung(c, ladder, i, f"ladder rung {rung.name}")
        scored = prm_search.score_pool(c, prm, samples[samples.qid.isin(subset)], f"scores-prm-{rung.name}")
        frames.append(selection_results(scored, "best_of_n_weighted", budgets, c.num_subsets, c.seed,
                                        "best-of-N weighted", c.aggregation, search["bins"]).assign(rung=rung.name))
        for n, s in sorted(beam.items()):
            runs = run_search(c.cache(), spec, prm, task, problems, s.search, derive_seed(c.seed, "search", 0) % 2**31)
            frames.append(search_results(runs.drop(columns=prm_search.RUN_DETAILS).assign(
                label=s.label, style=s.method, search_seed=0, budget=n), search["bins"]).assign(rung=rung.name))
    return pd.concat(frames, ignore_index=True)
