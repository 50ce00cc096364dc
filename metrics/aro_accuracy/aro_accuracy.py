"""ARO accuracy: does a vision-language model pick the true caption over its order- or binding-swapped versions?"""

import datasets
import evaluate

from .contract import ARO_CONFIGS, GROUP_COLUMNS
from .protocol import accuracy_results

_DESCRIPTION = """
ARO (Attribution, Relation, and Order; Yuksekgonul et al., ICLR 2023) asks a model to pick the true caption of an
image among captions with the same words in another order: "the horse is eating the grass" against "the grass is
eating the horse" (VG-Relation), "the paved road and the white house" against "the white road and the paved
house" (VG-Attribution), and a COCO or Flickr30k caption against four shuffles of its words (COCO-Order,
Flickr30k-Order).

The metric takes, per item, the index of the caption the model chose and the index of the true caption, and
returns the micro accuracy over items, the macro accuracy over groups (relations, attribute pairs) under the
paper's protocol, and a per-group table. A prediction of -1 stands for a tie, which is wrong. This needs only
numpy. Given a model (`model_id`) and a dataset instead of predictions, it scores the model with the `aro` scoring
library (`pip install aro`), which loads the model with the adapter of its family and batches the inference.

The ARO config is the module's config name: `evaluate.load("aro_accuracy", "relation")`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): index of the caption the model chose for each item; -1 for a tie.
    references (`list` of `int`): index of the true caption of each item (0 in the ARO datasets).
    groups (`list` of `str`, *optional*): the group of each item: the relation (VG-Relation) or the attribute pair
        (VG-Attribution). Leave out for the Order sets.
    config (`str`, *optional*): `relation`, `attribution`, `coco_order` or `flickr30k_order`, when the module was
        loaded without a config name; selects the protocol's rules for the macro accuracy.
    protocol (`str`, defaults to `"paper"`): `"paper"` leaves out the 157 relations the authors exclude and the
        attribute pairs with fewer than 25 items; `"none"` averages over every group; `"clip_benchmark"` is
        CLIP_benchmark's rule (nothing excluded, micro accuracy first, ties wrong); `"mteb"` is mteb's (nothing
        excluded, micro accuracy first, ties with the true caption right: pass argmax predictions, or `model_id`,
        which predicts by the protocol's rule).
    model_id (`str`, *optional*): instead of predictions, a Hub id or local path of a model to score, with
        `dataset` (a Hub id or local path of an ARO dataset, or a `datasets.Dataset`) and `config`.
        Further options: `revision`, `trust_remote_code`, `batch_size`, `device`, `dtype` (`bf16`/`fp16`),
        `num_workers`, `split`. Needs the `aro` package installed.
Returns:
    accuracy (`float`): share of items whose true caption was chosen.
    macro_accuracy (`float` or `None`): mean accuracy over the groups that the protocol keeps.
    headline (`str`): the number the protocol reports first, `macro_accuracy` or `accuracy`.
    per_group (`list` of `dict`): `group`, `accuracy`, `count` and `in_macro` for every group.
    num_items (`int`), num_ties (`int`).
Examples:
    >>> aro_accuracy = evaluate.load("aro_accuracy", "relation")
    >>> results = aro_accuracy.compute(
    ...     predictions=[0, 1, 0, -1], references=[0, 0, 0, 0], groups=["on", "on", "holding", "holding"]
    ... )
    >>> results["accuracy"], results["macro_accuracy"], results["num_ties"]
    (0.5, 0.5, 1)
"""

_CITATION = """
@inproceedings{yuksekgonul2023when,
  title     = {When and why vision-language models behave like bags-of-words, and what to do about it?},
  author    = {Mert Yuksekgonul and Federico Bianchi and Pratyusha Kalluri and Dan Jurafsky and James Zou},
  booktitle = {The Eleventh International Conference on Learning Representations},
  year      = {2023}
}
"""

SCORING_OPTIONS = ("dataset", "revision", "trust_remote_code", "batch_size", "device", "dtype", "num_workers", "split")
INSTALL_HINT = "scoring a model needs the aro package: pip install aro (predictions need only this module)"


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AroAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Groups are a compute argument rather than a feature, so that the Order sets can leave them out.
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
            reference_urls=[
                "https://arxiv.org/abs/2210.01936",
                "https://github.com/mertyg/vision-language-models-are-bows",
            ],
        )

    @property
    def aro_config(self):
        """The ARO config chosen the evaluate way (`evaluate.load(..., "relation")`), or None."""
        return self.config_name if self.config_name in ARO_CONFIGS else None

    def compute(self, *, predictions=None, references=None, **kwargs):
        """As `evaluate.Metric.compute`; with `model_id=...` the model is scored on `dataset` first."""
        kwargs.setdefault("config", self.aro_config)
        if "model_id" in kwargs:
            predictions, references, groups = score_model(
                kwargs.pop("model_id"),
                config=kwargs["config"],
                protocol=kwargs.get("protocol", "paper"),
                **{key: kwargs.pop(key) for key in list(kwargs) if key in SCORING_OPTIONS},
            )
            if groups is not None:
                kwargs["groups"] = groups
        return super().compute(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, groups=None, config=None, protocol="paper"):
        return accuracy_results(predictions, references, groups=groups, config=config, protocol=protocol)


def score_model(
    model_id, dataset, config, split="test", revision=None, trust_remote_code=False, protocol="paper", **runtime_options
):
    """Predictions, references and groups of `model_id` on `config` of `dataset`, scored by the aro library (ties
    predicted by `protocol`'s rule), over the items that have a negative (an option with the true caption's text is
    none)."""
    try:
        from aro.metrics.scoring import Runtime, load_model, load_split, score_items
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    runtime = Runtime(**runtime_options)  # checked before the model loads
    if isinstance(dataset, str):
        if config is None:
            raise ValueError(
                "scoring a model on a dataset by name needs a config: evaluate.load('aro_accuracy', 'relation')"
            )
        dataset = load_split(dataset, config, split)
    model, processor = load_model(model_id, revision=revision, trust_remote_code=trust_remote_code, runtime=runtime)
    scored = score_items(
        model, processor, dataset, group_column=GROUP_COLUMNS.get(config), protocol=protocol, runtime=runtime
    )
    return scored.counted()  # items whose every option equals the true caption cannot be won: left out
