"""Hard negatives for NegCLIP: swapped-word captions from spaCy and nearest-neighbour images from a CLIP model.

- Text negatives (`swap_negatives`): exchange two nouns, two adjectives, two verbs or two noun phrases of a
  caption ("a child holding a flowered umbrella and petting a yak" -> "a umbrella holding a flowered child and
  petting a yak", "a child petting a flowered umbrella and holding a yak"). Every negative keeps the caption's
  words and differs from it; each caption's choice is seeded by (seed, caption index).
- Image negatives (`nearest_images`): for every image, the k most similar other images by CLIP image embedding;
  the image itself and rows of the same image id are never neighbours.

`mine_negatives` runs both over an image-caption dataset (sharded over processes when given a distributed state),
`write_cache` writes them once to a Parquet cache (one row per dataset row: `negatives`, `neighbours`) with the
mining parameters in the file's metadata, and `mine` does both, on one process or shared over several; `aro mine`
is its CLI.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from aro.core.errors import InvalidInput, MissingInput, OutputRefused

from .arguments import MiningParameters

SWAPPABLE_TAGS = {
    "noun": ("NN", "NNS", "NNP", "NNPS"),
    "adjective": ("JJ", "JJR", "JJS"),
    "verb": ("VB", "VBD", "VBG", "VBN", "VBP", "VBZ"),
}


def _swaps_of(doc) -> dict[str, list[str]]:
    """Every distinct caption made by exchanging two same-kind words or two noun phrases of `doc`, by kind.

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
    seen = {" ".join(tokens)} | {
        " ".join(exchange(first, second)) for first, second in pairs if second.root in first.root.conjuncts
    }
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
    return swaps


def _pick(swaps: dict[str, list[str]], count: int, rng: random.Random) -> list[str]:
    """`count` swaps, taking the kinds in turn (in a random order) so that no kind crowds out the others."""
    pools = [rng.sample(pool, len(pool)) for pool in swaps.values() if pool]
    rng.shuffle(pools)
    picked = []
    while len(picked) < count and any(pools):
        for pool in pools:
            if pool and len(picked) < count:
                picked.append(pool.pop())
    return picked


def swap_negatives(
    captions: Sequence[str], nlp=None, per_caption: int = 3, seed: int = 0, batch_size: int = 256, first_index: int = 0
) -> list[list[str]]:
    """Up to `per_caption` swapped-word negatives per caption (fewer when the caption has fewer swaps).

    `nlp` is a spaCy pipeline or its name; it needs the tagger and the parser (for noun phrases). Each caption's
    choice is seeded by (seed, its index in the dataset): `first_index` is the index of `captions[0]`.
    """
    from aro.builders.text import load_spacy

    if nlp is None or isinstance(nlp, str):
        nlp = load_spacy(nlp, keep=("tok2vec", "tagger", "attribute_ruler", "parser"))
    docs = nlp.pipe(captions, batch_size=batch_size)
    return [
        _pick(_swaps_of(doc), per_caption, random.Random(f"{seed}:{first_index + index}"))
        for index, doc in enumerate(tqdm(docs, total=len(captions), desc="swapping words", leave=False))
    ]


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


def default_cache_path(dataset: str, config: str | None, split: str) -> Path:
    """Next to a local dataset: `<dataset>/negclip-mining/<config>-<split>.parquet`."""
    if not Path(dataset).is_dir():
        raise InvalidInput(f"{dataset} is not a local folder: pass an output path for the mining cache")
    return Path(dataset) / "negclip-mining" / f"{config or 'default'}-{split}.parquet"


def mine_negatives(
    parameters: MiningParameters, batch_size: int = 256, device=None, distributed=None
) -> tuple[list[list[str]], list[list[int]]]:
    """Text and image negatives for every row of the dataset, in row order.

    With `distributed` (accelerate's `PartialState` or `Accelerator`) the captions and images are split over the
    processes and the results gathered on every process, so every process must call it; the results do not depend
    on the number of processes.
    """
    from accelerate.utils import gather_object
    from datasets import Image as ImageFeature
    from transformers import AutoModel, AutoProcessor

    from aro.metrics.scoring import Scorer, load_split

    data = load_split(parameters.dataset, parameters.dataset_config, parameters.split)
    for column in (parameters.image_column, parameters.caption_column, parameters.image_id_column):
        if column not in data.column_names:
            raise InvalidInput(
                f"{parameters.dataset} ({parameters.split}) has no column {column!r}; it has {data.column_names}"
            )
    try:  # before spaCy's minutes, so that a wrong model name fails at once
        model = AutoModel.from_pretrained(parameters.clip_model)
        processor = AutoProcessor.from_pretrained(parameters.clip_model)
    except OSError as error:
        raise MissingInput(
            f"cannot load the mining model {parameters.clip_model}: {str(error).splitlines()[0]}"
        ) from None
    scorer = Scorer(model, processor, device=device, batch_size=batch_size, distributed=distributed)
    process, processes = scorer.runtime.process_index, scorer.runtime.num_processes

    captions = data[parameters.caption_column]
    share = -(-len(captions) // processes)
    negatives = swap_negatives(
        captions[process * share : (process + 1) * share],
        nlp=parameters.spacy_pipeline,
        per_caption=parameters.negatives_per_caption,
        seed=parameters.seed,
        first_index=process * share,
    )
    if processes > 1:
        negatives = [row for shard in gather_object([negatives]) for row in shard]

    image_ids = [str(image_id) for image_id in data[parameters.image_id_column]]
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
    table = table.replace_schema_metadata({"negclip_mining": json.dumps(asdict(parameters))})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table, partial)
    os.replace(partial, path)
    return path


def mine(
    parameters: MiningParameters,
    output: str | Path | None = None,
    batch_size: int = 256,
    device: str | None = None,
    distributed=None,
) -> Path:
    """Mine text and image negatives for every row of the dataset; write and return the Parquet cache.

    With `distributed`, every process mines its share (every process must call this) and the main one writes.
    """
    parameters.check()
    if batch_size < 1:
        raise InvalidInput(f"--batch-size must be at least 1, not {batch_size}")
    output = (
        Path(output) if output else default_cache_path(parameters.dataset, parameters.dataset_config, parameters.split)
    )
    if output.is_dir():
        raise OutputRefused(f"--out {output} is a folder; the mining cache is one Parquet file")
    negatives, neighbours = mine_negatives(parameters, batch_size=batch_size, device=device, distributed=distributed)
    if getattr(distributed, "is_main_process", True):
        write_cache(output, negatives, neighbours, parameters)
    if distributed is not None:
        distributed.wait_for_everyone()
    return output


def read_parameters(path: str | Path) -> dict:
    """The mining parameters of a cache, from its metadata alone."""
    return json.loads(pq.read_schema(path).metadata[b"negclip_mining"])


def load_cache(path: str | Path) -> tuple[list[list[str]], list[list[int]], dict]:
    """The negatives, neighbours and mining parameters written by `mine`."""
    table = pq.read_table(path)
    return table.column("negatives").to_pylist(), table.column("neighbours").to_pylist(), read_parameters(path)
