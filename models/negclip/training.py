"""Fine-tune CLIP into NegCLIP (or train CLIP with its plain loss) on any image-caption dataset.

The authors' recipe: each step takes B rows (an image and one of its captions), adds for each a nearest-
neighbour image with one of its captions (so 2B images), and for each of the 2B captions one swapped-word negative
(so 4B texts); see `loss_negclip.py` and `batches.py`. The negatives come from the mining cache (`mining.py`),
mined on first use, or from the authors' released file (`released.py`). The optimizer, schedule, `logit_scale`
clamp and crops are the fork's (`recipe.py`). `--loss fsc` trains with FSC-CLIP's loss instead (`loss_fsc.py`), and
`--lora-rank` trains LoRA adapters merged into the weights when saved (`lora.py`). After every epoch (and before
the first) the run can score held-out retrieval (`--eval-retrieval`), zero-shot classification (`--zero-shot`), ARO
and validation recall, into `log.csv` and the trackers; the kept epoch is the best by `--select-by`, under an
optional floor on retrieval and zero-shot (`selection.py`).

Runs on one device or many (`accelerate launch -m aro.cli train ...` or `torchrun`), with mixed precision and
gradient accumulation (negatives are per micro-batch: accumulation grows the effective batch for the gradient,
not the set of texts each image competes against). This file is the only code that decides what runs where:
the loss, mining and evaluation take the distributed state as an argument and run on every process, sharded;
logging, the card and the push run on the main process. Checkpoints (`checkpointing.py`) are atomic and
verified, and resume is exact: the data order and every random draw derive from (seed, epoch, row).

`train` reads top to bottom as `setup`, `train_one_epoch` until done, and `finish`.

>>> args = NegCLIPTrainingArguments(dataset="./coco", dataset_config="karpathy", output_dir="negclip")  # doctest: +SKIP
>>> output_dir = train(args)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import functools
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from aro.core.errors import InvalidInput
from aro.core.io import MARKER, is_output_of, push_folder, sha256_of_blocks, write_manifest
from aro.metrics.scoring import RetrievalSet, load_split, retrieval_recall, retrieval_results
from aro.metrics.scoring.evaluation import EvalOptions, evaluate_model
from aro.metrics.scoring.hub_files import write_eval_results
from aro.metrics.scoring.runtime import Runtime
from aro.metrics.scoring.zero_shot import ZeroShotTask, zero_shot_accuracy

from . import NegCLIPModel
from .arguments import TRAIN_COMMAND, NegCLIPTrainingArguments
from .batches import NegCLIPBatches, TrainingRows, rows_per_epoch
from .card import model_card
from .checkpointing import check_same_run, latest_checkpoint, load_checkpoint, save_checkpoint, verify_checkpoint
from .loading import load_clip, load_processor, load_rows
from .lora import add_lora, has_lora, load_lora, merged_model
from .loss_fsc import FSCLoss, image_local_features, text_local_features
from .loss_negclip import NegCLIPLoss
from .mining import NegativeShare, check_cache_output, default_cache_path, load_cache, mine, read_parameters
from .recipe import clamp_logit_scale, optimizer_groups, warmup_cosine
from .released import load_released
from .selection import METRIC, SCORES, BestEpoch

logger = logging.getLogger(__name__)

__all__ = ["NegCLIPTrainingArguments", "train", "setup", "train_one_epoch", "finish", "validation_loss"]


@dataclass
class TrainingRun:
    """What a run holds between its steps; `state` is where it stands and is saved in every checkpoint."""

    args: NegCLIPTrainingArguments
    accelerator: object
    data: object
    rows: TrainingRows  # the training split as read once: captions, image ids, images
    negatives: list | None
    neighbours: list | None
    processor: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    state: dict
    log: StepLog
    progress: tqdm  # one bar for the whole run: its optimizer steps, the epoch and loss beside them
    total_steps: int
    validation: object | None
    selection: BestEpoch | None
    negative_share: NegativeShare | None  # with hard negatives: how many training rows have one
    fsc: FSCLoss | None  # with --loss fsc: the loss computed from the model's features (else the model's own)
    retrieval_set: RetrievalSet | None  # --eval-retrieval's held-out images and captions
    zero_shot_task: ZeroShotTask | None  # --zero-shot's dataset

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)

    @functools.cached_property
    def module(self) -> torch.nn.Module:
        """The model without its distributed wrapper, looked up once: `unwrap_model` took 0.75 ms, every step."""
        return self.accelerator.unwrap_model(self.model)

    @property
    def done(self) -> bool:
        return self.state["epoch"] >= self.args.epochs or bool(
            self.args.max_steps and self.state["step"] >= self.args.max_steps
        )

    @property
    def evaluates_epochs(self) -> bool:
        """Whether scores are measured after every epoch."""
        return bool(self.selection or self.retrieval_set or self.zero_shot_task)

    def save(self, name: str) -> Path:
        return save_checkpoint(
            self.output_dir / "checkpoints" / name,
            self.accelerator,
            self.model,
            self.processor,
            self.optimizer,
            self.scheduler,
            self.state,
        )


def train(args: NegCLIPTrainingArguments) -> Path:
    """Train per `args`; return `output_dir`, which then holds the final model, processor, logs and card."""
    args.check()
    run = setup(args)
    if compares_with_start(args) and "start_scores" not in run.state:
        run.state["start_scores"] = evaluate_epoch(run)  # what training starts from, for the floor and the card
        run.log.write_scores(0, 0, run.state["start_scores"])
    try:
        while not run.done:
            train_one_epoch(run)
    except KeyboardInterrupt:
        run.save(f"interrupted-step-{run.state['step']}")  # keep what was learnt, then stop as asked
        raise
    finish(run)
    return run.output_dir


def setup(args: NegCLIPTrainingArguments) -> TrainingRun:
    """Load the data, the negatives (mined on first use), the model and the optimizer; restore a checkpoint."""
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=_trackers(args.report_to),
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "tensorboard")),
    )
    set_seed(args.seed)
    checkpoint = _checkpoint_to_resume(args)
    data, released = _training_data(args)
    epoch_size = rows_per_epoch(data[args.image_id_column], args.epoch_rows)
    if epoch_size < args.batch_size * accelerator.num_processes:
        raise InvalidInput(
            f"{args.train_file or args.dataset} has {epoch_size} rows per epoch ({args.epoch_rows}), "
            f"fewer than one batch of {args.batch_size} x {accelerator.num_processes} processes"
        )
    validation = _validation_data(args)
    cache, mining = _mining(args)
    identity = {
        "settings": args.resume_settings(),
        "world_size": accelerator.num_processes,
        "dataset": _dataset_identity(args, data),
        "mining": mining,
    }
    # Everything that can be refused is, before mining's minutes: a checkpoint of another run, a model that is no CLIP.
    if checkpoint and not args.resume_allow_changes:
        check_same_run(checkpoint, identity)
    if checkpoint:
        model = load_clip(str(checkpoint), "--resume-from", NegCLIPModel)
    else:
        model = load_clip(args.model_name_or_path, "--model-name-or-path", NegCLIPModel)
    if args.lora_rank is not None:
        # A checkpoint holds the merged weights; its adapters and the base weights under them go back over them.
        if checkpoint:
            load_lora(model, checkpoint)
        else:
            add_lora(model, args.lora_options())
    processor = load_processor(args.model_name_or_path, "--model-name-or-path")
    rows = TrainingRows(data, args, processor)
    negatives, neighbours = released or _negatives(args, data, cache, accelerator)
    negative_share = NegativeShare.of(negatives) if args.hard_negatives else None
    if negative_share:
        negative_share.check(args.min_negative_share, args.train_file or str(cache))
    selectable = args.select_by != "validation" or validation is not None
    selection = (
        BestEpoch(output_dir / "checkpoints" / "best-epoch", args.select_by, args.select_floor)
        if args.select_best and selectable
        else None
    )
    if args.select_best and not selectable:
        logger.warning(
            "no validation data (--validation-split or --validation-file): the last epoch is kept, not the best"
        )
    model.negclip_loss = NegCLIPLoss(accelerator.process_index, accelerator.num_processes)  # spans all processes
    fsc = (
        FSCLoss(
            accelerator.process_index,
            accelerator.num_processes,
            global_weight=args.fsc_global_weight,
            local_weight=args.fsc_local_weight,
            focal_gamma=args.fsc_focal_gamma,
            label_smoothing=args.fsc_label_smoothing,
        )
        if args.loss == "fsc"
        else None
    )
    steps_per_epoch = epoch_size // (args.batch_size * accelerator.num_processes) // args.gradient_accumulation_steps
    total_steps = steps_per_epoch * args.epochs
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, args.weight_decay),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
    )
    # The scheduler stays outside `prepare`, which would step it once per process: it steps once per optimizer step.
    scheduler = warmup_cosine(optimizer, args.warmup_steps, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)

    state = {"epoch": 0, "step": 0, "rows_in_epoch": 0, "identity": identity}
    if checkpoint:
        saved = load_checkpoint(checkpoint, accelerator, optimizer, scheduler)
        state |= {
            name: saved[name]
            for name in ("epoch", "step", "rows_in_epoch", "validation", "best_epoch", "evaluations", "start_scores")
            if name in saved
        }
    if accelerator.is_main_process:  # after `prepare`, a collective: every process has checked the folder by now
        mark_run_folder(output_dir)
    accelerator.init_trackers("negclip", config=_flat_config(args))
    log = StepLog(
        output_dir / "log.csv",
        after_step=state["step"],
        enabled=accelerator.is_main_process,
        score_columns=epoch_score_names(args, validation is not None) if compares_with_start(args) else [],
    )
    progress = tqdm(
        total=total_steps,
        initial=state["step"],
        desc=f"training {output_dir.name}",
        unit="step",
        disable=not accelerator.is_local_main_process,
    )
    return TrainingRun(
        args,
        accelerator,
        data,
        rows,
        negatives,
        neighbours,
        processor,
        model,
        optimizer,
        scheduler,
        state,
        log,
        progress,
        total_steps,
        validation,
        selection,
        negative_share,
        fsc,
        _retrieval_set(args),
        _zero_shot_task(args),
    )


def train_one_epoch(run: TrainingRun) -> None:
    """The rest of the current epoch (all of it unless resumed mid-epoch), or until `max_steps`."""
    args, accelerator, state = run.args, run.accelerator, run.state
    global_batch = args.batch_size * accelerator.num_processes
    batches = NegCLIPBatches(
        run.data,
        args,
        run.negatives,
        run.neighbours,
        run.processor,
        state["epoch"],
        accelerator.process_index,
        accelerator.num_processes,
        rows=run.rows,
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(batches, range(state["rows_in_epoch"] // global_batch, len(batches))),
        batch_size=None,
        num_workers=args.num_workers,
    )
    run.model.train()
    for inputs in loader:
        with accelerator.accumulate(run.model):
            loss = step_loss(run, {name: tensor.to(accelerator.device) for name, tensor in inputs.items()})
            accelerator.backward(loss)
            learning_rate = run.optimizer.param_groups[0]["lr"]  # the rate this step applies, logged below
            run.optimizer.step()
            if accelerator.sync_gradients:
                clamp_logit_scale(run.module, args.max_logit_scale)
                run.scheduler.step()
            run.optimizer.zero_grad()
        state["rows_in_epoch"] += global_batch
        if not accelerator.sync_gradients:
            continue
        state["step"] += 1
        mean_loss = accelerator.reduce(loss.detach(), "mean").item()  # the loss of the global batch
        run.progress.set_postfix(epoch=f"{state['epoch'] + 1}/{args.epochs}", loss=f"{mean_loss:.3f}", refresh=False)
        run.progress.update(1)
        run.log.write(state["step"], state["epoch"], mean_loss, learning_rate)
        accelerator.log({"train/loss": mean_loss, "train/learning_rate": learning_rate}, step=state["step"])
        if args.save_every and state["step"] % args.save_every == 0:
            run.save(f"step-{state['step']}")
        if args.eval_dataset and args.eval_every and state["step"] % args.eval_every == 0:
            evaluate_aro(run)
        if run.done:
            break
    else:
        state["epoch"] += 1
        state["rows_in_epoch"] = 0
        if run.evaluates_epochs:
            scores = evaluate_epoch(run)
            state.setdefault("evaluations", []).append({"epoch": state["epoch"], **scores})
            if SCORES["validation"] in scores:  # the validation recall per epoch, as runs before recorded it
                state.setdefault("validation", []).append(
                    {"epoch": state["epoch"], METRIC: scores[SCORES["validation"]]}
                )
            run.log.write_scores(state["step"], state["epoch"], scores)
            accelerator.log(scores, step=state["step"])
        if run.selection:
            run.selection.after_epoch(accelerator, run.model, state)


def compares_with_start(args: NegCLIPTrainingArguments) -> bool:
    """Whether the starting model is scored too and every epoch's scores go into `log.csv`: with retrieval,
    zero-shot or ARO scores (a run that selects by validation recall alone logs it to the trackers, as before)."""
    return bool(args.eval_retrieval or args.zero_shot or args.select_by != "validation")


def step_loss(run: TrainingRun, inputs: dict) -> torch.Tensor:
    """The loss of one micro-batch: the model's own (NegCLIP's, or CLIP's without negatives), or with `--loss fsc`
    FSC-CLIP's, from the global, token and patch features of the same forward pass."""
    if run.fsc is None:
        return run.model(**inputs, return_loss=True).loss
    output = run.model(**inputs, return_loss=False)
    model = run.module
    with run.accelerator.autocast():
        patches = image_local_features(model, output.vision_model_output.last_hidden_state)
        tokens, token_mask = text_local_features(
            model, output.text_model_output.last_hidden_state, inputs["attention_mask"]
        )
        negative_tokens, negative_token_mask = text_local_features(
            model, output.negative_text_model_output.last_hidden_state, inputs["negative_attention_mask"]
        )
        terms = run.fsc(
            output.image_embeds,
            output.text_embeds,
            model.logit_scale.exp(),
            output.negative_text_embeds,
            inputs["negative_mask"],
            patches=patches,
            tokens=tokens,
            token_mask=token_mask,
            negative_tokens=negative_tokens,
            negative_token_mask=negative_token_mask,
        )
    return terms.total


