"""Every architecture a user may point `aro eval` at is decided by the adapter choice, from its class and config
alone (no weights, no instance): scored (its family's adapter; a generative model's pairs over a shared prefix or
each whole) or refused in one line with the reason, before any weights load. The README's table states the same
decision for every one of them."""

import re
from pathlib import Path

import pytest
import transformers
from conftest import refused
from transformers import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES,
)

from aro.builders.synthetic import SyntheticSizes, build_synthetic_aro
from aro.metrics.scoring.adapters import ADAPTERS, FAMILIES, UnsupportedModel, decide, refuse_unscored

README = Path(__file__).parents[1] / "README.md"
TABLE_HEADING = "**Every architecture, and how it is scored.**"


def architectures() -> dict[str, list]:
    """Class name -> the configs it is decided with: the generative (image-text-to-text) and dual-encoder
    (zero-shot image classification) mappings' default configs, and the classes the matching and FLAVA adapters
    register, with their classes' default configs."""
    configs: dict[str, list] = {}
    for mapping in (MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES, MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES):
        for model_type, name in mapping.items():
            configs.setdefault(name, []).append(CONFIG_MAPPING[model_type]())
    registered = [
        *ADAPTERS,
        *(
            f"Flava{part}"
            for family in FAMILIES
            if "flava" in family.model_types
            for part in ("Model", "ForPreTraining")
        ),
    ]
    for name in registered:
        configs.setdefault(name, []).append(getattr(transformers, name).config_class())
    return configs


@pytest.fixture(scope="module")
def configs():
    return architectures()


@pytest.fixture(scope="module")
def decisions(configs):
    """Class name -> (how, why) of `decide`; a class decided with several model types is decided alike for each."""
    decided = {}
    for name, model_configs in configs.items():
        model_class = getattr(transformers, name)
        outcomes = {
            (decision.how, decision.reason or "") for decision in (decide(model_class, c) for c in model_configs)
        }
        assert len(outcomes) == 1, (name, outcomes)
        decided[name] = outcomes.pop()
    return decided


def readme_table() -> dict[str, tuple[str, str]]:
    """Class name -> (how, why) as the README's table states them (rows `| how | why | tested | `Class`, ... |`)."""
    text = README.read_text()
    start = text.index(TABLE_HEADING)
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        how, why, tested, names = (cell.strip() for cell in line.strip("|").split(" | "))
        if how in ("how", "---"):
            continue
        assert tested in ("yes", "no"), line
        for name in re.findall(r"`([A-Za-z0-9_]+)`", names):
            assert name not in rows, f"{name} is in two rows of the README's table"
            rows[name] = (how, why)
    return rows


def test_every_architecture_is_decided_scored_or_refused_with_its_reason(configs, decisions):
    refusals = 0
    for name, (how, why) in decisions.items():
        assert how != "refused" or "\n" not in why, name
        if how == "refused":  # refused before the weights load, in one line naming the class
            refusals += 1
            with pytest.raises(UnsupportedModel) as error:
                refuse_unscored(getattr(transformers, name), configs[name][0])
            assert "\n" not in str(error.value) and str(error.value).startswith(name)
    assert refusals >= 5 and sum(how == "shared prefix" for how, _ in decisions.values()) > 30


def test_the_readme_table_states_the_decision_for_every_architecture(decisions):
    table = readme_table()
    unnamed, gone = sorted(set(decisions) - set(table)), sorted(set(table) - set(decisions))
    assert not unnamed and not gone, (
        f"transformers {transformers.__version__} (the test extra pins the release the table was written for) has "
        f"architectures the README's table does not name: {unnamed}; the table names ones it lacks: {gone}"
    )
    wrong = {name: (table[name], decided) for name, decided in decisions.items() if table[name] != decided}
    assert not wrong, wrong


def test_a_refused_architecture_is_refused_before_its_processor_and_weights_load(tmp_path, capfd):
    """A folder with nothing but the config of an architecture that is not scored gets the reason, not "no
    processor" or "no weights"."""
    dataset = tmp_path / "aro"
    sizes = SyntheticSizes(
        train_scenes=2, test_scenes=2, relation_per_relation=1, attribution_per_pair=1, order_captions=1
    )
    build_synthetic_aro(dataset, seed=0, sizes=sizes)
    model = tmp_path / "pix2struct"
    config = CONFIG_MAPPING["pix2struct"]()
    config.architectures = ["Pix2StructForConditionalGeneration"]
    config.save_pretrained(model)
    argv = [
        "eval",
        "--model",
        str(model),
        "--dataset",
        str(dataset),
        "--config",
        "relation",
        "--out",
        str(tmp_path / "e"),
    ]
    line = refused(capfd, argv, "Pix2StructForConditionalGeneration is not scored: its forward takes no prompt")
    assert not (tmp_path / "e").exists(), line
