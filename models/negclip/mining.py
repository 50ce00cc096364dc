"""Hard negatives for NegCLIP: swapped-word captions from spaCy and nearest-neighbour images from a CLIP model.

- Text negatives (`text_negatives`), of the types `--negative-types` names:
  - swap (the default, NegCLIP's): exchange two nouns, two adjectives, two verbs or two noun phrases of a
    caption ("a child holding a flowered umbrella and petting a yak" -> "a umbrella holding a flowered child and
    petting a yak", "a child petting a flowered umbrella and holding a yak"); every negative keeps the caption's words;
  - replace (the rule-based negatives of TSVLC and DAC): a noun, adjective or verb replaced by another word seen with
    the same tag in the training captions ("a child holding a flowered umbrella" -> "a child holding a flowered
    kite"); the words come from the captions instead of TSVLC's fixed lists.
  Every negative differs from its caption and from the paraphrases the miner refuses; each caption's choice is
  seeded by (seed, caption index), and several types are taken in turn.
- Image negatives (`nearest_images`): for every image, the k most similar other images by CLIP image embedding;
  the image itself and rows of the same image id are never neighbours.

`mine_negatives` runs both over an image-caption dataset (sharded over processes when given a distributed state),
`write_cache` writes them once to a Parquet cache (one row per dataset row: `negatives`, `neighbours`) with the
mining parameters in the file's metadata, and `mine` does both, on one process or shared over several; `aro mine`
is its CLI. A cache is written beside the dataset, never inside it (`default_cache_path`), and replaces only an
earlier cache (`check_cache_output`): the training data is never an output. `NegativeShare` counts the rows that got
a swapped-word negative, which training checks against a floor.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from accelerate.utils import gather_object
from datasets import Image as ImageFeature
from tqdm.auto import tqdm

from aro.builders.text import load_spacy
from aro.core.errors import InvalidInput
from aro.core.io import check_output_file, staged_file
from aro.metrics.scoring import Scorer

from .arguments import DEFAULT_NEGATIVE_TYPES, MiningParameters
from .loading import load_clip, load_processor, load_rows, reason_of

CACHE_METADATA = b"negclip_mining"  # the Parquet metadata key that holds the mining parameters: a cache's mark

REPLACEABLE_POS = ("NOUN", "ADJ", "VERB")  # by spaCy's coarse part of speech: no auxiliary ("is"), no proper noun
SWAPPABLE_TAGS = {
    "noun": ("NN", "NNS", "NNP", "NNPS"),
    "adjective": ("JJ", "JJR", "JJS"),
    "verb": ("VB", "VBD", "VBG", "VBN", "VBP", "VBZ"),
}


def _swaps_of(doc) -> tuple[dict[str, list[str]], set[str]]:
    """Every distinct caption made by exchanging two same-kind words or two noun phrases of `doc`, by kind; and the
    captions no negative may be: `doc` itself and its paraphrases.

    Exchanging two coordinated noun phrases ("a dog and a cat" -> "a cat and a dog") keeps the meaning, so
    that caption and any word swap that lands on it are left out: a paraphrase is not a negative.
    """
    tokens = [token.text for token in doc]
    chunks = list(doc.noun_chunks) if doc.has_annotation("DEP") else []

    def exchange(first, second) -> list[str]:
        return (
            tokens[: first.start]
            + tokens[second.start : second.end]
            + tokens[first.end : second.start]
            + tokens[first.start : first.end]
            + tokens[second.end :]
        )

    pairs = [(first, second) for index, first in enumerate(chunks) for second in chunks[index + 1 :]]
    refused = {" ".join(tokens)} | {
        " ".join(exchange(first, second)) for first, second in pairs if second.root in first.root.conjuncts
    }
    seen = set(refused)
    swaps: dict[str, list[str]] = {kind: [] for kind in (*SWAPPABLE_TAGS, "noun phrase")}

    def keep(kind: str, swapped: list[str]) -> None:
        text = " ".join(swapped)
        if text not in seen:
            seen.add(text)
            swaps[kind].append(text)

    for kind, tags in SWAPPABLE_TAGS.items():
        positions = [token.i for token in doc if token.tag_ in tags]
        for first_index, first in enumerate(positions):
            for second in positions[first_index + 1 :]:
                swapped = list(tokens)
                swapped[first], swapped[second] = swapped[second], swapped[first]
                keep(kind, swapped)
    for first, second in pairs:
        keep("noun phrase", exchange(first, second))
    return swaps, refused


def _pick(pools: dict[str, list[str]], count: int, rng: random.Random) -> list[str]:
    """`count` negatives, taking the pools (kinds of swap, replaced words) in turn (in a random order) so that none
    crowds out the others."""
    shuffled = [rng.sample(pool, len(pool)) for pool in pools.values() if pool]
    rng.shuffle(shuffled)
    picked = []
    while len(picked) < count and any(shuffled):
        for pool in shuffled:
            if pool and len(picked) < count:
                picked.append(pool.pop())
    return picked


@dataclass
class ParsedCaption:
    """What a caption's negatives are made from, once spaCy has read it: its index in the dataset, its tokens, the
    positions and tags of the words a replacement may change, the captions no negative may be (itself and its
    paraphrases), and its seeded pick of swaps."""

    index: int
    tokens: list[str]
    replaceable: list[tuple[int, str]]
    refused: set[str]
    swaps: list[str]


def parse_captions(
    captions: Sequence[str], nlp=None, per_caption: int = 3, seed: int = 0, batch_size: int = 256, first_index: int = 0
) -> list[ParsedCaption]:
    """Read the captions with spaCy and pick each one's swaps (seeded by (seed, its index in the dataset):
    `first_index` is the index of `captions[0]`). `nlp` is a spaCy pipeline or its name; it needs the tagger and
    the parser (for noun phrases)."""
    if nlp is None or isinstance(nlp, str):
        nlp = load_spacy(nlp, keep=("tok2vec", "tagger", "attribute_ruler", "parser"))
    # What a caption offers depends on its text alone: each distinct text is read once (the synthetic world's
    # 6000 rows hold about 560), and only the seeded pick is per row.
    distinct = list(dict.fromkeys(captions))
    docs = tqdm(nlp.pipe(distinct, batch_size=batch_size), total=len(distinct), desc="reading captions", leave=False)
    read = {
        text: (
            _swaps_of(doc),
            [token.text for token in doc],
            [(token.i, token.tag_) for token in doc if token.pos_ in REPLACEABLE_POS],
        )
        for text, doc in zip(distinct, docs)
    }
    parsed = []
    for index, caption in enumerate(captions):
        (swaps, refused), tokens, replaceable = read[caption]
        rng = random.Random(f"{seed}:{first_index + index}")
        parsed.append(
            ParsedCaption(
                index=first_index + index,
                tokens=tokens,
                replaceable=replaceable,
                refused=refused,
                swaps=_pick(swaps, per_caption, rng),
            )
        )
    return parsed


def seen_words(parsed: Iterable[ParsedCaption]) -> set[tuple[str, str]]:
    """The (tag, lower-cased word) of every replaceable word of the captions."""
    return {(tag, caption.tokens[position].lower()) for caption in parsed for position, tag in caption.replaceable}


def word_vocabulary(words: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The replacement words by tag, each list sorted (so the draws do not depend on how the captions were shared)."""
    vocabulary: dict[str, list[str]] = {}
    for tag, word in sorted(words):
        vocabulary.setdefault(tag, []).append(word)
    return vocabulary


