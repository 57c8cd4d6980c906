"""Open PRM adapters end to end on tiny random models of their architectures, built here with tokenizers that hold the
adapters' special tokens: scores line up with steps, equal a hand-made forward pass, do not depend on batching, and a
model that needs remote code does not load without the opt-in."""
import json
import string

import pytest
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForTokenClassification,
)

from ttc_utils.model_spec import ModelSpec
from ttc_utils.open_prm import MathShepherdPRM, QwenPRM
from ttc_utils.registry import load_verifier

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")


def char_tokenizer(specials: list[str]) -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>"] + list(string.printable))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([AddedToken(s, normalized=False) for s in specials])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")


def tiny(config_cls, model_cls, vocab: int, **kw):
    torch.manual_seed(0)
    config = config_cls(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=512, **kw)
    return model_cls(config).eval()


@pytest.fixture(scope="module")
def shepherd():
    tokenizer = char_tokenizer(["ки"])
    return MathShepherdPRM(tiny(LlamaConfig, LlamaForCausalLM, len(tokenizer)), tokenizer, batch_size=4)


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    tokenizer = char_tokenizer(["<extra_0>", "<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHAT
    model = tiny(Qwen2Config, Qwen2ForTokenClassification, len(tokenizer), num_labels=2)
    folder = tmp_path_factory.mktemp("qwen-prm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


PROMPTS = ["What is 3+4?", "What is 12*3-5?"]
STEPS = [["3+4=7\n", "The answer is 7\n"], ["12*3=36\n", "36-5=31\n", "The answer is 31\n"]]


def by_hand(prm, prompt, steps, read):
    ids = prm.tokenizer(prm.text(prompt, steps), add_special_tokens=False)["input_ids"]
    logits = prm.model(input_ids=torch.tensor([ids])).logits[0]
    at = [t for t, i in enumerate(ids) if i == prm.tag_id]
    return read(logits[at]).tolist()


def test_math_shepherd_scores_line_up_with_steps_and_equal_a_forward_pass(shepherd):
    scores, tokens = shepherd.score(PROMPTS, STEPS)
    assert [len(s) for s in scores] == [2, 3] and all(0 < x < 1 for row in scores for x in row)
    assert shepherd.text(PROMPTS[0], STEPS[0]) == "What is 3+4? 3+4=7 ки\nThe answer is 7 ки\n"
    for prompt, steps, got in zip(PROMPTS, STEPS, scores):
        want = by_hand(shepherd, prompt, steps, lambda z: z[:, shepherd.candidates].softmax(-1)[:, 0])
        assert got == pytest.approx(want, abs=1e-5)
    assert tokens[1] > tokens[0]


def test_scores_do_not_depend_on_what_else_is_in_the_batch(shepherd):
    together, _ = shepherd.score(PROMPTS, STEPS)
    alone = [shepherd.score([p], [s])[0][0] for p, s in zip(PROMPTS, STEPS)]
    assert together == [pytest.approx(a, abs=1e-5) for a in alone]


def test_an_empty_last_step_takes_the_score_before_it(shepherd):
    scores, _ = shepherd.score(PROMPTS[:1], [STEPS[0] + [""]])
    assert len(scores[0]) == 3 and scores[0][2] == scores[0][1]


def test_a_step_holding_the_tag_or_a_tokenizer_without_it_is_a_clear_error(shepherd):
    with pytest.raises(ValueError, match="step tags"):
        shepherd.score(PROMPTS[:1], [["3+4=7 ки\n", "The answer is 7\n"]])
    plain = char_tokenizer([])
    with pytest.raises(ValueError, match="step tag"):
        MathShepherdPRM(shepherd.model, plain)


def test_qwen_prm_loads_through_the_registry_and_reads_the_separators(qwen_folder):
    prm = load_verifier(ModelSpec(str(qwen_folder), backend="qwen_prm", param="verifier_path"))
    assert isinstance(prm, QwenPRM)
    text = prm.text(PROMPTS[0], STEPS[0])
    assert text.count("<extra_0>") == 2 and "<|im_start|>assistant\n3+4=7<extra_0>The answer is 7<extra_0>" in text
    scores, _ = prm.score(PROMPTS, STEPS)
    assert [len(s) for s in scores] == [2, 3]
    for prompt, steps, got in zip(PROMPTS, STEPS, scores):
        assert got == pytest.approx(by_hand(prm, prompt, steps, lambda z: z[:, :2].softmax(-1)[:, 1]), abs=1e-5)


def test_a_prm_that_needs_remote_code_does_not_load_without_the_opt_in(qwen_folder, tmp_path):
    folder = tmp_path / "remote"
    folder.mkdir()
    for f in qwen_folder.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_verifier(ModelSpec(str(folder), backend="qwen_prm", param="verifier_path"))
    # as a notebook parameter the same model fails in the config cell, before any sampling
    from ttc_utils.config import load_config
    with pytest.raises(ValueError, match="prm_path=.*needs remote code.*trust_remote_code"):
        load_config("02_prm_search", {"profile": "smoke", "prm_path": str(folder), "prm_backend": "qwen_prm",
                                      "task": "math", "ladder_paths": [str(qwen_folder)], "verifier_rung": 0})
