"""Fine-tuning the revision model (paper §6.1): the base policy trained on revision trajectories with the `Trainer`.

Each example is the question, the trajectory's wrong attempts in context (`task.prompt(problem, attempts)`), then
the correct attempt; the loss is on the correct attempt only. The paper kept the checkpoint "slightly after" the
validation loss started to rise (the revision model then revises more often); here the loss is evaluated on held-out
training questions every `eval_every` steps and the checkpoint of the evaluation right after the lowest one is kept
(the lowest itself when it is the last).

    spec = train_revision_model(cache, ModelSpec(base_path), task, problems, traj, RevisionTrainConfig())
"""
from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

from .batching import right_pad
from .cache import Cache, content_key
from .checks import check, check_choice, check_int, check_positive
from .model_spec import ModelSpec
from .revisions import parting_index
from .training import Corpus, collate_packed_solution_loss, collate_solution_loss, quiet_trainer
from .value_head import load_backbone


@dataclass(frozen=True)
class RevisionTrainConfig:
    learning_rate: float = 3e-4  # AdamW peak rate (constant after warm-up): a fine-tune, below the pretraining rate
    batch_size: int = 32  # trajectories per optimizer step
    epochs: int = 3  # passes over the trajectories; the checkpoint is chosen from the evaluations along the way
    eval_every: int = 50  # optimizer steps between validation losses (and checkpoints)
    eval_fraction: float = 0.1  # share of the training questions held out for the validation loss
    warmup_steps: int = 20
    # "random" or "by_length" (batches of similar lengths: 2.1x faster on default, but measured worse: held-out loss
    # 0.170 against 0.116, and 10.7% of chain attempts ran to the token cap against 0.5%)
    batching: str = "random"
    # each batch's trajectories packed into rows (`training.collate_packed_solution_loss`): the same batches and
    # gradients on 30% of the padded tokens, 2.5-4x faster steps on default; validation batches stay padded
    packed: bool = True
    seed: int = 0

    def __post_init__(self):
        for name in ("batch_size", "epochs", "eval_every"):
            check_int(name, getattr(self, name))
        check_positive("learning_rate", self.learning_rate)
        check(0 < self.eval_fraction < 1, "eval_fraction", self.eval_fraction, "a float in (0, 1)")
        check_choice("batching", self.batching, ("by_length", "random"))


def revision_contexts(task, problems: list, traj: pd.DataFrame) -> list[str]:
    """Per trajectory, the text before its target: the question and the attempts in context, as the task writes it."""
    by_qid = {p.qid: p for p in problems}
    return [task.prompt(by_qid[q], list(a)) for q, a in zip(traj.qid, traj.attempts)]


def revision_examples(task, problems: list, traj: pd.DataFrame, tokenizer) -> tuple[list[list[int]], list[int]]:
    """(token ids, context lengths) of every trajectory: bos + question + attempts + target + eos, and how many of
    those tokens are context (no loss)."""
    contexts = revision_contexts(task, problems, traj)
    texts = [c + t for c, t in zip(contexts, traj.target)]
    ids = [row + [tokenizer.eos_token_id] for row in tokenizer(texts).input_ids]
    return ids, [len(r) for r in tokenizer(contexts).input_ids]


def chosen_evaluation(eval_losses: list[float]) -> int:
    """Index of the kept evaluation: the one right after the lowest validation loss (the lowest if it is the last)."""
    check(len(eval_losses) > 0, "eval_losses", eval_losses, "at least one evaluation")
    best = int(np.argmin(eval_losses))
    return min(best + 1, len(eval_losses) - 1)


