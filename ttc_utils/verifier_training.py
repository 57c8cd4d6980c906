"""Training a PRM or an ORM on Monte Carlo labels (`labels.mc_labels`), cached as a model folder.

The PRM learns the soft Monte Carlo label of every step, the ORM the solution's final correctness at every step
end (Cobbe et al.), so it learns outcomes only. Two recipes (`VerifierTrainConfig.head`):
- "likelihood" (default): a small value head over a frozen backbone's hidden state and token log-probabilities
  (`value_head`; why: its module docstring);
- "finetune": the backbone under a fresh scalar head (`AutoModelForTokenClassification`, num_labels=1), trained
  with binary cross-entropy on soft targets at step ends by the transformers `Trainer`.
Both early-stop on a held-out share of the training questions and save in the standard format.

    prm = train_verifier(cache, ModelSpec(base_path), task, labels, "prm", VerifierTrainConfig())
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
    EarlyStoppingCallback,
    TrainingArguments,
)

from .batching import right_pad
from .cache import Cache, content_key
from .checks import check, check_choice, check_int, check_positive
from .models import count_params
from .training import quiet_trainer
from .value_head import HEADS, fit_value_head, load_backbone, save_value_verifier, step_features
from .verifier import encode_many

KINDS = ("prm", "orm")


@dataclass(frozen=True)
class VerifierTrainConfig:
    head: str = "likelihood"  # a value head on the frozen backbone's state and token log-probs, or "finetune"
    learning_rate: float = 1e-3  # AdamW; the paper's 3e-5 is for fine-tuning PaLM 2-S*, not a small head
    batch_size: int = 64  # solutions per optimizer step
    max_epochs: int = 100  # upper bound; early stopping usually ends sooner
    eval_fraction: float = 0.1  # share of training *questions* held out for early stopping
    eval_every: int = 100  # finetune: optimizer steps between held-out evaluations (the head: every epoch)
    patience: int = 5  # evaluations without improvement before stopping
    dropout: float = 0.05  # finetune: on the hidden state under the scalar head and in attention (the paper: 0.05)
    label_tokens: str = "step_end"  # finetune: train at each step's last token, or at "all" of its tokens
    extra_layers: int = 0  # finetune: new decoder layers on top of the policy's (see `verifier_from_policy`)
    freeze_policy_layers: bool = False  # finetune: train only the new layers and the head
    seed: int = 0

    def __post_init__(self):
        for name in ("batch_size", "max_epochs", "eval_every", "patience"):
            check_int(name, getattr(self, name))
        check_positive("learning_rate", self.learning_rate)
        check_choice("head", self.head, HEADS)
        check_choice("label_tokens", self.label_tokens, ("step_end", "all"))
        check_int("extra_layers", self.extra_layers, lo=0)
        check(0 < self.eval_fraction < 1, "eval_fraction", self.eval_fraction, "a float in (0, 1)")


class _Steps(torch.utils.data.Dataset):
    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _collate(pad_id: int):
    """Right-pad; `labels` holds each step's target at its step-end token and -1 elsewhere (ignored)."""
    def collate(items):
        ids, mask = right_pad([it["input_ids"] for it in items], pad_id)
        labels = torch.full(ids.shape, -1.0)
        for r, it in enumerate(items):
            labels[r, it["positions"]] = torch.tensor(it["targets"], dtype=torch.float)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return collate


def _first_step_len(tokenizer, steps: list[str]) -> int:
    return len(tokenizer(steps[0] if steps else "", add_special_tokens=False).input_ids)


def soft_bce(outputs, labels, num_items_in_batch=None):
    """Binary cross-entropy with soft targets, averaged over the labelled step ends of the batch."""
    logits = outputs.logits[..., 0]
    keep = labels >= 0
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[keep].float(), labels[keep])


def training_targets(labels: pd.DataFrame, kind: str) -> list[list[float]]:
    """PRM: the Monte Carlo soft labels; ORM: the final correctness at every step end."""
    check_choice("kind", kind, KINDS)
    if kind == "prm":
        return [list(t) for t in labels.targets]
    return [[float(c)] * len(t) for c, t in zip(labels.correct, labels.targets)]


