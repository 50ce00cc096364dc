"""Load a model and its processor by Hub id or local path, as the class its checkpoint was saved from."""

from __future__ import annotations

from .adapters import ADAPTERS


def load_processor(model_id: str, revision: str | None = None, trust_remote_code: bool = False):
    """The checkpoint's processor, with the PIL image backend pinned where there is a choice.

    transformers 5 has a torchvision and a PIL image backend that differ slightly; scores must not depend on
    whether torchvision happens to be installed.
    """
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code, backend="pil")
    except (TypeError, ValueError):
        return AutoProcessor.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)


def load_model(model_id: str, revision: str | None = None, trust_remote_code: bool = False, dtype=None):
    """(model, processor) of `model_id`, the model built as the architecture its config names."""
    import transformers
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    architecture = next((name for name in config.architectures or [] if name in ADAPTERS), None)
    model_class = getattr(transformers, architecture) if architecture else AutoModel
    model = model_class.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype)
    return model.eval(), load_processor(model_id, revision, trust_remote_code)
