"""Score vision-language models on ARO items: every image encoded once, every distinct caption encoded once.

An ARO item is an image and K candidate captions, the true one first: `caption_options` where the config has
them (the Order sets), else `[true_caption, false_caption]` (the VG sets). A model's score of an item is one
number per candidate; the prediction is the candidate with the strictly highest score, or -1 on a tie.

Supported models (`AutoModel` loads them):
- dual encoders with `get_image_features` / `get_text_features` (CLIP, NegCLIP, SigLIP, SigLIP 2, ALIGN, AltCLIP,
  Chinese-CLIP, ...): cosine similarity. SigLIP's logits are `scale * cosine + bias`, a rising function of the
  cosine, so they rank candidates exactly as the cosine does;
- BLIP's image-text matching head (`BlipForImageTextRetrieval`): the probability that the pair matches.

Because the VG sets crop one image per item while the Order sets repeat each image five times, images are
deduplicated by their bytes and captions by their text before anything is encoded. Captions are batched by
length to cut padding. Under `accelerate launch`, each process encodes its share and the features are gathered,
so the scores do not depend on the number of processes (or on the batch size).

>>> model, processor = load_model("openai/clip-vit-base-patch32")  # doctest: +SKIP
>>> result = score_items(model, processor, load_dataset("ORG/aro", "relation", split="test"))  # doctest: +SKIP
>>> result.predictions[:3], result.truncated_captions  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

SUPPORTED_FAMILIES = (
    "dual encoders with get_image_features/get_text_features (CLIP, NegCLIP, SigLIP, SigLIP 2, ALIGN, AltCLIP, "
    "Chinese-CLIP)",
    "BLIP image-text matching (BlipForImageTextRetrieval)",
)

PAD_TO_LIMIT = ("siglip", "siglip2")


@dataclass
class ScoreResult:
    """Scores of N items with K candidates each, and what the scorer did to get them."""

    scores: np.ndarray  # [N, K]
    predictions: list[int]  # index of the strictly best candidate, -1 on a tie
    references: list[int]  # index of the true caption: always 0
    groups: list[str] | None
    truncated_captions: int = 0
    unique_images: int = 0
    unique_captions: int = 0
    notes: dict = field(default_factory=dict)


def load_split(dataset: str, config: str | None, split: str = "test", revision: str | None = None):
    """`load_dataset(dataset, config, split=split)`, with a cache that follows a local folder's content.

    `datasets` caches a local folder's Arrow conversion under its folder name and config alone, so a folder rebuilt
    in place, or another folder of the same name, would be served from a stale cache. A local folder therefore gets
    a cache directory named after its resolved path and its files' sizes and modification times.
    """
    from datasets import config as datasets_config
    from datasets import load_dataset

    folder = Path(dataset)
    if not folder.is_dir():
        return load_dataset(dataset, config, split=split, revision=revision)
    files = sorted(path for path in folder.resolve().rglob("*") if path.is_file() and ".cache" not in path.parts)
    stamp = hashlib.sha1(repr([(str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files]).encode()).hexdigest()[:16]
    cache_dir = Path(datasets_config.HF_DATASETS_CACHE) / "local" / stamp
    return load_dataset(str(folder), config, split=split, cache_dir=str(cache_dir))


def candidates_of(row: dict) -> list[str]:
    """The candidate captions of an ARO item, the true caption first."""
    if "caption_options" in row:
        return list(row["caption_options"])
    return [row["true_caption"], row["false_caption"]]


def predict(scores: np.ndarray) -> list[int]:
    """The index of each row's strictly highest score; -1 where the highest score is shared (a tie is wrong)."""
    best = scores.max(axis=1, keepdims=True)
    winners = scores == best
    return [int(row.argmax()) if row.sum() == 1 else -1 for row in winners]


def load_model(model_id: str, revision: str | None = None, trust_remote_code: bool = False, dtype=None):
    """Load a model and its processor by Hub id or local path, pinning the PIL image backend when there is one."""
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype)
    try:
        # transformers 5 has a torchvision and a PIL image backend that differ slightly: pin the PIL one.
        processor = AutoProcessor.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code, backend="pil")
    except (TypeError, ValueError):
        processor = AutoProcessor.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    return model.eval(), processor


