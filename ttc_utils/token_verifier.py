"""A verifier adapter for the suite's fine-tuned PRM / ORM: a causal transformer with a scalar head read at step ends.

`prm` training writes such folders with `head="finetune"` (an `AutoModelForTokenClassification` with num_labels=1).
Sequences are right-padded (positions then match an unpadded forward exactly, whatever the batch), sorted by
length and run `batch_size` at a time; identical (prompt, steps) pairs are scored once.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForTokenClassification, AutoTokenizer

from .batching import length_batches, right_pad
from .models import count_params
from .verifier import encode_many, unique_pairs


class TransformersVerifier:
    def __init__(self, model, tokenizer, name: str = "verifier", batch_size: int = 512, progress: bool = True):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.batch_size, self.progress = batch_size, progress
        self.non_embedding_params = count_params(model)

    @classmethod
    def from_spec(cls, spec, batch_size: int = 512, progress: bool = True) -> "TransformersVerifier":
        tokenizer = AutoTokenizer.from_pretrained(spec.path, revision=spec.revision)
        model = AutoModelForTokenClassification.from_pretrained(spec.path, revision=spec.revision)
        if model.config.num_labels != 1:
            raise ValueError(f"{spec.param}={spec.path!r}: expected a model with one output per token "
                             f"(num_labels=1), got num_labels={model.config.num_labels}")
        return cls(model.to(spec.device).eval(), tokenizer, name=spec.name, batch_size=batch_size, progress=progress)

    @torch.inference_mode()
    def score(self, prompts: list[str], steps: list[list[str]]) -> tuple[list[list[float]], list[int]]:
        pairs, index = unique_pairs(prompts, steps)
        encoded = encode_many(self.tokenizer, [p for p, _ in pairs], [s for _, s in pairs])
        scores: list[list[float]] = [[] for _ in pairs]
        batches = length_batches([len(e[0]) for e in encoded], self.batch_size)
        for batch in tqdm(batches, desc=f"scoring {self.name}", disable=not self.progress or None, leave=False):
            x, mask = right_pad([encoded[i][0] for i in batch], self.tokenizer.pad_token_id)
            logits = self.model(input_ids=x.to(self.model.device), attention_mask=mask.to(self.model.device)).logits
            probs = torch.sigmoid(logits[..., 0].float()).cpu().numpy()
            for r, i in enumerate(batch):
                scores[i] = probs[r, encoded[i][1]].astype(float).tolist()
        return [scores[i] for i in index], [len(encoded[i][0]) for i in index]