def epoch_score_names(args: NegCLIPTrainingArguments, has_validation: bool) -> list[str]:
    """The scores `evaluate_epoch` measures with these options, in `log.csv`'s order."""
    names = []
    if has_validation and args.select_best and args.select_by == "validation":
        names.append(SCORES["validation"])
    if args.eval_dataset and args.select_by == "aro":
        names += [f"aro/{config}" for config in args.eval_configs] + [SCORES["aro"]]
    if args.eval_retrieval:
        names += [SCORES["retrieval"], "retrieval/image_to_text_recall@1"]
    if args.zero_shot:
        names.append(SCORES["zero_shot"])
    return names


def evaluate_epoch(run: TrainingRun) -> dict[str, float]:
    """The scores the run measures after every epoch (and of its starting model), on every process, sharded:
    validation recall (when it selects by it), ARO (`--select-by aro`), retrieval and zero-shot accuracy."""
    args, accelerator = run.args, run.accelerator
    model = run.module
    runtime = Runtime(batch_size=args.batch_size, device=accelerator.device, distributed=accelerator)
    names = epoch_score_names(args, run.validation is not None)
    scores = {}
    if SCORES["validation"] in names:
        recalls = retrieval_recall(
            model,
            run.processor,
            run.validation,
            image_column=args.image_column,
            caption_column=args.caption_column,
            image_id_column=args.image_id_column,
            runtime=runtime,
        )
        scores[SCORES["validation"]] = recalls[METRIC]
    if SCORES["aro"] in names:
        configs = evaluate_aro(run).configs
        scores |= {f"aro/{config}": numbers.accuracy for config, numbers in configs.items()}
        scores[SCORES["aro"]] = sum(numbers.accuracy for numbers in configs.values()) / len(configs)
    if run.retrieval_set is not None:
        original = retrieval_results(model, run.processor, run.retrieval_set, runtime).variants["original"]
        scores[SCORES["retrieval"]] = original["text_to_image"]["recall@1"]
        scores["retrieval/image_to_text_recall@1"] = original["image_to_text"]["recall@1"]
    if run.zero_shot_task is not None:
        scores[SCORES["zero_shot"]] = zero_shot_accuracy(model, run.processor, run.zero_shot_task, runtime).accuracy
    return scores


