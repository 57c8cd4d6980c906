"""Adapters for open process reward models behind the `verifier.Verifier` interface; each owns its step format.

- `MathShepherdPRM` (backend "math_shepherd"): a causal LM that, after each step followed by a step tag (Math-Shepherd:
  " ки"), predicts a good ("+") or a bad ("-") token; a step's score is P(good) among the two at its tag. RLHFlow-style
  PRMs are the same with another tag and tokens (`MathShepherdPRM(..., step_tag=..., good=..., bad=...)`).
- `QwenPRM` (backend "qwen_prm"): Qwen2.5-Math-PRM style. The solution goes in the assistant turn of the chat
  template, each step followed by the separator "<extra_0>"; the model outputs two logits per token and a step's score
  is the positive class's probability at its separator. The hub models need remote code, so loading one requires
  `ModelSpec(..., trust_remote_code=True)`; without it the adapter stops with an error before loading any weights.

    prm = load_verifier(ModelSpec("peiyi9979/math-shepherd-mistral-7b-prm", backend="math_shepherd", revision=...))
    scores, tokens = prm.score(["Janet's ducks lay 16 eggs..."], [["Step 1: ...\\n", "Step 2: ... 18\\n"]])

Both read the bare question (`reads = "question"`): scoring and search pass `task.question(problem)`, not the policy's
prompt with its instruction or chat template, and the adapter writes its own format around it.
"""
from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

from .batching import length_batches, right_pad
from .models import count_params, params_from_config, torch_dtype
from .verifier import unique_pairs

QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
# backend -> the step delimiters its training data used: a task that splits steps otherwise gets steps the PRM has
# never seen scored (Math-Shepherd: one step per line; RLHFlow and Qwen2.5-Math-PRM: paragraphs)
STEP_DELIMITERS = {"math_shepherd": ("\n", "\n\n"), "qwen_prm": ("\n\n",)}


def _dtype(spec) -> dict:
    return {"dtype": torch_dtype(spec.dtype)} if spec.dtype is not None else {}


def _single_token(tokenizer, text: str, what: str, param: str) -> int:
    """The id of `text` as one token, written after a space (as it sits in the scored text) or alone."""
    for variant in (f" {text}", text):
        ids = tokenizer.encode(variant, add_special_tokens=False)
        if len(ids) == 1:
            return ids[0]
    raise ValueError(f"{param}: the {what} {text!r} is not one token for this tokenizer "
                     f"({tokenizer.encode(text, add_special_tokens=False)}); expected one token (is this the PRM's own "
                     f"tokenizer and step format?)")


def is_open_prm(spec) -> bool:
    """True iff `spec` loads through one of these adapters (not a verifier trained by the suite)."""
    return spec.backend in STEP_DELIMITERS


def _qwen_loader(spec, config):
    """The Auto class that loads a Qwen2.5-Math-PRM style model: its remote code only with the opt-in."""
    remote = bool(getattr(config, "auto_map", None))
    if remote and not spec.trust_remote_code:
        raise ValueError(f"{spec.param}={spec.path!r} needs remote code (its config maps to "
                         f"{sorted(config.auto_map)}); set trust_remote_code=True on its ModelSpec to run it")
    return AutoModel if remote else AutoModelForTokenClassification


def check_open_prm(spec) -> None:
    """Fail before any compute where the open PRM `spec` could not load: a remote-code model without the opt-in (its
    config alone tells; no weights are read)."""
    if spec.backend == "qwen_prm":
        config = AutoConfig.from_pretrained(spec.path, revision=spec.revision,
                                            trust_remote_code=spec.trust_remote_code)
        _qwen_loader(spec, config)