def train_verifier(cache: Cache, base, task, labels: pd.DataFrame, kind: str, cfg: VerifierTrainConfig,
                   disable_tqdm: bool | None = None) -> str:
    """Train (or reuse from the cache) a PRM or ORM on `labels` (from `mc_labels`) over the backbone of the
    `ModelSpec` `base`, on its device; returns the folder. `task` splits each completion into steps."""
    targets = training_targets(labels, kind)
    steps = [task.split_steps(c) for c in labels.completion]
    key = {"base": base.key(), "kind": kind, "train": asdict(cfg),
           # the prompts too: two label sets may differ only in what the verifier reads before each completion
           # (the revision ORM with and without the previous attempts)
           "labels": content_key({"qid": labels.qid.tolist(), "prompt": labels.prompt.tolist(),
                                  "completion": labels.completion.tolist(),
                                  "targets": [np.round(t, 6).tolist() for t in targets]})}
    with cache.model_dir(f"verifier-{kind}", key) as (final, work):
        if work is not None:
            train = _train_value_head if cfg.head == "likelihood" else _train
            train(base, labels, steps, targets, kind, cfg, work, disable_tqdm)
    return str(final)


def verifier_from_policy(base_path: str, cfg: VerifierTrainConfig, revision: str | None = None):
    """The policy's backbone under a fresh scalar head, plus `extra_layers` new decoder layers on top.

    Why extra layers: whether a token was right is the policy's *prediction* at the position before it
    compared with the token itself; in the policy that prediction only exists after its last layer, where
    no later layer can read it. A new top layer can attend to it. New layers start as the identity (zero
    output projections), so training starts from the policy's own features.
    """
    policy_config = AutoConfig.from_pretrained(base_path, revision=revision)
    config = AutoConfig.from_pretrained(base_path, num_labels=1, revision=revision)
    config.classifier_dropout = config.attention_dropout = cfg.dropout
    config.num_hidden_layers = policy_config.num_hidden_layers + cfg.extra_layers
    if getattr(config, "layer_types", None):
        config.layer_types = (list(config.layer_types) * 2)[:config.num_hidden_layers]
    torch.manual_seed(cfg.seed)
    model = AutoModelForTokenClassification.from_config(config)
    policy = AutoModelForCausalLM.from_pretrained(base_path, revision=revision)
    missing, unexpected = model.model.load_state_dict(policy.model.state_dict(), strict=False)
    new = range(policy_config.num_hidden_layers, config.num_hidden_layers)
    assert not unexpected and all(any(f"layers.{i}." in m for i in new) for m in missing), (missing, unexpected)
    for i in new:
        torch.nn.init.zeros_(model.model.layers[i].self_attn.o_proj.weight)
        torch.nn.init.zeros_(model.model.layers[i].mlp.down_proj.weight)
    torch.nn.init.normal_(model.score.weight, std=0.02)
    if model.score.bias is not None:
        torch.nn.init.zeros_(model.score.bias)
    if cfg.freeze_policy_layers:
        for p in model.model.embed_tokens.parameters():
            p.requires_grad_(False)
        for i in range(policy_config.num_hidden_layers):
            for p in model.model.layers[i].parameters():
                p.requires_grad_(False)
    return model


def _held_out_questions(labels: pd.DataFrame, cfg: VerifierTrainConfig) -> set:
    qids = np.array(sorted(labels.qid.unique()))
    return set(np.random.default_rng(cfg.seed).choice(qids, max(1, int(round(cfg.eval_fraction * len(qids)))),
                                                      replace=False))


