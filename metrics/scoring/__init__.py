"""The ARO scoring library: load any supported model, score ARO items with its family's adapter, report.

Beyond ARO: retrieval with shuffled captions (`retrieval.py`), zero-shot classification (`zero_shot.py`) and their
reports (`downstream.py`, behind `aro retrieval`).

`aro eval`, the NegCLIP trainer and miner, the demo and the `aro_accuracy` evaluate module all score through it;
it never imports from the module's Space folder (`metrics/aro_accuracy/`).

>>> from aro.metrics.scoring import EvalOptions, Runtime, evaluate_model
>>> options = EvalOptions(runtime=Runtime(batch_size=256), protocol="paper")  # doctest: +SKIP
>>> model = "openai/clip-vit-base-patch32"
>>> result = evaluate_model(model, "ORG/aro", output_dir="eval", options=options)  # doctest: +SKIP
>>> result.configs["relation"].macro_accuracy  # doctest: +SKIP

Names are imported on first use, so that the command line's help loads no torch.
"""

import importlib

# Public name -> the module that defines it: one of this package (relative) or of `aro.core`.
_EXPORTS = {
    "SUPPORTED_FAMILIES": "adapters",
    "UnsupportedModel": "adapters",
    "adapter_class": "adapters",
    "Items": "data",
    "candidates_of": "aro.core.contract",
    "load_split": "data",
    "load_model": "loading",
    "load_processor": "loading",
    "ARO_CONFIGS": "aro.core.contract",
    "GROUP_COLUMNS": "aro.core.contract",
    "PROTOCOLS": "aro.core.protocol",
    "accuracy_results": "aro.core.protocol",
    "predict": "aro.core.protocol",
    "Runtime": "runtime",
    "pick_device": "runtime",
    "Scorer": "scorer",
    "ScoreResult": "scorer",
    "score_items": "scorer",
    "EvalOptions": "evaluation",
    "evaluate_model": "evaluation",
    "evaluate_models": "evaluation",
    "EvalResult": "results",
    "ConfigResult": "results",
    "RetrievalSet": "retrieval",
    "RetrievalResult": "retrieval",
    "retrieval_recall": "retrieval",
    "retrieval_results": "retrieval",
    "ZeroShotTask": "zero_shot",
    "ZeroShotResult": "zero_shot",
    "zero_shot_accuracy": "zero_shot",
    "DownstreamResult": "downstream",
    "evaluate_downstream": "downstream",
    "BlindAdapter": "adapters",
    "CallableAdapter": "adapters",
    "load_hook": "adapters",
    "load_blind_model": "loading",
    "evaluate_launched": "launch",
    "results_table": "tables",
    "write_outputs": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(importlib.import_module(module if module.startswith("aro.") else f".{module}", __name__), name)
