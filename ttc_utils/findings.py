"""Which of the paper's search findings hold here (notebook 02): a table read from the results table's summaries.

Each row names the paper's finding, the numbers measured here, and whether they point the paper's way.
(Deciding findings by paired bootstrap CIs over questions and seeds is the next step; until then this reads the
point estimates, and says so in the notebook.)

    table = prm_search_findings(fig3, fig3b, selection, quality, drops, beam_width=4, aggregation="last",
                                pool_size=256, shown=[4, 16, 64, 256], lookahead_labels=["1-step lookahead M=sqrt N"])
"""
from __future__ import annotations

import numpy as np
import pandas as pd

FINDING_COLUMNS = ["paper's finding", "here", "holds"]


def prm_search_findings(fig3: pd.DataFrame, fig3b: pd.DataFrame, selection: pd.DataFrame, quality: pd.DataFrame,
                        drops: pd.DataFrame, beam_width: int, aggregation: str, pool_size: int,
                        shown: list[int], lookahead_labels: list[str], easy=(1, 2), hard=(3, 4)) -> pd.DataFrame:
    """`fig3`: search and baseline curves (budget, accuracy, label); `fig3b`: per-bin curves (label, bin, budget,
    accuracy); `selection`: pool selection curves (method, budget, accuracy, low, high); `quality`: verifier
    quality rows (verifier, score, roc_auc, within_question_auc); `drops`: `verifier_quality.first_error_drops`;
    `lookahead_labels`: the lookahead settings with M = sqrt N, in the order the table lists them."""
    acc = fig3.set_index(["label", "budget"]).accuracy
    bw, top = f"beam M={beam_width}", max(shown)
    small = min(b for b in shown if b >= 4)
    la = lookahead_labels
    per_bin = fig3b.set_index(["label", "bin", "budget"]).accuracy
    n64 = min(64, pool_size)
    s64 = selection.set_index(["method", "budget"])

    def gap(a, b, budget):
        return acc.get((a, budget), np.nan) - acc.get((b, budget), np.nan)

    def bin_gap(budget, bins_):
        return np.nanmean([per_bin.get((bw, b, budget), np.nan)
                           - per_bin.get(("best-of-N weighted", b, budget), np.nan) for b in bins_])

    def sel(method, budget):
        return s64.accuracy[(method, budget)]

    def band(method, budget):
        return f"{sel(method, budget):.3f} [{s64.low[(method, budget)]:.3f}, {s64.high[(method, budget)]:.3f}]"

    prm_auc = quality.set_index(["verifier", "score"]).loc[("PRM", aggregation)]
    bon_gap = (gap(bw, "best-of-N weighted", small), gap(bw, "best-of-N weighted", top))
    prm_orm = (sel("PRM last", 4) - sel("ORM", 4), sel("PRM last", pool_size) - sel("ORM", pool_size))
    rows = [
        (f"the PRM is a real verifier: ROC AUC of its {aggregation!r} score >= 0.8 (acceptance)",
         f"{prm_auc.roc_auc:.3f} (within-question {prm_auc.within_question_auc:.3f})", prm_auc.roc_auc >= 0.8),
        ("its step score falls at the first wrong step more often than not (acceptance)",
         f"{drops['drop'].mean():.1%} of {len(drops):,} solutions", drops["drop"].mean() > 0.5),
        (f"PRM best-of-N weighted beats majority at N={n64} (acceptance: N=64)",
         f"{band('PRM last', n64)} vs {band('majority', n64)}", sel("PRM last", n64) > sel("majority", n64)),
        (f"beam search beats best-of-N weighted at a small budget (N={small})",
         f"{bw}: {bon_gap[0]:+.3f}", bon_gap[0] > 0),
        (f"beam search's edge shrinks at a large budget (N={top})",
         f"{bon_gap[1]:+.3f} vs {bon_gap[0]:+.3f} at N={small}", bon_gap[1] < bon_gap[0]),
        (f"lookahead search underperforms beam search at the same budget (N={top})",
         "; ".join(f"{label}: {gap(label, 'beam M=sqrt N', top):+.3f}" for label in la),
         all(gap(label, "beam M=sqrt N", top) < 0 for label in la)),
        (f"at N={top} beam search helps hard questions more than easy ones (bins 3-4 vs 1-2)",
         f"beam − best-of-N weighted: bins 3-4 {bin_gap(top, hard):+.3f}, bins 1-2 {bin_gap(top, easy):+.3f}",
         bin_gap(top, hard) > bin_gap(top, easy)),
        (f"PRM beats ORM in best-of-N weighted, more so at large N (N=4 vs N={pool_size})",
         f"{prm_orm[0]:+.3f} vs {prm_orm[1]:+.3f}", prm_orm[1] > prm_orm[0]),
        (f"'last' aggregation is at least as good as min and prod (N={n64})",
         ", ".join(f"{h} {sel(f'PRM {h}', n64):.3f}" for h in ("last", "min", "prod")),
         sel("PRM last", n64) >= max(sel("PRM min", n64), sel("PRM prod", n64))),
        (f"best-of-N weighted beats plain best-of-N with the PRM (N={n64})",
         f"{sel('PRM last', n64):.3f} vs {sel('PRM best-of-N', n64):.3f}",
         sel("PRM last", n64) > sel("PRM best-of-N", n64)),
    ]
    return pd.DataFrame(rows, columns=FINDING_COLUMNS).astype({"holds": bool})
