"""FLOPs accounting of the paper's §7: when does test-time compute on a small model match pretraining a larger one?

Pretraining costs X = 6·N·D_pretrain, inference Y = 2·N·D_inference (ICLR: 4·N·D_inference, the verifier counted).
A model M times larger costs M·X + M·Y; the small model matches it with K times its inference tokens, where
6·N·D_p + 2·N·D_i·K = 6·M·N·D_p + 2·M·N·D_i, so with R = D_inference / D_pretrain:

    K = M + 3 (M - 1) / R          (arXiv v1)        K = M + 1.5 (M - 1) / R        (ICLR 2025)

    matched_budget(14, 0.16)            # 257.75 generations per question
    break_even_ratio(14, 64)                  # the R at which 64 generations cost what the 14x model does

Measured FLOPs of every model call (2 · non-embedding parameters · tokens, policy and verifier, prefill and decode)
are `results.flops`; notebook 05 shows them next to the formula.
"""
from __future__ import annotations

import numpy as np

from .checks import check, check_choice

# per accounting: (FLOPs per parameter and inference token, the coefficient c in K = M + c (M - 1) / R)
ACCOUNTING = {"arxiv": (2.0, 3.0), "iclr": (4.0, 1.5)}
# the paper's R = D_inference / D_pretrain: R << 1, R ~ 1, R >> 1
RATIOS = {"arxiv": (0.16, 0.79, 22.0), "iclr": (0.08, 0.40, 11.0)}


def _check_m(m) -> float:
    check(np.isfinite(m) and m >= 1, "M", m, "a parameter ratio >= 1 (the larger model's over the small one's)")
    return float(m)


def pretraining_flops(params: float, tokens: float) -> float:
    """X = 6 · N · D_pretrain."""
    return 6.0 * params * tokens


def inference_flops(params: float, tokens: float, accounting: str = "arxiv") -> float:
    """Y = 2 · N · D_inference (ICLR: 4 · N · D_inference)."""
    check_choice("accounting", accounting, tuple(ACCOUNTING))
    return ACCOUNTING[accounting][0] * params * tokens


def matched_budget(m: float, r: float, accounting: str = "arxiv") -> float:
    """K, the test-time multiplier: how many times its inference tokens the small model may spend (its FLOPs-matched
    generation budget) to match a model `m` times larger, at R = D_inference / D_pretrain = `r`."""
    check_choice("accounting", accounting, tuple(ACCOUNTING))
    m = _check_m(m)
    check(np.isfinite(r) and r > 0, "R", r, "a ratio D_inference / D_pretrain > 0")
    return m + ACCOUNTING[accounting][1] * (m - 1) / r



def break_even_ratio(m: float, k: float, accounting: str = "arxiv") -> float:
    """The R at which spending `k` times the small model's inference costs what the `m` times larger model does
    (K(m, R) = k): below it, k generations are the cheaper side. inf when k <= m (cheaper at every R)."""
    check_choice("accounting", accounting, tuple(ACCOUNTING))
    m = _check_m(m)
    check(np.isfinite(k) and k > 0, "k", k, "a number of generations > 0")
    return float("inf") if k <= m else ACCOUNTING[accounting][1] * (m - 1) / (k - m)
