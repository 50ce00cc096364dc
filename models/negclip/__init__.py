"""NegCLIP: CLIP fine-tuned with hard negatives (Yuksekgonul et al., ICLR 2023).

A NegCLIP checkpoint is a CLIP checkpoint (`CLIPConfig`, model type "clip") whose `architectures` names
`NegCLIPModel`, so it works wherever CLIP does without this package: `CLIPModel.from_pretrained`,
`pipeline("zero-shot-image-classification")`, `AutoProcessor`, the Hub widget. Importing this package lets `AutoModel`
pick the class by `architectures` (CLIPModel or NegCLIPModel, as transformers does for model types with several
architectures), and marks `NegCLIPModel` for `trust_remote_code` export: `save_pretrained` writes
`auto_map` and copies `modeling_negclip.py` and `loss_negclip.py`, so a checkpoint pushed to the Hub loads as
`NegCLIPModel` with `AutoModel.from_pretrained(repo, trust_remote_code=True)` without this package.
"""

from transformers import AutoModel, CLIPConfig, CLIPModel

from .modeling_negclip import NegCLIPModel, NegCLIPOutput

AutoModel.register(CLIPConfig, (CLIPModel, NegCLIPModel), exist_ok=True)
NegCLIPModel.register_for_auto_class("AutoModel")

__all__ = ["NegCLIPModel", "NegCLIPOutput"]
