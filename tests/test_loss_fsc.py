"""The FSC-CLIP loss: each term against a computation written here from the equations (values and gradients, in
float64, with absent negatives and padded tokens), the total with the published weights, two processes equal to
one, and the token and patch features of a transformers CLIP."""

import math

import pytest
import torch
import torch.multiprocessing
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from aro.models.negclip.loss_fsc import FSCLoss, image_local_features, text_local_features

GAMMA, SMOOTHING = 2.0, 0.02
# Image 1 has no negative at all, image 3 one of two, image 4 the other one.
NEGATIVE_MASK = [[True, True], [False, False], [True, True], [True, False], [False, True], [True, True]]
TOKENS, NEGATIVE_TOKENS, PATCHES = 5, 6, 4


def make_inputs(seed: int = 0) -> dict:
    """Small random float64 inputs for 6 images with 2 negatives each; lengths vary and the start token is masked."""
    generator = torch.Generator().manual_seed(seed)
    n, k, d = len(NEGATIVE_MASK), 2, 6

    def normalised(*shape):
        return F.normalize(torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)

    def token_mask(*shape):
        lengths = torch.randint(2, shape[-1] + 1, shape[:-1], generator=generator)
        mask = torch.arange(shape[-1]) < lengths[..., None]
        mask[..., 0] = False
        return mask

    return dict(
        image_embeds=normalised(n, d),
        text_embeds=normalised(n, d),
        logit_scale=torch.tensor(7.0, dtype=torch.float64),
        negative_text_embeds=normalised(n, k, d),
        negative_mask=torch.tensor(NEGATIVE_MASK),
        patches=torch.randn(n, PATCHES, d, generator=generator, dtype=torch.float64),
        tokens=torch.randn(n, TOKENS, d, generator=generator, dtype=torch.float64),
        token_mask=token_mask(n, TOKENS),
        negative_tokens=torch.randn(n, k, NEGATIVE_TOKENS, d, generator=generator, dtype=torch.float64),
        negative_token_mask=token_mask(n, k, NEGATIVE_TOKENS),
    )


def with_gradients(inputs: dict) -> dict:
    return {
        name: value.clone().requires_grad_(True) if value.is_floating_point() else value
        for name, value in inputs.items()
    }


# The reference: one image, one caption, one token at a time, from the equations of the module's docstring.


def reference_focal(logits: list, gamma: float = GAMMA, smoothing: float = SMOOTHING):
    """sum_j y_j (1 - p_j)^gamma (-log p_j) over the real classes (the first the positive), y smoothed over them."""
    exps = [torch.exp(logit) for logit in logits]
    total = sum(exps)
    loss = 0
    for index, value in enumerate(exps):
        p = value / total
        target = (1 - smoothing if index == 0 else 0) + smoothing / len(logits)
        loss = loss + target * (1 - p) ** gamma * -torch.log(p)
    return loss


def reference_local_score(patches, tokens, mask, scale):
    """logsumexp over the caption's tokens of s * cos(patches grouped by the token's min-max weights, token)."""
    terms = []
    for k in range(len(tokens)):
        if not mask[k]:
            continue
        similarity = [(tokens[k] @ patch).item() for patch in patches.detach()]  # numbers: no gradient
        low, high = min(similarity), max(similarity)
        weights = [(value - low) / (high - low) for value in similarity]
        weights = [weight / sum(weights) for weight in weights]
        grouped = sum(weights[p] * patches[p] for p in range(len(patches)))
        terms.append(scale * (grouped / grouped.norm()) @ (tokens[k] / tokens[k].norm()))
    return torch.log(sum(torch.exp(term) for term in terms))


def reference_contrastive(x: dict):
    """CLIP's loss: cross-entropy of each image over all captions and of each caption over all images."""
    n, scale = len(x["image_embeds"]), x["logit_scale"]
    image_terms, text_terms = [], []
    for i in range(n):
        to_texts = [scale * x["image_embeds"][i] @ x["text_embeds"][j] for j in range(n)]
        to_images = [scale * x["text_embeds"][i] @ x["image_embeds"][j] for j in range(n)]
        image_terms.append(-to_texts[i] + torch.log(sum(torch.exp(logit) for logit in to_texts)))
        text_terms.append(-to_images[i] + torch.log(sum(torch.exp(logit) for logit in to_images)))
    return (sum(image_terms) / n + sum(text_terms) / n) / 2


