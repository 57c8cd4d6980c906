"""A verifier that reads a frozen language model: a small value head over its state and its token likelihoods.

Why not fine-tune the backbone under a scalar head (`verifier_training.train_verifier(..., head="finetune")`)?
In this world checking a step *is* recomputing it: "2*3-8" is right after "7+5*3-8" iff 7+5 = 2 (mod 10). A causal LM
computes that at the newline *before* the step, as its prediction of the step's first token; a head read at
the step's end cannot see that prediction, and fine-tuning did not learn to recompute it (measured: ROC AUC
0.74-0.77, within-question 0.52-0.57, even when trained on the world's true step labels). The model's
log-probability of each step's tokens is that prediction compared with what was written, so the head gets it
as input, next to the hidden state at the step end (how far the solution still has to go):

    features of step j = [h at the step's last token, min and sum of log p over the step's tokens,
                          the running min and sum over steps 1..j, j]

The head (a 2-layer MLP) is trained with binary cross-entropy on the soft Monte Carlo targets; the backbone
stays frozen, so features are computed once and an epoch takes well under a second. A folder holds the
backbone (any causal LM folder, in the standard format), its tokenizer, `value_head.safetensors` and
`value_head.json`; `registry.load_verifier(ModelSpec(folder))` picks `LikelihoodVerifier` for such folders.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from .batching import cheapest_groups, left_pad, length_batches, right_pad
from .kv_cache import select_rows
from .models import cache_kwargs, count_params, output_cache, torch_dtype
from .verifier import encode_many, unique_pairs

# the verifier recipes: this value head, or the fine-tuned backbone (`token_verifier`)
HEADS = ("likelihood", "finetune")
HEAD_CONFIG = "value_head.json"
HEAD_WEIGHTS = "value_head.safetensors"
# the columns after the hidden state; "run_" ones cover steps 1..j, so the last step's cover the completion
LIKELIHOOD_FEATURES = ("step_min", "step_sum", "run_min", "run_sum", "step_index")
NUM_LIKELIHOOD_FEATURES = len(LIKELIHOOD_FEATURES)
# what one more forward pass costs, in padded tokens, when `shared_step_features` cuts a batch by length: ~1 ms of
# per-call overhead on the embedded world's PRM (4 layers) against ~15-20 us a token
CALL_OVERHEAD_TOKENS = 64


def likelihood_column(name: str) -> int:
    """Index (from the end) of a likelihood feature in a `step_features` row."""
    return LIKELIHOOD_FEATURES.index(name) - NUM_LIKELIHOOD_FEATURES


class ValueHead(torch.nn.Module):
    """Standardised features -> MLP -> logit of the step's value."""

    def __init__(self, num_features: int, width: int = 64):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        self.mlp = torch.nn.Sequential(torch.nn.Linear(num_features, width), torch.nn.SiLU(),
                                       torch.nn.Linear(width, 1))

    def forward(self, x):
        return self.mlp((x - self.mean) / self.std)[..., 0]


@torch.inference_mode()
def step_features(lm, tokenizer, prompts: list[str], steps: list[list[str]], batch_size: int = 512,
                  progress: bool = False) -> tuple[list[np.ndarray], list[int]]:
    """(per solution an array (steps, hidden + 5) of features, per solution the tokens of its forward pass).

    `steps[i]` is solution i as its task split it. One forward pass per solution, batched by length,
    right-padded (so a solution's features do not depend on its batch)."""
    encoded, starts = encode_many(tokenizer, prompts, steps), prompt_lengths(tokenizer, prompts)
    width = lm.config.hidden_size + NUM_LIKELIHOOD_FEATURES
    out: list[np.ndarray] = [np.zeros((0, width), dtype=np.float32)] * len(encoded)
    batches = length_batches([len(e[0]) for e in encoded], batch_size)
    for batch in tqdm(batches, desc="verifier features", disable=not progress or None, leave=False):
        x, mask = right_pad([encoded[i][0] for i in batch], tokenizer.pad_token_id)
        o = lm(input_ids=x.to(lm.device), attention_mask=mask.to(lm.device), output_hidden_states=True)
        hidden = o.hidden_states[-1].float().cpu()
        logp = torch.log_softmax(o.logits.float(), -1)[:, :-1].gather(-1, x[:, 1:, None].to(lm.device))[..., 0].cpu()
        for r, i in enumerate(batch):
            out[i] = _feature_rows(hidden[r], logp[r], starts[i], encoded[i][1])
    return out, [len(e[0]) for e in encoded]


