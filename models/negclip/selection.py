"""Best-epoch selection: keep the epoch whose model retrieves validation images best from their captions.

After every epoch the model's text-to-image recall@1 on the validation split is measured (the scoring library's
`retrieval_recall`, sharded over the processes); an epoch better than every earlier one is saved to
`checkpoints/best-epoch`, and at the end of training those weights replace the last epoch's. The history lives in
the training state (`state["validation"]`, `state["best_epoch"]`), so a resumed run keeps choosing among all
epochs.

>>> selection = BestEpoch(validation, args, output_dir / "checkpoints" / "best-epoch")  # doctest: +SKIP
>>> selection.after_epoch(accelerator, model, processor, state)  # after each epoch  # doctest: +SKIP
>>> selection.restore(accelerator, model, state)  # before the final save  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from aro.core.errors import MissingInput
from aro.core.io import staged_folder
from aro.metrics.scoring import retrieval_recall

METRIC = "text_to_image_recall@1"


def best_epoch(history: list[dict]) -> int | None:
    """The epoch of the highest recall in `history` (entries `{"epoch", METRIC}`), the earliest on a tie."""
    if not history:
        return None
    return max(history, key=lambda entry: (entry[METRIC], -entry["epoch"]))["epoch"]


class BestEpoch:
    """Measures each epoch on `validation` and keeps the best one's weights in `directory`."""

    def __init__(self, validation, args, directory: Path):
        self.validation, self.args, self.directory = validation, args, Path(directory)

    def after_epoch(self, accelerator, model, processor, state: dict) -> float:
        """Score the epoch just finished (`state["epoch"]` epochs done) and keep its weights if it is the best."""
        unwrapped = accelerator.unwrap_model(model)
        recall = retrieval_recall(
            unwrapped,
            processor,
            self.validation,
            image_column=self.args.image_column,
            caption_column=self.args.caption_column,
            image_id_column=self.args.image_id_column,
            batch_size=self.args.batch_size,
            device=accelerator.device,
            distributed=accelerator,
        )[METRIC]
        state.setdefault("validation", []).append({"epoch": state["epoch"], METRIC: recall})
        if best_epoch(state["validation"]) == state["epoch"]:
            state["best_epoch"] = state["epoch"]
            if accelerator.is_main_process:
                # Written beside the folder and moved into place, so a kill never leaves half a best epoch.
                with staged_folder(self.directory) as staging:
                    unwrapped.save_pretrained(staging, safe_serialization=True)
        accelerator.wait_for_everyone()
        return recall

    def restore(self, accelerator, model, state: dict) -> None:
        """Load the best epoch's weights into `model` (also when it is the last epoch: training may have gone on
        into a part of the next one, with `max_steps`)."""
        if state.get("best_epoch") is None:
            return
        if not (self.directory / "model.safetensors").exists():
            raise MissingInput(
                f"the best epoch ({state['best_epoch']}) was saved to {self.directory}, which no longer holds it"
            )
        accelerator.unwrap_model(model).load_state_dict(load_file(str(self.directory / "model.safetensors")))
