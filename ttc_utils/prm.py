"""Process and outcome reward models: Monte Carlo step labels, training, and scoring a table of solutions.

PRM labels follow Math-Shepherd, as the paper does: for training questions (never the test split) the
base policy samples solutions; for each step prefix of a solution with a parsable answer, R rollouts
continue from that prefix and the step's soft label is the fraction of them that reach the right answer.
The final-answer line is labelled by the solution's own correctness. The ORM gets the solution's final
correctness at every step end (Cobbe et al.), so it learns outcomes only.

Both start from the base policy's weights with a fresh scalar head (`AutoModelForTokenClassification`,
num_labels=1), are trained with binary cross-entropy on soft targets at step ends by the transformers
`Trainer`, early-stopped on a held-out share of the training questions, and saved in the standard format.

    labels = mc_labels(cache, policy_path, problems, SamplingParams(n=16), rollouts=8, seed=0)
    prm = train_verifier(cache, policy_path, labels, "prm", VerifierTrainConfig())
    scores = score_solutions(cache, prm, test_problems, pool)        # qid, sample_index, last, min, prod
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
from scipy import stats
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer, EarlyStoppingCallback, Trainer,
                          TrainingArguments)

from .aggregation import AGGREGATIONS, aggregate
from .cache import Cache, content_key
from .models import count_params
from .policy import SamplingParams, TransformersPolicy, derive_seed, right_pad
from .sampling import policy_key, sample_problems
from .value_head import HEADS, fit_value_head, likelihood_column, load_backbone, save_value_verifier, step_features
from .verifier import encode_steps, load_verifier, step_end_offsets
from .world import Problem, first_error, grade, step_labels

KINDS = ("prm", "orm")


def through_answer(completion: str) -> str:
    """The completion cut after its final-answer line: what a verifier reads (trailing junk is not a step)."""
    start = 0
    for line in completion.split("\n"):
        if line.startswith("A:"):
            end = start + len(line)
            return completion[:end + 1] if end < len(completion) else completion
        start += len(line) + 1
    return completion


def step_prefixes(completion: str) -> list[str]:
    """The completion up to and including the end of each step."""
    return [completion[:e + 1] for e in step_end_offsets(completion)]


# ----------------------------------------------------------------------------------------------------
# Monte Carlo labels


def mc_labels(cache: Cache, policy_path: str, problems: list[Problem], params: SamplingParams, rollouts: int,
              seed: int, questions_per_chunk: int = 32, batch_size: int = 512, progress: bool = True
              ) -> pd.DataFrame:
    """One row per sampled solution with a parsable answer: qid, prompt, completion (cut after the answer
    line), correct, targets (the soft label of every step; the last is the answer line's 0/1), truth
    (the world's verdict per step: still on the correct path), and rollouts (how many were run per prefix).

    Identical prefixes of one question share their rollouts (they are the same random variable).
    """
    if not (isinstance(rollouts, int) and rollouts >= 1):
        raise ValueError(f"rollouts={rollouts!r} is not allowed: expected an int >= 1")
    solutions = sample_problems(cache, policy_path, problems, params, seed, questions_per_chunk=questions_per_chunk,
                                batch_size=batch_size, name="prm-solutions", progress=progress)
    by_qid = {p.qid: p for p in problems}
    chunks = [problems[i:i + questions_per_chunk] for i in range(0, len(problems), questions_per_chunk)]
    rollout_params = SamplingParams(n=rollouts, temperature=params.temperature, top_p=params.top_p,
                                    max_new_tokens=params.max_new_tokens)
    key = {"policy": policy_key(policy_path), "questions": content_key([p.qid for p in problems]),
           "sampling": asdict(params), "rollouts": rollouts, "seed": seed,
           "questions_per_chunk": questions_per_chunk, "batch_size": batch_size, "sampler": "shared-prefill"}
    policy = None

    def compute(i: int) -> pd.DataFrame:
        nonlocal policy
        qids = {p.qid for p in chunks[i]}
        sols = solutions[solutions.qid.isin(qids) & solutions.answer.notna()]
        texts = [through_answer(t) for t in sols.text]
        prefixes = {}  # (qid, prefix) -> index; the answer line's prefix needs no rollouts
        for qid, text in zip(sols.qid, texts):
            for pre in step_prefixes(text)[:-1]:
                prefixes.setdefault((qid, pre), len(prefixes))
        values = np.zeros(len(prefixes))
        if prefixes:
            if policy is None:
                policy = TransformersPolicy.from_pretrained(policy_path, batch_size=batch_size, progress=progress)
            pairs = list(prefixes)
            # R rollouts of one prefix share its prefill (the shared-prefill sampler)
            out = policy.sample_shared([by_qid[q].prompt + pre for q, pre in pairs], rollout_params,
                                       seed=derive_seed(seed, "rollouts", i))
            ok = [grade(pairs[j][1] + t, by_qid[pairs[j][0]].answer) for j, t in zip(out.prompt_index, out.text)]
            values = pd.Series(ok, dtype=float).groupby(out.prompt_index.to_numpy()).mean().reindex(
                range(len(pairs))).to_numpy()
        rows = []
        for qid, text, correct, sample_index in zip(sols.qid, texts, sols.correct, sols.sample_index):
            pres = step_prefixes(text)
            targets = [float(values[prefixes[(qid, p)]]) for p in pres[:-1]] + [float(correct)]
            # the world's verdict per step line (an empty line counts as a wrong step), then the answer
            lines = step_labels(by_qid[qid], text)
            truth = (lines + [False] * len(pres))[:len(pres) - 1] + [bool(correct)]
            rows.append({"qid": qid, "sample_index": int(sample_index), "prompt": by_qid[qid].prompt,
                         "completion": text, "correct": bool(correct), "targets": targets, "truth": truth,
                         "rollouts": rollouts})
        return pd.DataFrame(rows, columns=["qid", "sample_index", "prompt", "completion", "correct", "targets",
                                           "truth", "rollouts"])

    return cache.chunked("prm-labels", key, len(chunks), compute, desc=f"MC rollouts ({len(problems)} questions)")


# ----------------------------------------------------------------------------------------------------
# training


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
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r} is not allowed: expected an int >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate!r} is not allowed: expected a float > 0")
        if self.head not in HEADS:
            raise ValueError(f"head={self.head!r} is not allowed: expected one of {HEADS}")
        if self.label_tokens not in ("step_end", "all"):
            raise ValueError(f"label_tokens={self.label_tokens!r} is not allowed: expected 'step_end' or 'all'")
        if not isinstance(self.extra_layers, int) or self.extra_layers < 0:
            raise ValueError(f"extra_layers={self.extra_layers!r} is not allowed: expected an int >= 0")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction={self.eval_fraction!r} is not allowed: expected a float in (0, 1)")


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


def _first_step_len(tokenizer, completion: str) -> int:
    first = completion[:step_end_offsets(completion)[0] + 1] if completion else ""
    return len(tokenizer(first, add_special_tokens=False).input_ids)


def soft_bce(outputs, labels, num_items_in_batch=None):
    """Binary cross-entropy with soft targets, averaged over the labelled step ends of the batch."""
    logits = outputs.logits[..., 0]
    keep = labels >= 0
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[keep].float(), labels[keep])


def training_targets(labels: pd.DataFrame, kind: str) -> list[list[float]]:
    """PRM: the Monte Carlo soft labels; ORM: the final correctness at every step end."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not allowed: expected one of {KINDS}")
    if kind == "prm":
        return [list(t) for t in labels.targets]
    return [[float(c)] * len(t) for c, t in zip(labels.correct, labels.targets)]


def train_verifier(cache: Cache, base_path: str, labels: pd.DataFrame, kind: str, cfg: VerifierTrainConfig,
                   disable_tqdm: bool | None = None) -> str:
    """Train (or reuse from the cache) a PRM or ORM on `labels` (from `mc_labels`); returns its folder."""
    targets = training_targets(labels, kind)
    key = {"base": policy_key(base_path), "kind": kind, "train": asdict(cfg),
           "labels": content_key({"qid": labels.qid.tolist(), "completion": labels.completion.tolist(),
                                  "targets": [np.round(t, 6).tolist() for t in targets]})}
    with cache.model_dir(f"verifier-{kind}", key) as (final, work):
        if work is not None:
            train = _train_value_head if cfg.head == "likelihood" else _train
            train(base_path, labels, targets, kind, cfg, work, disable_tqdm)
    return str(final)


def verifier_from_policy(base_path: str, cfg: VerifierTrainConfig):
    """The policy's backbone under a fresh scalar head, plus `extra_layers` new decoder layers on top.

    Why extra layers: whether a token was right is the policy's *prediction* at the position before it
    compared with the token itself; in the policy that prediction only exists after its last layer, where
    no later layer can read it. A new top layer can attend to it. New layers start as the identity (zero
    output projections), so training starts from the policy's own features.
    """
    policy_config = AutoConfig.from_pretrained(base_path)
    config = AutoConfig.from_pretrained(base_path, num_labels=1)
    config.classifier_dropout = config.attention_dropout = cfg.dropout
    config.num_hidden_layers = policy_config.num_hidden_layers + cfg.extra_layers
    if getattr(config, "layer_types", None):
        config.layer_types = (list(config.layer_types) * 2)[:config.num_hidden_layers]
    torch.manual_seed(cfg.seed)
    model = AutoModelForTokenClassification.from_config(config)
    policy = AutoModelForCausalLM.from_pretrained(base_path)
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


def _train_value_head(base_path, labels, targets, kind, cfg, out_dir, disable_tqdm):
    lm, tokenizer = load_backbone(base_path)
    held = _held_out_questions(labels, cfg)
    t0 = time.perf_counter()
    features, tokens = step_features(lm, tokenizer, labels.prompt.tolist(), labels.completion.tolist(),
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


def _train(base_path, labels, targets, kind, cfg, out_dir, disable_tqdm):
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    held = _held_out_questions(labels, cfg)
    items = {True: [], False: []}
    for qid, prompt, completion, t in zip(labels.qid, labels.prompt, labels.completion, targets):
        ids, positions = encode_steps(tokenizer, prompt, completion)
        if cfg.label_tokens == "all":  # every token of step i carries step i's target
            spans = [range(a + 1, b + 1) for a, b in zip([positions[0] - _first_step_len(tokenizer, completion)] + positions[:-1], positions)]
            t = [x for x, span in zip(t, spans) for _ in span]
            positions = [i for span in spans for i in span]
        items[qid in held].append({"input_ids": ids, "positions": positions, "targets": t})
    model = verifier_from_policy(base_path, cfg)
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
        use_cpu=True, seed=cfg.seed, data_seed=cfg.seed, dataloader_num_workers=0, remove_unused_columns=False,
        disable_tqdm=disable_tqdm,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Steps(items[False]), eval_dataset=_Steps(items[True]),
                      data_collator=_collate(tokenizer.pad_token_id), compute_loss_func=soft_bce,
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)])
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