def prompt_lengths(tokenizer, prompts: list[str]) -> list[int]:
    """Each prompt's token count, tokenizing each distinct prompt once (a question's candidates share theirs)."""
    unique = list(dict.fromkeys(prompts))
    n = dict(zip(unique, (len(ids) for ids in tokenizer(unique).input_ids))) if unique else {}
    return [n[p] for p in prompts]


def _feature_rows(hidden: torch.Tensor, logp: torch.Tensor, start: int, ends: list[int]) -> np.ndarray:
    """One solution's feature rows from its hidden states (tokens, d) and log p (logp[t] of token t+1);
    `start` is its prompt's token count."""
    rows, prev, run_min, run_sum = [], start - 1, 0.0, 0.0
    for j, e in enumerate(ends):
        v = logp[prev:e]  # log p of the step's tokens prev+1 .. e
        step_min, step_sum = (float(v.min()), float(v.sum())) if len(v) else (0.0, 0.0)
        run_min, run_sum = min(run_min, step_min), run_sum + step_sum
        rows.append(np.concatenate([hidden[e].numpy(), [step_min, step_sum, run_min, run_sum, j]]))
        prev = e
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), hidden.shape[1] + NUM_LIKELIHOOD_FEATURES)


def _shared_prefix_lengths(encoded: list[tuple[list[int], list[int]]], starts: list[int]) -> list[int]:
    """Per solution, the token count of its longest prefix that ends at a step boundary (or its prompt's end)
    and that another solution shares: search scores M children of one beam, which share all but the last step."""
    def candidates(i):
        ids, ends = encoded[i]
        return [starts[i]] + [e + 1 for e in ends[:-1] if e + 1 > starts[i]]
    seen: dict[tuple, int] = {}
    for i, (ids, _) in enumerate(encoded):
        for n in candidates(i):
            key = tuple(ids[:n])
            seen[key] = seen.get(key, 0) + 1
    out = []
    for i, (ids, _) in enumerate(encoded):
        shared = [n for n in candidates(i) if seen[tuple(ids[:n])] > 1]
        out.append(max(shared) if shared else starts[i])
    return out


@torch.inference_mode()
def shared_step_features(lm, tokenizer, prompts: list[str], steps: list[list[str]], batch_size: int = 512,
                         progress: bool = False) -> tuple[list[np.ndarray], list[int]]:
    """As `step_features`, with every shared prefix read once: solutions are grouped by the longest prefix they
    share (at a step boundary), each prefix is prefilled once and its KV cache copied to each member, whose own
    tokens are then read on top of it. A solution that shares nothing is read whole with the prefixes. Both passes
    are cut into `batching.cheapest_groups` by length (padding against calls). The features match `step_features`
    to float precision (tested); the tokens of a prefix are counted once, on the first member of its group, so
    per-question sums are what was read.
    """
    encoded, starts = encode_many(tokenizer, prompts, steps), prompt_lengths(tokenizer, prompts)
    cut = _shared_prefix_lengths(encoded, starts)
    groups: dict[tuple, list[int]] = {}
    for i, (ids, _) in enumerate(encoded):
        groups.setdefault(tuple(ids[:cut[i]]), []).append(i)
    # a prefix no other member of its group shares is read whole in the prefix pass: as a suffix it would only
    # widen its batch's right-padded suffix pass (a deduplicated beam, whose prefix its cousins share, is)
    for key, m in list(groups.items()):
        if len(m) == 1 and cut[m[0]] < len(encoded[m[0]][0]):
            del groups[key]
            cut[m[0]] = len(encoded[m[0]][0])
            groups.setdefault(tuple(encoded[m[0]][0]), []).append(m[0])
    prefixes, members = list(groups), list(groups.values())
    width = lm.config.hidden_size + NUM_LIKELIHOOD_FEATURES
    out: list[np.ndarray] = [np.zeros((0, width), dtype=np.float32)] * len(encoded)
    tokens = [len(encoded[i][0]) - cut[i] for i in range(len(encoded))]
    for g, m in enumerate(members):
        tokens[m[0]] += len(prefixes[g])
    batches = length_batches([len(p) for p in prefixes], batch_size, weights=[len(m) for m in members])
    for batch in tqdm(batches, desc="verifier features", disable=not progress or None, leave=False):
        for part in cheapest_groups([len(prefixes[g]) for g in batch], CALL_OVERHEAD_TOKENS):
            part = [batch[j] for j in part]
            for i, (hidden, logp) in _read_prefixes(lm, tokenizer.pad_token_id, [prefixes[g] for g in part],
                                                    [members[g] for g in part], encoded, cut):
                out[i] = _feature_rows(hidden, logp, starts[i], encoded[i][1])
    return out, tokens


