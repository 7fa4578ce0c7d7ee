"""Incremental detokenising: the pieces sent add up to what decoding the whole output gives, for a byte-level BPE
tokenizer (SmolLM2's) and a SentencePiece-style one (Llama's decoder: a leading space dropped, byte fallback), and
each token costs a bounded decode however long the output is."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from deployments.engines.hf.incremental_text import IncrementalText

TEXTS = [
    "The capital of France is Paris.  Two spaces, then\nnew lines\n\n and tabs\t.",
    "Café déjà vu: naïve façade. 東京は日本の首都です。Emoji: 🐉🍳👩‍🍳 and ✓ done.",
    "code: def f(x):\n    return {'a': [1, 2, 3]}  # ok",
]


@pytest.fixture(scope="module")
def bpe_tokenizer(smollm_path):
    return AutoTokenizer.from_pretrained(smollm_path)


@pytest.fixture(scope="module")
def sentencepiece_style_tokenizer():
    """Llama's tokenizer.json shape, trained here: spaces as '▁' prepended to the first word, bytes as <0xNN>
    tokens for what the vocabulary lacks, and a decoder that strips the leading space again."""
    bytes_ = [f"<0x{b:02X}>" for b in range(256)]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", *bytes_],
                                  initial_alphabet=list("abcdefghijklmnopqrstuvwxyz▁"))
    tokenizer.train_from_iterator([TEXTS[0] * 20, "the quick brown fox jumps over the lazy dog " * 50], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def fed(tokenizer, ids: list[int]) -> str:
    inc = IncrementalText(tokenizer, [])
    sent = "".join(inc.add(i)[0] for i in ids)
    return sent + inc.flush()[0]


def whole(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False).rstrip("\ufffd")


@pytest.mark.parametrize("which", ["bpe_tokenizer", "sentencepiece_style_tokenizer"])
def test_pieces_add_up_to_the_whole_decode(request, which):
    tokenizer = request.getfixturevalue(which)
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert fed(tokenizer, ids) == whole(tokenizer, ids) != ""
    random.seed(0)
    for _ in range(30):  # what a model may sample: any ids, special ones and lone bytes among them
        ids = [random.randrange(len(tokenizer)) for _ in range(random.randrange(1, 60))]
        assert fed(tokenizer, ids) == whole(tokenizer, ids)


def test_the_sentencepiece_style_decoder_really_drops_a_leading_space(sentencepiece_style_tokenizer):
    """What the window's previous piece is for: decoding a later token alone would lose its space."""
    tokenizer = sentencepiece_style_tokenizer
    word = min(t for t in tokenizer.get_vocab() if t.startswith("▁") and t[1:].isalpha())  # "▁" + a word
    ids = tokenizer("the", add_special_tokens=False).input_ids + [tokenizer.convert_tokens_to_ids(word)]
    assert tokenizer.decode(ids[-1:]) == word[1:]
    assert fed(tokenizer, ids) == "the " + word[1:]
    unk = tokenizer.unk_token_id  # a piece of no text between two words: the space must survive it too
    assert fed(tokenizer, ids[:-1] + [unk, unk] + ids[-1:]) == "the " + word[1:]


class _CountingTokenizer:
    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.ids_decoded = tokenizer, 0

    def decode(self, ids, **kw):
        self.ids_decoded += len(ids)
        return self.tokenizer.decode(ids, **kw)


def test_each_token_decodes_a_bounded_window_however_long_the_output(bpe_tokenizer):
    ids = bpe_tokenizer(" ".join(TEXTS) * 40, add_special_tokens=False).input_ids[:3000]
    counting = _CountingTokenizer(bpe_tokenizer)
    assert fed(counting, ids) == whole(bpe_tokenizer, ids)
    assert counting.ids_decoded < 12 * len(ids)  # decoding the whole output each step: ~len(ids)**2 / 2
