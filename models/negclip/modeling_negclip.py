"""NegCLIP (Yuksekgonul et al., ICLR 2023): CLIP fine-tuned with hard negatives so that it minds word order.

`NegCLIPModel` is a `CLIPModel` in every respect a user sees: the same configuration (`CLIPConfig`, model type
"clip"), the same weights, the same call and output (`NegCLIPOutput` extends `CLIPOutput`). A NegCLIP checkpoint
therefore loads in plain `CLIPModel`, `pipeline("zero-shot-image-classification")` and `AutoProcessor` without this
code. What NegCLIP adds: `forward` also takes one hard-negative caption per image and, when asked for the loss
(`return_loss=True`), returns the NegCLIP loss (see `loss_negclip.py`) instead of CLIP's.

This file and `loss_negclip.py` are what a checkpoint carries for `trust_remote_code`: they import nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import CLIPModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPOutput
from transformers.utils import can_return_tuple

from .loss_negclip import NegCLIPLoss


@dataclass
class NegCLIPOutput(CLIPOutput):
    """
    A `CLIPOutput` (loss, logits_per_image, logits_per_text, text_embeds, image_embeds, text_model_output,
    vision_model_output) whose loss is the NegCLIP loss. With hard negatives, `logits_per_image` has a column per
    caption and then one per hard negative (`logits_per_text` is its transpose, the negatives' rows last).

    negative_text_embeds (`torch.FloatTensor` of shape `(num_negatives, projection_dim)`, given hard negatives):
        normalised projected features of the hard-negative captions.
    negative_text_model_output (`BaseModelOutputWithPooling`, given hard negatives):
        the text tower's output for the hard-negative captions (their token features, for FSC-CLIP's local loss).
    """

    negative_text_embeds: torch.FloatTensor | None = None
    negative_text_model_output: BaseModelOutputWithPooling | None = None


class NegCLIPModel(CLIPModel):
    r"""CLIP with the NegCLIP training objective.

    Used as CLIP (the standard call, no loss unless asked):

    ```python
    >>> from aro.models.negclip import NegCLIPModel  # registers it with AutoModel  # doctest: +SKIP
    >>> from transformers import AutoModel, AutoProcessor
    >>> model = AutoModel.from_pretrained("negclip-run")  # doctest: +SKIP
    >>> processor = AutoProcessor.from_pretrained("negclip-run")  # doctest: +SKIP
    >>> texts = ["a dog on a couch", "a couch on a dog"]
    >>> inputs = processor(text=texts, images=image, return_tensors="pt", padding=True)  # doctest: +SKIP
    >>> model(**inputs).logits_per_image  # doctest: +SKIP
    ```

    Trained as NegCLIP (rows pair up: image i, caption i, hard negative i):

    ```python
    >>> model = NegCLIPModel.from_pretrained("openai/clip-vit-base-patch32")  # doctest: +SKIP
    >>> batch = processor(images=images, text=captions + negatives, padding=True, return_tensors="pt")  # doctest: +SKIP
    >>> n = len(images)  # doctest: +SKIP
    >>> model(pixel_values=batch.pixel_values, input_ids=batch.input_ids[:n], attention_mask=batch.attention_mask[:n],
    ...       negative_input_ids=batch.input_ids[n:], negative_attention_mask=batch.attention_mask[n:],
    ...       return_loss=True).loss  # doctest: +SKIP
    ```"""

    def __init__(self, config):
        super().__init__(config)
        self.negclip_loss = NegCLIPLoss()

    @classmethod
    def from_clip(cls, clip_model_or_path, **kwargs) -> NegCLIPModel:
        """A NegCLIP with the weights of any CLIP checkpoint: a Hub id or local path, or a loaded `CLIPModel`."""
        if not isinstance(clip_model_or_path, CLIPModel):
            return cls.from_pretrained(clip_model_or_path, **kwargs)
        model = cls(clip_model_or_path.config)
        model.load_state_dict(clip_model_or_path.state_dict())
        return model

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        negative_input_ids: torch.LongTensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        negative_mask: torch.BoolTensor | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> NegCLIPOutput:
        """CLIP's forward; images and captions pair up row by row, `negative_input_ids` holds a hard negative per image.

        `negative_mask` (bool, one per image) is False where an image's caption has no negative: the loss leaves
        that placeholder out. Keyword arguments (`output_attentions`, `output_hidden_states`, `return_dict`, ...) go
        to CLIP unchanged.
        """
        kwargs["return_dict"] = True  # `can_return_tuple` above turns our own output into a tuple when asked
        clip = super().forward(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            return_loss=False,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **kwargs,
        )
        logit_scale = self.logit_scale.exp()
        logits_per_image = clip.logits_per_image
        negative_text_embeds = negative_text_output = None
        if negative_input_ids is not None:
            negative_text_output = self.get_text_features(
                input_ids=negative_input_ids, attention_mask=negative_attention_mask
            )
            negative_text_embeds = F.normalize(negative_text_output.pooler_output, dim=-1)
            negative_logits = logit_scale * clip.image_embeds @ negative_text_embeds.t().to(clip.image_embeds.device)
            logits_per_image = torch.cat([logits_per_image, negative_logits], dim=1)
        loss = (
            self.negclip_loss(clip.image_embeds, clip.text_embeds, logit_scale, negative_text_embeds, negative_mask)
            if return_loss
            else None
        )
        return NegCLIPOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            text_embeds=clip.text_embeds,
            image_embeds=clip.image_embeds,
            text_model_output=clip.text_model_output,
            vision_model_output=clip.vision_model_output,
            negative_text_embeds=negative_text_embeds,
            negative_text_model_output=negative_text_output,
        )
