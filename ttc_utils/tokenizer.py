"""A character-level tokenizer for the embedded world, built and saved as a standard fast tokenizer.

Every character of the world's alphabet is one token; `<bos>` is prepended by the post-processor,
so `tokenizer(text)` behaves like a real model's tokenizer and `AutoTokenizer.from_pretrained(dir)`
loads it back.
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, processors
from transformers import PreTrainedTokenizerFast

ALPHABET = "0123456789+-*=:QA\n"
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]


def build_tokenizer(alphabet: str = ALPHABET) -> PreTrainedTokenizerFast:
    """A fast tokenizer with one token per character of `alphabet` plus pad/bos/eos/unk."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(alphabet))}
    # BPE without merges splits text into single characters, newlines included.
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")