def replacements(caption: ParsedCaption, vocabulary: dict[str, list[str]], count: int, seed: int) -> list[str]:
    """Up to `count` captions with one noun, adjective or verb replaced by another word of the same tag, taking the
    replaced positions in turn; seeded by (seed, the caption's index), apart from the swaps' draws."""
    rng = random.Random(f"{seed}:{caption.index}:replace")
    pools = {}
    for position, tag in caption.replaceable:
        original, words = caption.tokens[position].lower(), vocabulary.get(tag, [])
        # `count + 1` draws leave `count` when one of them is the original word.
        drawn = [word for word in rng.sample(words, min(count + 1, len(words))) if word != original][:count]
        texts = (" ".join([*caption.tokens[:position], word, *caption.tokens[position + 1 :]]) for word in drawn)
        pools[position] = [text for text in texts if text not in caption.refused]
    return _pick(pools, count, rng)


def text_negatives(
    captions: Sequence[str],
    types: Sequence[str] = ("swap",),
    nlp=None,
    per_caption: int = 3,
    seed: int = 0,
    batch_size: int = 256,
    first_index: int = 0,
    processes: int = 1,
) -> list[list[str]]:
    """Up to `per_caption` negatives per caption of the `types` (`NEGATIVE_TYPES`), the types in turn (fewer when a
    caption offers fewer). A replacement word is one seen with the same tag in the captions.

    With `processes` > 1, every process calls this with its share of the dataset's captions (`first_index` the
    index of its first): the replacement words are gathered from every share, so the result does not depend on
    how the captions were shared. With the default type alone, each caption's negatives are those mined before
    negative types existed.
    """
    parsed = parse_captions(captions, nlp, per_caption, seed, batch_size, first_index)
    vocabulary = {}
    if "replace" in types:
        words = seen_words(parsed)
        if processes > 1:
            words = set().union(*gather_object([words]))
        vocabulary = word_vocabulary(words)
    negatives = []
    for caption in parsed:
        by_type = {"swap": caption.swaps, "replace": replacements(caption, vocabulary, per_caption, seed)}
        negatives.append(_in_turn([by_type[kind] for kind in types], per_caption))
    return negatives


