"""Pretraining the policy ladder on the embedded world with the transformers `Trainer`.

Every rung sees exactly the same pretraining tokens (same corpus, same order), so a larger rung
never gets fewer tokens than the base and the FLOPs accounting (6·N·D) compares like with like.

    from ttc_utils.training import train_ladder
    ladder = train_ladder(cache, world_cfg, sizes, train_cfg)   # one row per model, cached
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.utils.notebook import NotebookProgressCallback

from .batching import left_pad, packed_rows
from .cache import Cache, read_parquet
from .checks import check, check_int, check_positive
from .models import ModelSize, build_policy, count_params
from .tokenizer import build_tokenizer
from .workers import torch_threads
from .world import WorldConfig, generate

if TYPE_CHECKING:
    from transformers import Trainer

LR_SCALINGS = ("constant", "1/width")
PRECISIONS = ("fp32", "bf16")


def native_bf16(device: str = "cpu") -> bool:
    """Whether `device` multiplies bf16 matrices in hardware: a CUDA GPU that supports bf16, or a CPU whose oneDNN
    build reports bf16 support (AVX512 cores, AMX). On an AVX2-only CPU bf16 autocast trained d64l3 6x and d160l7 16x
    slower than fp32 (2 cores, torch 2.13), so `resolve_precision` never picks it there."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: a torch without it is treated as having no bf16
        return False


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """`precision`, with "auto" made concrete: "bf16" where `device` has native bf16 matmuls, else "fp32". The
    concrete value enters the cache key, so a ladder trained in bf16 is never read as an fp32 one or back."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


@dataclass(frozen=True)
class TrainConfig:
    tokens: int = 4_000_000  # pretraining tokens every rung sees (non-pad tokens, bos/eos included)
    batch_size: int = 64  # problems per optimizer step
    learning_rate: float = 1e-3  # peak AdamW learning rate of the smallest rung (see lr_scaling)
    lr_scaling: str = "constant"  # "constant": every rung at learning_rate; "1/width": a rung of width d at
    # learning_rate * d_min / d (the muP rule for Adam's hidden weights: wider rungs take smaller steps)
    precision: str = "fp32"  # "bf16": bf16 autocast with fp32 weights (mixed precision); "fp32"
    warmup_steps: int = 50  # linear warm-up steps (a count, not a share, so a run's start never depends on its length)
    cooldown: float = 0.2  # share of the steps at the end over which the rate decays to 0 (warmup-stable-decay); a
    # cool-down over the whole run (cosine) decayed the base's rate before its loss fell: 0.22 greedy vs 0.62
    weight_decay: float = 0.1
    max_len: int = 160  # context length of the models (a full 8-step problem is ~110 characters)
    seed: int = 0  # corpus order and initialisation
    threads: int = 0  # torch threads while training (0: torch's default, one per core); the weights depend on it

    def __post_init__(self):
        for name, lo in (("tokens", 1), ("batch_size", 1), ("max_len", 16), ("threads", 0)):
            check_int(name, getattr(self, name), lo)
        check_positive("learning_rate", self.learning_rate)
        check(0 <= self.cooldown < 1, "cooldown", self.cooldown, "a share of the steps in [0, 1)")
        check(self.lr_scaling in LR_SCALINGS, "lr_scaling", self.lr_scaling, f"one of {LR_SCALINGS}")
        check(self.precision in PRECISIONS, "precision", self.precision, f"one of {PRECISIONS}")

    def rung_learning_rate(self, hidden: int, smallest_hidden: int) -> float:
        """The peak learning rate of a rung of width `hidden` in a ladder whose smallest width is `smallest_hidden`."""
        return self.learning_rate * (smallest_hidden / hidden if self.lr_scaling == "1/width" else 1.0)


class Corpus(torch.utils.data.Dataset):
    """Problems as token ids; `prompt_len` tokens at the start of each are the question (no loss)."""

    def __init__(self, ids: list[list[int]], prompt_lens: list[int]):
        self.ids, self.prompt_lens = ids, prompt_lens

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "prompt_len": self.prompt_lens[i]}


def collate_solution_loss(pad_id: int):
    """Left-pad a batch; labels are the solution tokens only.

    The question's digits are uniformly random, so predicting them teaches nothing and their large,
    noisy loss slows learning of the solution steps; every token is still processed (and counted in D).
    """
    def collate(items):
        ids, mask = left_pad([it["input_ids"] for it in items], pad_id)
        labels = torch.full(ids.shape, -100, dtype=torch.long)
        for i, it in enumerate(items):
            solution = ids.shape[1] - len(it["input_ids"]) + it["prompt_len"]  # the first solution token's column
            labels[i, solution:] = ids[i, solution:]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return collate


def collate_packed_solution_loss(pad_id: int):
    """The batch of `collate_solution_loss`, its sequences packed into rows as wide as its longest (`packed_rows`).

    Each sequence restarts its position ids at 0, and no attention mask is passed, so transformers reads the packing
    from the position ids and lets no sequence attend to another (`use_cache=False`: it only does so without a
    cache). Same examples, same loss and gradients up to float rounding (`tests/test_training.py` holds it to the
    padded batch), on fewer tokens where lengths are mixed. A row's leftover columns are padding, a sequence of their
    own, without labels.
    """
    def collate(items):
        lengths = [len(it["input_ids"]) for it in items]
        rows, width = packed_rows(lengths, max(lengths)), max(lengths)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for r, members in enumerate(rows):
            col = 0
            for i in members:
                row, n = torch.tensor(items[i]["input_ids"], dtype=torch.long), lengths[i]
                ids[r, col:col + n] = row
                pos[r, col:col + n] = torch.arange(n)
                labels[r, col + items[i]["prompt_len"]:col + n] = row[items[i]["prompt_len"]:]
                col += n
            pos[r, col:] = torch.arange(width - col)
        return {"input_ids": ids, "position_ids": pos, "labels": labels, "use_cache": False}
    return collate


def pretraining_corpus(world: WorldConfig, tokenizer, tokens: int, batch_size: int, seed: int
                       ) -> tuple[list[list[int]], list[int]]:
    """(token ids, prompt lengths) of train-split problems (bos + text + eos), about `tokens` tokens.

    Problems come in blocks; each block is cut into batches of `batch_size` problems of one chain length
    (equal-length batches gave 1.8x the useful tokens/s of random ones), shuffled within the block, and
    batches are taken until `tokens` is reached. A shorter corpus is thus a prefix of a longer one.
    """
    batches, total, block = [], 0, 0
    while total < tokens:
        by_len: dict[int, list] = {}
        for p in generate(world, 20_000, "train", seed=seed * 1_000 + block, unique=False):
            by_len.setdefault(p.num_steps, []).append(p)
        full = [g[i:i + batch_size] for _, g in sorted(by_len.items())
                for i in range(0, len(g) - batch_size + 1, batch_size)]  # leftovers of a block are dropped
        for b in np.random.default_rng([seed, block]).permutation(len(full)):
            batches.append(full[b])
            total += sum(len(p.text) + 2 for p in full[b])  # one token per character, plus bos and eos
            if total >= tokens:
                break
        block += 1
    problems = [p for b in batches for p in b]
    return encode_problems(problems, tokenizer)


def encode_problems(problems: list, tokenizer) -> tuple[list[list[int]], list[int]]:
    """(token ids, prompt lengths) of problems as the models train on them: bos + text + eos."""
    ids = [row + [tokenizer.eos_token_id] for row in tokenizer([p.text for p in problems]).input_ids]
    return ids, [1 + len(p.prompt) for p in problems]  # bos + one token per character


def heldout_problems(world: WorldConfig, n: int = 2_000, seed: int = 0) -> list:
    """Test-split problems for every rung's held-out loss (never in any rung's pretraining corpus)."""
    return generate(world, n, "test", seed=10_000 + seed, unique=False)


@torch.no_grad()
def solution_loss(model, tokenizer, data: tuple[list[list[int]], list[int]], batch_size: int = 256,
                  device: str = "cpu") -> float:
    """Mean cross-entropy per solution token (the training objective) of `model` on `data` (ids, prompt lens)."""
    model.eval()
    collate = collate_solution_loss(tokenizer.pad_token_id)
    ids, prompt_lens = data
    total, count = 0.0, 0
    for i in range(0, len(ids), batch_size):
        batch = collate([{"input_ids": r, "prompt_len": n} for r, n in
                         zip(ids[i:i + batch_size], prompt_lens[i:i + batch_size])])
        batch = {k: v.to(device) for k, v in batch.items()}
        n = int((batch["labels"][:, 1:] != -100).sum())  # the model shifts labels by one
        total += float(model(**batch).loss) * n
        count += n
    return total / max(1, count)


class _LossLog(TrainerCallback):
    """Keep (step, tokens seen, loss, seconds) at each logging step."""

    def __init__(self, tokens_per_step: float):
        self.rows, self.t0, self.tokens_per_step = [], time.perf_counter(), tokens_per_step

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.rows.append({"step": state.global_step, "tokens": state.global_step * self.tokens_per_step,
                              "loss": float(logs["loss"]), "seconds": time.perf_counter() - self.t0})


class _TrainingBar(TrainerCallback):
    """One progress bar per training run, in place of the Trainer's own bar, its notebook loss table (a row per
    logging step) and its printed log lines: the loss curve is kept (a figure shows it) and the bar says how far."""

    def __init__(self, desc: str, disable: bool | None):
        self.desc, self.disable, self.bar = desc, disable, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = tqdm(total=state.max_steps, desc=self.desc, leave=False, disable=self.disable)

    def on_step_end(self, args, state, control, **kwargs):
        self.bar.update(1)

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()


def quiet_trainer(trainer: Trainer, desc: str, disable_tqdm: bool | None = None) -> Trainer:
    """`trainer` with one progress bar (`desc`; none with `disable_tqdm`) and no tables or log lines of its own."""
    for callback in (PrinterCallback, ProgressCallback, NotebookProgressCallback):
        trainer.remove_callback(callback)
    trainer.add_callback(_TrainingBar(desc, disable_tqdm))
    return trainer


def train_policy(size: ModelSize, corpus: tuple[list[list[int]], list[int]], tokenizer, cfg: TrainConfig, out_dir: Path,
                 disable_tqdm: bool | None = None, device: str = "cpu", heldout=None,
                 learning_rate: float | None = None) -> dict:
    """Train one rung from scratch on `corpus` on `device` and save it in `out_dir`; returns its record
    (with its loss on `heldout` (ids, prompt lens) when given). `learning_rate` overrides `cfg.learning_rate`."""
    from transformers import Trainer  # ~2 s to import: only where a model trains, not on a warm rerun

    learning_rate = cfg.learning_rate if learning_rate is None else learning_rate
    model = build_policy(size, tokenizer, cfg.max_len, cfg.seed)
    ids, prompt_lens = corpus
    steps = -(-len(ids) // cfg.batch_size)
    tokens = sum(len(r) for r in ids)
    log = _LossLog(tokens / steps)
    args = TrainingArguments(
        output_dir=str(out_dir / "trainer"), per_device_train_batch_size=cfg.batch_size, num_train_epochs=1,
        learning_rate=learning_rate, warmup_steps=cfg.warmup_steps, lr_scheduler_type="warmup_stable_decay",
        lr_scheduler_kwargs={"num_decay_steps": int(cfg.cooldown * steps)},
        weight_decay=cfg.weight_decay, adam_beta2=0.98, max_grad_norm=1.0,
        logging_steps=max(1, steps // 50), save_strategy="no", report_to="none", use_cpu=device == "cpu",
        seed=cfg.seed, data_seed=cfg.seed, dataloader_num_workers=0, remove_unused_columns=False,
        # The corpus is already in equal-length batches, in a seeded random order.
        train_sampling_strategy="sequential", disable_tqdm=disable_tqdm,
        # bf16 autocast: matmuls in bf16 (AMX / AVX512-BF16 on recent x86 CPUs), weights and optimizer in fp32.
        bf16=cfg.precision == "bf16",
    )
    trainer = quiet_trainer(Trainer(model=model, args=args, train_dataset=Corpus(ids, prompt_lens),
                                    data_collator=collate_solution_loss(tokenizer.pad_token_id), callbacks=[log]),
                            f"training {size.name}", disable_tqdm)
    with torch_threads(cfg.threads):
        threads = torch.get_num_threads()
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
    model.config.use_cache = True  # the Trainer turns it off; sampling needs the KV cache
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    n = count_params(model)
    record = {"name": size.name, "hidden": size.hidden, "layers": size.layers, "heads": size.heads,
              "non_embedding_params": n, "params": count_params(model, non_embedding=False),
              "tokens": tokens, "train_flops": 6 * n * tokens, "steps": steps, "wall_s": wall,
              "tokens_per_s": tokens / wall, "threads": threads, "learning_rate": learning_rate,
              "precision": cfg.precision,
              "heldout_loss": None if heldout is None else solution_loss(model, tokenizer, heldout, device=device)}
    (out_dir / "train_record.json").write_text(json.dumps(record, indent=1))
    pd.DataFrame(log.rows).to_parquet(out_dir / "loss_curve.parquet", index=False)
    return record


def _key(cfg: TrainConfig) -> dict:
    """`cfg` as a cache key; fields at the values that predate them are left out, so older ladders stay valid."""
    older = {"lr_scaling": "constant", "precision": "fp32", "threads": 0}
    return {k: v for k, v in asdict(cfg).items() if older.get(k, object()) != v}


def train_ladder(cache: Cache, world: WorldConfig, sizes: list[ModelSize], cfg: TrainConfig,
                 disable_tqdm: bool | None = None, device: str = "cpu") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or reuse from the cache) every rung on `device`; returns (models table, loss curves table).

    The device enters a rung's cache key unless it is the CPU (whose keys predate the parameter): the same
    recipe on another device is the same model up to floating-point detail, but not bit for bit.

    The models table has one row per rung with its folder `path`, parameter counts, tokens seen,
    training FLOPs and wall time; rows are sorted by size, the first is the smallest.
    """
    tokenizer = build_tokenizer()
    corpus = heldout = None
    records, curves = [], []
    smallest_hidden = min(s.hidden for s in sizes)
    for size in sorted(sizes, key=lambda s: s.non_embedding_params):
        params = {"world": asdict(world), "size": asdict(size), "train": _key(cfg), "arch": "llama-v4",
                  **({} if device == "cpu" else {"device": device})}
        with cache.model_dir(f"policy-{size.name}", params) as (final, work):
            if work is not None:
                if corpus is None:
                    corpus = pretraining_corpus(world, tokenizer, cfg.tokens, cfg.batch_size, cfg.seed)
                    heldout = encode_problems(heldout_problems(world, seed=cfg.seed), tokenizer)
                print(f"training {size.name} ({size.non_embedding_params:,} non-embedding params) "
                      f"on {cfg.tokens:,} tokens", flush=True)
                train_policy(size, corpus, tokenizer, cfg, work, disable_tqdm, device, heldout,
                             cfg.rung_learning_rate(size.hidden, smallest_hidden))
        record = json.loads((final / "train_record.json").read_text())
        records.append({**record, "path": str(final)})
        curve = read_parquet(final / "loss_curve.parquet")
        curves.append(curve.assign(name=size.name, non_embedding_params=record["non_embedding_params"]))
    return pd.DataFrame(records), pd.concat(curves, ignore_index=True)
