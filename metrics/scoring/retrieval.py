"""Image-text retrieval with the captions as written and with their words shuffled: the paper's "why".

The ARO paper explains why contrastive models become bags of words: on COCO and Flickr30k, retrieval barely drops
when every caption's words are shuffled, so the benchmark that contrastive training is tuned on never asks for word
order. `retrieval_results` measures exactly that: text-to-image and image-to-text recall@k with the original
captions, then with each perturbation's captions in their place, against the same images.

- Every image and every distinct text (over all variants; a caption by its token ids) is encoded once, through the
  dual encoder's `image_features` / `caption_features`, sharded over the processes of a `distributed` state passed
  in.
- Text to image: each caption is a query, the images the candidates, its own image the right one. Image to text:
  each image is a query, every caption of the variant a candidate, any of the image's own captions right.
- Ties: a query's rank is 1 + the number of wrong candidates that score at least as high as its best right one.
  A wrong candidate tied with the right one ranks above it, as ties count wrong in ARO accuracy, so recall does not
  depend on the order candidates come in (identical captions of two images always tie).
- Only dual encoders retrieve here. A matching-head model (BLIP ITM) would rank a shortlist drawn from its
  contrastive head; that re-ranking is not implemented, and such models are refused with `UnsupportedModel`.

>>> data = load_split("ORG/aro", "coco_retrieval")  # doctest: +SKIP
>>> retrieval_set = RetrievalSet.from_retrieval_config(data)  # doctest: +SKIP
>>> result = retrieval_results(model, processor, retrieval_set, Runtime(batch_size=256))  # doctest: +SKIP
>>> result.variants["shuffle_trigrams"]["text_to_image"]["recall@1"]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from datasets import Image as ImageFeature

from aro.core.errors import InvalidInput

from .adapters import DualEncoderAdapter, UnsupportedModel
from .runtime import Runtime
from .scorer import Scorer

KS = (1, 5, 10)
# Queries scored at once: bounds the [queries, candidates] similarity block (25,000 COCO captions by 1,024 images).
QUERY_CHUNK = 1024


@dataclass
class RetrievalSet:
    """Images and captions to retrieve among: `image_rows[i]` is the dataset row showing image i, `owner[c]` the
    image of caption c, and `variants[name][c]` caption c in variant `name` ("original" first)."""

    dataset: object  # a `datasets.Dataset` whose image column holds bytes (`Image(decode=False)`)
    image_column: str
    image_rows: list[int]
    owner: list[int]
    variants: dict[str, list[str]]

    @classmethod
    def from_retrieval_config(cls, dataset, perturbations: bool = True, image_column: str = "image") -> RetrievalSet:
        """A retrieval config as `aro build` writes it: one row per image, `captions` and `perturbed_captions`."""
        needed = {image_column, "captions"} | ({"perturbed_captions"} if perturbations else set())
        if not needed <= set(dataset.column_names):
            raise InvalidInput(
                f"the dataset has columns {dataset.column_names}: a retrieval config needs {sorted(needed)} "
                "(build one with `aro build`: coco_retrieval, flickr30k_retrieval)"
            )
        texts = dataset.select_columns(sorted(needed - {image_column})).to_list()
        owner = [image for image, row in enumerate(texts) for _ in row["captions"]]
        variants = {"original": [caption for row in texts for caption in row["captions"]]}
        if perturbations:
            for name in texts[0]["perturbed_captions"] if texts else ():
                variants[name] = [caption for row in texts for caption in row["perturbed_captions"][name]]
        for name, captions in variants.items():
            if len(captions) != len(owner):
                raise InvalidInput(
                    f"{name}: {len(captions)} captions for {len(owner)} originals; every image needs each caption "
                    "perturbed"
                )
        raw = dataset.cast_column(image_column, ImageFeature(decode=False))
        return cls(raw, image_column, list(range(len(dataset))), owner, variants)

    @classmethod
    def from_caption_rows(
        cls, dataset, image_column: str = "image", caption_column: str = "caption", image_id_column: str = "image_id"
    ) -> RetrievalSet:
        """An image-caption split with one caption per row (COCO-style), its images deduplicated by
        `image_id_column`."""
        image_of_id: dict[str, int] = {}
        image_rows, owner = [], []
        for row, image_id in enumerate(str(image_id) for image_id in dataset[image_id_column]):
            if image_id not in image_of_id:
                image_of_id[image_id] = len(image_rows)
                image_rows.append(row)
            owner.append(image_of_id[image_id])
        raw = dataset.cast_column(image_column, ImageFeature(decode=False))
        return cls(raw, image_column, image_rows, owner, {"original": list(dataset[caption_column])})


def ranks_of_truth(
    queries: torch.Tensor, candidates: torch.Tensor, query_owner: torch.Tensor, candidate_owner: torch.Tensor
) -> torch.Tensor:
    """Per query, the rank of its best right candidate (a candidate with the same owner): 1 + the wrong candidates
    scoring at least as high. Scores are dot products of the (normalised) features."""
    ranks = []
    for start in range(0, len(queries), QUERY_CHUNK):
        scores = queries[start : start + QUERY_CHUNK] @ candidates.T
        right = query_owner[start : start + QUERY_CHUNK, None] == candidate_owner[None, :]
        best_right = scores.masked_fill(~right, float("-inf")).amax(dim=1, keepdim=True)
        ranks.append(((scores >= best_right) & ~right).sum(dim=1) + 1)
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)


def recall_at(ranks: torch.Tensor, ks=KS) -> dict[str, float]:
    """The share of queries whose right candidate ranks within the top k, for each k."""
    return {f"recall@{k}": int((ranks <= k).sum()) / len(ranks) if len(ranks) else float("nan") for k in ks}


def retrieval_recalls(
    image_features: torch.Tensor, caption_features: torch.Tensor, owner: torch.Tensor, ks=KS
) -> dict[str, dict[str, float]]:
    """Text-to-image and image-to-text recall@k of captions (`owner[c]` the image of caption c) among images."""
    images = torch.arange(len(image_features))
    return {
        "text_to_image": recall_at(ranks_of_truth(caption_features, image_features, owner, images), ks),
        "image_to_text": recall_at(ranks_of_truth(image_features, caption_features, images, owner), ks),
    }


def dual_encoder(model, processor, runtime: Runtime) -> DualEncoderAdapter:
    """The dual-encoder adapter of `model`; `UnsupportedModel` for a family that cannot retrieve here."""
    adapter = Scorer(model, processor, runtime).adapter
    if not isinstance(adapter, DualEncoderAdapter):
        raise UnsupportedModel(
            f"{type(model).__name__} ({adapter.family}) cannot be scored on retrieval: ranking a shortlist from a "
            "matching model's contrastive head is not implemented; retrieval takes dual encoders (CLIP, NegCLIP, "
            "SigLIP, ...)"
        )
    return adapter


@dataclass
class RetrievalResult:
    """Recall@k both ways for every caption variant, the original captions first: `variants[variant][direction]
    ["recall@k"]`, directions `text_to_image` and `image_to_text`. `dataset` (named by Hub id or folder name, never
    a local path), its revision and `config` say what was retrieved, where that was a dataset's config."""

    images: int
    captions: int
    distinct_captions: int
    ks: list[int]
    variants: dict[str, dict[str, dict[str, float]]]
    dataset: str | None = None
    dataset_revision: str | None = None
    config: str | None = None

    def to_json(self) -> dict:
        return {
            "dataset": self.dataset,
            "dataset_revision": self.dataset_revision,
            "config": self.config,
            "images": self.images,
            "captions": self.captions,
            "distinct_captions": self.distinct_captions,
            "ks": self.ks,
            "variants": self.variants,
        }

    @classmethod
    def from_json(cls, data: dict) -> RetrievalResult:
        return cls(**data)