def _in_turn(lists: Sequence[list[str]], count: int) -> list[str]:
    """Up to `count` distinct items, one of each list in turn."""
    picked: list[str] = []
    for group in itertools.zip_longest(*lists):
        for item in group:
            if item is not None and item not in picked and len(picked) < count:
                picked.append(item)
    return picked


def swap_negatives(
    captions: Sequence[str], nlp=None, per_caption: int = 3, seed: int = 0, batch_size: int = 256, first_index: int = 0
) -> list[list[str]]:
    """Up to `per_caption` swapped-word negatives per caption (fewer when the caption has fewer swaps); see
    `text_negatives`."""
    return text_negatives(captions, ("swap",), nlp, per_caption, seed, batch_size, first_index)


def nearest_images(
    embeddings: torch.Tensor, image_ids: Sequence[str], k: int = 3, chunk: int = 4096
) -> list[list[int]]:
    """For each row, the `k` rows of the most similar other images (one row per image id, never its own id)."""
    unique_ids = list(dict.fromkeys(image_ids))
    first_row = {image_id: row for row, image_id in reversed(list(enumerate(image_ids)))}
    unique_rows = torch.tensor([first_row[image_id] for image_id in unique_ids])
    unique_embeddings = embeddings[unique_rows]
    neighbours_of_id: dict[str, list[int]] = {}
    for start in range(0, len(unique_ids), chunk):
        similarity = unique_embeddings[start : start + chunk] @ unique_embeddings.t()
        own = torch.arange(start, min(start + chunk, len(unique_ids)))
        similarity[torch.arange(len(own)), own] = -float("inf")
        best = similarity.topk(min(k, len(unique_ids) - 1), dim=1).indices
        for offset, row in enumerate(best.tolist()):
            neighbours_of_id[unique_ids[start + offset]] = [int(unique_rows[index]) for index in row]
    return [neighbours_of_id[image_id] for image_id in image_ids]


