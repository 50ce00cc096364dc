"""A procedural world of coloured shapes in ARO's format: the embedded default for offline runs.

Every scene is a small Pillow drawing of two objects, each with a shape and one of that shape's usual colours,
one placed to the left of, to the right of, above or below the other. Captions say what is drawn ("a red circle
to the left of a yellow square"), so the ARO questions have exact answers:

- `relation`: the true caption and the one with subject and object swapped, grouped by relation;
- `attribution`: "a red circle and a yellow square" against "a yellow circle and a red square", grouped by
  attribute pair (as in VG-Attribution, the swapped caption puts a colour on a shape never drawn in it);
- `coco_order` and `flickr30k_order`: a caption beside its four order perturbations (the same
  perturbation code as the real builders), with relation captions and with attribute captions;
- `scenes`: image-caption pairs for training (`train`) and held-out scenes (`test`);
- `coco_retrieval`: the held-out scenes again, one row per scene with its captions and their four order
  perturbations, for retrieval with shuffled captions (the paper's "why");
- `objects`: one object per image, labelled by its colour and shape ("red circle"), for zero-shot classification
  from the class names (what fine-tuning for compositionality may cost).

Every item is drawn from its own generator seeded by (seed, split, index), so a build is reproducible
whatever order or parallelism writes it.

>>> scene = draw_scene(random.Random("0:demo:0"))
>>> scene.relation_caption()
'a red circle below a yellow square'
>>> scene.image.size
(64, 64)
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from aro.builders.perturbations import OrderPerturber
from aro.cards import render
from aro.core.contract import ARO_CONFIGS, PERTURBATION_NAMES, RETRIEVAL_CONFIGS, config_features, retrieval_row

IMAGE_SIZE = 64
BACKGROUND = (245, 245, 245)
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
    "pink": (240, 120, 190),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
# Attributes go with objects, as in the photographs ARO's images come from (roads are paved, houses white): each shape
# is drawn in two usual colours, so the twin of a scene with its colours swapped is never a scene of this world.
USUAL_COLOURS = {
    "circle": ("red", "green"),
    "square": ("yellow", "purple"),
    "triangle": ("pink", "red"),
    "diamond": ("blue", "yellow"),
    "cross": ("orange", "green"),
    "star": ("black", "blue"),
}
# The spatial relation of the first object (the subject) to the second.
RELATIONS = ("to the left of", "to the right of", "above", "below")
CARD_METADATA = {
    "pretty_name": "Synthetic ARO",
    "license": "cc0-1.0",
    "task_categories": ["zero-shot-image-classification"],
    "language": ["en"],
    "tags": ["compositionality", "vision-language", "aro", "synthetic"],
}
OBJECT_RADIUS = 9


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    centre: tuple[int, int]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Two objects and the relation of `subject` to `object`, with the image that shows them."""

    subject: SceneObject
    object: SceneObject
    relation: str
    image: Image.Image

    def relation_caption(self, swapped: bool = False) -> str:
        first, second = (self.object, self.subject) if swapped else (self.subject, self.object)
        return f"a {first.name} {self.relation} a {second.name}"

    def attribute_caption(self, swapped: bool = False) -> str:
        first_colour, second_colour = self.subject.colour, self.object.colour
        if swapped:
            first_colour, second_colour = second_colour, first_colour
        return f"a {first_colour} {self.subject.shape} and a {second_colour} {self.object.shape}"

    def captions(self) -> list[str]:
        """Every true caption of the scene: the relation both ways round, and the attribute caption."""
        inverse = {
            "to the left of": "to the right of",
            "to the right of": "to the left of",
            "above": "below",
            "below": "above",
        }
        return [
            self.relation_caption(),
            f"a {self.object.name} {inverse[self.relation]} a {self.subject.name}",
            self.attribute_caption(),
        ]


def usual_pairs(attribute_caption: str) -> int:
    """How many of the colour-shape pairs of an attribute caption ("a red circle and a yellow square") are usual.

    Of a swapped caption this says how far a model can reject it by knowing which colours shapes come in (0 or 1
    usual pairs) rather than by binding colours to the shapes in the image (2).
    """
    words = attribute_caption.split()
    return sum(colour in USUAL_COLOURS[shape] for colour, shape in ((words[1], words[2]), (words[5], words[6])))


