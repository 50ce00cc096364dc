"""Fine-tune CLIP into NegCLIP (or train CLIP with its plain loss) on any image-caption dataset.

The recipe as released: each step takes B rows (an image and one of its captions), adds for each a nearest-
neighbour image with its own caption (so 2B images), and for each of the 2B captions one swapped-word negative
(so 4B texts); see `loss_negclip.py`. The negatives come from the mining cache (`mining.py`), mined on first use.

Runs on one device or many (`accelerate launch -m aro.cli train ...` or `torchrun`), with mixed precision,
gradient accumulation (negatives are per micro-batch: accumulation grows the effective batch for the gradient,
not the set of texts each image competes against), checkpoints every N steps and on interrupt, and an exact
resume: the data order and every random draw derive from (seed, epoch, row), and the optimizer, scheduler and
RNG states are restored.

>>> args = NegCLIPTrainingArguments(dataset="./coco", dataset_config="karpathy", output_dir="negclip")  # doctest: +SKIP
>>> checkpoint = train(args)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

STATE_FILE = "training_state.json"


@dataclass
class NegCLIPTrainingArguments:
    """Every option of `aro train`; the defaults are the paper's recipe."""

    output_dir: str = "negclip"
    model_name_or_path: str = "openai/clip-vit-base-patch32"
    dataset: str = "coco_karpathy"
    dataset_config: str | None = None
    split: str = "train"
    image_column: str = "image"
    caption_column: str = "caption"
    image_id_column: str = "image_id"
    hard_negatives: bool = True
    image_negatives: bool = True
    mining_cache: str | None = None
    mining_model: str | None = None  # the CLIP that finds nearest images; default: the starting model
    negatives_per_caption: int = 3
    neighbours: int = 3
    spacy_pipeline: str | None = None
    learning_rate: float = 1e-6
    weight_decay: float = 0.1
    batch_size: int = 256
    epochs: int = 5
    warmup_steps: int = 50
    max_steps: int | None = None  # stop early (after this many optimizer steps), e.g. to test interruption
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"  # "no", "fp16" or "bf16"
    seed: int = 0
    save_every: int | None = None
    resume_from: str | None = None
    validation_split: str | None = None
    eval_dataset: str | None = None
    eval_configs: list[str] = field(default_factory=lambda: ["relation", "attribution"])
    eval_every: int | None = None
    num_workers: int = 0
    push_to_hub: str | None = None
    private: bool = False


class _Batches(torch.utils.data.Dataset):
    """Step `index` of an epoch: its rows, neighbours and negatives, drawn from (seed, epoch, row) alone."""

    def __init__(self, data, args: NegCLIPTrainingArguments, negatives, neighbours, processor, epoch: int, process: int = 0, processes: int = 1):
        self.data, self.args, self.negatives, self.neighbours, self.processor = data, args, negatives, neighbours, processor
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed * 100_003 + epoch)).tolist()
        # Every process takes its own B rows of each global batch of B x processes rows.
        size = args.batch_size * processes
        self.steps = [order[start + process * args.batch_size : start + (process + 1) * args.batch_size] for start in range(0, len(order) - size + 1, size)]
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> dict:
        rows = self.steps[index]
        if self.args.image_negatives:
            rows = rows + [random.Random(f"{self.args.seed}:{self.epoch}:{row}:image").choice(self.neighbours[row]) for row in rows]
        examples = self.data.select(rows)
        captions = list(examples[self.args.caption_column])
        texts = captions
        if self.args.hard_negatives:
            texts = captions + [
                random.Random(f"{self.args.seed}:{self.epoch}:{row}:text").choice(self.negatives[row] or [caption])
                for row, caption in zip(rows, captions)
            ]
        batch = self.processor(
            images=[image.convert("RGB") for image in examples[self.args.image_column]], text=texts, padding=True, truncation=True, return_tensors="pt"
        )
        count = len(rows)
        inputs = {"pixel_values": batch["pixel_values"], "input_ids": batch["input_ids"][:count], "attention_mask": batch["attention_mask"][:count]}
        if self.args.hard_negatives:
            inputs |= {"negative_input_ids": batch["input_ids"][count:], "negative_attention_mask": batch["attention_mask"][count:]}
        return inputs


