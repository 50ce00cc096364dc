"""The model card of a trained (Neg)CLIP, rendered from `cards/model_card.md`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from aro.cards import render
from aro.core.contract import SUGARCREPE_CONFIGS
from aro.core.errors import MissingInput
from aro.metrics.scoring.hub_files import model_index
from aro.metrics.scoring.provenance import hub_id, name_of
from aro.metrics.scoring.results import EvalResult
from aro.metrics.scoring.tables import downstream_table, sugarcrepe_table

from .arguments import NegCLIPTrainingArguments
from .mining import NegativeShare
from .recipe import FIXED_HERE, FORK_SETTINGS
from .selection import METRIC

if TYPE_CHECKING:  # a type only: importing it would import torch, which no other part of a card needs
    from aro.metrics.scoring.downstream import DownstreamResult

NO_DOWNSTREAM = (
    "Not measured with this training. Hard negatives should raise ARO without costing retrieval or zero-shot "
    "accuracy;\ncheck with `aro retrieval --model <this model> --dataset <ARO built by aro build> --zero-shot "
    "uoft-cs/cifar10`."
)
NO_SUGARCREPE = (
    "Not measured with this training. SugarCrepe's fluent negatives show whether an ARO gain is more than the\n"
    "artifacts of swapped-word negatives: build it beside ARO (`aro build --sugarcrepe-dir ... --coco-val2017-dir ...`)"
    "\nand evaluate with `--eval-configs relation attribution sugarcrepe`, or `aro eval --config sugarcrepe`."
)


def recipe_table(args) -> str:
    """Every setting of the run against the authors' NegCLIP run, a Markdown table; differences say so."""
    rows = ["| setting | this run | the authors' fork |", "| --- | --- | --- |"]
    for setting in FORK_SETTINGS:
        if setting.argument is None:
            ours = FIXED_HERE[setting.setting]
        else:
            value = getattr(args, setting.argument)
            shown = name_of(value) if isinstance(value, str) else value  # a local folder by its name, never its path
            ours = f"`{setting.argument}={shown}`"
            if setting.value is not None and value != setting.value:
                ours += f" (differs: {setting.note})" if setting.note else " (differs)"
        rows.append(f"| {setting.setting} | {ours} | {setting.fork} |")
    return "\n".join(rows)


def selection_summary(selection: dict | None, epochs: int) -> str:
    """Which epoch the card's weights are, and why; with scores measured during training, those of the starting
    model and of the kept epoch side by side."""
    selection = selection or {}
    best = selection.get("best_epoch")
    if best is None:
        text = "The weights are those of the last epoch (no best-epoch selection ran: it needs validation data)."
    elif selection.get("select_by", "validation") == "validation":
        per_epoch = ", ".join(f"{entry['epoch']}: {entry[METRIC]:.3f}" for entry in selection["validation"])
        text = (
            f"The weights are those of epoch {best} of {epochs}, the best by validation text-to-image recall@1 "
            f"(per epoch: {per_epoch})."
        )
    else:
        floor = selection.get("floor")
        text = f"The weights are those of epoch {best} of {epochs}, the best by `{selection['score']}`" + (
            f" among the epochs whose retrieval and zero-shot scores kept {floor:g} times the starting model's"
            + ("" if selection.get("floor_met", True) else " (none did: the best by the score alone)")
            if floor is not None
            else ""
        )
        text += "."
    start, evaluations = selection.get("start_scores"), selection.get("evaluations", [])
    if not start or not evaluations:
        return text
    kept = next((entry for entry in evaluations if entry["epoch"] == best), evaluations[-1])
    rows = [
        f"| {name} | {start[name]:.3f} | {kept[name]:.3f} | {kept[name] - start[name]:+.3f} |"
        for name in start
        if name in kept
    ]
    return (
        f"{text}\n\nScores measured during training, of the starting model and of the kept weights (epoch "
        f"{kept['epoch']}); `log.csv` has them for every epoch:\n\n| score | start | kept | change |\n"
        "| --- | --- | --- | --- |\n" + "\n".join(rows)
    )


def objective_of(args, negatives: NegativeShare | None) -> str:
    """The training objective in words: the loss, its negatives and their types, and LoRA."""
    if not args.hard_negatives:
        return "the plain CLIP contrastive loss (no hard negatives)"
    kinds = {"swap": "swapped words", "replace": "a replaced noun, adjective or verb"}
    negative = f"a hard-negative caption per image ({' or '.join(kinds[kind] for kind in args.negative_kinds)})"
    if args.loss == "fsc":
        text = (
            "FSC-CLIP (Oh et al., 2024): the contrastive loss, plus focal, label-smoothed hard-negative terms on the "
            f"global features (weight {args.fsc_global_weight:g}) and on token-patch alignment (weight "
            f"{args.fsc_local_weight:g}; focal gamma {args.fsc_focal_gamma:g}, smoothing {args.fsc_label_smoothing:g})"
            f", with {negative}"
        )
    else:
        text = f"NegCLIP: contrastive loss with {negative} among its texts"
    if negatives:
        text += (
            f" (present for {negatives.rows_with_negative} of {negatives.rows} training rows, {negatives.share:.1%}: "
            "a caption with no possible one has none)"
        )
    if args.image_negatives:
        text += " and a nearest-neighbour image per image"
    if args.lora_rank is not None:
        text += (
            f"; LoRA of rank {args.lora_rank} (alpha {args.lora_alpha:g}) on {', '.join(args.lora_targets)}, merged "
            "into these weights"
        )
    return text