# ----------------------------------------------------------------------------------------------------
# scoring


def _question_chunks(problems: list[Problem], samples: pd.DataFrame, questions_per_chunk: int):
    """(problems by qid, the samples' qids in problem order cut into chunks, a content key of the samples):
    the chunking shared by every cached per-sample table of this module."""
    by_qid = {p.qid: p for p in problems}
    qids = sorted(samples.qid.unique(), key=list(by_qid).index)
    chunks = [qids[i:i + questions_per_chunk] for i in range(0, len(qids), questions_per_chunk)]
    samples_key = content_key({"qid": samples.qid.tolist(), "sample_index": samples.sample_index.tolist(),
                               "text": samples.text.tolist()})
    return by_qid, chunks, samples_key


def score_solutions(cache: Cache, verifier_path: str, problems: list[Problem], samples: pd.DataFrame,
                    name: str = "scores", questions_per_chunk: int = 64, batch_size: int = 512,
                    progress: bool = True) -> pd.DataFrame:
    """Per sample of `samples` (qid, sample_index, text): step_scores and every aggregation (last, min,
    prod) plus the verifier tokens spent on it. Cached in chunks of questions."""
    by_qid, chunks, samples_key = _question_chunks(problems, samples, questions_per_chunk)
    key = {"verifier": policy_key(verifier_path), "samples": samples_key, "questions_per_chunk": questions_per_chunk}
    verifier = None

    def compute(i: int) -> pd.DataFrame:
        nonlocal verifier
        if verifier is None:
            verifier = load_verifier(verifier_path, batch_size=batch_size, progress=progress)
        part = samples[samples.qid.isin(set(chunks[i]))]
        completions = [through_answer(t) for t in part.text]
        step_scores, tokens = verifier.score([by_qid[q].prompt for q in part.qid], completions)
        out = pd.DataFrame({"qid": part.qid.to_numpy(), "sample_index": part.sample_index.to_numpy(),
                            "step_scores": step_scores, "verifier_tokens": tokens})
        for how in AGGREGATIONS:
            out[how] = [aggregate(s, how) for s in step_scores]
        return out

    return cache.chunked(name, key, len(chunks), compute, desc=f"{name} ({samples.qid.nunique()} questions)")


