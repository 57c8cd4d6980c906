"""The paper's FLOPs-matched budget K = M + 3(M-1)/R (ICLR: M + 1.5(M-1)/R), its inverse, and measured FLOPs."""
import numpy as np
import pytest

from ttc_utils.flops import RATIOS, break_even_ratio, inference_flops, matched_budget, pretraining_flops
from ttc_utils.results import flops


def test_the_papers_k_for_a_14x_model():
    assert matched_budget(14, 0.16) == pytest.approx(257.75)
    assert matched_budget(14, 0.79) == pytest.approx(63.4, abs=0.05)
    assert matched_budget(14, 22) == pytest.approx(15.8, abs=0.05)


def test_iclr_constants_give_the_same_k_after_the_verifier_factor():
    # ICLR counts 4·N·D_inference (the verifier too), so its R is half of arXiv's for the same tokens
    for r_arxiv, r_iclr in zip(RATIOS["arxiv"], RATIOS["iclr"]):
        assert matched_budget(14, r_iclr, "iclr") == pytest.approx(matched_budget(14, r_arxiv), rel=0.02)
    assert inference_flops(10, 3, "iclr") == 2 * inference_flops(10, 3)


def test_k_is_the_flops_match_it_claims():
    n, d_pretrain, m, r = 1e6, 1e9, 14.0, 0.79
    d_inference = r * d_pretrain
    small = pretraining_flops(n, d_pretrain) + inference_flops(n, d_inference) * matched_budget(m, r)
    large = pretraining_flops(m * n, d_pretrain) + inference_flops(m * n, d_inference)
    assert small == pytest.approx(large)


def test_break_even_ratio_inverts_k():
    for r in (0.16, 0.79, 22):
        assert break_even_ratio(14, matched_budget(14, r)) == pytest.approx(r)
    assert break_even_ratio(14, 8) == np.inf  # fewer generations than M: cheaper at any R


@pytest.mark.parametrize("m,r", [(0.5, 1.0), (np.nan, 1.0), (14, 0), (14, -1), (14, np.inf)])
def test_bad_m_or_r_is_a_clear_error(m, r):
    with pytest.raises(ValueError, match="M=|R="):
        matched_budget(m, r)


def test_measured_flops_are_two_params_times_tokens_for_a_known_call():
    # a policy of 1,000 non-embedding parameters: 30 decoded + 20 prefilled tokens; a verifier of 500 reads 40
    assert flops(1000, 500, 30, 20, 40) == 2 * 1000 * 50 + 2 * 500 * 40
    assert flops(1000, None, 30, 20, 0) == 2 * 1000 * 50