def world_words() -> list[str]:
    """Every word a caption of this world can use (the vocabulary of a word-level tokenizer)."""
    words = {"a", "and"} | set(COLOURS) | set(SHAPES)
    for relation in RELATIONS:
        words.update(relation.split())
    return sorted(words)


def _centres(rng: random.Random, relation: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Centres of subject and object: side by side along the relation's axis, touching, around a jittered centre.

    Touching matters: the layout is then visible in the patches where the two objects meet, a cue a tiny
    vision transformer can learn in minutes (objects far apart need a global comparison it does not learn
    within the demo's budget; see the README's notes on the demo).
    """
    x, y = (
        rng.randint(OBJECT_RADIUS * 2, IMAGE_SIZE - OBJECT_RADIUS * 2),
        rng.randint(OBJECT_RADIUS * 2, IMAGE_SIZE - OBJECT_RADIUS * 2),
    )
    half_gap = OBJECT_RADIUS
    if relation == "to the left of":
        return (x - half_gap, y), (x + half_gap, y)
    if relation == "to the right of":
        return (x + half_gap, y), (x - half_gap, y)
    if relation == "above":
        return (x, y - half_gap), (x, y + half_gap)
    return (x, y + half_gap), (x, y - half_gap)


def _draw(draw: ImageDraw.ImageDraw, thing: SceneObject) -> None:
    x, y = thing.centre
    r = OBJECT_RADIUS
    fill = COLOURS[thing.colour]
    if thing.shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif thing.shape == "square":
        draw.rectangle((x - r + 1, y - r + 1, x + r - 1, y + r - 1), fill=fill)
    elif thing.shape == "triangle":
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    elif thing.shape == "diamond":
        draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=fill)
    elif thing.shape == "cross":
        arm = r // 3
        draw.rectangle((x - r, y - arm, x + r, y + arm), fill=fill)
        draw.rectangle((x - arm, y - r, x + arm, y + r), fill=fill)
    else:
        points = [
            (x + radius * math.sin(math.pi * k / 5), y - radius * math.cos(math.pi * k / 5))
            for k, radius in zip(range(10), [r, r * 0.45] * 5)
        ]
        draw.polygon(points, fill=fill)


def draw_scene(rng: random.Random, relation: str | None = None, colours: tuple[str, str] | None = None) -> Scene:
    """Draw one scene: two objects of different colours and shapes, in `relation` (else a random one).

    `colours` fixes the subject's and the object's colour (their shapes are drawn among those usual in them), so
    test sets can be balanced per attribute pair.
    """
    if colours is None:
        shape_subject, shape_object = rng.sample(SHAPES, 2)
        colour_subject = rng.choice(USUAL_COLOURS[shape_subject])
        colour_object = rng.choice([colour for colour in USUAL_COLOURS[shape_object] if colour != colour_subject])
    else:
        colour_subject, colour_object = colours
        shape_subject, shape_object = rng.choice(
            [
                (first, second)
                for first in SHAPES
                for second in SHAPES
                if first != second and colour_subject in USUAL_COLOURS[first] and colour_object in USUAL_COLOURS[second]
            ]
        )
    relation = relation or rng.choice(RELATIONS)
    centre_subject, centre_object = _centres(rng, relation)
    subject = SceneObject(colour_subject, shape_subject, centre_subject)
    other = SceneObject(colour_object, shape_object, centre_object)
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for thing in (subject, other):
        _draw(draw, thing)
    return Scene(subject, other, relation, image)


def scenes(seed: int, split: str, count: int) -> Iterator[tuple[str, Scene]]:
    """`count` scenes of `split`, each seeded by (seed, split, index), with a stable id."""
    for index in range(count):
        yield f"{split}-{index:06d}", draw_scene(random.Random(f"{seed}:{split}:{index}"))


@dataclass(frozen=True)
class SyntheticSizes:
    """How many items each part of the synthetic ARO gets. `quick()` has smaller test sets, for the quick demo."""

    train_scenes: int = 2000
    test_scenes: int = 200
    relation_per_relation: int = 100
    # The paper's protocol drops attribute pairs with fewer than 25 items: every ordered colour pair gets 25.
    attribution_per_pair: int = 25
    order_captions: int = 300
    objects_per_class: int = 20  # `objects`: images of each usual colour-shape pair

    @classmethod
    def quick(cls) -> SyntheticSizes:
        return cls(relation_per_relation=50, order_captions=100)


def _seeded(seed: int, split: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{split}:{index}")


def _vg_row(item_id: int, scene_id: str, scene: Scene, true_caption: str, false_caption: str) -> dict:
    """The fields the VG configs share; the whole synthetic image is the 'crop'."""
    return {
        "item_id": item_id,
        "image": scene.image,
        "true_caption": true_caption,
        "false_caption": false_caption,
        "image_id": scene_id,
        "bbox": [0, 0, IMAGE_SIZE, IMAGE_SIZE],
    }


def relation_rows(seed: int, per_relation: int) -> Iterator[dict]:
    """VG-Relation-shaped items, balanced over the four relations."""
    for index in range(per_relation * len(RELATIONS)):
        relation = RELATIONS[index % len(RELATIONS)]
        scene = draw_scene(_seeded(seed, "relation", index), relation=relation)
        row = _vg_row(
            index, f"relation-{index:06d}", scene, scene.relation_caption(), scene.relation_caption(swapped=True)
        )
        yield row | {"relation_name": relation}


def attribution_rows(seed: int, per_pair: int) -> Iterator[dict]:
    """VG-Attribution-shaped items, `per_pair` for every ordered pair of colours."""
    pairs = [(first, second) for first in sorted(COLOURS) for second in sorted(COLOURS) if first != second]
    for index in range(per_pair * len(pairs)):
        colours = pairs[index % len(pairs)]
        scene = draw_scene(_seeded(seed, "attribution", index), colours=colours)
        row = _vg_row(
            index, f"attribution-{index:06d}", scene, scene.attribute_caption(), scene.attribute_caption(swapped=True)
        )
        yield row | {"attributes": list(colours), "attribute_pair": "_".join(colours)}


def order_rows(seed: int, split: str, count: int, caption_of, perturber) -> Iterator[dict]:
    """Order-shaped items: a scene's caption (chosen by `caption_of`) beside its four perturbations."""

    drawn = [(f"{split}-{index:06d}", draw_scene(_seeded(seed, split, index))) for index in range(count)]
    caption_ids = [f"{scene_id}#0" for scene_id, _ in drawn]
    options = perturber.caption_options([caption_of(scene) for _, scene in drawn], caption_ids)
    for index, ((scene_id, scene), caption_id, caption_options) in enumerate(zip(drawn, caption_ids, options)):
        yield {
            "item_id": index,
            "image": scene.image,
            "image_id": scene_id,
            "caption_id": caption_id,
            "caption_options": caption_options,
            "perturbations": list(PERTURBATION_NAMES),
        }


def object_classes() -> list[str]:
    """The `objects` config's class names, in label order: every usual colour-shape pair ("red circle")."""
    return [f"{colour} {shape}" for shape in SHAPES for colour in USUAL_COLOURS[shape]]


def object_rows(seed: int, per_class: int) -> Iterator[dict]:
    """Zero-shot classification items: one object per image, somewhere inside it, `per_class` of every class."""
    classes = object_classes()
    margin = OBJECT_RADIUS + 1
    for index in range(per_class * len(classes)):
        label = index % len(classes)
        colour, shape = classes[label].split()
        rng = _seeded(seed, "objects", index)
        centre = (rng.randint(margin, IMAGE_SIZE - margin), rng.randint(margin, IMAGE_SIZE - margin))
        image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUND)
        _draw(ImageDraw.Draw(image), SceneObject(colour, shape, centre))
        yield {"image": image, "label": label}