@dataclass(frozen=True)
class NegativeShare:
    """How many training rows have a swapped-word negative: on captions with no possible swap (all alike, empty, one
    word) hard-negative training is CLIP's plain loss, whatever its name says.

    >>> str(NegativeShare.of([["a b"], [], ["c d", "d c"]]))
    '2 of 3 rows (66.7%)'
    """

    rows: int
    rows_with_negative: int

    @classmethod
    def of(cls, negatives: Sequence[Sequence[str]]) -> NegativeShare:
        return cls(len(negatives), sum(1 for row in negatives if row))

    @property
    def share(self) -> float:
        return self.rows_with_negative / self.rows if self.rows else 0.0

    def __str__(self) -> str:
        return f"{self.rows_with_negative} of {self.rows} rows ({self.share:.1%})"

    def to_json(self) -> dict:
        return {**asdict(self), "share": self.share}

    @classmethod
    def from_json(cls, record: dict | None) -> NegativeShare | None:
        """The share `to_json` wrote (None for a run without hard negatives, or from before shares were recorded)."""
        return cls(record["rows"], record["rows_with_negative"]) if record else None

    def check(self, floor: float, source: str) -> None:
        """Refuse training on `source` when fewer than `floor` of its rows have a negative."""
        if self.share < floor:
            raise InvalidInput(
                f"{source}: only {self} have a swapped-word negative, below --min-negative-share {floor:g}: its "
                "captions offer no swaps to learn from; pass --min-negative-share 0 to train anyway, or "
                "--no-hard-negatives for the plain CLIP loss"
            )


def default_cache_path(dataset: str, config: str | None, split: str) -> Path:
    """Beside a local dataset folder, never inside it (the dataset is an input):
    `<dataset>-negclip-mining/<config>-<split>.parquet`."""
    folder = Path(dataset).expanduser()
    if not folder.is_dir():
        raise InvalidInput(
            f"--dataset {dataset} is not a local folder: "
            "name the mining cache (aro mine --out, aro train --mining-cache)"
        )
    folder = folder.resolve()
    return folder.parent / f"{folder.name}-negclip-mining" / f"{config or 'default'}-{split}.parquet"


def _recorded(parameters: MiningParameters) -> dict:
    """The parameters a cache records: all of them, but the negative types only when not the default, so that a
    default cache is byte-identical to one mined before negative types existed (`read_parameters` fills them in)."""
    recorded = asdict(parameters)
    if parameters.negative_types == DEFAULT_NEGATIVE_TYPES:
        del recorded["negative_types"]
    return recorded


