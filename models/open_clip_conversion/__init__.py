"""open_clip -> transformers: ViT CLIP checkpoints (OpenCLIP/LAION models, the released NegCLIP) as `CLIPModel` folders.

`configs.py` reads open_clip model configs (carried names or JSON), `weights.py` reads checkpoints without executing
pickled code and renames their weights, `convert.py` builds, checks and writes the folder, `cli.py` is `aro convert`.
"""

from .configs import OPEN_CLIP_MODELS, OpenCLIPConfig
from .convert import FeatureCheck, build_model, convert_open_clip
from .weights import read_checkpoint, to_clip_state_dict

__all__ = ["OPEN_CLIP_MODELS", "FeatureCheck", "OpenCLIPConfig", "build_model", "convert_open_clip", "read_checkpoint", "to_clip_state_dict"]