def scene_rows(seed: int, split: str, count: int) -> Iterator[dict]:
    """Image-caption pairs, every true caption of a scene on its own row (as COCO lists five per image)."""
    for scene_id, scene in scenes(seed, split, count):
        for caption in scene.captions():
            yield {"image": scene.image, "caption": caption, "image_id": scene_id}


def retrieval_rows(seed: int, split: str, count: int, perturber) -> Iterator[dict]:
    """Retrieval rows of the scenes of `split` (those of `scene_rows`): each scene's captions beside their
    perturbations.

    Scenes of this small world often share a caption (about 350 distinct among the 600 of 200 scenes). Each caption's
    shuffles are seeded by its text, not its id, so that a caption two scenes share is shuffled the same way in
    both: every variant keeps the original's shared captions, whose identical copies tie in image-to-text
    retrieval. Seeded per caption id, the copies came apart when shuffled, and image-to-text recall@1 rose with
    shuffled captions (by 0.10 to 0.22) because the ties were gone, not because retrieval improved.
    """

    drawn = list(scenes(seed, split, count))
    captions = [(f"{scene_id}#{k}", caption) for scene_id, scene in drawn for k, caption in enumerate(scene.captions())]
    texts = [caption for _, caption in captions]
    options = perturber.caption_options(texts, keys=texts)
    start = 0
    for scene_id, scene in drawn:
        end = start + len(scene.captions())
        yield retrieval_row(
            scene_id, scene.image, [caption_id for caption_id, _ in captions[start:end]], options[start:end]
        )
        start = end


