"""The FSC-CLIP loss (Oh et al., 2024, "Preserving Multi-Modal Capabilities of Pre-trained VLMs for Improving
Vision-Linguistic Compositionality", EMNLP 2024; code: github.com/ytaek-oh/fsc-clip, on OpenCLIP).

FSC-CLIP keeps the contrastive loss away from the hard negatives and adds two separate hard-negative terms:

    loss = contrastive + global_weight * global_negative + local_weight * local_negative

- `contrastive`: CLIP's loss over the batch's images and their captions, gathered over processes (`NegCLIPLoss`
  without negatives; the authors' `Global_HNLoss` calls its `ClipLoss` with the positive captions only). With
  `contrastive_negatives=True` (one negative per image) it is NegCLIP's loss instead, as issue 25 words it: the
  negatives are also columns of every image's softmax.
- `global_negative`: per image i, a classification of its caption among itself and its K_i real hard negatives,
  scored by the global features: z_i = s * [cos(v_i, t_i), cos(v_i, n_i1), ..., cos(v_i, n_iK)] (s the logit scale).
- `local_negative`: the same classification scored by token-patch alignment (the authors' `Local_HNLoss`): for a
  caption with projected token features w_k and the image's projected patch features u_p,
      a_kp = <w_k, u_p> (no gradient),   a_kp <- (a_kp - min_p a_kp) / (max_p a_kp - min_p a_kp),
      a_kp <- a_kp / sum_p a_kp,   u_k = normalise(sum_p a_kp u_p),
      score = logsumexp over the caption's tokens k of s * cos(u_k, w_k);
  the tokens are every real token but the start token (the authors' mask: `text > 0`, position 0 cleared).

Both hard-negative terms are a focal loss with label smoothing over the K_i + 1 classes (the authors'
`_focal_loss_with_nsr`, their "selective calibrated regularization"): with p = softmax(z) and smoothing e,

    l_i = sum_j y_ij (1 - p_ij)^gamma (-log p_ij),   y_i0 = 1 - e + e / (K_i + 1),   y_ij = e / (K_i + 1) (j >= 1),

averaged over the images with at least one real negative. Defaults are the published ViT-B/32 COCO settings (the
repository's README): focal gamma 2, smoothing 0.02, global weight 0.5, local weight 0.2.

Differences from the authors' code, each deliberate:
- An absent negative (`negative_mask` False) is left out of the softmax and the targets; theirs scores it as an
  all-zero feature (logit 0, target 0), which stays in the softmax's denominator. With one negative per image the
  two agree (an image without its negative is dropped from both terms).
- The mean of a hard-negative term is over the *global* batch's images with a negative (a count summed over
  processes), so that two processes equal one; theirs averages each process's rows on its own.
- The contrastive features are gathered with autograd, as `NegCLIPLoss` (open_clip's `gather_with_grad`); theirs
  gathers without it and puts the local features back in place.
- Min-max normalisation of a token whose similarity to every patch is the same gives it uniform weights (theirs
  divides by zero); their options `--sim-normalizer softmax` and `--sim-sparsify` (off in every published run) are
  not implemented.

Use (features from `image_local_features` / `text_local_features` below; a trainer passes its rank and world size):

>>> loss = FSCLoss(rank, world_size)(image_embeds, text_embeds, logit_scale, negative_embeds, negative_mask,
...     patches=patches, tokens=tokens, token_mask=token_mask,
...     negative_tokens=negative_tokens, negative_token_mask=negative_token_mask)  # doctest: +SKIP
>>> loss.total.backward(); loss.global_negative  # each weighted term, to log  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed
import torch.nn.functional as F
from torch import nn

from .loss_negclip import NegCLIPLoss

if TYPE_CHECKING:  # annotations only: the loss itself needs no transformers
    from transformers import CLIPModel

GLOBAL_WEIGHT = 0.5  # --neg-loss-weight of the published ViT-B/32 COCO run
LOCAL_WEIGHT = 0.2  # --local-neg-weight
FOCAL_GAMMA = 2.0  # --focal-gamma
LABEL_SMOOTHING = 0.02  # --neg-label-smoothing


def image_local_features(model: CLIPModel, vision_hidden_state: torch.Tensor) -> torch.Tensor:
    """Patch features [N, P, D] in the joint space: the vision tower's last hidden states without the class token,
    through its final layer norm and projection (as the class token becomes `image_embeds`), not normalised.

    `vision_hidden_state` is `vision_model_output.last_hidden_state` of a CLIP call (or of `get_image_features`).
    """
    return model.visual_projection(model.vision_model.post_layernorm(vision_hidden_state[:, 1:]))


def text_local_features(
    model: CLIPModel, text_hidden_state: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token features [N, T, D] in the joint space (the text tower's last hidden states, already layer-normed,
    through its projection; not normalised) and the mask [N, T] of the tokens the local loss scores: every real
    token but the start token.

    `text_hidden_state` is `text_model_output.last_hidden_state` of a CLIP call (or of `get_text_features`).
    """
    token_mask = attention_mask.bool().clone()
    token_mask[:, 0] = False
    return model.text_projection(text_hidden_state), token_mask