def finish(run: TrainingRun) -> dict:
    """Validation and ARO evaluation (on every process), then the model, card and push (main process); the results."""
    args, accelerator = run.args, run.accelerator
    run.progress.close()
    results = {}
    if run.negative_share:
        results["negatives"] = run.negative_share.to_json()
    if run.selection:
        run.selection.restore(accelerator, run.model, run.state)
        results["selection"] = run.selection.summary(run.state)
    elif "start_scores" in run.state:
        results["evaluations"] = {key: run.state[key] for key in ("start_scores", "evaluations") if key in run.state}
    if run.validation is not None:
        results["validation_loss"] = validation_loss(
            run.module,
            run.processor,
            run.validation,
            args.batch_size * accelerator.num_processes,
            args.image_column,
            args.caption_column,
            distributed=accelerator,
        )
        accelerator.log({"validation/loss": results["validation_loss"]}, step=run.state["step"])
    aro = evaluate_aro(run) if args.eval_dataset else None
    if aro is not None:
        results["aro"] = aro.to_json()
    if accelerator.is_main_process:
        final = run.module
        # With LoRA, the adapters merged into the weights: the folder is a plain CLIP/NegCLIP checkpoint.
        (merged_model(final) if has_lora(final) else final).save_pretrained(run.output_dir, safe_serialization=True)
        run.processor.save_pretrained(run.output_dir)
        (run.output_dir / "training_state.json").write_text(json.dumps(run.state, indent=2))
        (run.output_dir / "training_args.json").write_text(json.dumps(asdict(args), indent=2))
        (run.output_dir / "training_results.json").write_text(json.dumps(results, indent=2))
        (run.output_dir / "README.md").write_text(
            model_card(
                args,
                aro,
                selection=results.get("selection") or results.get("evaluations"),
                negatives=run.negative_share,
            ),
            encoding="utf-8",
        )
        if aro is not None:
            write_eval_results(aro, run.output_dir)  # .eval_results/aro.yaml, where the dataset has a Hub id
        if args.push_to_hub:
            push_checkpoint(run.output_dir, args.push_to_hub, private=args.private)
    run.log.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes the trackers and the process group: no collective after it
    return results


