"""Templates for the Hub cards (dataset, model, metric), rendered with `aro.cards.render`."""

from importlib import resources
from string import Template


def render(template_name: str, **fields: object) -> str:
    """Fill `cards/<template_name>` with `fields` (``$name`` placeholders; ``$$`` for a literal dollar)."""
    text = resources.files(__name__).joinpath(template_name).read_text(encoding="utf-8")
    return Template(text).substitute({key: str(value) for key, value in fields.items()})
