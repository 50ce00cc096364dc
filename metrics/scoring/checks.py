"""Checks of what a user gives the scorer, each refusing in one line that names the file, the item or the option.

What can be checked before a model loads is checked then (`aro eval` calls these through `data.check_dataset`): a
config whose Parquet has no caption column, a null caption or no rows.
What only scoring shows is checked where it arises: a score that is NaN or infinite (a user's scorer, or a model in
half precision) would make every comparison false and the item a tie, so it is refused instead of counted wrong.

>>> check_scores_finite(np.array([[0.3, float("nan")]]), [["a dog", "a cat"]], None, "the scorer")
Traceback (most recent call last):
    ...
aro.core.errors.InvalidInput: the scorer gave the score nan to item 0, option 1 ('a cat'), and 0 other pair(s) a ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aro.core.contract import ORDER_CONFIGS, VISUAL_GENOME_OPTIONS
from aro.core.errors import InvalidInput

from .hub_copies import ORDER_COPY_IMAGE_COLUMN, ORDER_COPY_TEXT_COLUMNS

OPTIONS_COLUMN = "caption_options"
# The columns that hold a config's image and candidate captions, the true caption first: ours, then those of the
# Hub copies that `hub_copies` maps (mteb's Order copies).
VISUAL_GENOME_LAYOUTS = (("image", *VISUAL_GENOME_OPTIONS),)
ORDER_LAYOUTS = (("image", OPTIONS_COLUMN), (ORDER_COPY_IMAGE_COLUMN, *ORDER_COPY_TEXT_COLUMNS))


def item_name(item: int, item_ids: list | None) -> str:
    """`item 3`, or `item 3 (item_id 17)` where the dataset has ids."""
    return f"item {item}" + (f" (item_id {item_ids[item]})" if item_ids is not None else "")


def caption_columns(columns: list[str], config: str, where: str) -> list[str]:
    """The columns of a dataset with `columns` that hold `config`'s candidate captions (ours, or a Hub copy's), the
    true caption's first; `InvalidInput` naming what `config` needs, so that an Order config read as a VG config (or
    the other way) is refused rather than scored under the wrong name."""
    layouts = ORDER_LAYOUTS if config in ORDER_CONFIGS else VISUAL_GENOME_LAYOUTS  # SugarCrepe's are VG's
    for image, *texts in layouts:
        if {image, *texts} <= set(columns):
            return texts
    needs = " or ".join(", ".join(layout) for layout in layouts)
    raise InvalidInput(f"{where} has the columns {columns}, not those of {config} ({needs})")


def check_captions(rows: list[dict], columns: list[str], where: str, item_ids: list | None = None) -> None:
    """Refuse rows (of the text `columns`) that cannot be scored: none at all, a caption that is not text (a null),
    or a row with another number of options than the first; the error names `where`, the item and the column."""
    if not rows:
        raise InvalidInput(f"{where} has no rows: there is nothing to score")
    width = None
    for item, row in enumerate(rows):
        if columns == [OPTIONS_COLUMN]:
            options = row[OPTIONS_COLUMN]
            if not isinstance(options, list):
                raise InvalidInput(
                    f"{where}: {item_name(item, item_ids)} has {OPTIONS_COLUMN} {options!r}, not a list of captions"
                )
            labels = [f"{OPTIONS_COLUMN}[{position}]" for position in range(len(options))]
        else:
            options, labels = [row[column] for column in columns], columns
        for position, caption in enumerate(options):
            if not isinstance(caption, str):
                raise InvalidInput(
                    f"{where}: {item_name(item, item_ids)} has {labels[position]} {caption!r}: "
                    "every caption must be text"
                )
        width = len(options) if width is None else width
        if len(options) != width:
            raise InvalidInput(
                f"{where}: {item_name(item, item_ids)} has {len(options)} caption options and item 0 has {width}: "
                "every item of a config has as many"
            )


def check_parquet_files(files: list[Path], config: str, shown: dict[Path, str]) -> None:
    """Read the caption columns of a local config's Parquet `files` (read as ARO's `config`) and refuse, naming the
    file as `shown` gives it, one that cannot be read, lacks the config's columns or holds a null caption, and a
    config whose files hold no rows at all."""
    rows = 0
    for path in files:
        where = shown[path]
        try:
            schema = pq.read_schema(path)
            columns = caption_columns(schema.names, config, where)
            table = pq.read_table(path, columns=columns + (["item_id"] if "item_id" in schema.names else []))
        except (pa.ArrowException, OSError) as error:
            raise InvalidInput(f"{where} cannot be read as Parquet ({error})") from None
        rows += table.num_rows
        if table.num_rows:
            item_ids = table.column("item_id").to_pylist() if "item_id" in table.column_names else None
            check_captions(table.select(columns).to_pylist(), columns, where, item_ids)
    if not rows:
        raise InvalidInput(f"{', '.join(shown[path] for path in files)}: the {config} config has no rows to score")


def check_scores_finite(scores: np.ndarray, candidates: list[list[str]], item_ids: list | None, source: str) -> None:
    """Refuse an [N, K] score array holding NaN or an infinity, naming the first such item and option: such a score
    makes every comparison false, and the item would be counted as a tie (wrong) instead of as the scorer's bug."""
    bad = np.argwhere(~np.isfinite(np.asarray(scores, dtype=float)))
    if len(bad):
        item, option = (int(index) for index in bad[0])
        raise InvalidInput(
            f"{source} gave the score {scores[item, option]} to {item_name(item, item_ids)}, option {option} "
            f"({candidates[item][option]!r}), and {len(bad) - 1} other pair(s) a non-finite score: scores must be "
            "finite numbers"
        )
