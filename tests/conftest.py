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


@pytest.fixture(scope="session")
def tiny_verifier_dir(tiny_policy_dir, tmp_path_factory):
    """The tiny policy's backbone with a fresh scalar head (random: bookkeeping tests only)."""
    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification

    from ttc_utils.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("tiny_verifier")
    config = AutoConfig.from_pretrained(tiny_policy_dir, num_labels=1)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(tiny_policy_dir, config=config)
    torch.nn.init.normal_(model.score.weight, std=1.0)
    model.save_pretrained(path)
    build_tokenizer().save_pretrained(path)
    return path