def model_family(model) -> str:
    """'itm' for BLIP's matching head, 'dual' for dual encoders; a clear error for anything else."""
    if type(model).__name__ == "BlipForImageTextRetrieval":
        return "itm"
    if hasattr(model, "get_image_features") and hasattr(model, "get_text_features"):
        return "dual"
    raise ValueError(
        f"{type(model).__name__} cannot be scored on ARO: it has no image and text towers to compare. "
        f"Supported: {'; '.join(SUPPORTED_FAMILIES)}."
    )


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _features(output) -> torch.Tensor:
    """transformers 5 returns an output object from get_*_features; older versions a tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _text_limit(model, tokenizer) -> int:
    config = getattr(model.config, "text_config", model.config)
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    return min(limit for limit in limits if limit and limit < 1_000_000)


class _Images(torch.utils.data.Dataset):
    """Decode images in DataLoader workers, from the dataset's bytes."""

    def __init__(self, dataset, rows: list[int], image_column: str = "image"):
        self.dataset, self.rows, self.image_column = dataset, rows, image_column

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Image.Image:
        row = self.rows[index]
        encoded = self.dataset[row][self.image_column]
        try:
            image = Image.open(io.BytesIO(encoded["bytes"])) if isinstance(encoded, dict) else encoded
            return image.convert("RGB")
        except Exception as error:  # noqa: BLE001 - any decoder error is a corrupt image
            raise ValueError(f"item {row}: the image cannot be decoded ({error})") from error