def reference_hard_negative(x: dict, score) -> torch.Tensor:
    """Mean focal loss over the images with a real negative; `score(i, caption_or_negative)` gives each logit."""
    losses = []
    for i, real in enumerate(x["negative_mask"].tolist()):
        if any(real):
            logits = [score(i, None)] + [score(i, j) for j, present in enumerate(real) if present]
            losses.append(reference_focal(logits))
    return sum(losses) / len(losses)


def reference_global(x: dict):
    def score(i, j):
        text = x["text_embeds"][i] if j is None else x["negative_text_embeds"][i, j]
        return x["logit_scale"] * x["image_embeds"][i] @ text

    return reference_hard_negative(x, score)


def reference_local(x: dict):
    def score(i, j):
        tokens, mask = (
            (x["tokens"][i], x["token_mask"][i])
            if j is None
            else (x["negative_tokens"][i, j], x["negative_token_mask"][i, j])
        )
        return reference_local_score(x["patches"][i], tokens, mask, x["logit_scale"])

    return reference_hard_negative(x, score)


def gradients(loss, inputs: dict) -> dict:
    """The gradient of `loss` for every input that takes one (zeros for those it does not use)."""
    names = [name for name, value in inputs.items() if value.requires_grad]
    found = torch.autograd.grad(loss, [inputs[name] for name in names], allow_unused=True)
    return {
        name: torch.zeros_like(inputs[name]) if found[index] is None else found[index]
        for index, name in enumerate(names)
    }


@pytest.mark.parametrize(
    "term, reference, weights",
    [
        ("contrastive", reference_contrastive, dict(global_weight=1.0, local_weight=1.0)),
        ("global_negative", reference_global, dict(global_weight=1.0)),
        ("local_negative", reference_local, dict(local_weight=1.0)),
    ],
)
def test_each_term_and_its_gradients_equal_the_equations(term, reference, weights):
    inputs = with_gradients(make_inputs())
    output = getattr(FSCLoss(**weights, focal_gamma=GAMMA, label_smoothing=SMOOTHING)(**inputs), term)
    expected = reference(inputs)
    assert torch.allclose(output, expected, rtol=1e-10, atol=0), (output, expected)
    computed, written = gradients(output, inputs), gradients(expected, inputs)
    assert any(gradient.abs().sum() > 0 for gradient in computed.values())
    for name in written:
        assert torch.allclose(computed[name], written[name], rtol=1e-8, atol=1e-12), name


def test_the_total_with_the_published_weights():
    inputs = with_gradients(make_inputs(seed=1))
    output = FSCLoss()(**inputs)  # the defaults: gamma 2, smoothing 0.02, weights 0.5 and 0.2
    expected = reference_contrastive(inputs) + 0.5 * reference_global(inputs) + 0.2 * reference_local(inputs)
    assert torch.allclose(output.total, expected, rtol=1e-10, atol=0)
    computed, written = gradients(output.total, inputs), gradients(expected, inputs)
    for name in written:
        assert torch.allclose(computed[name], written[name], rtol=1e-8, atol=1e-12), name


def test_with_negatives_in_the_contrastive_term_it_is_negclips_loss():
    x = make_inputs(seed=2)
    negatives = ("negative_text_embeds", "negative_mask", "negative_tokens", "negative_token_mask")
    first = {name: x[name][:, :1] for name in negatives}  # the first negative of each image
    n, scale = len(x["image_embeds"]), x["logit_scale"]
    image_terms = []
    for i in range(n):
        columns = [x["text_embeds"][j] for j in range(n)] + [
            x["negative_text_embeds"][j, 0] for j in range(n) if x["negative_mask"][j, 0]
        ]
        logits = [scale * x["image_embeds"][i] @ column for column in columns]
        image_terms.append(-logits[i] + torch.log(sum(torch.exp(logit) for logit in logits)))
    text_terms = [
        -scale * x["text_embeds"][i] @ x["image_embeds"][i]
        + torch.log(sum(torch.exp(scale * x["text_embeds"][i] @ image) for image in x["image_embeds"]))
        for i in range(n)
    ]
    expected = (sum(image_terms) / n + sum(text_terms) / n) / 2
    negclip = FSCLoss(contrastive_negatives=True)
    assert torch.allclose(negclip(**(x | first)).contrastive, expected, rtol=1e-10, atol=0)
    with pytest.raises(ValueError, match="one negative per image"):
        negclip(**x)