def model_card(
    args,
    aro_results: EvalResult | None = None,
    title: str | None = None,
    summary: str | None = None,
    downstream: DownstreamResult | None = None,
    base_downstream: DownstreamResult | None = None,
    selection: dict | None = None,
    negatives: NegativeShare | None = None,
    load_from: str | None = None,
) -> str:
    """A card for the model trained with `args` (a `NegCLIPTrainingArguments`), with its ARO results
    (`evaluate_model`'s) if any, SugarCrepe's where they hold its splits, its retrieval and zero-shot results
    (`evaluate_downstream`'s `DownstreamResult`) if any, compared with the base model's when given, and with hard
    negatives the share of training rows that had one (`negatives`). Its usage snippet loads the model from
    `load_from` (a Hub id or a relative folder path; unset: the `--push-to-hub` repo, else the folder's name).

    Hub fields name Hub ids only: a local base model or dataset is left out of the metadata, and the card says so.
    """
    name = args.push_to_hub or Path(args.output_dir).name  # the Hub repo, else the name of the folder the card sits in
    base_model = hub_id(args.model_name_or_path)
    datasets = [dataset for dataset in (hub_id(args.dataset), aro_results and aro_results.dataset_id) if dataset]
    metadata = {
        "library_name": "transformers",
        "license": "mit",
        "pipeline_tag": "zero-shot-image-classification",
        "language": ["en"],
        "tags": ["clip", "negclip", "aro", "vision-language"],
    }
    if base_model:
        metadata["base_model"] = base_model
    if datasets:
        metadata["datasets"] = list(dict.fromkeys(datasets))
    index = model_index(aro_results, name) if aro_results else None
    if index:
        metadata["model-index"] = index
    local = [what for what, known in (("base model", base_model), ("training data", hub_id(args.dataset))) if not known]
    if aro_results and not index:
        local.append("ARO dataset")
    provenance = (
        f"The {', '.join(local)} {'was a local folder' if len(local) == 1 else 'were local folders'} with no Hub id, "
        "so the card's metadata leaves out the fields that would name it (`base_model`, `datasets`, `model-index`)."
        if local
        else ""
    )
    rows = [
        f"| {config} | {numbers.accuracy:.3f} | "
        + (f"{numbers.macro_accuracy:.3f}" if numbers.macro_accuracy is not None else "-")
        + " |"
        for config, numbers in (aro_results.configs.items() if aro_results else ())
        if config not in SUGARCREPE_CONFIGS
    ]
    if rows:
        results = "| config | micro accuracy | macro accuracy |\n| --- | --- | --- |\n" + "\n".join(rows)
    else:
        results = "No ARO evaluation ran with this training (pass `--eval-dataset`)."
    sugarcrepe = (sugarcrepe_table(aro_results) if aro_results else "") or NO_SUGARCREPE
    objective = objective_of(args, negatives)
    limitations = (
        "Hard negatives teach the model to mind word order and attribute binding on captions like its training "
        "data;\nthey do not make it understand language. Swapped-word negatives can be true captions by accident "
        '("a dog next\nto a cat" swapped is still true; the miner only rules out swapped coordinated phrases, "a dog '
        "and a cat\"),\nand nearest-neighbour images come from the starting model's own notion of similarity."
        if args.hard_negatives
        else "The plain contrastive loss does not reward minding word order or which attribute goes with which "
        "object:\nexpect a bag of words on ARO's relation, attribution and Order sets, as the paper found for CLIP."
    )
    return render(
        "model_card.md",
        yaml=yaml.safe_dump(metadata, sort_keys=False).strip(),
        title=title or ("NegCLIP" if args.hard_negatives else "CLIP"),
        summary=summary
        or "CLIP fine-tuned with hard negatives as in Yuksekgonul et al. (ICLR 2023), trained with `aro train`.",
        base_model=base_model or f"{name_of(args.model_name_or_path)} (a local checkpoint)",
        dataset=hub_id(args.dataset) or name_of(args.dataset),
        provenance=provenance,
        dataset_config=args.dataset_config,
        split=args.split,
        image_column=args.image_column,
        caption_column=args.caption_column,
        objective=objective,
        repo_id=load_from or name,
        hyperparameters=recipe_table(args),
        selection=selection_summary(selection, args.epochs),
        results=results,
        sugarcrepe=sugarcrepe,
        downstream=downstream_table(downstream, base_downstream) if downstream else NO_DOWNSTREAM,
        limitations=limitations,
    )


def write_card_with_downstream(
    model_dir: str | Path, downstream: DownstreamResult, base_downstream: DownstreamResult | None = None
) -> Path:
    """Rewrite the card of a model trained by `aro train` with retrieval and zero-shot results (`evaluate_downstream`'s)
    beside its ARO results, compared with its base model's when given; return the card's path.

    >>> write_card_with_downstream("negclip-run", evaluate_downstream("negclip-run", "ORG/aro"))  # doctest: +SKIP
    """
    folder = Path(model_dir)
    if not (folder / "training_args.json").is_file():
        raise MissingInput(
            f"{folder} has no training_args.json: only the card of a model trained by `aro train` can be rewritten"
        )
    args = NegCLIPTrainingArguments(**json.loads((folder / "training_args.json").read_text()))
    training_results = folder / "training_results.json"
    recorded = json.loads(training_results.read_text()) if training_results.is_file() else {}
    aro_results = EvalResult.from_json(recorded["aro"]) if recorded.get("aro") else None
    negatives = NegativeShare.from_json(recorded.get("negatives"))
    card = folder / "README.md"
    card.write_text(
        model_card(args, aro_results, downstream=downstream, base_downstream=base_downstream, negatives=negatives),
        encoding="utf-8",
    )
    return card
