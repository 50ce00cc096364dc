"""open_clip -> transformers: ViT CLIP checkpoints (OpenCLIP/LAION models, the released NegCLIP) as `CLIPModel` folders.

`configs.py` reads open_clip model configs (carried names or JSON), `weights.py` reads checkpoints without executing
pickled code and renames their weights, `convert.py` builds, checks and writes the folder, `cli.py` is `aro convert`.
"""

import importlib

# Public name -> the module that defines it; imported on first use, so `aro convert --help` loads no torch.
_EXPORTS = {
    "OPEN_CLIP_MODELS": "configs",
    "OpenCLIPConfig": "configs",
    "FeatureCheck": "convert",
    "build_model": "convert",
    "convert_open_clip": "convert",
    "read_checkpoint": "weights",
    "to_clip_state_dict": "weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