def _read_prefixes(lm, pad: int, prefixes: list[tuple], members: list[list[int]], encoded: list, cut: list[int]):
    """Yield (i, (hidden states (tokens, d), log p of tokens 1..)) for each member i of each prefix: the prefixes in
    one left-padded pass, then the members' own tokens on copies of their prefix's KV cache, in passes of similar
    length."""
    device = lm.device
    x, mask = left_pad([list(p) for p in prefixes], pad)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    o = lm(input_ids=x.to(device), attention_mask=mask.to(device), position_ids=pos.to(device), use_cache=True,
           output_hidden_states=True)
    p_hidden = o.hidden_states[-1].float().cpu()
    p_logp = torch.log_softmax(o.logits.float(), -1).cpu()  # row t: the distribution of token t+1
    cache = output_cache(o)
    rows = [(r, i) for r in range(len(prefixes)) for i in members[r]]
    reading = [k for k, (_, i) in enumerate(rows) if len(encoded[i][0]) > cut[i]]
    suffix: dict[int, tuple] = {}  # row k -> (hidden, distributions) of its own tokens
    for sub in cheapest_groups([len(encoded[rows[k][1]][0]) - cut[rows[k][1]] for k in reading], CALL_OVERHEAD_TOKENS):
        ks = [reading[j] for j in sub]
        expand = torch.tensor([rows[k][0] for k in ks])
        sx, smask = right_pad([encoded[rows[k][1]][0][cut[rows[k][1]]:] for k in ks], pad)
        spos = pos[expand, -1:] + 1 + torch.arange(sx.shape[1])
        so = lm(input_ids=sx.to(device), attention_mask=torch.cat([mask[expand], smask], 1).to(device),
                position_ids=spos.to(device), use_cache=True, output_hidden_states=True,
                **cache_kwargs(lm, select_rows(cache, expand.to(device))))
        s_hidden = so.hidden_states[-1].float().cpu()
        s_logp = torch.log_softmax(so.logits.float(), -1).cpu()
        suffix.update({k: (s_hidden[j], s_logp[j]) for j, k in enumerate(ks)})
    for k, (r, i) in enumerate(rows):
        ids, n, col = encoded[i][0], cut[i], x.shape[1] - len(prefixes[r])  # col: the prefix's first column
        hidden, dist = [p_hidden[r, col:col + n]], [p_logp[r, col:col + n]]
        if k in suffix:
            hidden.append(suffix[k][0][:len(ids) - n])
            dist.append(suffix[k][1][:len(ids) - n - 1])
        logp = torch.cat(dist)[:len(ids) - 1].gather(-1, torch.tensor(ids)[1:, None])[:, 0]
        yield i, (torch.cat(hidden), logp)


def load_backbone(path: str, device: str = "cpu", dtype: str | None = None, revision: str | None = None):
    """(frozen causal LM in eval mode, its tokenizer): the backbone a value head reads."""
    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    kwargs = {"dtype": torch_dtype(dtype)} if dtype is not None else {}
    lm = AutoModelForCausalLM.from_pretrained(path, revision=revision, **kwargs).to(device).eval()
    return lm, tokenizer


