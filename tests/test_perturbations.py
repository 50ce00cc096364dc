"""Each Order perturbation keeps its promise about which tokens move, and is seeded per caption."""

import random

import pytest

from aro.builders.perturbations import (
    ADJECTIVE_TAGS,
    NOUN_TAGS,
    OrderPerturber,
    shuffle_all_but_nouns_and_adjectives,
    shuffle_nouns_and_adjectives,
    shuffle_trigrams,
    shuffle_within_trigrams,
)
from aro.core.contract import PERTURBATION_NAMES

CAPTIONS = [
    "A large brown dog chases a small white cat across the green grass.",
    "two young men ride old red bikes down a busy city street",
    "a woman holding an open umbrella stands near a tall wooden fence",
]


@pytest.fixture(scope="module")
def tagged(spacy_nlp):
    return [
        ([token.text for token in doc], [token.tag_ for token in doc])
        for doc in spacy_nlp.pipe([caption.lower() for caption in CAPTIONS])
    ]


def kept_positions(tokens, shuffled, tags, moving):
    """Positions outside `moving` tags must hold the same token before and after."""
    return all(before == after for before, after, tag in zip(tokens, shuffled, tags) if tag not in moving)


def test_nouns_and_adjectives_move_only_among_themselves(tagged):
    for tokens, tags in tagged:
        for seed in range(5):
            shuffled = shuffle_nouns_and_adjectives(tokens, tags, random.Random(seed))
            assert kept_positions(tokens, shuffled, tags, NOUN_TAGS | ADJECTIVE_TAGS)
            for kind in (NOUN_TAGS, ADJECTIVE_TAGS):
                assert sorted(t for t, tag in zip(shuffled, tags) if tag in kind) == sorted(
                    t for t, tag in zip(tokens, tags) if tag in kind
                )


def test_all_but_nouns_and_adjectives_leaves_them_in_place(tagged):
    for tokens, tags in tagged:
        shuffled = shuffle_all_but_nouns_and_adjectives(tokens, tags, random.Random(0))
        assert [t for t, tag in zip(shuffled, tags) if tag in NOUN_TAGS | ADJECTIVE_TAGS] == [
            t for t, tag in zip(tokens, tags) if tag in NOUN_TAGS | ADJECTIVE_TAGS
        ]
        assert sorted(shuffled) == sorted(tokens) and shuffled != tokens


def test_trigram_perturbations(tagged):
    for tokens, tags in tagged:
        within = shuffle_within_trigrams(tokens, tags, random.Random(1))
        for start in range(0, len(tokens), 3):
            assert sorted(within[start : start + 3]) == sorted(tokens[start : start + 3])
        blocks = shuffle_trigrams(tokens, tags, random.Random(1))
        trigrams = sorted(tuple(tokens[start : start + 3]) for start in range(0, len(tokens), 3))
        # The blocks keep their insides: cutting the result where the blocks (of their known sizes) fall gives them
        # back.
        sizes = [3] * (len(tokens) // 3) + ([len(tokens) % 3] if len(tokens) % 3 else [])
        assert any(sorted(_cut(blocks, order)) == trigrams for order in _orders(sizes))


def test_caption_options_are_seeded_per_caption_not_per_batch(spacy_nlp):
    perturber = OrderPerturber(spacy_nlp, seed=7)
    keys = ["1#0", "2#0", "3#0"]
    together = perturber.caption_options(CAPTIONS, keys)
    alone = [perturber.caption_options([caption], [key])[0] for caption, key in zip(CAPTIONS, keys)]
    reversed_order = perturber.caption_options(CAPTIONS[::-1], keys[::-1])[::-1]
    assert together == alone == reversed_order
    assert OrderPerturber(spacy_nlp, seed=8).caption_options(CAPTIONS, keys) != together
    for options in together:
        assert len(options) == len(PERTURBATION_NAMES) and options[0] == options[0].lower() and "." not in options[0]
        assert len(set(options)) == len(options)  # a shuffle that gave the caption back was drawn again


def test_an_empty_caption_names_its_key(spacy_nlp):
    with pytest.raises(ValueError, match=r"caption 1 \(key 'b#0'\) is empty"):
        OrderPerturber(spacy_nlp).caption_options(["a dog", " ... "], ["a#0", "b#0"])


def _orders(sizes):
    """Every distinct arrangement of block sizes (at most one short block)."""
    short = [size for size in sizes if size != 3]
    full = len(sizes) - len(short)
    if not short:
        return [sizes]
    return [[3] * place + short + [3] * (full - place) for place in range(full + 1)]


def _cut(tokens, sizes):
    blocks, start = [], 0
    for size in sizes:
        blocks.append(tuple(tokens[start : start + size]))
        start += size
    return blocks


def test_captions_of_one_shape_are_shuffled_differently_under_one_seed(spacy_nlp):
    """The seed includes the caption's key: two captions with the same tags get their own shuffles, not one
    permutation applied to both."""
    captions = [
        "an old man rides a red bike down the busy street",
        "a small boy pushes the yellow cart along this narrow path",
    ]
    tagged = [[token.tag_ for token in spacy_nlp(caption)] for caption in captions]
    assert tagged[0] == tagged[1]  # one shape, and distinct words in each caption:
    assert all(len(set(caption.split())) == len(caption.split()) for caption in captions)
    options = OrderPerturber(spacy_nlp, seed=0).caption_options(captions, ["1#0", "2#0"])

    def permutation(caption: str, shuffled: str) -> list[int]:
        """Where each word of the shuffle stood in the caption (the words of a caption are distinct)."""
        return [caption.split().index(word) for word in shuffled.split()]

    for name, first, second in zip(PERTURBATION_NAMES[1:], options[0][1:], options[1][1:]):
        if name in ("shuffle_within_trigrams", "shuffle_trigrams", "shuffle_all_but_nouns_and_adjectives"):
            assert permutation(captions[0], first) != permutation(captions[1], second), name
