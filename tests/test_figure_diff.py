"""The figure comparison leaves timings out and reports every other difference, however small."""
from ttc_utils.figure_diff import differences, strip_timings


def test_timings_are_left_out_and_any_number_that_moves_is_reported():
    a = {"curves": [{"budget": 1, "accuracy": 0.5, "seconds": 1.2}], "accounting": "arxiv"}
    b = {"curves": [{"budget": 1, "accuracy": 0.5, "seconds": 9.9}], "accounting": "arxiv"}
    assert differences(strip_timings(a), strip_timings(b)) == []
    c = {"curves": [{"budget": 1, "accuracy": 0.5000001}], "accounting": "arxiv"}
    assert differences(strip_timings(a), c) == [".curves[0].accuracy: 0.5 vs 0.5000001"]
    assert differences([1, 2], [1]) == [": 2 vs 1 entries"]
    assert differences({"x": 1}, {"y": 1}) == [".x: only on one side", ".y: only on one side"]