def train_revision_model(cache: Cache, base: ModelSpec, task, problems: list, traj: pd.DataFrame,
                         cfg: RevisionTrainConfig, disable_tqdm: bool | None = None) -> ModelSpec:
    """Fine-tune (or reuse from the cache) the causal LM `base` on the trajectories `traj` of `problems`;
    returns the revision model's spec. Its folder holds `train_record.json` and `log_history.parquet`."""
    check(len(traj) > 0, "traj", len(traj), "at least one trajectory (no training question had a correct sample)")
    # fields at the value they had before the field existed stay out of the key, so caches made before it are found
    train = {k: v for k, v in asdict(cfg).items() if (k, v) not in (("batching", "random"), ("packed", False))}
    # the texts as the model reads them, so a change of the task's prompt format retrains
    key = {"base": base.key(), "task": task.key, "train": train,
           "trajectories": content_key({"qid": traj.qid.tolist(), "target": traj.target.tolist(),
                                        "context": revision_contexts(task, problems, traj)})}
    with cache.model_dir("revision-model", key) as (final, work):
        if work is not None:
            _train(base, task, problems, traj, cfg, work, disable_tqdm)
    return ModelSpec(str(final), device=base.device, dtype=base.dtype, param=base.param)


@functools.cache
def _eval_collator_trainer():
    """A `Trainer` whose validation batches have a collator of their own: the evaluation loop weighs each batch's loss
    by its rows, which packing would make a count of rows rather than of trajectories. Defined at first use: importing
    `Trainer` costs ~2 s, which every notebook's warm rerun (which trains nothing) would otherwise pay."""
    from transformers import Trainer

    class EvalCollatorTrainer(Trainer):
        def __init__(self, *args, eval_collator, **kwargs):
            super().__init__(*args, **kwargs)
            self.eval_collator = eval_collator

        def get_eval_dataloader(self, eval_dataset=None):
            train_collator, self.data_collator = self.data_collator, self.eval_collator
            try:
                return super().get_eval_dataloader(eval_dataset)
            finally:
                self.data_collator = train_collator

    return EvalCollatorTrainer


