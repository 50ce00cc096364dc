"""LoRA through peft: after training, the merged model computes what the adapter model computes; its saved folder is
a plain CLIP folder; a checkpoint's adapters resume training bit for bit."""

import pytest
import torch
from safetensors import safe_open
from transformers import CLIPModel

from aro.core.errors import InvalidInput
from aro.models.negclip import NegCLIPModel
from aro.models.negclip.checkpointing import _read_state, _write_state
from aro.models.negclip.lora import LoraOptions, add_lora, has_lora, load_lora, merged_model, save_lora
from aro.models.negclip.recipe import optimizer_groups


def batch(seed: int) -> dict:
    """Four images, their captions and one hard negative each, as token ids of the tiny vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 24, (8, 5), generator=generator)
    ids[:, 0], ids[:, -1] = 2, 3  # start and end tokens
    return dict(
        pixel_values=torch.randn(4, 3, 32, 32, generator=generator),
        input_ids=ids[:4],
        negative_input_ids=ids[4:],
    )


def train_steps(model, optimizer, seeds) -> list[torch.Tensor]:
    losses = []
    for seed in seeds:
        loss = model(**batch(seed), return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return losses


def adam(model) -> torch.optim.AdamW:
    return torch.optim.AdamW(optimizer_groups(model, 0.1), lr=3e-2)


@pytest.fixture
def trained(tiny_clip_dir):
    """A NegCLIP with rank-4 adapters (alpha 8) on its attention, after three optimizer steps."""
    model = add_lora(NegCLIPModel.from_pretrained(tiny_clip_dir), LoraOptions(rank=4, alpha=8.0))
    train_steps(model, adam(model), seeds=range(3))
    return model.eval()


def outputs(model, seed: int = 9) -> dict:
    inputs = batch(seed)
    with torch.no_grad():
        output = model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"])
    return {name: output[name] for name in ("image_embeds", "text_embeds", "logits_per_image")}


def test_only_the_adapters_train(tiny_clip_dir):
    model = add_lora(NegCLIPModel.from_pretrained(tiny_clip_dir), LoraOptions())
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    layers = 2 * model.config.text_config.num_hidden_layers  # both towers have as many in the tiny model
    assert len(trainable) == layers * 4 * 2 and all(".lora_A." in name or ".lora_B." in name for name in trainable)
    assert not model.logit_scale.requires_grad


def test_the_merged_model_computes_what_the_adapters_compute(trained, tiny_clip_dir):
    lora_b = [parameter for name, parameter in trained.named_parameters() if ".lora_B." in name]
    assert all(parameter.abs().max() > 1e-3 for parameter in lora_b)  # the adapters have learned something
    merged = merged_model(trained)
    assert not has_lora(merged) and has_lora(trained) and type(merged) is NegCLIPModel
    start = outputs(NegCLIPModel.from_pretrained(tiny_clip_dir).eval())
    expected, computed = outputs(trained), outputs(merged)
    for name in expected:
        assert not torch.allclose(expected[name], start[name], atol=1e-3), name  # the adapters matter
        assert torch.allclose(computed[name], expected[name], atol=1e-5), name
    assert torch.equal(outputs(trained)["logits_per_image"], expected["logits_per_image"])  # still the adapter model


def test_the_saved_folder_is_a_plain_clip_folder(trained, tiny_clip_dir, tmp_path):
    merged_model(trained).save_pretrained(tmp_path / "model")
    with safe_open(tmp_path / "model" / "model.safetensors", "pt") as saved:
        names = set(saved.keys())
    assert names == set(CLIPModel.from_pretrained(tiny_clip_dir).state_dict())  # no adapter, no base_layer
    loaded, info = CLIPModel.from_pretrained(tmp_path / "model", output_loading_info=True)
    assert type(loaded) is CLIPModel and not any(info.values()), info
    expected, computed = outputs(trained), outputs(loaded.eval())
    for name in expected:
        assert torch.allclose(computed[name], expected[name], atol=1e-5), name


def test_resuming_with_lora_continues_bit_for_bit(tiny_clip_dir, tmp_path):
    model = add_lora(NegCLIPModel.from_pretrained(tiny_clip_dir), LoraOptions())
    optimizer = adam(model)
    train_steps(model, optimizer, seeds=range(2))
    # A checkpoint as aro writes one: merged weights, the adapters beside them, the optimizer in safetensors + JSON.
    checkpoint = tmp_path / "step-2"
    merged_model(model).save_pretrained(checkpoint)
    save_lora(model, checkpoint)
    _write_state(checkpoint, "optimizer", optimizer.state_dict())
    expected = train_steps(model, optimizer, seeds=[2, 3])

    resumed = load_lora(NegCLIPModel.from_pretrained(checkpoint), checkpoint)
    resumed_optimizer = adam(resumed)
    resumed_optimizer.load_state_dict(_read_state(checkpoint, "optimizer"))
    assert [loss.item() for loss in train_steps(resumed, resumed_optimizer, seeds=[2, 3])] == [
        loss.item() for loss in expected
    ]
    state, resumed_state = model.state_dict(), resumed.state_dict()
    assert state.keys() == resumed_state.keys()
    assert all(torch.equal(state[name], resumed_state[name]) for name in state)  # the base weights too, not merged


def test_options_and_adapters_that_do_not_fit_are_refused(tiny_clip_dir, trained, tmp_path):
    model = NegCLIPModel.from_pretrained(tiny_clip_dir)
    with pytest.raises(InvalidInput, match="--lora-rank must be at least 1, not 0"):
        add_lora(model, LoraOptions(rank=0))
    with pytest.raises(InvalidInput, match="--lora-targets query: .*q_proj k_proj"):
        add_lora(model, LoraOptions(targets=("query",)))
    save_lora(trained, tmp_path)
    other = add_lora(NegCLIPModel.from_pretrained(tiny_clip_dir), LoraOptions(rank=2, alpha=8.0))
    with pytest.raises(InvalidInput, match="are not the model's"):
        load_lora(other, tmp_path)
