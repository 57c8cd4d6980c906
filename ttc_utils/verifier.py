"""The verifier interface: a score in [0, 1] for every step of every solution, with token counts.

A step ends at each newline of the completion (and at its last character if it has no final newline);
the score of a step is the model's value at the last token of that step, so one forward pass over
prompt + completion scores all its steps at once. `TransformersVerifier` loads any folder written by the
suite's PRM/ORM training (a token-classification model with one output); open PRMs get their own adapter
with the same `score` method.

    verifier = TransformersVerifier.from_pretrained("data/cache/default/prm-…")
    scores, tokens = verifier.score(["Q:\\n3+4\\n"], ["7\\nA:7\\n"])    # [[0.93, 0.91]], [11]
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForTokenClassification, AutoTokenizer

from .models import check_model_path, count_params
from .policy import right_pad

STEP_END = "\n"


def step_end_offsets(completion: str) -> list[int]:
    """Character offsets (within the completion) of the last character of each step."""
    ends = [i for i, ch in enumerate(completion) if ch == STEP_END]
    if completion and not completion.endswith(STEP_END):
        ends.append(len(completion) - 1)
    return ends


class Verifier(Protocol):
    name: str
    non_embedding_params: int

    def score(self, prompts: list[str], completions: list[str]) -> tuple[list[list[float]], list[int]]:
        """(per-step scores of each completion, tokens each scored sequence cost)."""


class TransformersVerifier:
    """A suite-trained PRM or ORM: a causal transformer with a scalar head read at step ends.

    Sequences are right-padded (positions then match an unpadded forward exactly, whatever the batch),
    sorted by length and run `batch_size` at a time; identical (prompt, completion) pairs are scored once.
    """

    def __init__(self, model, tokenizer, name: str = "verifier", batch_size: int = 512, progress: bool = True):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.batch_size, self.progress = batch_size, progress
        self.non_embedding_params = count_params(model)

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", **kw) -> "TransformersVerifier":
        check_model_path("verifier_path", str(path))
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForTokenClassification.from_pretrained(path).to(device).eval()
        if model.config.num_labels != 1:
            raise ValueError(f"verifier_path={str(path)!r}: expected a model with one output per token "
                             f"(num_labels=1), got num_labels={model.config.num_labels}")
        return cls(model, tokenizer, name=kw.pop("name", str(path).rstrip("/").split("/")[-1]), **kw)

    def encode(self, prompt: str, completion: str) -> tuple[list[int], list[int]]:
        """(token ids of prompt + completion, token index of each step end)."""
        return encode_steps(self.tokenizer, prompt, completion)

    @torch.inference_mode()
    def score(self, prompts: list[str], completions: list[str]) -> tuple[list[list[float]], list[int]]:
        pairs, unique = unique_pairs(prompts, completions)
        encoded = [self.encode(p, c) for p, c in pairs]
        order = sorted(range(len(pairs)), key=lambda i: len(encoded[i][0]))
        scores: list[list[float]] = [[] for _ in pairs]
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc=f"scoring {self.name}", disable=not self.progress or None, leave=False):
            x, mask = right_pad([encoded[i][0] for i in batch], self.tokenizer.pad_token_id)
            logits = self.model(input_ids=x.to(self.model.device), attention_mask=mask.to(self.model.device)).logits
            probs = torch.sigmoid(logits[..., 0].float()).cpu().numpy()
            for r, i in enumerate(batch):
                scores[i] = probs[r, encoded[i][1]].astype(float).tolist()
        tokens = [len(encoded[unique[pair]][0]) for pair in zip(prompts, completions)]
        return [scores[unique[pair]] for pair in zip(prompts, completions)], tokens


def unique_pairs(prompts: list[str], completions: list[str]) -> tuple[list[tuple[str, str]], dict]:
    """(distinct (prompt, completion) pairs in first-seen order, pair -> its index): search asks for the
    same path many times, and scoring it once is enough."""
    if len(prompts) != len(completions):
        raise ValueError(f"prompts and completions differ in length ({len(prompts)} vs {len(completions)})")
    unique = {}
    for pair in zip(prompts, completions):
        unique.setdefault(pair, len(unique))
    return list(unique), unique


def load_verifier(path: str, **kw):
    """The verifier in a folder written by `prm.train_verifier`: a value head over a frozen LM
    (`value_head.LikelihoodVerifier`) or a fine-tuned token classifier (`TransformersVerifier`)."""
    from .value_head import HEAD_CONFIG, LikelihoodVerifier
    cls = LikelihoodVerifier if (Path(path) / HEAD_CONFIG).exists() else TransformersVerifier
    return cls.from_pretrained(path, **kw)


def encode_steps(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Token ids of prompt + completion (with the tokenizer's special tokens) and the index of the token
    that holds the last character of each step, from the fast tokenizer's offsets."""
    enc = tokenizer(prompt + completion, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    ends = [len(prompt) + e for e in step_end_offsets(completion)]
    positions, t = [], 0
    for e in ends:
        while t < len(ids) and not (offsets[t][0] <= e < offsets[t][1]):
            t += 1
        if t == len(ids):
            raise ValueError(f"no token covers character {e} of {prompt + completion!r}")
        positions.append(t)
    return ids, positions