def _train(base: ModelSpec, task, problems, traj, cfg: RevisionTrainConfig, out_dir: Path, disable_tqdm):
    tokenizer = AutoTokenizer.from_pretrained(base.path, revision=base.revision)
    model = AutoModelForCausalLM.from_pretrained(base.path, revision=base.revision)
    ids, context = revision_examples(task, problems, traj, tokenizer)
    qids = np.array(sorted(traj.qid.unique()))
    check(len(qids) >= 2, "traj", f"trajectories of {len(qids)} question(s)",
          "trajectories of >= 2 questions (one is held out for the validation loss): sample more questions")
    n_held = min(len(qids) - 1, max(1, round(cfg.eval_fraction * len(qids))))
    held = set(np.random.default_rng(cfg.seed).choice(qids, n_held, replace=False))
    is_held = traj.qid.isin(held).to_numpy()
    split = {h: ([i for i, m in zip(ids, is_held) if m == h], [c for c, m in zip(context, is_held) if m == h])
             for h in (True, False)}
    # the held-out set in length order, so its batches carry little padding (its loss does not depend on order)
    order = np.argsort([len(i) for i in split[True][0]], kind="stable")
    split[True] = ([split[True][0][i] for i in order], [split[True][1][i] for i in order])
    steps = cfg.epochs * -(-len(split[False][0]) // cfg.batch_size)
    eval_every = min(cfg.eval_every, max(1, steps // 4))  # at least a few evaluations to choose from
    args = TrainingArguments(
        output_dir=str(out_dir / "trainer"), per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=256,
        num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="constant_with_warmup", weight_decay=0.01, max_grad_norm=1.0,
        eval_strategy="steps", eval_steps=eval_every, save_strategy="steps", save_steps=eval_every,
        save_only_model=True, prediction_loss_only=True, logging_steps=eval_every, report_to="none",
        use_cpu=base.device == "cpu", seed=cfg.seed, data_seed=cfg.seed, dataloader_num_workers=0,
        remove_unused_columns=False, disable_tqdm=disable_tqdm,
        train_sampling_strategy="group_by_length" if cfg.batching == "by_length" else "random",
    )
    padded = collate_solution_loss(tokenizer.pad_token_id)
    trainer = quiet_trainer(_eval_collator_trainer()(model=model, args=args, train_dataset=Corpus(*split[False]),
                                     eval_dataset=Corpus(*split[True]), eval_collator=padded,
                                     data_collator=collate_packed_solution_loss(tokenizer.pad_token_id)
                                     if cfg.packed else padded),
                            "training the revision model", disable_tqdm)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    history = pd.DataFrame(trainer.state.log_history)
    evals = history.dropna(subset=["eval_loss"]).reset_index(drop=True)
    kept = chosen_evaluation(evals.eval_loss.tolist())
    step = int(evals.step[kept])
    chosen = AutoModelForCausalLM.from_pretrained(out_dir / "trainer" / f"checkpoint-{step}")
    chosen.config.use_cache = True
    chosen.config.max_position_embeddings = max(chosen.config.max_position_embeddings, max(map(len, ids)))
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)
    chosen.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    record = {"trajectories": len(split[False][0]), "eval_trajectories": len(split[True][0]),
              "held_out_questions": len(held), "steps": int(trainer.state.global_step), "eval_every": eval_every,
              "lowest_eval_step": int(evals.step[int(np.argmin(evals.eval_loss))]), "chosen_step": step,
              "chosen_eval_loss": float(evals.eval_loss[kept]), "lowest_eval_loss": float(evals.eval_loss.min()),
              "tokens_per_epoch": sum(map(len, split[False][0])), "packed": cfg.packed, "wall_s": wall,
              "learning_rate": cfg.learning_rate,
              "attempts_in_context": traj.k.value_counts().sort_index().to_dict()}
    (out_dir / "train_record.json").write_text(json.dumps({k: (v if not isinstance(v, dict) else
                                                               {str(a): int(b) for a, b in v.items()})
                                                           for k, v in record.items()}, indent=1))
    history.to_parquet(out_dir / "log_history.parquet", index=False)


# `parting_probs`' contexts: the column of `parting_pairs` whose attempt precedes the question, if any
CONTEXTS = {"none": None, "unrelated attempt": "unrelated", "wrong attempt": "wrong"}


@torch.no_grad()
def parting_probs(model: ModelSpec, task, problems: list, pairs: pd.DataFrame, batch_size: int = 128) -> pd.DataFrame:
    """Does `model` read the previous attempt? For each pair (qid, wrong, right, unrelated) of
    `revisions.parting_pairs`, at the first token where the right attempt departs from the wrong one: the probability
    of the wrong attempt's token and of the right one's, after the question alone (context "none"), after the question
    with another question's attempt in context ("unrelated attempt": a context with nothing to read, so a model that is
    merely better or worse with any attempt before it moves here too) and with the wrong attempt in context ("wrong
    attempt"). A model that reads it moves probability from the first token to the second between the unrelated and
    the wrong attempt; one that ignores it gives equal columns. One forward pass per pair and context; no sampling.
    Columns: pair (the row of `pairs`), qid, context, p_wrong, p_right (pairs whose token ids never part, e.g. a right
    attempt extending the wrong one, are left out)."""
    lm, tokenizer = load_backbone(model.path, model.device, model.dtype, model.revision)
    by_qid = {p.qid: p for p in problems}
    rows = []
    for context, column in CONTEXTS.items():
        if column and (column not in pairs or pairs[column].isna().any()):  # (one question: nothing unrelated)
            continue
        items = []
        attempts = pairs[column] if column else [None] * len(pairs)
        for pair, (qid, wrong, right, attempt) in enumerate(zip(pairs.qid, pairs.wrong, pairs.right, attempts)):
            prompt = task.prompt(by_qid[qid], [] if attempt is None else [attempt])
            r, w = tokenizer(prompt + right).input_ids, tokenizer(prompt + wrong).input_ids
            part = parting_index(r, w)
            if part is not None:
                items.append((pair, qid, r[:part], w[part], r[part]))
        for i in range(0, len(items), batch_size):
            batch = items[i:i + batch_size]
            x, mask = right_pad([b[2] for b in batch], tokenizer.pad_token_id)
            logits = lm(input_ids=x.to(lm.device), attention_mask=mask.to(lm.device)).logits.float()
            last = logits[torch.arange(len(batch)), mask.sum(1).to(lm.device) - 1].softmax(-1).cpu()
            rows += [(b[0], b[1], context, float(p[b[3]]), float(p[b[4]])) for b, p in zip(batch, last)]
    return pd.DataFrame(rows, columns=["pair", "qid", "context", "p_wrong", "p_right"])


def train_record(path: str) -> dict:
    return json.loads((Path(path) / "train_record.json").read_text())