@torch.no_grad()
def validation_loss(
    model, processor, data, batch_size: int, image_column="image", caption_column="caption", distributed=None
) -> float:
    """Mean plain contrastive loss over the batches of `batch_size` rows of `data` (the trainer's global batch).

    The batches are shared out over the processes of `distributed` (every process must call this) and each is
    scored whole on one process, so the result is the same on any number of processes. `model` is unwrapped.
    """
    device = next(model.parameters()).device
    loss = NegCLIPLoss()  # one batch at a time, on one process: no collective

    def batch_losses(starts: list[int]) -> torch.Tensor:
        losses = []
        for start in starts:
            examples = data[start : start + batch_size]  # one read, columns as lists
            batch = processor(
                images=[image.convert("RGB") for image in examples[image_column]],
                text=list(examples[caption_column]),
                padding=True,
                truncation=True,
                return_tensors="pt",
            ).to(device)
            output = model(
                pixel_values=batch["pixel_values"],
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                return_loss=False,
            )
            losses.append(loss(output.image_embeds, output.text_embeds, model.logit_scale.exp()).float().cpu())
        return torch.stack(losses)

    starts = list(range(0, len(data) - batch_size + 1, batch_size))
    if not starts:
        return float("nan")
    was_training = model.training
    model.eval()
    losses = Runtime(device=device, distributed=distributed).gathered(batch_losses, starts)
    model.train(was_training)
    return float(losses.mean())


