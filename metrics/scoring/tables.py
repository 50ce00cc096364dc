"""The Markdown tables of the reports: what `results.md` and `comparison.md` hold and `aro eval` prints, the blind
baseline beside the model, the items only word order can solve, SugarCrepe's splits and averages, and retrieval and
zero-shot (`aro retrieval`, the NegCLIP card).

>>> print(results_table(evaluate_model(model, "ORG/aro", processor=processor)))  # doctest: +SKIP
"""

from __future__ import annotations

from aro.core.contract import SUGARCREPE_CONFIGS
from aro.core.protocol import get_protocol

from .results import EvalResult, Interval

DIRECTIONS = {"text_to_image": "text→image", "image_to_text": "image→text"}


def number(value: float | None, interval: Interval | None = None) -> str:
    """`0.612 [0.580, 0.644]`: a value to three places and its interval; `-` for no value."""
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def protocol_note(protocol: str) -> str:
    """One line on what the protocol's numbers mean, for tables and cards."""
    rules = get_protocol(protocol)
    ties = "ties with the true caption count right (argmax)" if rules.ties_right else "ties count wrong"
    exclusions = "the paper's exclusions apply to macro accuracy" if rules.exclusions else "no group is excluded"
    return f"{protocol} protocol: {ties}; {exclusions}; headline {rules.headline.replace('_', ' ')}"


