"""Load a model and its processor by Hub id or local path, as the class its checkpoint was saved from."""

from __future__ import annotations

from pathlib import Path

from .adapters import ADAPTERS, is_generative


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

    path = Path(model_id).expanduser()
    if path.is_file() or (model_id.startswith((".", "/", "~")) and not path.exists()):
        raise ValueError(f"model {model_id} is not a folder (a model is a folder saved by save_pretrained, or a Hub id ORG/NAME)")
    try:
        config = AutoConfig.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as error:  # not a folder, not on the Hub, or the Hub out of reach: transformers says which
        raise ValueError(f"model {model_id!r} cannot be loaded: {str(error).splitlines()[0]}") from None
    architecture = next((name for name in config.architectures or [] if name in ADAPTERS or is_generative(name)), None)
    model_class = getattr(transformers, architecture) if architecture else AutoModel
    model = model_class.from_pretrained(model_id, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype)
    return model.eval(), load_processor(model_id, revision, trust_remote_code)


def model_and_processor(model, processor=None, revision: str | None = None, trust_remote_code: bool = False):
    """(name, model, processor) of a Hub id or local path (loaded here), or of a model already loaded with its processor."""
    if isinstance(model, str):
        return (model, *load_model(model, revision=revision, trust_remote_code=trust_remote_code))
    if processor is None:
        raise ValueError("a loaded model needs its processor")
    return getattr(model.config, "_name_or_path", type(model).__name__), model, processor
