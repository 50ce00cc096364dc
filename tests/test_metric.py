"""The aro_accuracy metric on hand-computed cases, loaded the ways users load it."""

import doctest
from pathlib import Path

import evaluate
import pytest

import aro.metrics.aro_accuracy.aro_accuracy as module
from aro.core.protocol import EXCLUDED_RELATIONS, MIN_ATTRIBUTE_PAIR_ITEMS

METRIC_DIR = Path(__file__).parents[1] / "metrics" / "aro_accuracy"


@pytest.fixture(scope="module")
def aro_accuracy():
    return evaluate.load(str(METRIC_DIR))


def test_loads_by_name_from_the_folder_that_holds_it(monkeypatch):
    monkeypatch.chdir(METRIC_DIR.parent)
    metric = evaluate.load("aro_accuracy")
    assert metric.compute(predictions=[0, 1], references=[0, 0])["accuracy"] == 0.5


def test_the_docstring_example_runs(monkeypatch):
    monkeypatch.chdir(METRIC_DIR.parent)
    results = doctest.testmod(module, extraglobs={"evaluate": evaluate})
    assert results.attempted >= 2 and results.failed == 0


def test_micro_and_macro_over_relations(aro_accuracy):
    # "on": 2 of 3 right; "holding": 1 of 1; micro 3/4, macro (2/3 + 1) / 2.
    results = aro_accuracy.compute(
        predictions=[0, 0, 1, 0], references=[0, 0, 0, 0], groups=["on", "on", "on", "holding"], config="relation"
    )
    assert results["accuracy"] == pytest.approx(0.75)
    assert results["macro_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert {row["group"]: (row["count"], row["in_macro"]) for row in results["per_group"]} == {
        "on": (3, True),
        "holding": (1, True),
    }


def test_relation_protocol_excludes_the_authors_list(aro_accuracy):
    assert len(EXCLUDED_RELATIONS) == 157 and "next to" in EXCLUDED_RELATIONS and "on" not in EXCLUDED_RELATIONS
    kwargs = dict(predictions=[0, 1, 1], references=[0, 0, 0], groups=["on", "next to", "next to"], config="relation")
    paper = aro_accuracy.compute(**kwargs)
    assert paper["macro_accuracy"] == 1.0  # "next to" (0 of 2) is left out
    assert paper["accuracy"] == pytest.approx(1 / 3)  # micro keeps every item
    assert aro_accuracy.compute(**kwargs, protocol="none")["macro_accuracy"] == 0.5


def test_attribution_protocol_drops_pairs_under_25_items(aro_accuracy):
    big, small = MIN_ATTRIBUTE_PAIR_ITEMS, MIN_ATTRIBUTE_PAIR_ITEMS - 1
    predictions = [0] * big + [1] * small
    groups = ["white_paved"] * big + ["red_blue"] * small
    results = aro_accuracy.compute(
        predictions=predictions, references=[0] * (big + small), groups=groups, config="attribution"
    )
    assert results["macro_accuracy"] == 1.0
    assert [row["in_macro"] for row in results["per_group"]] == [False, True]  # sorted: red_blue, white_paved


def test_ties_count_as_wrong_and_are_counted(aro_accuracy):
    results = aro_accuracy.compute(predictions=[-1, 0, -1, 3], references=[0, 0, 0, 0], config="coco_order")
    assert results["accuracy"] == 0.25 and results["num_ties"] == 2
    assert results["macro_accuracy"] is None and results["per_group"] == []


def test_unknown_config_and_protocol_are_refused(aro_accuracy):
    with pytest.raises(ValueError, match="config must be one of"):
        aro_accuracy.compute(predictions=[0], references=[0], config="vg")
    with pytest.raises(ValueError, match="protocol must be one of"):
        aro_accuracy.compute(predictions=[0], references=[0], groups=["on"], config="relation", protocol="strict")