def results_table(result: EvalResult) -> str:
    """Every config's micro and macro accuracy with intervals, and the Order sets by perturbation."""
    lines = [
        f"{protocol_note(result.protocol)}. Brackets: 95% bootstrap interval over items. Ties: items whose highest "
        "score is shared, whatever the protocol counts them as.",
        "",
        "| config | headline | micro accuracy | macro accuracy | items | ties | truncated captions |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config, numbers in result.configs.items():
        lines.append(
            f"| {config} | {numbers.headline_number()[0]} | {number(numbers.accuracy, numbers.accuracy_ci)} | "
            f"{number(numbers.macro_accuracy, numbers.macro_accuracy_ci)} | {numbers.num_items} | "
            f"{numbers.num_ties} | {numbers.truncated_captions} |"
        )
    for config, numbers in result.configs.items():
        if numbers.perturbations is None:
            continue
        chosen = {row.option: row.share for row in numbers.perturbations.chosen}
        lines += [
            "",
            f"{config} by perturbation: accuracy of the true caption against each shuffle alone, over the items "
            "where the shuffle differs from it, and how often the model chose it.",
            "",
            "| perturbation | true caption preferred | left out (same text as the true caption) | chosen |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {row.perturbation} | {number(row.accuracy, row.accuracy_ci)} | {row.left_out} | "
            f"{chosen[row.perturbation]:.3f} |"
            for row in numbers.perturbations.pairwise
        ]
    for warning in result.warnings:
        lines += ["", f"Note: {warning}"]
    return "\n".join(lines)


def blind_table(result: EvalResult) -> str:
    """The model's and the blind baseline's headline accuracy per config (the same kind of number for both)."""
    lines = [
        f"| config | model accuracy | blind accuracy ({result.blind_model}) | blind right where model right |",
        "| --- | --- | --- | --- |",
    ]
    for config, numbers in result.configs.items():
        blind = numbers.blind
        lines.append(
            f"| {config} | {numbers.headline_number()[1]:.3f} | {numbers.headline_of(blind):.3f} | "
            f"{number(blind.right_where_model_right)} |"
        )
    return "\n".join(lines)


def same_words_table(result: EvalResult) -> str:
    """Per config, the items whose negative uses exactly the true caption's words: a bag-of-words model can only tie
    there, so only word order solves them."""
    lines = [
        "Items a bag of words cannot separate: a negative uses exactly the true caption's words (the same multiset of "
        "lower-cased letter-and-digit tokens; punctuation is no token).",
        "",
        "| config | items | same words | share |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {config} | {numbers.num_items} | {numbers.same_words_items} | {number(numbers.same_words_share)} |"
        for config, numbers in result.configs.items()
    ]
    return "\n".join(lines)


def sugarcrepe_table(result: EvalResult) -> str:
    """SugarCrepe's splits (accuracy with its interval, the blind baseline's beside it where it ran, the share of
    items a bag of words cannot separate) and the averages the paper reports; empty when no split was scored."""
    splits = [config for config in SUGARCREPE_CONFIGS if config in result.configs]
    if not splits:
        return ""
    blind = result.blind_model is not None
    ties = (
        "ties with the true caption right, as mteb's argmax"
        if get_protocol(result.protocol).ties_right
        else "ties wrong"
    )
    lines = [
        f"SugarCrepe: accuracy per split ({ties}). A group's row and `mean` (all seven) are unweighted means of their "
        "splits' accuracies, as the paper reports them; `pooled` is the accuracy over all items of the seven (mteb's "
        "number). Same words: the share of items a bag of words cannot separate.",
        "",
        "| split | accuracy | " + (f"blind ({result.blind_model}) | " if blind else "") + "items | same words |",
        "| --- | --- | " + ("--- | " if blind else "") + "--- | --- |",
    ]
    for config in splits:
        numbers = result.configs[config]
        cells = [number(numbers.accuracy, numbers.accuracy_ci)]
        cells += [number(numbers.blind.accuracy)] if blind else []
        cells += [str(numbers.num_items), number(numbers.same_words_share)]
        lines.append(f"| {config.removeprefix('sugarcrepe_')} | " + " | ".join(cells) + " |")
    averages = result.sugarcrepe.averages if result.sugarcrepe else {}
    for name, average in averages.items():
        label = f"**{name}**" + (" (headline)" if name == result.sugarcrepe.headline else "")
        cells = [number(average.accuracy, average.accuracy_ci)]
        cells += [number(average.blind_accuracy)] if blind else []
        cells += [str(average.num_items), ""]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def artifact_tables(result: EvalResult) -> list[str]:
    """The tables `results.md` holds after the accuracies: the items only order can solve, and SugarCrepe's."""
    return [table for table in (same_words_table(result), sugarcrepe_table(result)) if table]


def comparison_table(runs: list[EvalResult]) -> str:
    """Each model's headline accuracy (with its interval) per config, one row per model."""
    configs = list(dict.fromkeys(config for result in runs for config in result.configs))
    lines = ["| model | " + " | ".join(configs) + " |", "| --- |" + " --- |" * len(configs)]
    for result in runs:
        cells = [
            number(*result.configs[config].headline_number()[1:]) if config in result.configs else "-"
            for config in configs
        ]
        lines.append(f"| {result.model} | " + " | ".join(cells) + " |")
    protocols = ", ".join(sorted({result.protocol for result in runs}))
    return f"Headline accuracy per config (protocol {protocols}), with 95% bootstrap intervals.\n\n" + "\n".join(lines)


def _change(value: float, reference: float) -> str:
    return f"{value:.3f} ({value - reference:+.3f})"


def downstream_table(result, base=None) -> str:
    """Recall@k both ways per caption variant, with its change from the original captions, and zero-shot accuracy
    (a `DownstreamResult`). With `base` (the result of the model this one was fine-tuned from), every number is
    compared with the base model's same number instead: what fine-tuning kept or lost."""
    lines = []
    if result.retrieval is not None:
        retrieval = result.retrieval
        compared = base is not None and base.retrieval is not None
        columns = [f"{DIRECTIONS[direction]} R@{k}" for direction in DIRECTIONS for k in retrieval.ks]
        lines += [
            f"Retrieval on `{retrieval.dataset}` `{retrieval.config}` ({retrieval.images} images, "
            f"{retrieval.captions} captions); in brackets, the change from "
            f"{'the base model' if compared else 'the original captions'}:",
            "",
            "| captions | " + " | ".join(columns) + " |",
            "| --- |" + " --- |" * len(columns),
        ]
        for variant, recalls in retrieval.variants.items():
            reference = base.retrieval.variants[variant] if compared else retrieval.variants["original"]
            cells = [
                f"{recalls[direction][f'recall@{k}']:.3f}"
                if variant == "original" and not compared
                else _change(recalls[direction][f"recall@{k}"], reference[direction][f"recall@{k}"])
                for direction in DIRECTIONS
                for k in retrieval.ks
            ]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    if result.zero_shot is not None:
        zero_shot = result.zero_shot
        accuracy = f"{zero_shot.accuracy:.3f}"
        if base is not None and base.zero_shot is not None:
            accuracy = _change(zero_shot.accuracy, base.zero_shot.accuracy) + " against the base model"
        if lines:
            lines.append("")
        lines.append(
            f"Zero-shot classification on `{zero_shot.task.dataset}` ({zero_shot.task.split}, {zero_shot.images} "
            f"images, {len(zero_shot.classes)} classes, {len(zero_shot.task.templates)} template(s)): top-1 "
            f"accuracy {accuracy}."
        )
    return "\n".join(lines)
