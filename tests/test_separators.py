import pytest
import torch

from nlakit.errors import NLAKitError
from nlakit.models import ActivationReconstructor, ActivationVerbalizer
from nlakit.separators import (
    SEPARATOR,
    add_separator_token,
    add_separators,
    check_separators,
    nested_prefixes,
    segment_lengths,
    separator_of,
    strip_separators,
)

ORACLE = 'Poem: verses about the moon by Ruth Vale.\n"." ends the text and is punctuation. What follows is another word.'
S = SEPARATOR


def test_a_separator_follows_every_sentence_but_the_last():
    marked = add_separators(ORACLE)
    assert marked == (
        f'Poem: verses about the moon by Ruth Vale.{S}\n"." ends the text and is '
        f"punctuation.{S} What follows is another word."
    )
    assert strip_separators(marked) == ORACLE
    assert add_separators(marked) == marked  # idempotent
    assert add_separators("One sentence only.") == "One sentence only."


def test_nested_prefixes_are_the_texts_before_each_separator():
    marked = add_separators(ORACLE)
    assert nested_prefixes(marked) == [
        "Poem: verses about the moon by Ruth Vale.",
        'Poem: verses about the moon by Ruth Vale.\n"." ends the text and is punctuation.',
    ]
    assert nested_prefixes("no separators here") == []


def test_segment_lengths_count_a_separator_with_the_segment_it_ends():
    from conftest import Words

    assert segment_lengths(Words(), f"a b {S} c d e {S} f") == [3, 4, 1]
    assert segment_lengths(Words(), "a b c") == [3]


def test_training_on_texts_without_separators_is_refused(tmp_path):
    check_separators(["a.", f"b.{S} c."], "t.parquet")
    with pytest.raises(NLAKitError, match=r"t\.parquet.*teach --separators"):
        check_separators(["a. b.", "c."], "t.parquet")


def test_the_separator_token_starts_at_the_mean_embedding_and_round_trips(tiny_dirs, tmp_path):
    av = ActivationVerbalizer.from_pretrained(tiny_dirs["av"])
    emb = av.model.get_input_embeddings().weight
    rows, mean = emb.shape[0], emb.detach().mean(0).clone()
    token_id = add_separator_token(av)
    assert av.tokenizer.convert_tokens_to_ids(SEPARATOR) == token_id
    assert av.tokenizer(f"a.{S} b", add_special_tokens=False)["input_ids"].count(token_id) == 1
    weight = av.model.get_input_embeddings().weight
    assert weight.shape[0] >= max(rows, token_id + 1)
    assert torch.allclose(weight[token_id], mean, atol=1e-6)
    assert separator_of(av.meta) == SEPARATOR
    assert add_separator_token(av) == token_id  # a second call changes nothing
    av.save_pretrained(tmp_path / "av")
    again = ActivationVerbalizer.from_pretrained(tmp_path / "av")
    assert separator_of(again.meta) == SEPARATOR
    assert again.meta.extra["separator"]["token_id"] == token_id
    assert torch.equal(again.model.get_input_embeddings().weight[token_id], weight[token_id])
    text = f"a b.{S} c"
    assert (
        again.tokenizer.decode(again.tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    )


def test_the_ar_reads_an_explanation_as_if_it_had_no_separators(tiny_dirs):
    ar = ActivationReconstructor.from_pretrained(tiny_dirs["ar"])
    marked = add_separators(ORACLE)
    assert torch.equal(ar.tokenize([marked])["input_ids"], ar.tokenize([ORACLE])["input_ids"])