def evaluate_aro(run: TrainingRun):
    """ARO accuracy (an `EvalResult`) on `eval_configs` of `eval_dataset`, sharded over every process, logged by the
    main one."""
    args, accelerator = run.args, run.accelerator
    runtime = Runtime(batch_size=args.batch_size, device=accelerator.device, distributed=accelerator)
    result = evaluate_model(
        run.module,
        args.eval_dataset,
        args.eval_configs,
        processor=run.processor,
        options=EvalOptions(runtime=runtime),
    )
    accelerator.log(
        {f"aro/{config}": numbers.accuracy for config, numbers in result.configs.items()}, step=run.state["step"]
    )
    return result


class StepLog:
    """`log.csv`: one row per optimizer step, flushed at once so that a kill loses none.

    On resume, rows after the checkpoint's step (written by the run that was killed) are dropped first.
    """

    COLUMNS = ["step", "epoch", "loss", "learning_rate"]

    def __init__(self, path: Path, after_step: int, enabled: bool, score_columns: list[str] = ()):
        self.file, self.score_columns = None, list(score_columns)
        if not enabled:
            return
        rows = list(csv.reader(path.open(newline=""))) if path.exists() else []
        # An epoch's scores at the checkpoint's own step are measured again after resuming: their row goes too.
        kept = [row for row in rows[1:] if int(row[0]) < after_step or (int(row[0]) == after_step and row[2])]
        self.file = path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerows([self.COLUMNS + self.score_columns, *kept])
        self.file.flush()

    def write(self, step: int, epoch: int, loss: float, learning_rate: float) -> None:
        if self.file:
            self.writer.writerow([step, epoch, f"{loss:.6f}", f"{learning_rate:.6e}"] + [""] * len(self.score_columns))
            self.file.flush()

    def write_scores(self, step: int, epoch: int, scores: dict[str, float]) -> None:
        """A row of the scores measured after `epoch` epochs (0: the starting model), loss and rate left empty."""
        if self.file and self.score_columns:
            self.writer.writerow([step, epoch, "", ""] + [f"{scores[name]:.6f}" for name in self.score_columns])
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