def _train_value_head(base, labels, steps, targets, kind, cfg, out_dir, disable_tqdm):
    lm, tokenizer = load_backbone(base.path, base.device, base.dtype, base.revision)
    held = _held_out_questions(labels, cfg)
    t0 = time.perf_counter()
    features, tokens = step_features(lm, tokenizer, labels.prompt.tolist(), steps,
                                     progress=not disable_tqdm)
    held_out = labels.qid.isin(held).to_numpy()
    head, fit = fit_value_head(features, targets, held_out, learning_rate=cfg.learning_rate,
                               batch_size=cfg.batch_size, max_epochs=cfg.max_epochs, patience=cfg.patience,
                               seed=cfg.seed)
    wall = time.perf_counter() - t0
    save_value_verifier(out_dir, lm, tokenizer, head, kind)
    record = {"kind": kind, "head": cfg.head, "train_solutions": int((~held_out).sum()),
              "eval_solutions": int(held_out.sum()), "held_out_questions": len(held), "steps": fit["steps"],
              "best_step": fit["best_step"], "best_eval_loss": fit["best_eval_loss"], "epochs": fit["epochs"],
              "tokens_per_epoch": int(np.asarray(tokens)[~held_out].sum()), "wall_s": wall,
              "learning_rate": cfg.learning_rate, "non_embedding_params": count_params(lm),
              "head_params": sum(p.numel() for p in head.parameters())}
    (out_dir / "train_record.json").write_text(json.dumps(record, indent=1))
    pd.DataFrame(fit["history"]).to_parquet(out_dir / "log_history.parquet", index=False)


def _train(base, labels, steps, targets, kind, cfg, out_dir, disable_tqdm):
    from transformers import Trainer  # ~2 s to import: only where a verifier trains, not on a warm rerun

    tokenizer = AutoTokenizer.from_pretrained(base.path, revision=base.revision)
    held = _held_out_questions(labels, cfg)
    items = {True: [], False: []}
    encoded = encode_many(tokenizer, labels.prompt.tolist(), steps)
    for qid, solution, t, (ids, positions) in zip(labels.qid, steps, targets, encoded):
        if cfg.label_tokens == "all":  # every token of step i carries step i's target
            starts = [positions[0] - _first_step_len(tokenizer, solution)] + positions[:-1]
            spans = [range(a + 1, b + 1) for a, b in zip(starts, positions)]
            t = [x for x, span in zip(t, spans) for _ in span]
            positions = [i for span in spans for i in span]
        items[qid in held].append({"input_ids": ids, "positions": positions, "targets": t})
    model = verifier_from_policy(base.path, cfg, base.revision)
    # evaluate at least once per epoch, so early stopping has something to keep even on tiny runs
    eval_every = min(cfg.eval_every, -(-len(items[False]) // cfg.batch_size))
    model.config.pad_token_id = tokenizer.pad_token_id
    args = TrainingArguments(
        output_dir=str(out_dir / "trainer"), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=512, num_train_epochs=cfg.max_epochs, learning_rate=cfg.learning_rate,
        warmup_steps=50, lr_scheduler_type="constant_with_warmup", weight_decay=0.01, max_grad_norm=1.0,
        eval_strategy="steps", eval_steps=eval_every, save_strategy="steps", save_steps=eval_every,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_loss",
        greater_is_better=False, prediction_loss_only=True, logging_steps=eval_every, report_to="none",
        use_cpu=base.device == "cpu", seed=cfg.seed, data_seed=cfg.seed, dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=disable_tqdm,
    )
    trainer = quiet_trainer(
        Trainer(model=model, args=args, train_dataset=_Steps(items[False]), eval_dataset=_Steps(items[True]),
                data_collator=_collate(tokenizer.pad_token_id), compute_loss_func=soft_bce,
                callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)]),
        f"fine-tuning the {kind.upper()}", disable_tqdm)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    history = pd.DataFrame(trainer.state.log_history)
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    tokens = sum(len(it["input_ids"]) for it in items[False])
    record = {"kind": kind, "head": cfg.head, "train_solutions": len(items[False]), "eval_solutions": len(items[True]),
              "held_out_questions": len(held), "steps": int(trainer.state.global_step),
              "best_step": int(trainer.state.best_global_step or trainer.state.global_step),
              "best_eval_loss": float(trainer.state.best_metric), "epochs": float(trainer.state.epoch),
              "tokens_per_epoch": tokens, "wall_s": wall, "learning_rate": cfg.learning_rate,
              "non_embedding_params": sum(p.numel() for p in model.parameters())
              - model.get_input_embeddings().weight.numel()}
    (out_dir / "train_record.json").write_text(json.dumps(record, indent=1))
    history.to_parquet(out_dir / "log_history.parquet", index=False)


def train_record(path: str) -> dict:
    return json.loads((Path(path) / "train_record.json").read_text())
