"""What an ARO evaluation returns: an `EvalResult` per model, holding a `ConfigResult` per config.

Code reads them through attributes; `to_json()` gives exactly what `results.json` holds (the keys the README
documents), and `from_json` reads such a file back (a NegCLIP run keeps it under "aro" in `training_results.json`).

>>> result = evaluate_model("openai/clip-vit-base-patch32", "ORG/aro", "relation")  # doctest: +SKIP
>>> relation = result.configs["relation"]  # doctest: +SKIP
>>> relation.macro_accuracy, relation.macro_accuracy_ci, relation.headline_number()  # doctest: +SKIP
(0.61, [0.58, 0.64], ('macro accuracy', 0.61, [0.58, 0.64]))
>>> json.dumps(result.to_json())  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .bootstrap import Bootstrap

Interval = list[float]  # [low, high]: a 95% bootstrap interval


@dataclass
class GroupAccuracy:
    """One relation or attribute pair: its accuracy, size, and whether the protocol keeps it in the macro accuracy."""

    group: str
    accuracy: float
    count: int
    in_macro: bool
    accuracy_ci: Interval | None = None


@dataclass
class PairwiseAccuracy:
    """The true caption against one perturbation alone (Order sets), over the items where that perturbation's text
    differs from the true caption; `left_out` counts the others. None when no item is left to compare."""

    perturbation: str
    accuracy: float | None
    accuracy_ci: Interval | None = None
    left_out: int = 0


@dataclass
class ChosenShare:
    """How often the model chose `option` (or tied, under a ties-wrong protocol: option `tie`)."""

    option: str
    share: float


@dataclass
class PerturbationBreakdown:
    """Which shuffle fools the model: pairwise accuracies per perturbation and the shares of the model's choices."""

    pairwise: list[PairwiseAccuracy]
    chosen: list[ChosenShare]

    @classmethod
    def from_json(cls, data: dict) -> PerturbationBreakdown:
        return cls(
            [PairwiseAccuracy(**row) for row in data["pairwise"]], [ChosenShare(**row) for row in data["chosen"]]
        )


@dataclass
class HeadAccuracy:
    """Micro and macro accuracy of a further head of the model (BLIP-2's contrastive `itc`)."""

    accuracy: float
    macro_accuracy: float | None


@dataclass
class BlindAccuracy:
    """The text-only baseline's accuracy, and of the items the model gets right, the share it also gets right."""

    accuracy: float
    macro_accuracy: float | None
    right_where_model_right: float | None


@dataclass
class SugarCrepeAverage:
    """An average of SugarCrepe's split accuracies over `splits`: the unweighted mean of the splits' accuracies (a
    group's, or all seven's: what the paper reports), or, `pooled`, the accuracy over all their items together
    (mteb's `SugarCrepe` number, whose copy merges the splits). `blind_accuracy` is the blind baseline's same
    average."""

    splits: list[str]
    accuracy: float
    accuracy_ci: Interval | None = None
    pooled: bool = False
    num_items: int = 0
    blind_accuracy: float | None = None


@dataclass
class SugarCrepeSummary:
    """SugarCrepe's averages over the splits scored: `replace`, `swap` and `add` (each where all its splits were
    scored), `mean` (all seven) and `pooled` (all seven's items); `headline` names the one the protocol reports
    first (`pooled` under mteb's protocol, `mean` under the others)."""

    headline: str
    averages: dict[str, SugarCrepeAverage]

    def to_json(self) -> dict:
        return {"headline": self.headline, "averages": {name: asdict(row) for name, row in self.averages.items()}}

    @classmethod
    def from_json(cls, data: dict) -> SugarCrepeSummary:
        averages = {name: SugarCrepeAverage(**row) for name, row in data["averages"].items()}
        return cls(data["headline"], averages)