def mark_run_folder(folder: Path) -> None:
    """Make `folder` the run's, if it is not already an earlier run's: the marker of `aro.core.io` naming
    `aro train`, written while the folder is empty (its `files` stay empty: the checkpoints carry their own records).
    `--resume-from` continues only in a folder so marked (`NegCLIPTrainingArguments.check_output_dir`)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not is_output_of(folder, TRAIN_COMMAND):
        write_manifest(folder, MARKER, written_by=TRAIN_COMMAND)


def _checkpoint_to_resume(args: NegCLIPTrainingArguments) -> Path | None:
    """The verified checkpoint of `--resume-from` (`latest`: the newest complete one), or None."""
    if not args.resume_from:
        return None
    if args.resume_from == "latest":
        return latest_checkpoint(Path(args.output_dir) / "checkpoints")
    verify_checkpoint(Path(args.resume_from))
    return Path(args.resume_from)


def _training_data(args: NegCLIPTrainingArguments) -> tuple:
    """The training rows, with the negatives and neighbours of the authors' file when training from one (else None)."""
    if args.train_file:
        data, negatives, neighbours = load_released(args.train_file, args.image_root, args.allow_outside_image_root)
        return data, (negatives, neighbours)
    columns = [args.image_column, args.caption_column, args.image_id_column]
    return load_rows(args.dataset, args.dataset_config, args.split, columns), None