@torch.no_grad()
def retrieval_results(
    model, processor, retrieval_set: RetrievalSet, runtime: Runtime | None = None, ks=KS
) -> RetrievalResult:
    """Recall@k both ways for every caption variant of `retrieval_set`, the model run as `runtime` says."""
    was_training = model.training
    adapter = dual_encoder(model, processor, runtime or Runtime())
    runtime = adapter.runtime
    images = runtime.gathered(
        lambda rows: adapter.image_features(retrieval_set.dataset, rows, retrieval_set.image_column),
        retrieval_set.image_rows,
    )
    distinct = sorted({caption for captions in retrieval_set.variants.values() for caption in captions})
    texts = adapter.caption_features(distinct)
    position = {caption: index for index, caption in enumerate(distinct)}
    owner = torch.tensor(retrieval_set.owner)
    variants = {
        name: retrieval_recalls(
            images, texts[torch.tensor([position[caption] for caption in captions], dtype=torch.long)], owner, ks
        )
        for name, captions in retrieval_set.variants.items()
    }
    model.train(was_training)
    return RetrievalResult(
        images=len(images), captions=len(owner), distinct_captions=len(distinct), ks=list(ks), variants=variants
    )


def retrieval_recall(
    model,
    processor,
    data,
    image_column="image",
    caption_column="caption",
    image_id_column="image_id",
    runtime: Runtime | None = None,
    **runtime_options,
) -> dict:
    """Recall@1/5/10 both ways over an image-caption split with one caption per row (several rows per image), the
    model run by `runtime` (or one made of `Runtime`'s options, as the trainer passes them).

    Flat keys (`text_to_image_recall@1`, ...), as logged during training and in the demo.
    """
    retrieval_set = RetrievalSet.from_caption_rows(data, image_column, caption_column, image_id_column)
    result = retrieval_results(model, processor, retrieval_set, runtime or Runtime(**runtime_options))
    flat = {
        f"{direction}_{name}": value
        for direction, recalls in result.variants["original"].items()
        for name, value in recalls.items()
    }
    return flat | {"images": result.images, "captions": result.captions}
