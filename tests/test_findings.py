"""The findings module on synthetic results tables whose truth is known: a clear win, a clear loss, pure noise,
all zeros, too few differing questions, the gap-of-gaps forms (paired and on disjoint bins), and determinism."""
import numpy as np
import pandas as pd
import pytest

from ttc_utils.findings import FINDING_COLUMNS, Arm, Claim, decide, decide_claim, paired


def table(p_a, p_b, questions=200, seeds=3, seed=0, budget=4, bins=None):
    """Results rows of two settings, A and B, with per-question success probabilities p_a and p_b."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(questions):
        for s in range(seeds):
            for setting, p in (("A", p_a), ("B", p_b)):
                prob = p(q) if callable(p) else p
                rows.append({"method": "x", "setting": setting, "budget": budget, "seed": s, "qid": f"q{q}",
                             "bin": (bins(q) if bins else 1), "correct": float(rng.random() < prob)})
    return pd.DataFrame(rows)


A4, B4 = Arm(setting="A", budget=4), Arm(setting="B", budget=4)


def test_clear_win_holds_and_reports_the_difference_with_its_ci():
    row = decide_claim(table(0.8, 0.4), Claim("A beats B", A4, B4))
    assert row["verdict"] == "holds"
    assert 0.3 < row["difference"] < 0.5 and row["low"] < row["difference"] < row["high"]
    assert row["low"] > 0 and row["questions"] == 200


def test_clear_loss_fails():
    assert decide_claim(table(0.3, 0.7), Claim("A beats B", A4, B4))["verdict"] == "fails"


def test_pure_noise_is_inconclusive():
    # the same success probability for both arms: the CI must straddle zero
    row = decide_claim(table(0.5, 0.5, seed=3), Claim("A beats B", A4, B4))
    assert row["verdict"] == "inconclusive" and row["low"] < 0 < row["high"]


def test_all_zeros_and_all_ones_are_uninformative_not_holds():
    for p in (0.0, 1.0):
        row = decide_claim(table(p, p), Claim("A beats B", A4, B4))
        assert row["verdict"] == "uninformative" and row["difference"] == 0


def test_fewer_than_ten_differing_questions_is_uninformative():
    # A is right on 5 more questions than B and nothing else differs: a sure win on paper, but 5 questions' worth
    rows = table(lambda q: 1.0 if q < 105 else 0.0, lambda q: 1.0 if q < 100 else 0.0, seeds=1)
    row = decide_claim(rows, Claim("A beats B", A4, B4))
    assert row["differing"] == 5 and row["verdict"] == "uninformative"


def test_margin_turns_a_small_win_inconclusive():
    rows = table(0.55, 0.5, questions=2000, seeds=3, seed=1)
    assert decide_claim(rows, Claim("A beats B", A4, B4))["verdict"] == "holds"
    assert decide_claim(rows, Claim("A beats B", A4, B4, margin=0.1))["verdict"] == "inconclusive"


def test_seeds_are_averaged_per_question_before_the_bootstrap():
    rows = table(0.8, 0.4, questions=50, seeds=3)
    p = paired(rows, A4, B4)
    assert len(p) == 50  # one value per question, not per (question, seed)
    assert set(np.round(p.a * 3)) <= {0, 1, 2, 3}


def test_only_shared_questions_are_compared():
    rows = table(0.8, 0.4, questions=60)
    rows = rows[~((rows.setting == "B") & (rows.qid.isin([f"q{i}" for i in range(10)])))]
    assert decide_claim(rows, Claim("A beats B", A4, B4))["questions"] == 50


def test_gap_that_grows_on_the_same_questions_is_paired():
    small = table(0.6, 0.5, budget=4, seed=1)
    large = table(0.9, 0.3, budget=64, seed=2)
    rows = pd.concat([small, large])
    grows = Claim("the gap grows with N", Arm(setting="A", budget=64), Arm(setting="B", budget=64),
                  then=(A4, B4))
    assert decide_claim(rows, grows)["verdict"] == "holds"
    shrinks = Claim("the gap shrinks with N", A4, B4, then=(Arm(setting="A", budget=64), Arm(setting="B", budget=64)))
    assert decide_claim(rows, shrinks)["verdict"] == "fails"


def test_gap_between_disjoint_bins_resamples_each_side():
    # A helps hard questions (bins 4-5) by 0.4 and easy ones (bins 1-2) by nothing
    rows = table(lambda q: 0.8 if q >= 100 else 0.5, 0.5, bins=lambda q: 5 if q >= 100 else 1, questions=200)
    claim = Claim("A helps hard questions more", Arm(setting="A", budget=4, bin=(4, 5)),
                  Arm(setting="B", budget=4, bin=(4, 5)),
                  then=(Arm(setting="A", budget=4, bin=(1, 2)), Arm(setting="B", budget=4, bin=(1, 2))))
    row = decide_claim(rows, claim)
    assert row["verdict"] == "holds" and row["questions"] == 200 and 0.2 < row["difference"] < 0.45


def test_decide_is_deterministic_and_has_the_documented_columns():
    rows = table(0.6, 0.5)
    claims = [Claim("A beats B", A4, B4), Claim("B beats A", B4, A4)]
    first, again = decide(rows, claims), decide(rows, claims)
    assert list(first.columns) == FINDING_COLUMNS
    pd.testing.assert_frame_equal(first, again)
    assert first.difference.iloc[0] == pytest.approx(-first.difference.iloc[1])
    assert set(first.verdict) <= {"holds", "fails", "inconclusive", "uninformative"}


def test_an_arm_on_an_unknown_column_names_it():
    with pytest.raises(ValueError, match="arm"):
        decide_claim(table(0.5, 0.5), Claim("x", Arm(where={"nope": 1}), B4))


def test_an_arm_that_selects_nothing_is_uninformative():
    row = decide_claim(table(0.5, 0.5), Claim("x", Arm(setting="C"), B4))
    assert row["verdict"] == "uninformative" and row["questions"] == 0
