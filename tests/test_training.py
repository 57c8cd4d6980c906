"""Ladder training: same tokens for every rung, equal-length batches, records, cache reuse."""
import pandas as pd
import pytest

from ttc_utils.cache import Cache
from ttc_utils.models import ModelSize
from ttc_utils.tokenizer import build_tokenizer
from ttc_utils.training import (
    TrainConfig,
    collate_packed_solution_loss,
    collate_solution_loss,
    pretraining_corpus,
    train_ladder,
)
from ttc_utils.world import WorldConfig


def test_corpus_has_the_token_budget_and_equal_length_batches():
    tok = build_tokenizer()
    ids, prompt_lens = pretraining_corpus(WorldConfig(), tok, tokens=20_000, batch_size=8, seed=0)
    total = sum(map(len, ids))
    assert 20_000 <= total < 20_000 + 8 * 40
    assert all(r[0] == tok.bos_token_id and r[-1] == tok.eos_token_id for r in ids)
    # each full batch of 8 holds one chain length: the number of lines is constant within it
    lines = [tok.decode(r, skip_special_tokens=True).count("\n") for r in ids]
    full = len(ids) // 8 * 8
    batches = [set(lines[i:i + 8]) for i in range(0, full, 8)]
    assert all(len(b) == 1 for b in batches) and len(ids) % 8 == 0
    again, _ = pretraining_corpus(WorldConfig(), tok, tokens=20_000, batch_size=8, seed=0)
    assert again == ids
    longer, _ = pretraining_corpus(WorldConfig(), tok, tokens=50_000, batch_size=8, seed=0)
    assert longer[:len(ids)] == ids  # a shorter corpus is a prefix of a longer one


def test_collator_puts_loss_on_solution_tokens_only():
    tok = build_tokenizer()
    ids, prompt_lens = pretraining_corpus(WorldConfig(), tok, tokens=500, batch_size=4, seed=0)
    batch = collate_solution_loss(tok.pad_token_id)([{"input_ids": i, "prompt_len": p}
                                                     for i, p in zip(ids[:4], prompt_lens[:4])])
    for row, labels, mask, src, plen in zip(batch["input_ids"], batch["labels"], batch["attention_mask"],
                                            ids[:4], prompt_lens[:4]):
        start = len(row) - len(src)
        assert row[start:].tolist() == src and mask.sum() == len(src)
        assert (labels[:start + plen] == -100).all()
        assert labels[start + plen:].tolist() == src[plen:]
        assert tok.decode(src[:plen], skip_special_tokens=True).startswith("Q:")
        assert tok.decode(src[:plen], skip_special_tokens=True).endswith("\n")


def test_a_packed_batch_has_the_loss_and_gradients_of_the_padded_batch():
    import torch
    from transformers import LlamaForCausalLM

    from ttc_utils.models import llama_config

    tok = build_tokenizer()
    ids, prompt_lens = pretraining_corpus(WorldConfig(max_steps=6), tok, tokens=3_000, batch_size=1, seed=0)
    items = [{"input_ids": i, "prompt_len": p} for i, p in zip(ids[:12], prompt_lens[:12])]
    assert len({len(i) for i in ids[:12]}) > 3  # mixed lengths, so rows hold several sequences
    config = llama_config(ModelSize(16, 2, 2), len(tok), 160, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    config.initializer_range = 1.0  # large weights: a token that attended to another sequence would show in the loss
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    packed = collate_packed_solution_loss(tok.pad_token_id)(items)
    assert packed["input_ids"].shape[0] < len(items) and packed["input_ids"].shape[1] == max(map(len, ids[:12]))
    assert (packed["position_ids"] == 0).sum() >= len(items)  # every sequence restarts its positions
    assert int((packed["labels"] != -100).sum()) == sum(len(i) - p for i, p in zip(ids[:12], prompt_lens[:12]))
    loss, grads = loss_and_grads(packed)
    ref_loss, ref_grads = loss_and_grads(collate_solution_loss(tok.pad_token_id)(items))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-4)
    # without the position ids' restarts, sequences of a row would read each other: the loss moves
    mixed = {**packed, "position_ids": torch.arange(packed["input_ids"].shape[1]).expand_as(packed["input_ids"])}
    assert abs(loss_and_grads(mixed)[0] - ref_loss) > 1e-3


def test_train_ladder_records_and_reuses_the_cache(tmp_path, capsys):
    cache = Cache(tmp_path)
    sizes = [ModelSize(32, 1, 2), ModelSize(16, 1, 1)]
    cfg = TrainConfig(tokens=3_000, batch_size=8)
    ladder, curves = train_ladder(cache, WorldConfig(max_steps=3), sizes, cfg, disable_tqdm=True)
    assert list(ladder.name) == ["d16l1", "d32l1"]  # sorted by size
    assert (ladder.tokens == ladder.tokens.iloc[0]).all() and ladder.tokens.iloc[0] >= 3_000
    assert (ladder.train_flops == 6 * ladder.non_embedding_params * ladder.tokens).all()
    assert (ladder.wall_s > 0).all()
    assert set(curves.name) == {"d16l1", "d32l1"} and curves.loss.notna().all()
    assert "training d16l1" in capsys.readouterr().out
    again, _ = train_ladder(cache, WorldConfig(max_steps=3), sizes, cfg, disable_tqdm=True)
    assert "training" not in capsys.readouterr().out  # reused, not retrained
    pd.testing.assert_frame_equal(ladder, again)


def test_a_learning_rate_per_width_and_bf16_are_recorded(tmp_path):
    sizes = [ModelSize(32, 1, 2), ModelSize(16, 1, 1)]
    cfg = TrainConfig(tokens=2_000, batch_size=8, learning_rate=2e-3, lr_scaling="1/width", precision="bf16")
    ladder, _ = train_ladder(Cache(tmp_path), WorldConfig(max_steps=3), sizes, cfg, disable_tqdm=True)
    assert list(ladder.learning_rate) == [2e-3, 1e-3]  # the smallest rung at learning_rate, twice as wide at half
    assert set(ladder.precision) == {"bf16"}
    assert TrainConfig(lr_scaling="constant").rung_learning_rate(64, 16) == TrainConfig().learning_rate


def test_an_older_ladder_key_is_kept_for_the_defaults_that_predate_the_fields():
    from ttc_utils.training import _key
    assert "lr_scaling" not in _key(TrainConfig()) and "precision" not in _key(TrainConfig())
    assert _key(TrainConfig(precision="bf16"))["precision"] == "bf16"


@pytest.mark.parametrize("field,value", [("lr_scaling", "sqrt"), ("precision", "fp8")])
def test_an_unknown_recipe_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_auto_precision_is_bf16_only_where_the_device_has_bf16_matmuls(monkeypatch):
    from ttc_utils import training
    from ttc_utils.config import WorldNotebookConfig
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(training, "native_bf16", lambda device, native=native: native)
        assert training.resolve_precision("auto") == expected
        assert training.resolve_precision("fp32") == "fp32" and training.resolve_precision("bf16") == "bf16"
        cfg = WorldNotebookConfig(train_precision="auto")  # the config holds the concrete value: it enters cache keys
        assert cfg.train_precision == expected and cfg.train().precision == expected
        assert cfg.as_dict()["train_precision"] == expected
    assert training.native_bf16("mps") is False