class _Preprocess:
    """Collate a batch of images through the image processor at once (in the worker, like decoding)."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]


def _on_oom_halve(encode, items: list, batch_size: int, description: str):
    """Run `encode` over `items` in batches, halving the batch after a CUDA out-of-memory error."""
    outputs, start = [], 0
    with tqdm(total=len(items), desc=description, leave=False) as progress:
        while start < len(items):
            try:
                outputs.append(encode(items[start : start + batch_size]))
            except torch.cuda.OutOfMemoryError:
                if batch_size == 1:
                    raise
                torch.cuda.empty_cache()
                batch_size //= 2
                continue
            progress.update(min(batch_size, len(items) - start))
            start += batch_size
    return outputs


class Scorer:
    """Encodes a dataset's unique images and captions with one model and scores its items."""

    def __init__(self, model, processor, device: str | None = None, dtype: str | None = None, batch_size: int = 64, num_workers: int = 0):
        self.family = model_family(model)
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.image_processor = getattr(processor, "image_processor", processor)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None, "fp32": None}[dtype]
        self.text_limit = _text_limit(model, self.tokenizer)
        # SigLIP pools the last position, so it was trained (and must be run) with captions padded to the limit.
        self.padding = "max_length" if model.config.model_type in PAD_TO_LIMIT else True

    def _autocast(self):
        enabled = self.autocast_dtype is not None and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=enabled)

    def _tokenize(self, captions: list[str]) -> dict:
        return self.tokenizer(captions, padding=self.padding, truncation=True, max_length=self.text_limit, return_tensors="pt")

    @torch.no_grad()
    def encode_images(self, dataset, rows: list[int], image_column: str = "image") -> torch.Tensor:
        """Features of the images of `rows` (BLIP: the vision states its head needs), in order.

        `dataset` may hold decoded images or, cheaper to pass to workers, their bytes (`Image(decode=False)`).
        """
        loader = torch.utils.data.DataLoader(
            _Images(dataset, rows, image_column),
            batch_size=self.batch_size,
            collate_fn=_Preprocess(self.image_processor),
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        features = []
        for pixel_values in tqdm(loader, desc="images", leave=False):
            pixel_values = pixel_values.to(self.device, non_blocking=True)
            with self._autocast():
                if self.family == "itm":
                    features.append(self.model.vision_model(pixel_values=pixel_values).last_hidden_state.float().cpu())
                else:
                    features.append(_features(self.model.get_image_features(pixel_values=pixel_values)).float().cpu())
        return torch.cat(features)

    def token_lengths(self, captions: list[str]) -> list[int]:
        """Untruncated token counts, in one tokenizer call: for batching by length and counting truncations."""
        return [len(ids) for ids in self.tokenizer(captions)["input_ids"]]

    @torch.no_grad()
    def encode_captions(self, captions: list[str], lengths: list[int] | None = None) -> torch.Tensor:
        """Normalised features of `captions`, batched by length to cut padding, returned in input order."""
        lengths = lengths if lengths is not None else self.token_lengths(captions)
        order = sorted(range(len(captions)), key=lengths.__getitem__)

        def encode(batch: list[int]) -> torch.Tensor:
            tokens = self._tokenize([captions[index] for index in batch]).to(self.device)
            with self._autocast():
                return _features(self.model.get_text_features(**tokens)).float().cpu()

        sorted_features = torch.cat(_on_oom_halve(encode, order, self.batch_size, "captions"))
        features = torch.empty_like(sorted_features)
        features[torch.tensor(order)] = sorted_features
        return torch.nn.functional.normalize(features, dim=-1)

    @torch.no_grad()
    def _itm_scores(self, image_states: torch.Tensor, pairs: list[tuple[int, str]]) -> torch.Tensor:
        """BLIP's match probability for (image index, caption) pairs."""

        def encode(batch: list[tuple[int, str]]) -> torch.Tensor:
            tokens = self._tokenize([caption for _, caption in batch]).to(self.device)
            states = image_states[[image for image, _ in batch]].to(self.device)
            with self._autocast():
                text = self.model.text_encoder(
                    input_ids=tokens["input_ids"],
                    attention_mask=tokens["attention_mask"],
                    encoder_hidden_states=states,
                    encoder_attention_mask=torch.ones(states.shape[:2], dtype=torch.long, device=self.device),
                ).last_hidden_state
                return self.model.itm_head(text[:, 0, :]).float().softmax(dim=-1)[:, 1].cpu()

        return torch.cat(_on_oom_halve(encode, pairs, self.batch_size, "pairs"))

    def score(self, dataset, group_column: str | None = None) -> ScoreResult:
        """Score every item of an ARO-shaped `datasets.Dataset`."""
        columns = set(dataset.column_names)
        if "image" not in columns or not ("caption_options" in columns or {"true_caption", "false_caption"} <= columns):
            raise ValueError(
                f"the dataset has columns {dataset.column_names}: an ARO config needs `image` and either "
                "`caption_options` or `true_caption` and `false_caption`"
            )
        from datasets import Image as ImageFeature

        raw = dataset.cast_column("image", ImageFeature(decode=False))
        text_columns = [column for column in ("caption_options", "true_caption", "false_caption") if column in dataset.column_names]
        rows = raw.select_columns(text_columns).to_list()
        candidates = [candidates_of(row) for row in rows]

        # Deduplicate images by their bytes: the Order sets show every image with five captions.
        image_keys: dict[str, int] = {}
        first_row_of_image: list[int] = []
        image_of_item = []
        for index, image in enumerate(tqdm(raw.select_columns(["image"]), desc="hashing images", leave=False)):
            key = hashlib.sha1(image["image"]["bytes"] or image["image"]["path"].encode()).hexdigest()
            if key not in image_keys:
                image_keys[key] = len(first_row_of_image)
                first_row_of_image.append(index)
            image_of_item.append(image_keys[key])

        unique_captions = sorted({caption for options in candidates for caption in options})
        caption_index = {caption: index for index, caption in enumerate(unique_captions)}
        lengths = self.token_lengths(unique_captions)
        images = _gathered(lambda share: self.encode_images(raw, share), first_row_of_image)

        if self.family == "dual":
            image_features = torch.nn.functional.normalize(images, dim=-1)
            length_of = dict(zip(unique_captions, lengths))
            text_features = _gathered(lambda share: self.encode_captions(share, [length_of[caption] for caption in share]), unique_captions)
            # Every item of a config has the same number of candidates, so one gather and one product score them all.
            item_images = image_features[torch.tensor(image_of_item)]
            item_captions = text_features[torch.tensor([[caption_index[caption] for caption in options] for options in candidates])]
            scores = torch.einsum("nd,nkd->nk", item_images, item_captions).numpy()
        else:
            pairs = [(image_of_item[item], caption) for item, options in enumerate(candidates) for caption in options]
            flat = _gathered(lambda share: self._itm_scores(images, share), pairs).numpy()
            widths = np.cumsum([0] + [len(options) for options in candidates])
            scores = np.array([flat[start:end] for start, end in zip(widths[:-1], widths[1:])])

        groups = [str(group) for group in dataset[group_column]] if group_column and group_column in dataset.column_names else None
        return ScoreResult(
            scores=scores,
            predictions=predict(scores),
            references=[0] * len(candidates),
            groups=groups,
            truncated_captions=sum(length > self.text_limit for length in lengths),
            unique_images=len(first_row_of_image),
            unique_captions=len(unique_captions),
        )


def _gathered(encode, items: list) -> torch.Tensor:
    """Encode `items`, split across `accelerate` processes when there are several, and gather them in order."""
    try:
        from accelerate import PartialState
    except ImportError:
        return encode(items)
    state = PartialState()
    if state.num_processes == 1:
        return encode(items)
    from accelerate.utils import gather_object

    share = list(range(state.process_index, len(items), state.num_processes))
    local = encode([items[index] for index in share]) if share else None
    pieces = gather_object([(share, local)])
    ordered = [None] * len(items)
    for indices, features in pieces:
        for position, index in enumerate(indices):
            ordered[index] = features[position]
    return torch.stack(ordered)


def score_items(model, processor, dataset, group_column: str | None = None, **scorer_options) -> ScoreResult:
    """Score an ARO-shaped dataset with an already loaded model and processor (see `Scorer` for the options)."""
    return Scorer(model, processor, **scorer_options).score(dataset, group_column=group_column)