def read_parameters(path: str | Path, option: str = "--mining-cache") -> dict:
    """The mining parameters of a cache, from its metadata alone; refused when `path` is not a mining cache."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as error:
        raise InvalidInput(f"{option} {path}: not a readable Parquet file ({reason_of(error)})") from None
    try:
        parameters = json.loads(metadata[CACHE_METADATA])
    except (KeyError, ValueError):
        parameters = None
    if not isinstance(parameters, dict):
        raise InvalidInput(f"{option} {path} is not a mining cache: its metadata holds no {CACHE_METADATA.decode()}")
    return {**parameters, "negative_types": parameters.get("negative_types", DEFAULT_NEGATIVE_TYPES)}


def is_mining_cache(path: str | Path) -> bool:
    """Whether `path` is a cache `aro mine` wrote (a Parquet file marked with its parameters)."""
    try:
        read_parameters(path)
    except InvalidInput:
        return False
    return True


def check_cache_output(path: str | Path, inputs: list, option: str) -> None:
    """Refuse, before any work, a cache path that is a folder, one of the run's inputs (the dataset, a model), or an
    existing file that is not a mining cache (the training Parquet, anything of the user's)."""
    check_output_file(path, inputs, is_mining_cache, "a mining cache (a Parquet file written by aro mine)", option)


def mine_negatives(
    parameters: MiningParameters, batch_size: int = 256, device=None, distributed=None
) -> tuple[list[list[str]], list[list[int]]]:
    """Text and image negatives for every row of the dataset, in row order.

    With `distributed` (accelerate's `PartialState` or `Accelerator`) the captions and images are split over the
    processes and the results gathered on every process, so every process must call it; the results do not depend
    on the number of processes.
    """
    columns = [parameters.image_column, parameters.caption_column, parameters.image_id_column]
    data = load_rows(parameters.dataset, parameters.dataset_config, parameters.split, columns)
    image_ids = [str(image_id) for image_id in data[parameters.image_id_column]]
    if len(set(image_ids)) < 2:
        raise InvalidInput(
            f"--dataset {parameters.dataset} ({parameters.split}) has {len(data)} rows of {len(set(image_ids))} "
            "images: mining nearest images needs at least 2"
        )
    # Before spaCy's minutes, so that a wrong model name fails at once.
    model = load_clip(parameters.clip_model, "--clip-model")
    processor = load_processor(parameters.clip_model, "--clip-model")
    scorer = Scorer(model, processor, device=device, batch_size=batch_size, distributed=distributed)
    process, processes = scorer.runtime.process_index, scorer.runtime.num_processes

    captions = data[parameters.caption_column]
    share = -(-len(captions) // processes)
    negatives = text_negatives(
        captions[process * share : (process + 1) * share],
        parameters.negative_kinds,
        nlp=parameters.spacy_pipeline,
        per_caption=parameters.negatives_per_caption,
        seed=parameters.seed,
        first_index=process * share,
        processes=processes,
    )
    if processes > 1:
        negatives = [row for shard in gather_object([negatives]) for row in shard]

    unique_rows = sorted({image_id: row for row, image_id in reversed(list(enumerate(image_ids)))}.values())
    raw = data.cast_column(parameters.image_column, ImageFeature(decode=False))
    embeddings = torch.zeros(len(data), model.config.projection_dim)
    embeddings[unique_rows] = scorer.runtime.gathered(
        lambda rows: scorer.adapter.image_features(raw, rows, parameters.image_column), unique_rows
    )
    return negatives, nearest_images(embeddings, image_ids, k=parameters.neighbours)


def write_cache(
    path: Path, negatives: list[list[str]], neighbours: list[list[int]], parameters: MiningParameters
) -> Path:
    """Write the cache beside its final name and move it into place, so a reader never sees half a file."""
    table = pa.table({"negatives": negatives, "neighbours": neighbours})
    table = table.replace_schema_metadata({CACHE_METADATA: json.dumps(_recorded(parameters))})
    with staged_file(path) as partial:
        pq.write_table(table, partial)
    return path


def mine(
    parameters: MiningParameters,
    output: str | Path | None = None,
    batch_size: int = 256,
    device: str | None = None,
    distributed=None,
    option: str = "--out",
) -> Path:
    """Mine text and image negatives for every row of the dataset; write and return the Parquet cache.

    `output` (default: `default_cache_path`) is new or an earlier cache; `option` names it in errors. With
    `distributed`, every process mines its share (every process must call this) and the main one writes.
    """
    parameters.check()
    if batch_size < 1:
        raise InvalidInput(f"--batch-size must be at least 1, not {batch_size}")
    output = (
        Path(output) if output else default_cache_path(parameters.dataset, parameters.dataset_config, parameters.split)
    )
    check_cache_output(output, [parameters.dataset, parameters.clip_model], option)
    negatives, neighbours = mine_negatives(parameters, batch_size=batch_size, device=device, distributed=distributed)
    if getattr(distributed, "is_main_process", True):
        write_cache(output, negatives, neighbours, parameters)
    if distributed is not None:
        distributed.wait_for_everyone()
    return output


def load_cache(path: str | Path, option: str = "--mining-cache") -> tuple[list[list[str]], list[list[int]], dict]:
    """The negatives, neighbours and mining parameters written by `mine`."""
    parameters = read_parameters(path, option)
    try:
        table = pq.read_table(path, columns=["negatives", "neighbours"])
    except (OSError, pa.ArrowException) as error:
        raise InvalidInput(f"{option} {path}: cannot read its negatives ({reason_of(error)})") from None
    return table.column("negatives").to_pylist(), table.column("neighbours").to_pylist(), parameters
