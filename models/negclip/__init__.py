"""NegCLIP: CLIP fine-tuned with hard negatives (Yuksekgonul et al., ICLR 2023).

A NegCLIP checkpoint is a CLIP checkpoint (`CLIPConfig`, model type "clip") whose `architectures` names
`NegCLIPModel`, so it works wherever CLIP does without this package: `CLIPModel.from_pretrained`,
`pipeline("zero-shot-image-classification")`, `AutoProcessor`, the Hub widget. Importing `NegCLIPModel` lets `AutoModel`
pick the class by `architectures` (CLIPModel or NegCLIPModel, as transformers does for model types with several
architectures), and marks `NegCLIPModel` for `trust_remote_code` export: `save_pretrained` writes `auto_map` and
copies `modeling_negclip.py` and `loss_negclip.py`, so a checkpoint pushed to the Hub loads as `NegCLIPModel` with
`AutoModel.from_pretrained(repo, trust_remote_code=True)` without this package.

The classes load (and register) on first use, `from aro.models.negclip import NegCLIPModel`, so that the command
line (`aro train --help`) and the options (`aro.models.negclip.arguments`) import neither torch nor transformers.
"""

_MODELING = ("NegCLIPModel", "NegCLIPOutput")


def __getattr__(name: str):
    if name not in _MODELING:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from transformers import (
        AutoModel,
        CLIPConfig,
        CLIPModel,
    )  # here: on first use, so `aro train --help` loads no torch

    from . import modeling_negclip

    AutoModel.register(CLIPConfig, (CLIPModel, modeling_negclip.NegCLIPModel), exist_ok=True)
    modeling_negclip.NegCLIPModel.register_for_auto_class("AutoModel")
    globals().update({attribute: getattr(modeling_negclip, attribute) for attribute in _MODELING})  # registered once
    return globals()[name]


__all__ = list(_MODELING)
