"""Read the ARO copies already on the Hub as ARO configs, by mapping their columns to ours.

mteb's ARO tasks (AROVisualRelation, AROVisualAttribution, AROCocoOrder, AROFlickrOrder, on `gowitheflow/ARO-*`
and `mteb/ARO-*`) name their columns as their task definitions do:

- VG sets: `image`, `true_caption`, `false_caption`: our names already, but without the `relation_name` or
  `attribute_pair` column that macro accuracy groups by.
- Order sets: `images`, `correct_caption` and `hard_text_1` ... `hard_text_4`, the four shuffles (named here by
  column, as the copies do not say which shuffle is which).

A copy that carries a bounding box (`bbox` as [x, y, w, h], or the original annotation's `bbox_x`, `bbox_y`,
`bbox_w`, `bbox_h`) is cropped to it, as the original loader cropped VG images. Our own builds already hold crops
and are passed through unchanged. Where the group column is missing, one warning line says that the headline falls
back to micro accuracy.

>>> copy = load_dataset("gowitheflow/ARO-COCO-order", split="test")  # doctest: +SKIP
>>> dataset, warnings = as_aro_config(copy, "coco_order")  # doctest: +SKIP
"""

from __future__ import annotations

from datasets import Dataset, List, Value
from datasets import Image as ImageFeature

from aro.core.contract import BBOX_KEYS, GROUP_COLUMNS, config_features, crop_to_bbox
from aro.core.errors import InvalidInput

ORDER_COPY_TEXT_COLUMNS = ("correct_caption", "hard_text_1", "hard_text_2", "hard_text_3", "hard_text_4")
ORDER_COPY_IMAGE_COLUMN = "images"


def is_aro_build(dataset: Dataset, config: str) -> bool:
    """Whether `dataset` has every column of our build of `config` (its images are then crops already)."""
    return set(config_features(config)) <= set(dataset.column_names)


def as_aro_config(dataset: Dataset, config: str) -> tuple[Dataset, list[str]]:
    """`dataset` with ARO's columns for `config`, and the warnings to show (one line each)."""
    if is_aro_build(dataset, config):
        return dataset, []
    columns = set(dataset.column_names)
    if {ORDER_COPY_IMAGE_COLUMN, *ORDER_COPY_TEXT_COLUMNS} <= columns:
        dataset = _order_copy(dataset)
    elif not ({"image", "true_caption", "false_caption"} <= columns or {"image", "caption_options"} <= columns):
        raise InvalidInput(
            f"{config}: the dataset has columns {dataset.column_names}, neither ARO's nor those of a known Hub copy "
            f"(VG: image, true_caption, false_caption; Order: {ORDER_COPY_IMAGE_COLUMN}, "
            f"{', '.join(ORDER_COPY_TEXT_COLUMNS)})"
        )
    if "bbox" in columns or set(BBOX_KEYS) <= columns:
        dataset = _cropped(dataset)
    warnings = []
    group_column = GROUP_COLUMNS.get(config)
    if group_column and group_column not in dataset.column_names:
        warnings.append(
            f"{config}: no `{group_column}` column, so no macro accuracy: the headline is micro accuracy, which the "
            f"paper does not report for {config}"
        )
    return dataset, warnings


def _order_copy(dataset: Dataset) -> Dataset:
    """An mteb Order copy with `image`, `caption_options` (the true caption first) and `perturbations`."""
    texts = dataset.select_columns(list(ORDER_COPY_TEXT_COLUMNS)).to_list()
    options = [[row[column] for column in ORDER_COPY_TEXT_COLUMNS] for row in texts]
    names = ["original", *ORDER_COPY_TEXT_COLUMNS[1:]]
    feature = dataset.features[ORDER_COPY_IMAGE_COLUMN]
    if isinstance(feature, List):  # a list of images per row: ARO shows one
        dataset = dataset.map(
            lambda images: {"image": images[0]},
            input_columns=ORDER_COPY_IMAGE_COLUMN,
            remove_columns=[ORDER_COPY_IMAGE_COLUMN],
        )
    else:
        dataset = dataset.rename_column(ORDER_COPY_IMAGE_COLUMN, "image")
    dataset = dataset.add_column("caption_options", options, feature=List(Value("string")))
    return dataset.add_column("perturbations", [names] * len(options), feature=List(Value("string")))


def _cropped(dataset: Dataset) -> Dataset:
    """Each image cropped to its row's bounding box as the original loader does (black where the box reaches out)."""

    def crop(row: dict, index: int) -> dict:
        box = row["bbox"] if "bbox" in row else [row[field] for field in BBOX_KEYS]
        try:
            cropped, _, _ = crop_to_bbox(row["image"].convert("RGB"), tuple(box))
        except ValueError as error:
            raise InvalidInput(f"item {index}: {error}") from None
        return {"image": cropped}

    features = dataset.features.copy()
    features["image"] = ImageFeature()
    return dataset.map(crop, with_indices=True, features=features, desc="cropping to bboxes")