# The counts of a config that `from_json` reads back by name; any other key of a config is one of the adapter's notes.
_CONFIG_FIELDS = (
    "accuracy",
    "num_items",
    "num_ties",
    "macro_accuracy",
    "headline",
    "accuracy_ci",
    "macro_accuracy_ci",
    "truncated_captions",
    "unique_images",
    "unique_captions",
    "distinct_inputs",
    "items_with_identical_options",
    "items_without_negative",
    "same_words_items",
    "same_words_share",
)


@dataclass
class ConfigResult:
    """Every number of one config.

    `headline` names the number the protocol reports first (`macro_accuracy` or `accuracy`); `num_ties` counts the
    items whose highest score is shared, whatever the protocol makes of them; intervals are None without bootstrap
    draws. `perturbations` is the Order sets' breakdown; `notes` the adapter's own numbers (a VQA model's
    yes-rates); `other_heads` and `blind` are there when the model has further heads or a blind baseline ran.
    `same_words_items` counts the items in the accuracy whose negative uses exactly the true caption's words
    (`contract.uses_same_words`): a bag-of-words model can only tie there; `same_words_share` is their share.
    """

    accuracy: float
    macro_accuracy: float | None = None
    headline: str = "accuracy"
    num_items: int = 0
    num_ties: int = 0
    per_group: list[GroupAccuracy] = field(default_factory=list)
    perturbations: PerturbationBreakdown | None = None
    accuracy_ci: Interval | None = None
    macro_accuracy_ci: Interval | None = None
    bootstrap: Bootstrap = field(default_factory=Bootstrap)
    truncated_captions: int = 0
    unique_images: int = 0
    unique_captions: int = 0
    distinct_inputs: dict[str, int] = field(default_factory=dict)  # texts and pairs the model computed, each once
    items_with_identical_options: int = 0  # items with an option equal to the true caption: no negative, left out
    items_without_negative: int = 0  # items whose every option equals it: not in the accuracy
    same_words_items: int = 0
    same_words_share: float | None = None
    notes: dict = field(default_factory=dict)
    other_heads: dict[str, HeadAccuracy] = field(default_factory=dict)
    blind: BlindAccuracy | None = None

    def headline_number(self) -> tuple[str, float, Interval | None]:
        """("macro accuracy" or "micro accuracy", its value, its interval): what this config reports first."""
        if self.headline == "macro_accuracy" and self.macro_accuracy is not None:
            return "macro accuracy", self.macro_accuracy, self.macro_accuracy_ci
        return "micro accuracy", self.accuracy, self.accuracy_ci

    def headline_of(self, other: HeadAccuracy | BlindAccuracy) -> float:
        """The same kind of number (macro or micro) of another head or of the blind baseline."""
        macro = self.headline_number()[0] == "macro accuracy" and other.macro_accuracy is not None
        return other.macro_accuracy if macro else other.accuracy

    def to_json(self) -> dict:
        data = {
            "accuracy": self.accuracy,
            "num_items": self.num_items,
            "num_ties": self.num_ties,
            "macro_accuracy": self.macro_accuracy,
            "headline": self.headline,
            "per_group": [asdict(row) for row in self.per_group],
        }
        if self.perturbations is not None:
            data["perturbations"] = asdict(self.perturbations)
        data |= {
            "accuracy_ci": self.accuracy_ci,
            "macro_accuracy_ci": self.macro_accuracy_ci,
            "bootstrap": asdict(self.bootstrap),
            "truncated_captions": self.truncated_captions,
            "unique_images": self.unique_images,
            "unique_captions": self.unique_captions,
            "distinct_inputs": self.distinct_inputs,
            "items_with_identical_options": self.items_with_identical_options,
            "items_without_negative": self.items_without_negative,
            "same_words_items": self.same_words_items,
            "same_words_share": self.same_words_share,
        } | self.notes
        if self.other_heads:
            data["other_heads"] = {head: asdict(numbers) for head, numbers in self.other_heads.items()}
        if self.blind is not None:
            data["blind"] = asdict(self.blind)
        return data

    @classmethod
    def from_json(cls, data: dict) -> ConfigResult:
        """A config of `results.json`; keys it lacks (a file of an older version) take their defaults."""
        structured = {"per_group", "perturbations", "bootstrap", "other_heads", "blind"}
        return cls(
            **{name: data[name] for name in _CONFIG_FIELDS if name in data},
            per_group=[GroupAccuracy(**row) for row in data.get("per_group", [])],
            perturbations=PerturbationBreakdown.from_json(data["perturbations"]) if "perturbations" in data else None,
            bootstrap=Bootstrap(**data["bootstrap"]) if "bootstrap" in data else Bootstrap(),
            notes={name: value for name, value in data.items() if name not in {*_CONFIG_FIELDS, *structured}},
            other_heads={head: HeadAccuracy(**numbers) for head, numbers in data.get("other_heads", {}).items()},
            blind=BlindAccuracy(**data["blind"]) if "blind" in data else None,
        )


