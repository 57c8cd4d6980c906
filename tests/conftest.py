"""Shared fixtures: a tiny Llama policy in the standard format (random weights: for bookkeeping tests only)."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    """A freshly initialised d16l1 policy saved with save_pretrained (safetensors) and its tokenizer."""
    from ttc_utils.models import ModelSize, build_policy
    from ttc_utils.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("tiny_policy")
    tok = build_tokenizer()
    model = build_policy(ModelSize(16, 1, 2), tok, max_len=160, seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
