"""The ARO scoring library: load any supported model, score ARO items with its family's adapter, report.

`aro eval`, the NegCLIP trainer and miner, the demo and the `aro_accuracy` evaluate module all score through it;
it never imports from the module's Space folder (`metrics/aro_accuracy/`).

>>> from aro.metrics.scoring import evaluate_model
>>> results = evaluate_model("openai/clip-vit-base-patch32", "ORG/aro", "all", output_dir="eval")  # doctest: +SKIP
"""

from .adapters import SUPPORTED_FAMILIES, UnsupportedModel, adapter_class
from .data import Items, candidates_of, load_split, predict
from .loading import load_model, load_processor
from .protocol import CONFIGS, GROUP_COLUMNS, accuracy_results
from .runtime import Runtime, pick_device
from .scorer import Scorer, ScoreResult, score_items
from .evaluation import evaluate_model, retrieval_recall
from .report import results_table, write_outputs

__all__ = [
    "CONFIGS", "GROUP_COLUMNS", "SUPPORTED_FAMILIES", "Items", "Runtime", "ScoreResult", "Scorer", "UnsupportedModel",
    "accuracy_results", "adapter_class", "candidates_of", "evaluate_model", "retrieval_recall", "results_table", "write_outputs", "load_model", "load_processor", "load_split", "pick_device",
    "predict", "score_items",
]
