"""NegCLIP: CLIP fine-tuned with hard negatives (Yuksekgonul et al., ICLR 2023).

Importing this package registers `NegCLIPConfig` and `NegCLIPModel` with `AutoConfig` and `AutoModel`, and marks
them for `trust_remote_code` export: `save_pretrained` writes `auto_map` and copies the code files, so a checkpoint
pushed to the Hub loads with `AutoModel.from_pretrained(repo, trust_remote_code=True)` without this package.
"""

from transformers import AutoConfig, AutoModel

from .configuration_negclip import NegCLIPConfig
from .modeling_negclip import NegCLIPModel, NegCLIPOutput

AutoConfig.register("negclip", NegCLIPConfig)
AutoModel.register(NegCLIPConfig, NegCLIPModel)
NegCLIPConfig.register_for_auto_class()
NegCLIPModel.register_for_auto_class("AutoModel")

__all__ = ["NegCLIPConfig", "NegCLIPModel", "NegCLIPOutput"]
