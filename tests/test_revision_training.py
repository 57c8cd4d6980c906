"""The revision model: loss on the correct attempt only, the checkpoint right after the lowest validation loss."""
import pytest
from test_revisions import TRAIN, graded
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttc_utils.cache import Cache
from ttc_utils.model_spec import ModelSpec
from ttc_utils.revision_training import (
    RevisionTrainConfig,
    chosen_evaluation,
    revision_examples,
    train_record,
    train_revision_model,
)
from ttc_utils.revisions import trajectories
from ttc_utils.tasks.arithmetic import ArithmeticTask
from ttc_utils.training import collate_solution_loss

TASK = ArithmeticTask()


@pytest.mark.parametrize("losses,kept", [([3, 2, 1], 2), ([3, 1, 2, 4], 2), ([1, 2, 3], 1), ([5], 0)])
def test_the_checkpoint_is_the_evaluation_after_the_lowest(losses, kept):
    assert chosen_evaluation(losses) == kept


def test_the_loss_is_on_the_correct_attempt_only(tiny_policy_dir):
    tok = AutoTokenizer.from_pretrained(tiny_policy_dir)
    traj = trajectories(TASK, TRAIN, graded(TRAIN), seed=0)
    ids, context = revision_examples(TASK, TRAIN, traj, tok)
    by_qid = {p.qid: p for p in TRAIN}
    for row, x, n in zip(traj.itertuples(), ids, context):
        assert tok.decode(x[1:n]) == TASK.prompt(by_qid[row.qid], row.attempts)  # bos + question + attempts
        assert tok.decode(x[n:-1]) == row.target
    batch = collate_solution_loss(tok.pad_token_id)([{"input_ids": ids[0], "prompt_len": context[0]}])
    assert int((batch["labels"] != -100).sum()) == len(ids[0]) - context[0]  # target tokens and eos


def test_a_revision_model_trains_and_is_cached(tiny_policy_dir, tmp_path):
    cache = Cache(tmp_path)
    traj = trajectories(TASK, TRAIN, graded(TRAIN), seed=0)
    cfg = RevisionTrainConfig(batch_size=16, epochs=2, eval_every=2)
    spec = train_revision_model(cache, ModelSpec(str(tiny_policy_dir)), TASK, TRAIN, traj, cfg, disable_tqdm=True)
    record = train_record(spec.path)
    assert record["chosen_step"] >= record["lowest_eval_step"] and record["trajectories"] > 0
    AutoModelForCausalLM.from_pretrained(spec.path)  # standard format
    again = train_revision_model(cache, ModelSpec(str(tiny_policy_dir)), TASK, TRAIN, traj, cfg, disable_tqdm=True)
    assert again.path == spec.path and train_record(again.path) == record


def test_packed_and_padded_fine_tunes_take_the_same_steps(tiny_policy_dir, tmp_path):
    import pandas as pd

    traj = trajectories(TASK, TRAIN, graded(TRAIN), seed=0)
    runs = {packed: train_revision_model(Cache(tmp_path), ModelSpec(str(tiny_policy_dir)), TASK, TRAIN, traj,
                                         RevisionTrainConfig(batch_size=16, epochs=2, eval_every=2, packed=packed),
                                         disable_tqdm=True) for packed in (True, False)}
    assert runs[True].path != runs[False].path  # two cache entries: their floats may differ in the last bits
    history = {k: pd.read_parquet(f"{v.path}/log_history.parquet").dropna(subset=["eval_loss"])
               for k, v in runs.items()}
    assert len(history[True]) > 1 and list(history[True].step) == list(history[False].step)
    assert history[True].eval_loss.to_numpy() == pytest.approx(history[False].eval_loss.to_numpy(), rel=1e-4)
    assert train_record(runs[True].path)["packed"] and not train_record(runs[False].path)["packed"]


def test_parting_probs_read_the_model_where_the_attempts_part(tiny_policy_dir):
    import torch

    from ttc_utils.revision_training import parting_probs
    from ttc_utils.revisions import parting_pairs

    pairs = parting_pairs(graded(TRAIN[:6]), per_question=2, seed=0)
    probs = parting_probs(ModelSpec(str(tiny_policy_dir)), TASK, TRAIN[:6], pairs, batch_size=5)  # several batches
    assert (probs.context.value_counts() == len(pairs)).all() and probs.context.nunique() == 3  # once per context
    tok, lm = AutoTokenizer.from_pretrained(tiny_policy_dir), AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    by_qid = {p.qid: p for p in TRAIN}
    for context, column in (("wrong attempt", "wrong"), ("unrelated attempt", "unrelated")):
        rows = probs[probs.context == context].reset_index(drop=True)
        for pair, row in zip(pairs.itertuples(), rows.itertuples()):  # one unpadded forward pass each, the long way
            prompt = TASK.prompt(by_qid[pair.qid], [getattr(pair, column)])
            r, w = tok(prompt + pair.right).input_ids, tok(prompt + pair.wrong).input_ids
            part = next(i for i, (a, b) in enumerate(zip(r, w)) if a != b)
            with torch.no_grad():
                p = lm(input_ids=torch.tensor([r[:part]])).logits[0, -1].softmax(-1)
            assert row.qid == pair.qid and row.pair == pair.Index
            assert row.p_wrong == pytest.approx(float(p[w[part]]), abs=1e-5)
            assert row.p_right == pytest.approx(float(p[r[part]]), abs=1e-5)