def _negatives(args: NegCLIPTrainingArguments, data) -> tuple[list[list[str]] | None, list[list[int]] | None]:
    """The mined negatives (mining them first when no cache exists yet)."""
    if not (args.hard_negatives or args.image_negatives):
        return None, None
    from .mining import MiningParameters, default_cache_path, load_cache, mine

    cache = Path(args.mining_cache) if args.mining_cache else default_cache_path(args.dataset, args.dataset_config, args.split)
    if not cache.exists():
        parameters = MiningParameters(
            dataset=args.dataset, config=args.dataset_config, split=args.split, image_column=args.image_column,
            caption_column=args.caption_column, image_id_column=args.image_id_column,
            clip_model=args.mining_model or args.model_name_or_path, negatives_per_caption=args.negatives_per_caption,
            neighbours=args.neighbours, seed=args.seed, spacy_pipeline=args.spacy_pipeline,
        )
        mine(parameters, cache)
    negatives, neighbours, _ = load_cache(cache)
    if len(negatives) != len(data):
        raise ValueError(f"the mining cache {cache} has {len(negatives)} rows but the data has {len(data)}: mine again")
    return negatives, neighbours


def _load_model(path: str):
    from transformers import AutoConfig

    from . import NegCLIPModel

    if AutoConfig.from_pretrained(path).model_type == "negclip":
        return NegCLIPModel.from_pretrained(path)
    return NegCLIPModel.from_clip(path)


def _save(accelerator, model, processor, directory: Path) -> None:
    accelerator.unwrap_model(model).save_pretrained(directory, safe_serialization=True)
    processor.save_pretrained(directory)


def _write_state(directory: Path, state: dict) -> None:
    (directory / STATE_FILE).write_text(json.dumps(state))


@torch.no_grad()
def validation_loss(model, data, args, processor, accelerator) -> float:
    """Mean plain contrastive loss over the validation split, in batches of `batch_size`."""
    model.eval()
    losses = []
    for start in range(0, len(data) - args.batch_size + 1, args.batch_size):
        examples = data.select(range(start, start + args.batch_size))
        batch = processor(
            images=[image.convert("RGB") for image in examples[args.image_column]], text=list(examples[args.caption_column]),
            padding=True, truncation=True, return_tensors="pt",
        ).to(accelerator.device)
        losses.append(float(model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).loss))
    model.train()
    return sum(losses) / len(losses) if losses else float("nan")


