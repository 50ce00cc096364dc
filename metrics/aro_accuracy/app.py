"""The Space's app: a small Gradio form over the `aro_accuracy` module.

evaluate's own `launch_gradio_widget` builds its form with `gr.inputs`/`gr.outputs`, which Gradio 4 removed, so
the form is built here with today's components (tested with the Gradio version the card's `sdk_version` names).
Its config and protocol choices are those of the module's own `contract.py` and `protocol.py`, the copies that
evaluate loaded beside the module's script. `build_interface` makes the form without launching it; the Space runs
this file, which launches it.
"""

import importlib
from pathlib import Path

import evaluate
import gradio as gr


def _values(text: str) -> list[str]:
    return [value.strip() for value in text.replace("\n", ",").split(",") if value.strip()]


def beside(module, name: str):
    """The copy of `name` (`contract`, `protocol`) that evaluate loaded beside the script of `module`."""
    return importlib.import_module(f"{type(module).__module__.rpartition('.')[0]}.{name}")


def compute(module, predictions: str, references: str, groups: str, config: str, protocol: str) -> dict:
    """The module's results for comma-separated predictions, references and (optional) groups."""
    try:
        return module.compute(
            predictions=[int(value) for value in _values(predictions)],
            references=[int(value) for value in _values(references)],
            groups=_values(groups) or None,
            config=config,
            protocol=protocol,
        )
    except ValueError as error:
        return {"error": str(error)}


def build_interface(module) -> gr.Interface:
    """The Gradio form: predictions, references, groups, config and protocol in; the results as JSON out."""
    configs = list(beside(module, "contract").ARO_CONFIGS)
    protocols = list(beside(module, "protocol").PROTOCOLS)
    return gr.Interface(
        fn=lambda *inputs: compute(module, *inputs),
        inputs=[
            gr.Textbox(
                label="predictions",
                placeholder="0, 1, 0, -1",
                info="index of the chosen caption per item; -1 for a tie",
            ),
            gr.Textbox(label="references", placeholder="0, 0, 0, 0", info="index of the true caption per item"),
            gr.Textbox(
                label="groups (optional)",
                placeholder="on, on, holding, holding",
                info="relation or attribute pair per item",
            ),
            gr.Dropdown(configs, value=configs[0], label="config"),
            gr.Dropdown(protocols, value="paper", label="protocol"),
        ],
        outputs=gr.JSON(label="results"),
        title="ARO accuracy",
        description=module.info.description,
        article=module.info.inputs_description,
    )


if __name__ == "__main__":
    # Load the script beside this file: the Space's folder is not named after the module.
    build_interface(evaluate.load(str(Path(__file__).with_name("aro_accuracy.py")))).launch()
