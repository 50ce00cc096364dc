"""Negative types: replaced words (a noun, adjective or verb by another word seen with its tag in the captions)
besides swaps; exact for a small vocabulary, seeded, never the caption or a refused paraphrase; recorded in the
cache, and a default cache byte-identical to one mined before negative types existed."""

import json
from dataclasses import asdict

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import refused

from aro.cli import main
from aro.models.negclip.arguments import MiningParameters
from aro.models.negclip.loading import load_rows
from aro.models.negclip.mining import CACHE_METADATA, load_cache, read_parameters, swap_negatives, text_negatives

SMALL_WORLD = ["the dog chases the cat", "the horse sees the bird"]


def test_replacements_of_a_small_vocabulary_are_every_same_tag_word_at_every_position(spacy_parser):
    # Nouns (NN): bird, cat, dog, horse. Verbs (VBZ): chases, sees. Determiners are never replaced.
    negatives = text_negatives(SMALL_WORLD, ("replace",), nlp=spacy_parser, per_caption=10, seed=0)
    assert sorted(negatives[0]) == sorted(
        [
            "the bird chases the cat",
            "the cat chases the cat",
            "the horse chases the cat",
            "the dog sees the cat",
            "the dog chases the bird",
            "the dog chases the dog",
            "the dog chases the horse",
        ]
    )
    assert sorted(negatives[1]) == sorted(
        [
            "the bird sees the bird",
            "the cat sees the bird",
            "the dog sees the bird",
            "the horse chases the bird",
            "the horse sees the cat",
            "the horse sees the dog",
            "the horse sees the horse",
        ]
    )


def test_replacements_are_seeded_and_take_the_words_in_turn(spacy_parser):
    captions = SMALL_WORLD * 4  # the same captions at other indexes draw their own replacements
    first = text_negatives(captions, ("replace",), nlp=spacy_parser, per_caption=2, seed=0)
    assert text_negatives(captions, ("replace",), nlp=spacy_parser, per_caption=2, seed=0) == first
    assert text_negatives(captions, ("replace",), nlp=spacy_parser, per_caption=2, seed=1) != first
    assert len({tuple(row) for row in first[0::2]}) > 1  # not one choice for every copy of a caption
    for index, row in enumerate(first):
        changed = [_changed_positions(captions[index], negative) for negative in row]
        assert len(row) == 2 and all(len(positions) == 1 for positions in changed)
        assert changed[0] != changed[1]  # two different words replaced, not one word twice


def test_a_replaced_word_keeps_its_tag(spacy_parser):
    captions = [
        "a small bird sees the big horse",
        "two dogs chase the cats",
        "a red dog and a blue cat",
        "the young man is riding a brown horse",
        "three girls were holding colorful kites",
    ]
    tags_of: dict[str, set[str]] = {}
    for doc in spacy_parser.pipe(captions):
        for token in doc:
            tags_of.setdefault(token.text.lower(), set()).add(token.tag_)
    negatives = text_negatives(captions, ("replace",), nlp=spacy_parser, per_caption=20, seed=3)
    assert all(negatives)
    for index, doc in enumerate(spacy_parser.pipe(captions)):
        for negative in negatives[index]:
            (position,) = _changed_positions(captions[index], negative)
            original, word = doc[position], negative.split()[position]
            assert original.pos_ in ("NOUN", "ADJ", "VERB") and original.tag_ in tags_of[word], (original, word)


def test_no_negative_is_the_caption_or_a_refused_paraphrase(spacy_parser):
    captions = ["a dog and a cat", "a red dog and a blue cat", "the dog chases the dog"]
    paraphrases = {"a cat and a dog", "a blue cat and a red dog"}  # coordinated noun phrases exchanged
    negatives = text_negatives(captions, ("swap", "replace"), nlp=spacy_parser, per_caption=50, seed=0)
    for index, row in enumerate(negatives):
        assert captions[index] not in row and not paraphrases & set(row) and len(set(row)) == len(row)
    assert "a red cat and a blue dog" in negatives[1]  # the nouns alone exchanged: a negative


def test_both_types_are_taken_in_turn_and_swaps_are_those_of_the_default(spacy_parser):
    captions = ["a red dog chases a blue cat", "the small horse sees the big bird"]
    swaps = swap_negatives(captions, nlp=spacy_parser, per_caption=4, seed=2)
    replaced = text_negatives(captions, ("replace",), nlp=spacy_parser, per_caption=4, seed=2)
    both = text_negatives(captions, ("swap", "replace"), nlp=spacy_parser, per_caption=4, seed=2)
    for index, row in enumerate(both):
        assert row == [swaps[index][0], replaced[index][0], swaps[index][1], replaced[index][1]]
    assert text_negatives(captions, ("swap",), nlp=spacy_parser, per_caption=4, seed=2) == swaps


def test_the_cache_records_the_types_and_the_default_cache_is_unchanged(scenes, start_model, tmp_path):
    common = ["mine", "--dataset", str(scenes), "--dataset-config", "scenes", "--clip-model", str(start_model)]
    assert main([*common, "--negative-types", "replace,swap", "--out", str(tmp_path / "both.parquet")]) == 0
    assert read_parameters(tmp_path / "both.parquet")["negative_types"] == "swap,replace"
    negatives, _, _ = load_cache(tmp_path / "both.parquet")
    captions = load_rows(str(scenes), "scenes", "train", ["caption"])["caption"]
    replaced = [
        negative
        for index, caption in enumerate(captions)
        for negative in negatives[index]
        if len(_changed_positions(caption, negative)) == 1
    ]
    assert replaced, "no replaced-word negative in the cache"

    default = tmp_path / "default.parquet"
    assert main([*common, "--out", str(default)]) == 0
    negatives, neighbours, parameters = load_cache(default)
    assert parameters["negative_types"] == "swap"  # filled in when read
    # The cache as it was written before negative types existed: the same table, the parameters without the field.
    before = asdict(MiningParameters(dataset=str(scenes), dataset_config="scenes", clip_model=str(start_model)))
    del before["negative_types"]
    table = pa.table({"negatives": negatives, "neighbours": neighbours})
    pq.write_table(table.replace_schema_metadata({CACHE_METADATA: json.dumps(before)}), tmp_path / "before.parquet")
    assert default.read_bytes() == (tmp_path / "before.parquet").read_bytes()


def test_an_unknown_negative_type_is_refused_in_one_line(scenes, start_model, tmp_path, capfd):
    argv = ["mine", "--dataset", str(scenes), "--clip-model", str(start_model), "--out", str(tmp_path / "c.parquet")]
    refused(capfd, [*argv, "--negative-types", "swap,shuffle"], "--negative-types 'swap,shuffle': name one or more")
    assert not (tmp_path / "c.parquet").exists()
    with pytest.raises(ValueError, match="--negative-types ','"):
        MiningParameters(dataset="data", negative_types=",")


def _changed_positions(caption: str, negative: str) -> list[int]:
    """The token positions where a negative of the same length differs from its caption (all, if lengths differ)."""
    words, other = caption.split(), negative.split()
    if len(words) != len(other):
        return list(range(max(len(words), len(other))))
    return [index for index in range(len(words)) if words[index] != other[index]]