def test_one_negative_per_image_without_the_negatives_axis():
    x = make_inputs(seed=3)
    single = {name: x[name][:, 0] for name in ("negative_text_embeds", "negative_mask", "negative_tokens")}
    single["negative_token_mask"] = x["negative_token_mask"][:, 0]
    with_axis = {name: value[:, None] for name, value in single.items()}
    assert torch.equal(FSCLoss()(**(x | single)).total, FSCLoss()(**(x | with_axis)).total)
    # An image whose negatives are all absent adds nothing to the hard-negative terms.
    mask = torch.zeros_like(x["negative_mask"])
    output = FSCLoss()(**(x | {"negative_mask": mask}))
    assert output.global_negative == 0 and output.local_negative == 0 and output.total == output.contrastive


def _one_of_two_processes(rank: int, folder: str) -> None:
    """Rank `rank` of two (gloo, CPU): its half of the rows, the loss and the gradients of its inputs to a file."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    rows = slice(3 * rank, 3 * rank + 3)
    inputs = with_gradients(
        {name: value if value.dim() == 0 else value[rows] for name, value in make_inputs(seed=4).items()}
    )
    output = FSCLoss(rank, 2)(**inputs)
    results = {f"grad.{name}": grad.contiguous() for name, grad in gradients(output.total, inputs).items()}
    for term in ("total", "contrastive", "global_negative", "local_negative"):
        results[term] = getattr(output, term).detach()
    save_file(results, f"{folder}/rank-{rank}.safetensors")
    torch.distributed.destroy_process_group()


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    # The processes hold 2 and 3 images with a negative: each term's mean must be over the global count.
    torch.multiprocessing.spawn(_one_of_two_processes, args=(str(tmp_path),), nprocs=2)
    ranks = [load_file(tmp_path / f"rank-{rank}.safetensors") for rank in range(2)]
    inputs = with_gradients(make_inputs(seed=4))
    output = FSCLoss()(**inputs)
    for term in ("total", "contrastive", "global_negative", "local_negative"):
        # Each process's loss is its share: their mean is the one-process loss, as their gradients' mean is.
        assert math.isclose((ranks[0][term] + ranks[1][term]).item() / 2, getattr(output, term).item(), rel_tol=1e-12)
    whole = gradients(output.total, inputs)
    for name, gradient in whole.items():
        if name == "logit_scale":  # one copy per process, its gradients averaged (as DDP does)
            assert torch.allclose((ranks[0][f"grad.{name}"] + ranks[1][f"grad.{name}"]) / 2, gradient, rtol=1e-10)
            continue
        halves = torch.cat([ranks[0][f"grad.{name}"], ranks[1][f"grad.{name}"]]) / 2
        assert torch.allclose(halves, gradient, rtol=1e-10, atol=1e-14), name


def test_token_and_patch_features_of_a_clip_model(tiny_clip_dir):
    # here, not at the top: the two spawned processes import this file, and transformers adds 10-20 s to each
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    processor = AutoProcessor.from_pretrained(tiny_clip_dir)
    texts = [TINY_CAPTION, TINY_CAPTION.split(" ", 2)[-1]]
    batch = processor(text=texts, return_tensors="pt", padding=True)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        output = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, pixel_values=pixels)
        vision = output.vision_model_output.last_hidden_state
        text = output.text_model_output.last_hidden_state
        patches = image_local_features(model, vision)
        tokens, mask = text_local_features(model, text, batch.attention_mask)

    norm = model.vision_model.post_layernorm
    by_hand = (
        F.layer_norm(vision, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        @ model.visual_projection.weight.t()
    )
    grid = (32 // model.config.vision_config.patch_size) ** 2
    assert patches.shape == (2, grid, model.config.projection_dim) and torch.allclose(patches, by_hand[:, 1:])
    # The class token through the same path is CLIP's image embedding: the patches are in the joint space.
    assert torch.allclose(F.normalize(by_hand[:, 0], dim=-1), output.image_embeds, atol=1e-6)

    assert torch.allclose(tokens, text @ model.text_projection.weight.t())
    end = batch.attention_mask.sum(dim=1) - 1  # the end token, where CLIP pools
    assert torch.allclose(F.normalize(tokens[torch.arange(2), end], dim=-1), output.text_embeds, atol=1e-6)
    expected_mask = batch.attention_mask.bool().clone()
    expected_mask[:, 0] = False
    assert torch.equal(mask, expected_mask) and mask[1].sum() < mask[0].sum()  # padding and start token left out


TINY_CAPTION = "a red circle is left of the blue square"