def open_prm_params(spec) -> int:
    """Non-embedding parameters of the open PRM `spec` names, counted on the meta device from its config (the
    measured FLOPs need them; no weights are read)."""
    if spec.backend != "qwen_prm":  # a causal LM
        return params_from_config(spec.path, spec.revision, spec.trust_remote_code)
    config = AutoConfig.from_pretrained(spec.path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
    with torch.device("meta"):
        return count_params(_qwen_loader(spec, config).from_config(config, trust_remote_code=spec.trust_remote_code))


class _TaggedPRM:
    """Scores each (prompt, steps) by one forward pass over a text with a tag token after every step."""

    name: str
    reads = "question"  # the adapter writes its own format around the question (see `verifier.verifier_prompt`)

    def __init__(self, model, tokenizer, tag_id: int, batch_size: int = 8, progress: bool = False):
        self.model, self.tokenizer, self.tag_id = model, tokenizer, tag_id
        self.batch_size, self.progress = batch_size, progress
        self.non_embedding_params = count_params(model)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    def text(self, prompt: str, steps: list[str]) -> str:
        raise NotImplementedError

    def step_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """(tags, vocab or classes) logits at the tags -> one score per tag."""
        raise NotImplementedError

    @torch.inference_mode()
    def score(self, prompts: list[str], steps: list[list[str]]) -> tuple[list[list[float]], list[int]]:
        pairs, index = unique_pairs(prompts, steps)
        encoded = [self.tokenizer(self.text(p, list(s)), add_special_tokens=False)["input_ids"] for p, s in pairs]
        scores: list[list[float]] = [[] for _ in pairs]
        for batch in length_batches([len(e) for e in encoded], self.batch_size):
            x, mask = right_pad([encoded[i] for i in batch], self.tokenizer.pad_token_id)
            logits = self.model(input_ids=x.to(self.model.device), attention_mask=mask.to(self.model.device)).logits
            for r, i in enumerate(batch):
                at = [t for t, tok in enumerate(encoded[i]) if tok == self.tag_id]
                wanted = sum(1 for s in pairs[i][1] if s.strip())
                if len(at) != wanted:
                    raise ValueError(f"{self.name}: {len(at)} step tags in the scored text for {wanted} steps; a step "
                                     f"contains the tag or the tokenizer merges it with its neighbours")
                scores[i] = self.step_scores(logits[r, at].float()).cpu().tolist()
        # an empty step (e.g. a completion that ended on its delimiter) has no tag: it takes the previous step's score
        out = []
        for i in index:
            it, row = iter(scores[i]), []
            for s in pairs[i][1]:
                row.append(next(it) if s.strip() else (row[-1] if row else 0.5))
            out.append(row)
        return out, [len(encoded[i]) for i in index]


class MathShepherdPRM(_TaggedPRM):
    def __init__(self, model, tokenizer, step_tag: str = "ки", good: str = "+", bad: str = "-", name: str = "prm",
                 param: str = "verifier", **kw):
        self.step_tag, self.name = step_tag, name
        super().__init__(model, tokenizer, _single_token(tokenizer, step_tag, "step tag", param), **kw)
        self.candidates = [_single_token(tokenizer, t, "token", param) for t in (good, bad)]

    @classmethod
    def from_spec(cls, spec, batch_size: int = 8, progress: bool = False) -> "MathShepherdPRM":
        tokenizer = AutoTokenizer.from_pretrained(spec.path, revision=spec.revision)
        model = AutoModelForCausalLM.from_pretrained(spec.path, revision=spec.revision, **_dtype(spec))
        return cls(model.to(spec.device).eval(), tokenizer, name=spec.name, param=spec.param, batch_size=batch_size,
                   progress=progress)

    def text(self, prompt: str, steps: list[str]) -> str:
        return f"{prompt.strip()} " + "".join(f"{s.strip()} {self.step_tag}\n" for s in steps if s.strip())

    def step_scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, self.candidates].softmax(-1)[:, 0]


class QwenPRM(_TaggedPRM):
    def __init__(self, model, tokenizer, separator: str = "<extra_0>", system: str = QWEN_SYSTEM, name: str = "prm",
                 param: str = "verifier", **kw):
        self.separator, self.system, self.name = separator, system, name
        super().__init__(model, tokenizer, _single_token(tokenizer, separator, "step separator", param), **kw)

    @classmethod
    def from_spec(cls, spec, batch_size: int = 8, progress: bool = False) -> "QwenPRM":
        config = AutoConfig.from_pretrained(spec.path, revision=spec.revision, trust_remote_code=spec.trust_remote_code)
        loader = _qwen_loader(spec, config)
        tokenizer = AutoTokenizer.from_pretrained(spec.path, revision=spec.revision)
        model = loader.from_pretrained(spec.path, revision=spec.revision, trust_remote_code=spec.trust_remote_code,
                                       **_dtype(spec))
        return cls(model.to(spec.device).eval(), tokenizer, name=spec.name, param=spec.param, batch_size=batch_size,
                   progress=progress)

    def text(self, prompt: str, steps: list[str]) -> str:
        answer = "".join(f"{s.strip()}{self.separator}" for s in steps if s.strip())
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": prompt.strip()},
                    {"role": "assistant", "content": answer}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def step_scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, :2].softmax(-1)[:, 1]
