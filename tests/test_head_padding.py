"""Zero-padded attention heads (`head_padding`): the wider copy computes the same function as the original."""
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from ttc_utils.head_padding import accepted_head_size, needs_padding, pad_heads, padded_copy
from ttc_utils.tokenizer import build_tokenizer


def tiny(heads=4, kv_heads=4, hidden=64, seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=40, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=64,
                         rope_theta=10_000.0, attn_implementation="eager")
    return LlamaForCausalLM(config).eval()


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("heads,kv_heads,D", [(4, 4, 32), (4, 2, 32), (4, 4, 64), (2, 2, 64)])
def test_padded_heads_give_the_same_logits(heads, kv_heads, D):
    model, ids = tiny(heads, kv_heads), torch.randint(0, 40, (3, 30))
    want = logits(model, ids)
    padded = pad_heads(model, D)
    assert padded.config.head_dim == D and padded.model.layers[0].self_attn.q_proj.weight.shape[0] == heads * D
    assert torch.allclose(logits(padded, ids), want, atol=1e-5)


def test_a_padded_copy_on_disk_loads_as_a_model_with_wider_heads(tmp_path):
    model, ids = tiny(), torch.randint(0, 40, (2, 20))
    model.save_pretrained(tmp_path / "orig")
    build_tokenizer().save_pretrained(tmp_path / "orig")
    assert needs_padding(str(tmp_path / "orig")) == 32
    dest = padded_copy(str(tmp_path / "orig"), str(tmp_path / "copy"), 32)
    copy = AutoModelForCausalLM.from_pretrained(dest).eval()
    assert copy.config.head_dim == 32 and (tmp_path / "copy" / "tokenizer.json").exists()
    assert torch.allclose(logits(copy, ids), logits(model, ids), atol=1e-5)
    assert needs_padding(dest) is None  # already a size the engine takes
    assert needs_padding("Qwen/Qwen2.5-Math-1.5B-Instruct") is None  # a hub id is never padded here


def test_a_random_permutation_of_the_rotary_dimensions_would_not_be_the_same_function():
    """The padding's placement of rotary dimensions matters (so the test above can fail): moving them to the first
    d slots instead of spreading them changes the logits."""
    from ttc_utils import head_padding
    model, ids = tiny(), torch.randint(0, 40, (2, 20))
    want = logits(model, ids)
    original = head_padding._spread

    def first_slots(w, heads, d, D, dim):
        w = w.movedim(dim, 0)
        out = w.new_zeros((heads, D) + w.shape[1:])
        out[:, :d] = w.reshape((heads, d) + w.shape[1:])
        return out.reshape((heads * D,) + w.shape[1:]).movedim(0, dim)
    head_padding._spread = first_slots
    try:
        wrong = pad_heads(model, 32)
    finally:
        head_padding._spread = original
    assert not torch.allclose(logits(wrong, ids), want, atol=1e-3)


def test_accepted_head_sizes():
    assert accepted_head_size(16) == 32 and accepted_head_size(8) == 32 and accepted_head_size(40) == 80
    assert accepted_head_size(48) == 96 and accepted_head_size(15) is None


def test_other_architectures_and_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="even multiple"):
        pad_heads(tiny(), 40)
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=40, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=4))
    with pytest.raises(ValueError, match="Llama"):
        pad_heads(qwen, 32)
