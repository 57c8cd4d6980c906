from transformers import AutoTokenizer

from ttc_utils.tokenizer import ALPHABET, build_tokenizer
from ttc_utils.world import WorldConfig, generate


def test_round_trip_of_world_text_and_one_token_per_character():
    tok = build_tokenizer()
    for p in generate(WorldConfig(), 50, "train", seed=0, unique=False):
        ids = tok(p.text).input_ids
        assert ids[0] == tok.bos_token_id
        assert len(ids) == len(p.text) + 1
        assert tok.decode(ids, skip_special_tokens=True) == p.text


def test_saved_tokenizer_loads_with_autotokenizer(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "Q:12+3\n15\nA:15\n"
    assert loaded(text).input_ids == tok(text).input_ids
    assert len(loaded) == len(ALPHABET) + 4
    assert (loaded.pad_token, loaded.eos_token, loaded.bos_token) == ("<pad>", "<eos>", "<bos>")
    assert loaded.decode(loaded(text).input_ids, skip_special_tokens=True) == text