@dataclass
class FSCLossOutput:
    """The loss and its weighted terms (`total` = `contrastive` + `global_negative` + `local_negative`)."""

    total: torch.Tensor
    contrastive: torch.Tensor
    global_negative: torch.Tensor
    local_negative: torch.Tensor


class FSCLoss(nn.Module):
    """FSC-CLIP's loss over images, their captions and their hard-negative captions, global and token-patch.

    `rank` and `world_size` describe the processes sharing the global batch, as for `NegCLIPLoss`; with more than
    one, every process must call it (the contrastive features are gathered, the hard-negative counts summed).
    """

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        global_weight: float = GLOBAL_WEIGHT,
        local_weight: float = LOCAL_WEIGHT,
        focal_gamma: float = FOCAL_GAMMA,
        label_smoothing: float = LABEL_SMOOTHING,
        contrastive_negatives: bool = False,
    ):
        super().__init__()
        self.rank, self.world_size = rank, world_size
        self.global_weight, self.local_weight = global_weight, local_weight
        self.focal_gamma, self.label_smoothing = focal_gamma, label_smoothing
        self.contrastive_negatives = contrastive_negatives
        self.contrastive = NegCLIPLoss(rank, world_size)

    def forward(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        logit_scale: torch.Tensor,
        negative_text_embeds: torch.Tensor,
        negative_mask: torch.Tensor | None = None,
        *,
        patches: torch.Tensor,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
        negative_tokens: torch.Tensor,
        negative_token_mask: torch.Tensor,
    ) -> FSCLossOutput:
        """Rows pair up: image i, caption i, its negatives. Shapes, with N images, K negatives each, D dimensions:

        - `image_embeds`, `text_embeds` [N, D]: L2-normalised global features; `logit_scale` already exponentiated;
        - `negative_text_embeds` [N, K, D] (normalised), `negative_mask` [N, K] bool (None: all real);
        - `patches` [N, P, D], `tokens` [N, T, D] with `token_mask` [N, T], `negative_tokens` [N, K, T', D] with
          `negative_token_mask` [N, K, T']: the local features (`image_local_features`, `text_local_features`).

        One negative per image may be given without the K axis ([N, D], [N], [N, T', D], [N, T']).
        """
        if negative_text_embeds.dim() == 2:  # one negative per image: add the K axis
            negative_text_embeds, negative_tokens = negative_text_embeds[:, None], negative_tokens[:, None]
            negative_token_mask = negative_token_mask[:, None]
            negative_mask = negative_mask[:, None] if negative_mask is not None else None
        if negative_mask is None:
            negative_mask = torch.ones(negative_text_embeds.shape[:2], dtype=torch.bool, device=image_embeds.device)
        negative_mask = negative_mask.bool()

        if self.contrastive_negatives and negative_text_embeds.shape[1] != 1:
            raise ValueError("contrastive_negatives takes one negative per image, as NegCLIP's loss does")
        contrastive = self.contrastive(
            image_embeds,
            text_embeds,
            logit_scale,
            *((negative_text_embeds[:, 0], negative_mask[:, 0]) if self.contrastive_negatives else (None, None)),
        )
        # Column 0 is the caption, then its negatives.
        candidates = torch.cat([text_embeds[:, None], negative_text_embeds], dim=1)
        global_logits = logit_scale * torch.einsum("nd,ncd->nc", image_embeds, candidates)
        candidate_tokens, candidate_mask = _candidate_tokens(tokens, token_mask, negative_tokens, negative_token_mask)
        local_logits = local_scores(patches, candidate_tokens, candidate_mask, logit_scale)
        valid = torch.cat([torch.ones_like(negative_mask[:, :1]), negative_mask], dim=1)
        global_negative = self._hard_negative_loss(global_logits, valid)
        local_negative = self._hard_negative_loss(local_logits, valid)
        global_negative, local_negative = self.global_weight * global_negative, self.local_weight * local_negative
        return FSCLossOutput(
            total=contrastive + global_negative + local_negative,
            contrastive=contrastive,
            global_negative=global_negative,
            local_negative=local_negative,
        )

    def _hard_negative_loss(self, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The mean focal, smoothed loss of the rows with a real negative, over the global batch's such rows."""
        rows = valid[:, 1:].any(dim=1)
        per_row = focal_smoothed_loss(logits[rows], valid[rows], self.focal_gamma, self.label_smoothing)
        count = rows.sum().to(logits.dtype)
        if self.world_size > 1:
            torch.distributed.all_reduce(count)  # no gradient needed: the count is a constant of the step
        # Each process's share, scaled so that the mean over processes is the global mean (as the gradients are).
        return per_row.sum() * self.world_size / count.clamp_min(1)


def focal_smoothed_loss(logits: torch.Tensor, valid: torch.Tensor, gamma: float, smoothing: float) -> torch.Tensor:
    """Per row of `logits` [R, C] (column 0 the positive; `valid` [R, C] the real columns), the focal loss with
    label smoothing spread over the row's real classes: sum_j y_j (1 - p_j)^gamma (-log p_j)."""
    log_p = logits.masked_fill(~valid, float("-inf")).log_softmax(dim=1)
    log_p = log_p.masked_fill(~valid, 0.0)  # absent classes: no term, and no 0 * inf in the gradient
    classes = valid.sum(dim=1, keepdim=True).to(logits.dtype)
    targets = torch.where(valid, smoothing / classes, 0.0)
    targets[:, 0] += 1 - smoothing
    return (targets * (1 - log_p.exp()).pow(gamma) * -log_p).sum(dim=1)


def local_scores(
    patches: torch.Tensor, tokens: torch.Tensor, token_mask: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """The token-patch alignment logits [N, C] of each image's patches [N, P, D] with each of its C candidate
    captions' tokens [N, C, T, D] (`token_mask` [N, C, T]): see the module's docstring.

    A candidate without any token (an absent negative's placeholder) is scored over all its positions instead, so
    that its logit, left out later, stays finite (a logsumexp over nothing is -inf, and its gradient NaN)."""
    weights = torch.einsum("nctd,npd->nctp", tokens, patches).detach()
    low, high = weights.amin(dim=-1, keepdim=True), weights.amax(dim=-1, keepdim=True)
    spread = high - low
    weights = torch.where(spread > 0, (weights - low) / spread.where(spread > 0, 1.0), 1.0)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    grouped = F.normalize(torch.einsum("nctp,npd->nctd", weights, patches), dim=-1)
    alignment = logit_scale * (grouped * F.normalize(tokens, dim=-1)).sum(dim=-1)
    scored = token_mask | ~token_mask.any(dim=-1, keepdim=True)
    return alignment.masked_fill(~scored, float("-inf")).logsumexp(dim=-1)


def _candidate_tokens(
    tokens: torch.Tensor, token_mask: torch.Tensor, negative_tokens: torch.Tensor, negative_token_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The caption's and its negatives' tokens as one [N, 1 + K, T, D] tensor (padded to the longer length)."""
    length = max(tokens.shape[1], negative_tokens.shape[2])
    tokens = F.pad(tokens, (0, 0, 0, length - tokens.shape[1]))
    negative_tokens = F.pad(negative_tokens, (0, 0, 0, length - negative_tokens.shape[2]))
    token_mask = F.pad(token_mask, (0, length - token_mask.shape[1]))
    negative_token_mask = F.pad(negative_token_mask, (0, length - negative_token_mask.shape[2]))
    return (
        torch.cat([tokens[:, None], negative_tokens], dim=1),
        torch.cat([token_mask[:, None], negative_token_mask.bool()], dim=1),
    )