def train(args: NegCLIPTrainingArguments) -> Path:
    """Train per `args`; return `output_dir`, which then holds the final model, processor, logs and card."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.utils.tensorboard import SummaryWriter
    from transformers import AutoProcessor, get_cosine_schedule_with_warmup

    from aro.metrics.scoring import load_split

    accelerator = Accelerator(mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.gradient_accumulation_steps)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    data = load_split(args.dataset, args.dataset_config, args.split)
    for column in (args.image_column, args.caption_column, args.image_id_column):
        if column not in data.column_names:
            raise ValueError(f"{args.dataset} ({args.split}) has no column {column!r}; it has {data.column_names}")
    if len(data) < args.batch_size:
        raise ValueError(f"{args.dataset} ({args.split}) has {len(data)} rows, fewer than one batch of {args.batch_size}")
    negatives, neighbours = _negatives(args, data)
    processor = AutoProcessor.from_pretrained(args.model_name_or_path)
    model = _load_model(args.resume_from or args.model_name_or_path)

    steps_per_epoch = len(data) // (args.batch_size * accelerator.num_processes) // args.gradient_accumulation_steps
    total_steps = steps_per_epoch * args.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, min(args.warmup_steps, total_steps), total_steps)
    # The scheduler stays outside `prepare`, which would step it once per process: it steps once per optimizer step.
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    state = {"epoch": 0, "batch_in_epoch": 0, "step": 0}
    if args.resume_from:
        accelerator.load_state(args.resume_from)
        state = json.loads((Path(args.resume_from) / STATE_FILE).read_text())

    def checkpoint(name: str) -> Path:
        directory = output_dir / "checkpoints" / name
        accelerator.save_state(directory)
        if accelerator.is_main_process:
            _save(accelerator, model, processor, directory)
            _write_state(directory, state)
        return directory

    log_path = output_dir / "log.csv"
    writer = SummaryWriter(output_dir / "tensorboard") if accelerator.is_main_process else None
    with open(log_path, "a", newline="") as log_file:
        log = csv.writer(log_file)
        if log_file.tell() == 0:
            log.writerow(["step", "epoch", "loss", "learning_rate"])
        progress = tqdm(total=total_steps, initial=state["step"], desc="training", disable=not accelerator.is_local_main_process)
        model.train()
        try:
            while state["epoch"] < args.epochs and not (args.max_steps and state["step"] >= args.max_steps):
                batches = _Batches(data, args, negatives, neighbours, processor, state["epoch"], accelerator.process_index, accelerator.num_processes)
                loader = torch.utils.data.DataLoader(
                    torch.utils.data.Subset(batches, range(state["batch_in_epoch"], len(batches))),
                    batch_size=None, num_workers=args.num_workers,
                )
                for inputs in loader:
                    inputs = {name: tensor.to(accelerator.device) for name, tensor in inputs.items()}
                    with accelerator.accumulate(model):
                        loss = model(**inputs).loss
                        accelerator.backward(loss)
                        optimizer.step()
                        if accelerator.sync_gradients:
                            scheduler.step()
                        optimizer.zero_grad()
                    state["batch_in_epoch"] += 1
                    if not accelerator.sync_gradients:
                        continue
                    state["step"] += 1
                    progress.update(1)
                    progress.set_postfix(loss=f"{loss.item():.3f}")
                    if accelerator.is_main_process:
                        learning_rate = scheduler.get_last_lr()[0]
                        log.writerow([state["step"], state["epoch"], f"{loss.item():.6f}", f"{learning_rate:.3e}"])
                        writer.add_scalar("train/loss", loss.item(), state["step"])
                        writer.add_scalar("train/learning_rate", learning_rate, state["step"])
                    if args.save_every and state["step"] % args.save_every == 0:
                        checkpoint(f"step-{state['step']}")
                    if args.eval_dataset and args.eval_every and state["step"] % args.eval_every == 0:
                        _evaluate(accelerator, model, processor, args, writer, state["step"])
                    if args.max_steps and state["step"] >= args.max_steps:
                        break
                else:
                    state["epoch"] += 1
                    state["batch_in_epoch"] = 0
        except KeyboardInterrupt:
            # Keep what was learnt: a checkpoint to resume from, then stop as asked.
            checkpoint(f"interrupted-step-{state['step']}")
            raise
        progress.close()

    results = {}
    if accelerator.is_main_process:
        if args.validation_split:
            validation = load_split(args.dataset, args.dataset_config, args.validation_split)
            results["validation_loss"] = validation_loss(model, validation, args, processor, accelerator)
            writer.add_scalar("validation/loss", results["validation_loss"], state["step"])
        if args.eval_dataset:
            results["aro"] = _evaluate(accelerator, model, processor, args, writer, state["step"])
        _save(accelerator, model, processor, output_dir)
        _write_state(output_dir, state)
        (output_dir / "training_args.json").write_text(json.dumps(asdict(args), indent=2))
        (output_dir / "training_results.json").write_text(json.dumps(results, indent=2))
        from .card import model_card

        (output_dir / "README.md").write_text(model_card(args, results.get("aro")), encoding="utf-8")
        writer.close()
        if args.push_to_hub:
            push_checkpoint(output_dir, args.push_to_hub, private=args.private)
    accelerator.wait_for_everyone()
    return output_dir


def _evaluate(accelerator, model, processor, args, writer, step: int) -> dict:
    """The small ARO evaluation: accuracy on `eval_configs` of `eval_dataset`, logged to TensorBoard."""
    from aro.metrics.scoring.evaluation import evaluate_model

    model.eval()
    results = evaluate_model(accelerator.unwrap_model(model), args.eval_dataset, args.eval_configs, processor=processor)
    model.train()
    for config, numbers in results["configs"].items():
        writer.add_scalar(f"aro/{config}", numbers["accuracy"], step)
    return results


def push_checkpoint(folder: Path, repo_id: str, private: bool = False) -> None:
    """Upload the final model folder (not the intermediate checkpoints) to the Hub; the token is never shown."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, ignore_patterns=["checkpoints/*", "tensorboard/*"])
