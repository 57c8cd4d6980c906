"""Benchmark: notebook 03's fine-tune and history scoring, each beside its reference path in the same run.

- The revision fine-tune's forward and backward pass on random batches of 32 trajectories (the `Trainer`'s batch),
  packed into rows (`training.collate_packed_solution_loss`, what the notebook trains on) against padded to the
  longest (`collate_solution_loss`): asserts the same loss.
- A verifier's step features (`value_head.shared_step_features`, what scoring runs) on history prompts (each
  trajectory's question after its 0-4 previous attempts, then its attempt, as the revision ORM reads a chain) in
  batches of `HISTORY_SCORE_BATCH` solutions against the default 512: asserts features equal to 1e-3.

Settings alternate, best of `--reps` kept (this machine is noisy: only ratios measured together mean anything). It
reads what `make figures` cached (the base policy and notebook 03's revision samples) and keeps nothing it trains.

    python bench/revisions.py                       # the default profile, as `make figures` cached it
    python bench/revisions.py --data-dir DIR --batches 10 --solutions 1024
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttc_utils.cache import MissingArtifact, cached_only
from ttc_utils.config import load_config
from ttc_utils.revision_training import revision_contexts, revision_examples
from ttc_utils.stages import common
from ttc_utils.stages.revisions import HISTORY_SCORE_BATCH, revision_trajectories
from ttc_utils.training import collate_packed_solution_loss, collate_solution_loss
from ttc_utils.value_head import load_backbone, shared_step_features

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import best_of  # noqa: E402  (bench/timing.py, next to this file)

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(ROOT / "data"), help="the data_dir whose default-profile cache to read")
    ap.add_argument("--batches", type=int, default=10, help="fine-tune batches of 32 trajectories per timed run")
    ap.add_argument("--solutions", type=int, default=1024, help="history prompts scored per timed run")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config("03_revisions", {"profile": "default", "data_dir": args.data_dir})
    try:
        with cached_only():
            policy = common.base_policy(cfg, common.ladder(cfg)[0])
            problems, traj = revision_trajectories(cfg, policy)
    except MissingArtifact as e:
        raise SystemExit(f"{e}: notebook 03's revision samples are needed (`make figures`)") from None
    task, rng = common.task(cfg), np.random.default_rng(0)
    tok = AutoTokenizer.from_pretrained(policy.path)
    ids, context = revision_examples(task, problems, traj, tok)
    batches = [[{"input_ids": ids[i], "prompt_len": context[i]} for i in rng.choice(len(ids), 32, replace=False)]
               for _ in range(args.batches)]
    model = AutoModelForCausalLM.from_pretrained(policy.path).train()

    def fine_tune(collate):
        def run():
            losses = []
            for items in batches:
                model.zero_grad()
                loss = model(**collate(items)).loss
                loss.backward()
                losses.append(loss.item())
            return losses
        return run

    packed, padded = collate_packed_solution_loss(tok.pad_token_id), collate_solution_loss(tok.pad_token_id)
    train_s, losses = best_of(args.reps, {"packed": fine_tune(packed), "padded": fine_tune(padded)})
    assert np.allclose(losses["packed"], losses["padded"], rtol=1e-5), "packing changed the loss"
    real = sum(len(it["input_ids"]) for b in batches for it in b)
    shapes = {name: sum(c(b)["input_ids"].numel() for b in batches) for name, c in (("packed", packed),
                                                                                     ("padded", padded))}

    pick = rng.choice(len(traj), min(args.solutions, len(traj)), replace=False)
    prompts = [revision_contexts(task, problems, traj.iloc[[i]])[0] for i in pick]
    steps = [task.split_steps(traj.target.iloc[i]) for i in pick]
    lm, vtok = load_backbone(policy.path)
    score_s, feats = best_of(args.reps, {
        str(HISTORY_SCORE_BATCH): lambda: shared_step_features(lm, vtok, prompts, steps, HISTORY_SCORE_BATCH)[0],
        "512": lambda: shared_step_features(lm, vtok, prompts, steps, 512)[0]})
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*feats.values()) if len(a))
    assert diff < 1e-3, f"the batch size moved the features by {diff}"
    lengths = [len(r) for r in vtok(prompts).input_ids]

    print(f"policy: {policy.path}, {torch.get_num_threads()} threads; {len(ids):,} trajectories of "
          f"{min(map(len, ids))}-{max(map(len, ids))} tokens (mean {np.mean([len(i) for i in ids]):.0f})")
    print(f"fine-tune, {args.batches} batches of 32 (forward and backward): packed {train_s['packed']:.2f} s "
          f"({real / shapes['packed']:.0%} of its tokens real), padded {train_s['padded']:.2f} s "
          f"({real / shapes['padded']:.0%}): {train_s['padded'] / train_s['packed']:.2f}x (same losses)")
    print(f"history features, {len(prompts)} prompts of {min(lengths)}-{max(lengths)} tokens (mean "
          f"{np.mean(lengths):.0f}): batches of {HISTORY_SCORE_BATCH} {score_s[str(HISTORY_SCORE_BATCH)]:.2f} s, of "
          f"512 {score_s['512']:.2f} s: {score_s['512'] / score_s[str(HISTORY_SCORE_BATCH)]:.2f}x "
          f"(features within {diff:.1e})")


if __name__ == "__main__":
    main()