@dataclass
class Weights:
    """How a model's weights were loaded: parameters per dtype (`{"bfloat16": 7_060_000_000}`), the bytes of
    parameters per device of a model spread by a device map (`{"cuda:0": ..., "cpu": ..., "disk": ...}`; None: the
    whole model on `device`), and the attention implementation its config holds."""

    parameters: dict[str, int]
    device_map: dict[str, int] | None = None
    attn_implementation: str | None = None


@dataclass
class EvalResult:
    """One model's evaluation: where the model and data came from, how they were scored, and a result per config.

    Models and datasets are named by Hub id or folder name, never by a local path; `*_commit` is the Hub's resolved
    revision or `sha256:` of the local files (see `provenance`). `not_written` lists the Hub files an output folder
    did not get, and why; it is not part of `results.json`. `sugarcrepe` holds SugarCrepe's averages where its
    splits were scored (`results.json` has the key then only).
    """

    model: str
    model_revision: str | None = None
    model_commit: str | None = None
    dataset: str | None = None
    dataset_id: str | None = None  # the dataset's Hub id: needed for model-index and .eval_results
    dataset_revision: str | None = None
    dataset_commit: str | None = None
    protocol: str = "paper"
    limit: int | None = None
    seed: int = 0
    date: str | None = None
    adapter: str | None = None
    image_processor: str | None = None
    blind_model: str | None = None
    device: str | None = None
    dtype: str | None = None
    weights: Weights | None = None  # the model's, as loaded (`loading.describe_weights`)
    blind_weights: Weights | None = None
    scoring: dict = field(default_factory=dict)  # the adapter's settings (a generative model's prompts, ...)
    versions: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    configs: dict[str, ConfigResult] = field(default_factory=dict)
    sugarcrepe: SugarCrepeSummary | None = None
    not_written: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """What `results.json` holds."""
        data = {item.name: getattr(self, item.name) for item in fields(self) if item.name not in _NOT_PLAIN}
        data |= {name: asdict(data[name]) for name in ("weights", "blind_weights") if data[name] is not None}
        data |= {"configs": {config: result.to_json() for config, result in self.configs.items()}}
        return data | ({"sugarcrepe": self.sugarcrepe.to_json()} if self.sugarcrepe else {})

    @classmethod
    def from_json(cls, data: dict) -> EvalResult:
        """A `results.json` read back; keys it lacks take their defaults."""
        names = {item.name for item in fields(cls)} - _NOT_PLAIN
        configs = {config: ConfigResult.from_json(numbers) for config, numbers in data.get("configs", {}).items()}
        read = {name: value for name, value in data.items() if name in names}
        for name in ("weights", "blind_weights"):
            read[name] = Weights(**read[name]) if read.get(name) else None
        sugarcrepe = SugarCrepeSummary.from_json(data["sugarcrepe"]) if "sugarcrepe" in data else None
        return cls(**read, configs=configs, sugarcrepe=sugarcrepe)


# The fields of `EvalResult` that are not written as they are: structured (see `to_json`), or not in results.json.
_NOT_PLAIN = {"configs", "sugarcrepe", "not_written"}