def build_synthetic_aro(
    out_dir: str | Path,
    seed: int = 0,
    sizes: SyntheticSizes = SyntheticSizes(),
    spacy_pipeline: str | None = None,
    overwrite: bool = False,
) -> dict[tuple[str, str], int]:
    """Write the synthetic ARO (four test configs, `scenes`, `coco_retrieval` and `objects`) as a Hub-ready folder;
    return the row counts.

    >>> counts = build_synthetic_aro("synthetic-aro", seed=0)  # doctest: +SKIP
    >>> load_dataset("synthetic-aro", "relation", split="test")  # doctest: +SKIP
    """
    # Here, not at the top: `aro demo --help` imports this module (SyntheticSizes), and datasets with pyarrow,
    # which the writer needs, take a second to import.
    from datasets import ClassLabel, Features, Value
    from datasets import Image as ImageFeature

    from aro.builders.build import BENCHMARK_DESCRIPTION
    from aro.builders.writer import configs_yaml, eval_yaml, write_hub_folder

    perturber = OrderPerturber(spacy_pipeline, seed=seed)
    tables = {
        ("relation", "test"): relation_rows(seed, sizes.relation_per_relation),
        ("attribution", "test"): attribution_rows(seed, sizes.attribution_per_pair),
        ("coco_order", "test"): order_rows(seed, "coco_order", sizes.order_captions, Scene.relation_caption, perturber),
        ("flickr30k_order", "test"): order_rows(
            seed, "flickr30k_order", sizes.order_captions, Scene.attribute_caption, perturber
        ),
        ("scenes", "train"): scene_rows(seed, "train", sizes.train_scenes),
        ("scenes", "test"): scene_rows(seed, "test", sizes.test_scenes),
        ("coco_retrieval", "test"): retrieval_rows(seed, "test", sizes.test_scenes, perturber),
        ("objects", "test"): object_rows(seed, sizes.objects_per_class),
    }
    features = {config: config_features(config) for config in ARO_CONFIGS + RETRIEVAL_CONFIGS}
    features["scenes"] = Features({"image": ImageFeature(), "caption": Value("string"), "image_id": Value("string")})
    features["objects"] = Features({"image": ImageFeature(), "label": ClassLabel(names=object_classes())})

    def card(counts: dict[tuple[str, str], int]) -> str:
        return render(
            "synthetic_dataset_card.md",
            yaml=configs_yaml(counts, features, CARD_METADATA),
            seed=seed,
            counts="\n".join(f"| {config} | {split} | {rows} |" for (config, split), rows in counts.items()),
            shapes=", ".join(SHAPES),
            usual_colours="; ".join(f"{shape}: {', '.join(colours)}" for shape, colours in USUAL_COLOURS.items()),
            relations=", ".join(f'"{relation}"' for relation in RELATIONS),
            image_size=IMAGE_SIZE,
        )

    def extra_files(counts: dict[tuple[str, str], int]) -> dict[str, str]:
        aro_configs = [config for config, split in counts if split == "test" and config in ARO_CONFIGS]
        description = (
            "A procedural world of coloured shapes in ARO's format, to check ARO code offline. " + BENCHMARK_DESCRIPTION
        )
        return {"eval.yaml": eval_yaml(CARD_METADATA["pretty_name"], description, aro_configs)}

    return write_hub_folder(
        out_dir,
        tables,
        features,
        card,
        overwrite=overwrite,
        extra_files=extra_files,
        command="aro demo (synthetic dataset)",
    )
