"""Notebook 05's bookkeeping: the ladder it compares is checked before any compute, K picks the budgets it may
spend, the difficulty groups."""
import pandas as pd
import pytest

from ttc_utils.config import FlopsMatchedNotebookConfig
from ttc_utils.stages.flops_matched import check_ladder, difficulty_groups, matched, reference_rung


def ladder(tmp_path, tokens=(100, 100, 100), params=(10, 30, 140)):
    rows = []
    for i, (t, n) in enumerate(zip(tokens, params)):
        (tmp_path / f"r{i}").mkdir(exist_ok=True)
        rows.append({"name": f"r{i}", "path": str(tmp_path / f"r{i}"), "tokens": t, "non_embedding_params": n})
    return pd.DataFrame(rows)


def test_a_ladder_on_the_same_tokens_gets_its_parameter_ratios(tmp_path):
    out = check_ladder(ladder(tmp_path))
    assert out.m.tolist() == [1.0, 3.0, 14.0] and reference_rung(out)["name"] == "r2"


def test_a_rung_on_other_tokens_a_missing_rung_or_a_smaller_rung_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="tokens"):
        check_ladder(ladder(tmp_path, tokens=(100, 100, 120)))
    broken = ladder(tmp_path)
    broken.loc[1, "path"] = str(tmp_path / "gone")
    with pytest.raises(ValueError, match="r1"):
        check_ladder(broken)
    with pytest.raises(ValueError, match="at least the base"):
        check_ladder(ladder(tmp_path, params=(10, 5, 140)))
    with pytest.raises(ValueError, match="two rungs"):
        check_ladder(ladder(tmp_path).iloc[:1])


def test_the_matched_budget_is_the_largest_budget_within_k(tmp_path):
    cfg = FlopsMatchedNotebookConfig(inference_ratios=[0.16, 22.0])
    out = matched(cfg, check_ladder(ladder(tmp_path)), {"search": [1, 2, 4, 8, 16, 32, 64, 128]})
    r2 = out[out.rung == "r2"].set_index("R")
    assert r2.K[0.16] == pytest.approx(257.75) and r2.budget[0.16] == 128 and r2.capped[0.16]
    assert r2.K[22.0] == pytest.approx(15.77, abs=0.01) and r2.budget[22.0] == 8 and not r2.capped[22.0]


def test_difficulty_groups():
    assert difficulty_groups(5) == {"easy": (1, 2), "medium": (3,), "hard": (4, 5)}
    assert difficulty_groups(3) == {"easy": (1,), "medium": (2,), "hard": (3,)}
    assert difficulty_groups(2) == {"easy": (1,), "hard": (2,)}


@pytest.mark.parametrize("value", [[0.16, 0.0], [-1.0], [], "0.16", [float("inf")]])
def test_a_bad_inference_ratio_is_a_clear_error(value):
    with pytest.raises(ValueError, match="inference_ratios"):
        FlopsMatchedNotebookConfig(inference_ratios=value)
