"""The NegCLIP loss, with the feature gathering it needs across processes.

A batch holds 2B images (B images and their B nearest neighbours) and 4B texts: the 2B true captions, then one
hard negative caption per image (its caption with words swapped). Image-to-text cross-entropy runs over all 4B
texts, so each image must prefer its caption to every other caption *and* to its own swapped version;
text-to-image cross-entropy runs over the 2B true captions only (a swapped caption has no image to retrieve).
Without negatives (and without neighbours) this is exactly CLIP's loss.

A caption with no possible word swap has no negative: `negative_mask` is False in its slot, and that column is
left out of every image's softmax, exactly as if the slot were not in the batch. (Giving such a caption itself as
its negative would make the true caption compete with an identical copy.)

With several processes (`NegCLIPLoss(rank, world_size)`, as open_clip's `ClipLoss`) the features of every process
are gathered with autograd, so each process's image also competes with every other process's texts; each process
computes the loss of its own rows (labels offset by its rank), and the gradients add up to those of the loss over
the whole global batch. The rank and world size are given by the training driver, never looked up: a loss built
without them (`NegCLIPLoss()`, as `NegCLIPModel` builds its own) runs no collective, so evaluating on one process
of many cannot hang.
"""

from __future__ import annotations

import torch
import torch.distributed.nn
import torch.nn.functional as F
from torch import nn


def gather_with_grad(features: torch.Tensor, world_size: int) -> torch.Tensor:
    """All processes' `features` concatenated in rank order (autograd flows back); every process must call it."""
    if world_size == 1:
        return features
    return torch.cat(torch.distributed.nn.all_gather(features), dim=0)


class NegCLIPLoss(nn.Module):
    """Contrastive loss over images, their captions and optional hard-negative captions.

    `rank` and `world_size` describe the processes sharing the global batch (accelerate's `process_index` and
    `num_processes`); the defaults are one process.
    """

    def __init__(self, rank: int = 0, world_size: int = 1):
        super().__init__()
        self.rank, self.world_size = rank, world_size

    def forward(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        logit_scale: torch.Tensor,
        negative_text_embeds: torch.Tensor | None = None,
        negative_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`image_embeds` [N, D] and `text_embeds` [N, D] pair up row by row; `negative_text_embeds` [N, D] or None.

        All embeddings are L2-normalised; `logit_scale` is the multiplier (already exponentiated). `negative_mask`
        [N] (bool) marks the real negatives; None means all are real.
        """
        all_images = gather_with_grad(image_embeds, self.world_size)
        all_texts = gather_with_grad(text_embeds, self.world_size)
        candidates = all_texts
        if negative_text_embeds is not None:
            candidates = torch.cat([all_texts, gather_with_grad(negative_text_embeds, self.world_size)])
        logits_per_image = logit_scale * image_embeds @ candidates.t()
        if negative_text_embeds is not None and negative_mask is not None:
            real_negatives = gather_with_grad(negative_mask.to(image_embeds.dtype), self.world_size)
            kept = torch.cat([torch.ones_like(real_negatives), real_negatives]) > 0
            logits_per_image = logits_per_image.masked_fill(~kept, float("-inf"))
        labels = torch.arange(len(image_embeds), device=image_embeds.device) + self.rank * len(image_embeds)
        image_to_text = F.cross_entropy(logits_per_image, labels)
        text_to_image = F.cross_entropy(logit_scale * text_embeds @ all_images.t(), labels)
        return (image_to_text + text_to_image) / 2
