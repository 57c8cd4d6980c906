import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ttc_utils.models import ModelSize, build_policy, count_params
from ttc_utils.tokenizer import build_tokenizer


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    tok = build_tokenizer()
    model = build_policy(ModelSize(32, 2, 2), tok, max_len=64, seed=1).eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = AutoTokenizer.from_pretrained(tmp_path)("Q:1+2\n3\nA:3\n", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, loaded(ids).logits, rtol=1e-5, atol=1e-6)
    assert loaded.config.use_cache  # training switches the KV cache off; the saved model must have it on


@pytest.mark.parametrize("size", [ModelSize(16, 1, 2), ModelSize(48, 2, 3), ModelSize(128, 4, 8)])
def test_non_embedding_parameter_formula_matches_the_model(size):
    model = build_policy(size, build_tokenizer(), max_len=64, seed=0)
    assert count_params(model) == size.non_embedding_params


def test_initialisation_is_deterministic():
    tok = build_tokenizer()
    a = build_policy(ModelSize(16, 1, 2), tok, 64, seed=5)
    b = build_policy(ModelSize(16, 1, 2), tok, 64, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))

