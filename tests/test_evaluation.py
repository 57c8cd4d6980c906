import pandas as pd

from ttc_utils.evaluation import pass1_buckets, pass1_per_question


def test_pass1_per_question_and_buckets():
    samples = pd.DataFrame({"qid": ["a"] * 4 + ["b"] * 4 + ["c"] * 4, "num_steps": [1] * 4 + [2] * 4 + [3] * 4,
                            "correct": [1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0]})
    per_q = pass1_per_question(samples).set_index("qid")
    assert per_q.pass1.to_dict() == {"a": 1.0, "b": 0.25, "c": 0.0}
    b = pass1_buckets(per_q.pass1)
    assert list(b.questions) == [1, 1, 0, 0, 1]  # 0.0 -> first, 0.25 -> second, 1.0 -> closed last bucket
    assert b.share.sum() == 1.0
    edges = pass1_buckets(pd.Series([0.2, 0.4, 0.6, 0.8, 0.9999]))
    assert list(edges.questions) == [0, 1, 1, 1, 2]
