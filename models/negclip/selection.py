"""Best-epoch selection: keep the epoch that scores best by a named criterion, optionally under a floor.

After every epoch the trainer measures the scores its options ask for (`training.evaluate_epoch`): validation
text-to-image recall@1, ARO accuracy, held-out retrieval recall@1, zero-shot accuracy; the starting model is
measured the same way before the first step. `--select-by` names the score that picks the kept epoch (`SCORES`);
`--select-floor f` admits only epochs whose retrieval and zero-shot scores keep at least f times the starting
model's (the trade-off FSC-CLIP is about: ARO bought with retrieval or zero-shot accuracy is not kept). When no
epoch meets the floor, the best by the score alone is kept and the selection records `floor_met: false`.

An epoch better than every earlier one is saved to `checkpoints/best-epoch`, and at the end of training those
weights replace the last epoch's. The history lives in the training state (`state["evaluations"]`,
`state["best_epoch"]`; `state["validation"]`, the validation recall per epoch, as before), so a resumed run keeps
choosing among all epochs.

>>> selection = BestEpoch(output_dir / "checkpoints" / "best-epoch", select_by="aro", floor=0.95)  # doctest: +SKIP
>>> selection.after_epoch(accelerator, model, state)  # after each epoch's scores are in state  # doctest: +SKIP
>>> selection.restore(accelerator, model, state)  # before the final save  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from aro.core.errors import MissingInput
from aro.core.io import staged_folder

METRIC = "text_to_image_recall@1"
# The score each `--select-by` names, as `evaluate_epoch` keys it.
SCORES = {
    "validation": f"validation/{METRIC}",
    "aro": "aro/mean",
    "retrieval": f"retrieval/{METRIC}",
    "zero_shot": "zero_shot/accuracy",
}
FLOORED = (SCORES["retrieval"], SCORES["zero_shot"])  # the scores `--select-floor` keeps up


def meets_floor(entry: dict, start: dict, floor: float | None) -> bool:
    """Whether an epoch's retrieval and zero-shot scores (those measured) keep `floor` times the starting model's."""
    if floor is None:
        return True
    return all(entry[name] >= floor * start[name] for name in FLOORED if name in entry and name in start)


def best_epoch(history: list[dict], score: str = SCORES["validation"], start: dict | None = None, floor=None):
    """The epoch of the highest `score` in `history` (entries `{"epoch", score, ...}`) among those that meet the
    floor (all when none does), the earliest on a tie; None for an empty history."""
    if not history:
        return None
    admitted = [entry for entry in history if meets_floor(entry, start or {}, floor)] or history
    return max(admitted, key=lambda entry: (entry[score], -entry["epoch"]))["epoch"]


class BestEpoch:
    """Keeps the weights of the best epoch by `select_by` (a key of `SCORES`), under `floor`, in `directory`."""

    def __init__(self, directory: Path, select_by: str = "validation", floor: float | None = None):
        self.directory, self.score, self.select_by, self.floor = Path(directory), SCORES[select_by], select_by, floor

    def after_epoch(self, accelerator, model, state: dict) -> None:
        """Keep the epoch just scored (the last of `state["evaluations"]`) if it is the best so far."""
        history = state["evaluations"]
        if best_epoch(history, self.score, state.get("start_scores"), self.floor) == state["epoch"]:
            state["best_epoch"] = state["epoch"]
            if accelerator.is_main_process:
                # Written beside the folder and moved into place, so a kill never leaves half a best epoch.
                with staged_folder(self.directory) as staging:
                    accelerator.unwrap_model(model).save_pretrained(staging, safe_serialization=True)
        accelerator.wait_for_everyone()

    def summary(self, state: dict) -> dict:
        """What the selection chose and why, for `training_results.json` and the card."""
        best = next(
            (entry for entry in state.get("evaluations", []) if entry["epoch"] == state.get("best_epoch")), None
        )
        summary = {
            "select_by": self.select_by,
            "score": self.score,
            "floor": self.floor,
            "best_epoch": state.get("best_epoch"),
        }
        if self.floor is not None and best is not None:
            summary["floor_met"] = meets_floor(best, state.get("start_scores", {}), self.floor)
        return summary | {key: state[key] for key in ("validation", "evaluations", "start_scores") if key in state}

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
