"""NegCLIP (Yuksekgonul et al., ICLR 2023): CLIP fine-tuned with hard negatives so that it minds word order.

`NegCLIPModel` is a `CLIPModel`: the same towers and weights, so a NegCLIP checkpoint also loads in plain
`CLIPModel` with identical features. Its `forward` additionally takes the hard-negative captions and returns
the NegCLIP loss (see `loss_negclip.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import CLIPModel
from transformers.utils import ModelOutput

from .configuration_negclip import NegCLIPConfig
from .loss_negclip import NegCLIPLoss


@dataclass
class NegCLIPOutput(ModelOutput):
    """
    loss (`torch.FloatTensor` of shape `(1,)`, returned when `return_loss=True`): the NegCLIP loss.
    logits_per_image (`torch.FloatTensor` of shape `(num_images, num_texts + num_negative_texts)`): scaled
        similarities of every image to every caption, the hard negatives last.
    image_embeds, text_embeds, negative_text_embeds (`torch.FloatTensor`): normalised projected features.
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    negative_text_embeds: torch.FloatTensor | None = None


class NegCLIPModel(CLIPModel):
    r"""CLIP with the NegCLIP training objective.

    Example:

    ```python
    >>> from aro.models.negclip import NegCLIPModel

    >>> model = NegCLIPModel.from_clip("openai/clip-vit-base-patch32")  # doctest: +SKIP
    >>> batch = processor(images=images + neighbour_images, text=captions + negatives, padding=True, return_tensors="pt")  # doctest: +SKIP
    >>> n = len(images) * 2  # doctest: +SKIP
    >>> model(pixel_values=batch.pixel_values, input_ids=batch.input_ids[:n], attention_mask=batch.attention_mask[:n],
    ...       negative_input_ids=batch.input_ids[n:], negative_attention_mask=batch.attention_mask[n:]).loss  # doctest: +SKIP
    ```"""

    config_class = NegCLIPConfig

    def __init__(self, config: NegCLIPConfig):
        super().__init__(config)
        self.negclip_loss = NegCLIPLoss()

    @classmethod
    def from_clip(cls, clip_model_or_path, **kwargs) -> "NegCLIPModel":
        """A NegCLIP with the weights of any CLIP checkpoint (a Hub id, a local path or a loaded `CLIPModel`)."""
        clip = clip_model_or_path if isinstance(clip_model_or_path, CLIPModel) else CLIPModel.from_pretrained(clip_model_or_path, **kwargs)
        model = cls(NegCLIPConfig(**clip.config.to_dict()))
        model.load_state_dict(clip.state_dict())
        return model

    def _embed_texts(self, input_ids, attention_mask) -> torch.Tensor:
        return F.normalize(self.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output, dim=-1)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        negative_input_ids: torch.LongTensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        return_loss: bool = True,
        **kwargs,
    ) -> NegCLIPOutput:
        """Images and their captions pair up row by row; `negative_input_ids` holds one hard negative per image."""
        image_embeds = F.normalize(self.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)
        text_embeds = self._embed_texts(input_ids, attention_mask)
        negative_text_embeds = None
        candidates = text_embeds
        if negative_input_ids is not None:
            negative_text_embeds = self._embed_texts(negative_input_ids, negative_attention_mask)
            candidates = torch.cat([text_embeds, negative_text_embeds])
        logit_scale = self.logit_scale.exp()
        loss = self.negclip_loss(image_embeds, text_embeds, logit_scale, negative_text_embeds) if return_loss else None
        return NegCLIPOutput(
            loss=loss,
            logits_per_image=logit_scale * image_embeds @ candidates.t(),
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            negative_text_embeds=negative_text_embeds,
        )
