"""The verifier interface: a score in [0, 1] for every step of every solution, with token counts.

A verifier receives each solution as the task split it (`task.split_steps`: pieces that concatenate to the
completion) and owns how it presents them to its model: the suite's own PRM and ORM read the text as written and
take each step's score at the token that holds the step's last character, so one forward pass scores every step;
an open PRM would join the steps with its own step tags. Adapters register in `registry`:

    verifier = load_verifier(ModelSpec("data/cache/default/verifier-prm-…"))
    scores, tokens = verifier.score(["Q:\\n3+4\\n"], [["7\\n", "A:7\\n"]])    # [[0.93, 0.91]], [11]
"""
from __future__ import annotations

from typing import Protocol


class Verifier(Protocol):
    name: str
    non_embedding_params: int
    # what comes before the steps: "prompt" (the policy's prompt, as the suite's verifiers were trained on) or
    # "question" (the bare question: an open PRM formats its input itself); absent means "prompt"
    reads: str

    def score(self, prompts: list[str], steps: list[list[str]]) -> tuple[list[list[float]], list[int]]:
        """(per-step scores of each solution, tokens each scored sequence cost). One call scores one solution
        per prompt; identical (prompt, steps) pairs may be scored once."""


def verifier_prompt(verifier, task, problem) -> str:
    """What `verifier` reads before a solution of `problem`'s steps (see `Verifier.reads`)."""
    return task.question(problem) if getattr(verifier, "reads", "prompt") == "question" else task.prompt(problem)


def step_end_offsets(steps: list[str]) -> list[int]:
    """Character offsets, within the concatenated completion, of the last character of each step."""
    ends, pos = [], 0
    for s in steps:
        pos += len(s)
        if s:
            ends.append(pos - 1)
    return ends


def unique_pairs(prompts: list[str], steps: list[list[str]]) -> tuple[list[tuple[str, tuple[str, ...]]], list[int]]:
    """(distinct (prompt, steps) pairs in first-seen order, the index of each input's pair): search asks for
    the same path many times, and scoring it once is enough."""
    if len(prompts) != len(steps):
        raise ValueError(f"prompts and steps differ in length ({len(prompts)} vs {len(steps)})")
    unique: dict = {}
    index = [unique.setdefault((p, tuple(s)), len(unique)) for p, s in zip(prompts, steps)]
    return list(unique), index


def encode_steps(tokenizer, prompt: str, steps) -> tuple[list[int], list[int]]:
    """Token ids of prompt + completion (with the tokenizer's special tokens) and the index of the token
    that holds the last character of each step, from the fast tokenizer's offsets."""
    return encode_many(tokenizer, [prompt], [steps])[0]


def encode_many(tokenizer, prompts: list[str], steps: list) -> list[tuple[list[int], list[int]]]:
    """`encode_steps` of every (prompt, steps) pair, in one call of the tokenizer (search scores ~1,000 a round)."""
    texts = [p + "".join(s) for p, s in zip(prompts, steps)]
    if not texts:
        return []
    out = []
    for prompt, s, text, (ids, offsets) in zip(prompts, steps, texts, _ids_and_offsets(tokenizer, texts)):
        positions, t = [], 0
        for e in (len(prompt) + e for e in step_end_offsets(list(s))):
            while t < len(ids) and not (offsets[t][0] <= e < offsets[t][1]):
                t += 1
            if t == len(ids):
                raise ValueError(f"no token covers character {e} of {text!r}")
            positions.append(t)
        out.append((ids, positions))
    return out


def _ids_and_offsets(tokenizer, texts: list[str]) -> list[tuple[list[int], list]]:
    """(token ids, character offsets) of each text, special tokens added, as `tokenizer(texts,
    return_offsets_mapping=True)` gives them. A fast tokenizer's own `encode_batch` is read directly when nothing
    would pad or truncate: transformers' conversion of each encoding to a dict costs 1.6x the encoding itself (search's
    ~1,000 candidates a round: 0.10 s of a 64-question beam search's 0.16 s of tokenizing, measured)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if getattr(tokenizer, "is_fast", False) and backend is not None and backend.padding is None \
            and backend.truncation is None:
        return [(e.ids, e.offsets) for e in backend.encode_batch(texts)]
    enc = tokenizer(texts, return_offsets_mapping=True)
    return list(zip(enc["input_ids"], enc["offset_mapping"]))