# ----------------------------------------------------------------------------------------------------
# is it a real verifier?


def roc_auc(scores, correct) -> float:
    """Probability that a random correct solution outscores a random incorrect one (ties count half):
    the Mann-Whitney U statistic over n_correct * n_incorrect."""
    scores, correct = np.asarray(scores, dtype=float), np.asarray(correct, dtype=bool)
    pos, neg = scores[correct], scores[~correct]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(stats.mannwhitneyu(pos, neg, alternative="two-sided").statistic / (len(pos) * len(neg)))


def first_error_drops(problems: list[Problem], samples: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per sampled solution whose first wrong step j has a step before it: does the verifier's score
    fall from step j-1 to step j? Columns qid, sample_index, first_error, before, at, drop."""
    by_qid = {p.qid: p for p in problems}
    m = samples[["qid", "sample_index", "text"]].merge(scores[["qid", "sample_index", "step_scores"]],
                                                       on=["qid", "sample_index"])
    rows = []
    for qid, i, text, s in zip(m.qid, m.sample_index, m.text, m.step_scores):
        j = first_error(by_qid[qid], through_answer(text))
        if j is not None and 1 <= j < len(s):
            rows.append({"qid": qid, "sample_index": i, "first_error": j, "before": s[j - 1], "at": s[j],
                         "drop": bool(s[j] < s[j - 1])})
    return pd.DataFrame(rows, columns=["qid", "sample_index", "first_error", "before", "at", "drop"])


def policy_logprobs(cache: Cache, policy_path: str, problems: list[Problem], samples: pd.DataFrame,
                    questions_per_chunk: int = 64, batch_size: int = 512) -> pd.DataFrame:
    """A training-free reference verifier: the policy's own log-probability of each completion (summed over
    its tokens, and the least likely token). Per sample of `samples`: qid, sample_index, logprob_sum,
    logprob_min. It shows how much per-sample signal the policy's weights hold that a trained verifier
    could extract."""
    by_qid, chunks, samples_key = _question_chunks(problems, samples, questions_per_chunk)
    key = {"policy": policy_key(policy_path), "samples": samples_key, "questions_per_chunk": questions_per_chunk}
    models = {}

    def compute(i: int) -> pd.DataFrame:
        if not models:
            models["lm"], models["tok"] = load_backbone(policy_path)
        part = samples[samples.qid.isin(set(chunks[i]))]
        features, _ = step_features(models["lm"], models["tok"], [by_qid[q].prompt for q in part.qid],
                                    [through_answer(t) for t in part.text], batch_size)
        last = [f[-1] if len(f) else None for f in features]  # running sums over every step: the whole completion
        return pd.DataFrame({"qid": part.qid.to_numpy(), "sample_index": part.sample_index.to_numpy(),
                             "logprob_sum": [-np.inf if r is None else float(r[likelihood_column("run_sum")]) for r in last],
                             "logprob_min": [-np.inf if r is None else float(r[likelihood_column("run_min")]) for r in last]})

    return cache.chunked("logprobs", key, len(chunks), compute, desc="policy log-probabilities")


def within_question_auc(scores, correct, qids) -> float:
    """Mean over questions with both correct and incorrect samples of the per-question ROC AUC: how well a
    verifier ranks the samples of one question, with question difficulty taken out."""
    df = pd.DataFrame({"s": np.asarray(scores, dtype=float), "c": np.asarray(correct, dtype=bool), "q": np.asarray(qids)})
    aucs = [roc_auc(g.s, g.c) for _, g in df.groupby("q") if 0 < g.c.mean() < 1]
    return float(np.mean(aucs)) if aucs else float("nan")