def fit_value_head(features: list[np.ndarray], targets: list[list[float]], held_out: np.ndarray, *,
                   learning_rate: float, batch_size: int, max_epochs: int, patience: int, seed: int
                   ) -> tuple[ValueHead, dict]:
    """Train a `ValueHead` on step features and soft targets; early stopping on the held-out solutions'
    loss, checked every epoch, keeping the best epoch. `batch_size` counts solutions (as the fine-tuned
    verifier's does), so one optimizer step sees all the steps of `batch_size` solutions."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rows = np.repeat(np.arange(len(features)), [len(f) for f in features])
    x = torch.from_numpy(np.concatenate(features))
    y = torch.tensor(np.concatenate([np.asarray(t, dtype=np.float32) for t in targets]))
    train_rows = torch.from_numpy(np.flatnonzero(~held_out[rows]))
    eval_rows = torch.from_numpy(np.flatnonzero(held_out[rows]))
    head = ValueHead(x.shape[1])
    head.mean.copy_(x[train_rows].mean(0))
    head.std.copy_(x[train_rows].std(0) + 1e-6)
    opt = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=0.01)
    steps_per_solution = len(train_rows) / max(1, int((~held_out).sum()))
    step_batch = max(1, round(batch_size * steps_per_solution))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    best = {"loss": float("inf"), "epoch": 0, "state": None}
    history, step = [], 0
    for epoch in range(1, max_epochs + 1):
        head.train()
        perm = train_rows[torch.randperm(len(train_rows), generator=gen)]
        total = 0.0
        for b in range(0, len(perm), step_batch):
            idx = perm[b:b + step_batch]
            loss = bce(head(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            step += 1
        head.eval()
        with torch.no_grad():
            eval_loss = float(bce(head(x[eval_rows]), y[eval_rows])) if len(eval_rows) else total / len(perm)
        history.append({"epoch": epoch, "step": step, "loss": total / len(perm), "eval_loss": eval_loss})
        if eval_loss < best["loss"]:
            best = {"loss": eval_loss, "epoch": epoch, "step": step,
                    "state": {k: v.clone() for k, v in head.state_dict().items()}}
        elif epoch - best["epoch"] >= patience:
            break
    head.load_state_dict(best["state"])
    return head.eval(), {"steps": step, "best_step": best["step"], "best_eval_loss": best["loss"],
                         "epochs": float(history[-1]["epoch"]), "history": history}


def save_value_verifier(out_dir: Path, lm, tokenizer, head: ValueHead, kind: str) -> None:
    lm.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(out_dir / HEAD_WEIGHTS))
    (out_dir / HEAD_CONFIG).write_text(json.dumps({"kind": kind, "num_features": int(head.mean.numel()),
                                                   "width": head.mlp[0].out_features}, indent=1))


class LikelihoodVerifier:
    """Scores every step of every solution with a frozen causal LM and a value head (see the module doc).

    Same `score` contract as `verifier.TransformersVerifier`: identical (prompt, completion) pairs are scored
    once, one forward pass per solution."""

    def __init__(self, lm, tokenizer, head: ValueHead, name: str = "verifier", batch_size: int = 512,
                 progress: bool = True):
        self.lm, self.tokenizer, self.head, self.name = lm, tokenizer, head, name
        self.batch_size, self.progress = batch_size, progress
        self.non_embedding_params = count_params(lm) + sum(p.numel() for p in head.parameters())

    @classmethod
    def from_spec(cls, spec, batch_size: int = 512, progress: bool = True) -> "LikelihoodVerifier":
        config = json.loads((Path(spec.path) / HEAD_CONFIG).read_text())
        lm, tokenizer = load_backbone(spec.path, spec.device, spec.dtype)
        head = ValueHead(config["num_features"], config["width"])
        head.load_state_dict(load_file(str(Path(spec.path) / HEAD_WEIGHTS)))
        return cls(lm, tokenizer, head.eval(), name=spec.name, batch_size=batch_size, progress=progress)

    @torch.inference_mode()
    def score(self, prompts: list[str], steps: list[list[str]]) -> tuple[list[list[float]], list[int]]:
        pairs, index = unique_pairs(prompts, steps)
        feats, tokens = shared_step_features(self.lm, self.tokenizer, [p for p, _ in pairs],
                                             [list(s) for _, s in pairs], self.batch_size, self.progress)
        rows = torch.from_numpy(np.concatenate(feats)) if feats else torch.zeros(0, self.head.mean.numel())
        values = torch.sigmoid(self.head(rows)).split([len(f) for f in feats])  # one call: ~1,000 solutions a round
        scores = [v.tolist() for v in values]
        return [scores[i] for i in index], [tokens[i] for i in index]