def _validation_data(args: NegCLIPTrainingArguments):
    """The validation rows: the authors' validation file, a split of the dataset, or None."""
    if args.validation_file:
        return load_released(args.validation_file, args.image_root, args.allow_outside_image_root)[0]
    if args.validation_split:
        columns = [args.image_column, args.caption_column]
        return load_rows(args.dataset, args.dataset_config, args.validation_split, columns, "--validation-split")
    return None


def _retrieval_set(args: NegCLIPTrainingArguments) -> RetrievalSet | None:
    """The held-out images and captions of `--eval-retrieval` (captions as written: a score per epoch)."""
    if not args.eval_retrieval:
        return None
    data = load_split(args.eval_dataset, args.eval_retrieval, "test")
    return RetrievalSet.from_retrieval_config(data, perturbations=False)


def _zero_shot_task(args: NegCLIPTrainingArguments) -> ZeroShotTask | None:
    if not args.zero_shot:
        return None
    return ZeroShotTask(
        args.zero_shot,
        config=args.zero_shot_config,
        split=args.zero_shot_split,
        image_column=args.zero_shot_image_column,
        label_column=args.zero_shot_label_column,
        templates=tuple(args.zero_shot_templates),
    )


def _mining(args: NegCLIPTrainingArguments) -> tuple[Path | None, dict | None]:
    """The mining cache and its parameters: those it was mined with, or those it will be mined with on first use
    (then its path is checked now, before any work, as an output of this run)."""
    if args.train_file or not (args.hard_negatives or args.image_negatives):
        return None, None
    cache = (
        Path(args.mining_cache)
        if args.mining_cache
        else default_cache_path(args.dataset, args.dataset_config, args.split)
    )
    if cache.exists():
        return cache, read_parameters(cache)
    check_cache_output(cache, args.inputs(), "--mining-cache")
    return cache, asdict(args.mining_parameters())


def _negatives(
    args: NegCLIPTrainingArguments, data, cache: Path | None, accelerator
) -> tuple[list | None, list | None]:
    """The cache's negatives and neighbours; on first use mined by every process (sharded), written by the main one."""
    if cache is None:
        return None, None
    if not cache.exists():
        mine(
            args.mining_parameters(),
            cache,
            batch_size=args.batch_size,
            device=accelerator.device,
            distributed=accelerator,
            option="--mining-cache",
        )
    negatives, neighbours, _ = load_cache(cache)
    if len(negatives) != len(data):
        raise InvalidInput(
            f"the mining cache {cache} has {len(negatives)} rows but the data has {len(data)}: mine again"
        )
    return negatives, neighbours


def _dataset_identity(args: NegCLIPTrainingArguments, data) -> dict:
    """Which rows a run trains on: the dataset's name, config, split, size and a hash of its captions and image ids."""
    name = Path(args.train_file).name if args.train_file else args.dataset
    columns = (
        json.dumps([str(value) for value in data[column]]).encode()
        for column in (args.caption_column, args.image_id_column)
    )
    return {
        "name": name,
        "config": args.dataset_config,
        "split": args.split,
        "rows": len(data),
        "sha256": sha256_of_blocks(columns),
    }


def _trackers(report_to: str):
    """`--report-to` as accelerate's `log_with`: None for 'none', else the tracker names."""
    names = [name.strip() for name in report_to.split(",") if name.strip()]
    return None if names in ([], ["none"]) else names


def _flat_config(args: NegCLIPTrainingArguments) -> dict:
    """The arguments as trackers take them (TensorBoard's hparams: numbers, strings and booleans only)."""
    return {
        name: value if isinstance(value, (int, float, str, bool)) else str(value)
        for name, value in asdict(args).items()
    }


def push_checkpoint(folder: Path, repo_id: str, private: bool = False) -> None:
    """Upload the final model folder (not the intermediate checkpoints) to the Hub; the token is never shown."""
    push_folder(folder, repo_id, private=private, ignore_patterns=["checkpoints/*", "tensorboard/*"])
