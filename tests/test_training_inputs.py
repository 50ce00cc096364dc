"""`aro train` and `aro mine` refuse the user's mistakes in one line, before any model or dataset loads."""

import dataclasses

import pytest
from conftest import refused

from aro.cli import main
from aro.models.negclip.arguments import NegCLIPTrainingArguments
from aro.models.negclip.cli import MiningOutput
from aro.models.negclip.mining import MiningParameters


def _error(capsys, argv) -> str:
    assert main([str(word) for word in argv]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "Traceback" not in error, error
    return error


@pytest.mark.parametrize(
    "flags, message",
    [
        (dict(batch_size=0), "--batch-size must be at least 1, not 0"),
        (dict(neighbours=0), "--neighbours must be at least 1"),
        (dict(save_every=0), "--save-every must be at least 1"),
        (dict(learning_rate=0), "--learning-rate must be positive"),
        (dict(dataset="./no-such-dataset"), "--dataset ./no-such-dataset: no such file or folder"),
        (dict(model_name_or_path="./no-such-model"), "--model-name-or-path ./no-such-model: no such file or folder"),
        (dict(resume_from="./no-such-checkpoint"), "checkpoint no-such-checkpoint does not exist"),
    ],
)
def test_train_refuses_bad_input_in_one_line(flags, message, train_argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert message in _error(capsys, train_argv(tmp_path / "run", **flags))
    assert not (tmp_path / "run").exists()


def test_train_refuses_an_output_dir_that_is_a_file(train_argv, tmp_path, capsys):
    (tmp_path / "run").write_text("mine")
    assert "is a file" in _error(capsys, train_argv(tmp_path / "run"))
    assert (tmp_path / "run").read_text() == "mine"


def test_an_args_file_sets_options_and_later_flags_override_it(train_argv, tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("batch_size: 0\nneighbours: 0\n")
    assert "--batch-size must be at least 1" in _error(
        capsys, [*train_argv(tmp_path / "run"), "--args-file", tmp_path / "run.yaml"]
    )
    error = _error(capsys, [*train_argv(tmp_path / "run"), "--args-file", tmp_path / "run.yaml", "--batch-size", "4"])
    assert "--neighbours must be at least 1" in error
    # YAML reads 1e-5 as a string; converted as the flag converts it, it passes the check of the learning rate.
    (tmp_path / "rate.yaml").write_text("learning_rate: 1e-5\nwarmup_steps: -1\n")
    assert "--warmup-steps and --num-workers cannot be negative" in _error(
        capsys, [*train_argv(tmp_path / "run"), "--args-file", tmp_path / "rate.yaml"]
    )
    (tmp_path / "bad.json").write_text('{"batch_sise": 4}')
    assert "unknown options batch_sise" in _error(
        capsys, [*train_argv(tmp_path / "run"), "--args-file", tmp_path / "bad.json"]
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("batch_size: abc\n", "batch_size: 'abc' is not a valid int value"),
        ("batch_size: [1, 2]\n", "batch_size: expected one int value, not [1, 2]"),
        ("batch_size: 4.5\n", "batch_size: 4.5 is not a valid int value"),
        ("hard_negatives: maybe\n", "hard_negatives: 'maybe' is not a valid true or false"),
        ("mixed_precision: fp8\n", "mixed_precision: 'fp8' is not one of 'no', 'fp16', 'bf16'"),
        ("eval_configs: relation\n", "eval_configs: expected a list of values, not 'relation'"),
        ("learning_rate: .nan\n", "--learning-rate must be a finite number, not nan"),
        ("- batch_size\n", "holds a list, not a mapping of option names to values"),
        ("batch_size: [\n", "while parsing a flow"),
    ],
)
def test_a_bad_value_in_an_args_file_is_one_line_naming_the_option(text, message, train_argv, tmp_path, capfd):
    (tmp_path / "run.yaml").write_text(text)
    refused(capfd, [*map(str, train_argv(tmp_path / "run")), "--args-file", str(tmp_path / "run.yaml")], message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (dict(learning_rate="nan"), "--learning-rate must be a finite number, not nan"),
        (dict(weight_decay="inf"), "--weight-decay must be a finite number, not inf"),
        (dict(adam_beta2="1.5"), "--adam-beta1 and --adam-beta2 must lie in [0, 1)"),
        (dict(min_negative_share="1.5"), "--min-negative-share must lie in [0, 1], not 1.5"),
    ],
)
def test_numbers_torch_would_refuse_with_a_traceback_are_one_line(flags, message, train_argv, tmp_path, capfd):
    refused(capfd, [str(word) for word in train_argv(tmp_path / "run", **flags)], message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--neighbours", "0"], "--neighbours must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--clip-model", "./no-such-model"], "--clip-model ./no-such-model: no such file or folder"),
        (["--dataset", "./no-such-dataset"], "--dataset ./no-such-dataset: no such file or folder"),
    ],
)
def test_mine_refuses_bad_input_in_one_line(flags, message, scenes, start_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [
        "mine",
        "--dataset",
        scenes,
        "--dataset-config",
        "scenes",
        "--clip-model",
        start_model,
        "--out",
        tmp_path / "cache.parquet",
        *flags,
    ]
    assert message in _error(capsys, argv)
    assert not (tmp_path / "cache.parquet").exists()


def test_mine_refuses_an_out_that_is_a_folder(scenes, start_model, tmp_path, capsys):
    assert "is a folder" in _error(
        capsys,
        ["mine", "--dataset", scenes, "--dataset-config", "scenes", "--clip-model", start_model, "--out", tmp_path],
    )


@pytest.mark.parametrize(
    "command, classes", [("train", [NegCLIPTrainingArguments]), ("mine", [MiningParameters, MiningOutput])]
)
def test_every_option_has_help_and_states_its_default(command, classes, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for cls in classes:
        for field in dataclasses.fields(cls):
            assert field.metadata.get("help"), field.name
            flag = "--" + field.name.replace("_", "-")
            assert flag in text, flag
    assert text.count("(default:") >= sum(len(dataclasses.fields(cls)) for cls in classes)


def test_flags_fill_the_dataclasses_as_hf_argument_parser_does():
    """The command line writes the options without transformers; what it parses equals HfArgumentParser's parse."""
    import argparse

    from transformers import HfArgumentParser

    from aro.models.negclip.cli import _add_dataclass_parser, _instances

    flags = [
        "--dataset",
        "./coco",
        "--no-hard-negatives",
        "--augment",
        "false",
        "--select_best",
        "--eval-configs",
        "relation",
        "coco_order",
        "--mixed-precision",
        "bf16",
        "--learning-rate",
        "1e-5",
        "--max-steps",
        "7",
        "--mining-cache",
        "cache.parquet",
    ]
    subparsers = argparse.ArgumentParser().add_subparsers()
    (ours,) = _instances(
        _add_dataclass_parser(subparsers, "train", (NegCLIPTrainingArguments,), "train").parse_args(flags)
    )
    (reference,) = HfArgumentParser(NegCLIPTrainingArguments).parse_args_into_dataclasses(flags)
    assert ours == reference
    assert (ours.hard_negatives, ours.augment, ours.eval_configs, ours.learning_rate, ours.max_steps) == (
        False,
        False,
        ["relation", "coco_order"],
        1e-5,
        7,
    )
    with pytest.raises(SystemExit):
        _add_dataclass_parser(subparsers, "again", (NegCLIPTrainingArguments,), "train").parse_args(
            ["--mixed-precision", "fp8"]
        )
    mining = _add_dataclass_parser(subparsers, "mine", (MiningParameters, MiningOutput), "mine")
    with pytest.raises(SystemExit):
        mining.parse_args([])  # --dataset has no default
