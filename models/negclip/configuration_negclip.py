"""NegCLIP configuration: a `CLIPConfig` under its own model type, so `AutoModel` maps it to `NegCLIPModel`."""

from transformers import CLIPConfig


class NegCLIPConfig(CLIPConfig):
    r"""Configuration of a [`NegCLIPModel`]: exactly a CLIP configuration (towers, projection, logit scale).

    NegCLIP changes how CLIP is trained, not what it is, so every CLIP argument applies unchanged.

    Example:

    ```python
    >>> from aro.models.negclip import NegCLIPConfig, NegCLIPModel

    >>> config = NegCLIPConfig()  # ViT-B/32-sized, as openai/clip-vit-base-patch32
    >>> model = NegCLIPModel(config)
    ```"""

    model_type = "negclip"
