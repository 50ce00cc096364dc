"""Build the ARO dataset folder from the original sources, download those sources, and publish the folder.

>>> counts = build_aro("aro", AroSources(vg_dir="vg", coco_dir="coco", coco_annotations="coco/coco_karpathy_test.json"))  # doctest: +SKIP
>>> load_dataset("aro", "relation", split="test")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from aro.builders.images import MAX_IMAGE_PIXELS
from aro.builders.schema import CONFIG_FEATURES
from aro.builders.sources import BuildReport, order_rows, visual_genome_rows

CONFIGS = ("relation", "attribution", "coco_order", "flickr30k_order")
# Where the original release keeps its files (see the ARO repository's `dataset_zoo/aro_datasets.py`).
GOOGLE_DRIVE_IDS = {
    "visual_genome_relation.json": "1kX2iCHEv0CADL8dSO1nMdW-V0NqIAiP3",
    "visual_genome_attribution.json": "13tWvOrNOLHxl3Rm9cR3geAdHx2qR3-Tw",
    "vgr_vga_images.zip": "1qaPlrwhGNMrR3a11iopZUT_GPP_LrgP9",
}
KARPATHY_URL = "https://storage.googleapis.com/sfr-vision-language-research/datasets/{name}"
COCO_VAL2014_URL = "http://images.cocodataset.org/zips/val2014.zip"
FLICKR30K_FORM = "https://forms.illinois.edu/sec/229675"


@dataclass(frozen=True)
class AroSources:
    """Local paths of the original files; a config is built when its sources are given."""

    vg_dir: str | None = None  # holds the two VG JSON files and images/
    coco_dir: str | None = None  # image paths in the Karpathy JSON are relative to it (val2014/...)
    coco_annotations: str | None = None  # coco_karpathy_test.json (default: inside coco_dir)
    flickr_dir: str | None = None  # holds flickr30k-images/ (the user's own copy)
    flickr_annotations: str | None = None  # flickr30k_test.json (default: inside flickr_dir)

    def paths(self) -> list[Path]:
        """Every source folder and file given."""
        given = (self.vg_dir, self.coco_dir, self.coco_annotations, self.flickr_dir, self.flickr_annotations)
        return [Path(path) for path in given if path is not None]

    def available(self) -> tuple[str, ...]:
        return tuple(
            config
            for config, source in zip(CONFIGS, (self.vg_dir, self.vg_dir, self.coco_dir, self.flickr_dir))
            if source is not None
        )


def _tables(sources: AroSources, configs, report: BuildReport, perturber, skip_missing: bool, workers: int, **image_checks) -> dict:
    tables = {}
    for config in configs:
        if config in ("relation", "attribution"):
            annotations = Path(sources.vg_dir) / f"visual_genome_{config}.json"
            tables[config, "test"] = visual_genome_rows(config, annotations, Path(sources.vg_dir) / "images", report, skip_missing, workers, **image_checks)
        else:
            images_dir = Path(sources.coco_dir if config == "coco_order" else sources.flickr_dir)
            default_name = "coco_karpathy_test.json" if config == "coco_order" else "flickr30k_test.json"
            annotations = Path((sources.coco_annotations if config == "coco_order" else sources.flickr_annotations) or images_dir / default_name)
            tables[config, "test"] = order_rows(config, annotations, images_dir, perturber, report, skip_missing, workers, **image_checks)
    return tables


def check_output_folder(out_dir: str | Path, sources: AroSources) -> None:
    """Refuse, before any work, an output that is a file or that is, holds or lies inside a source folder
    (replacing it would delete the sources). `staged_folder` refuses an existing output without `overwrite`."""
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out_dir} is a file, not a folder: choose another output folder")
    for source in sources.paths():
        resolved = source.resolve()
        if out.is_relative_to(resolved) or resolved.is_relative_to(out):
            raise ValueError(f"--out {out_dir} overlaps the source {source}: write the dataset to a folder outside its sources")


def build_aro(
    out_dir: str | Path,
    sources: AroSources,
    configs: tuple[str, ...] | None = None,
    seed: int = 0,
    spacy_pipeline: str | None = None,
    skip_missing: bool = False,
    overwrite: bool = False,
    workers: int = 1,
    allow_outside_source: bool = False,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
) -> tuple[dict, BuildReport]:
    """Build `configs` (default: every config whose sources are given) into `out_dir`; return counts and report.

    Items left out with `skip_missing` are listed in `<out_dir>.skipped.json` beside the folder. Image paths
    leading outside their source folder are refused unless `allow_outside_source`; images of more than
    `max_image_pixels` pixels are refused (or skipped).
    """
    from aro.builders.writer import configs_yaml, write_hub_folder
    from aro.cards import render

    configs = tuple(configs or sources.available())
    unknown = [config for config in configs if config not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}: choose from {list(CONFIGS)}")
    lacking = [config for config in configs if config not in sources.available()]
    if lacking:
        raise ValueError(f"no sources given for {lacking}: pass --vg-dir for the VG configs, --coco-dir / --flickr-dir for the Order configs")
    if not configs:
        raise ValueError("no sources given: pass at least one of --vg-dir, --coco-dir, --flickr-dir")
    check_output_folder(out_dir, sources)
    perturber = None
    if {"coco_order", "flickr30k_order"} & set(configs):
        from aro.builders.perturbations import OrderPerturber

        perturber = OrderPerturber(spacy_pipeline, seed=seed)
    report = BuildReport()

    def card(counts: dict) -> str:
        return render(
            "dataset_card.md",
            yaml=configs_yaml(counts, CONFIG_FEATURES),
            counts="\n".join(f"| {config} | {rows} |" for (config, _), rows in counts.items()),
            seed=seed,
            spacy_pipeline=perturber.nlp.meta["name"] if perturber else "not used",
            clamped=_per_config(report.clamped_bboxes),
            skipped=len(report.skipped),
            duplicates=_per_config(report.duplicates),
            truncated=_per_config(report.truncated_captions),
            identical=_per_config(report.identical_options),
        )

    tables = _tables(sources, configs, report, perturber, skip_missing, workers, allow_outside=allow_outside_source, max_pixels=max_image_pixels)
    counts = write_hub_folder(out_dir, tables, CONFIG_FEATURES, card, overwrite)
    skipped_list = Path(f"{Path(out_dir).resolve()}.skipped.json")
    if report.skipped:
        skipped_list.write_text(json.dumps(report.skipped, indent=1))
    else:
        skipped_list.unlink(missing_ok=True)  # an earlier build's list would describe another dataset
    return counts, report


def _per_config(counts: dict[str, int]) -> str:
    return ", ".join(f"{config}: {count}" for config, count in counts.items()) or "none"


def _fetch(url: str, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    with urllib.request.urlopen(url) as response, open(partial, "wb") as file:
        while chunk := response.read(1 << 20):
            file.write(chunk)
    partial.rename(target)


def _fetch_google_drive(file_id: str, target: Path) -> None:
    """Google Drive asks to confirm large downloads; the confirmation form gives the real address."""
    import re

    url = f"https://drive.google.com/uc?export=download&id={file_id}"
    with urllib.request.urlopen(url) as response:
        first = response.read(1 << 16)
        if b"<html" not in first[:1000].lower():
            partial = target.with_name(target.name + ".partial")
            with open(partial, "wb") as file:
                file.write(first)
                while chunk := response.read(1 << 20):
                    file.write(chunk)
            partial.rename(target)
            return
    confirm = re.search(rb'name="confirm" value="([^"]+)"', first)
    uuid = re.search(rb'name="uuid" value="([^"]+)"', first)
    if not confirm:
        raise RuntimeError(f"Google Drive did not serve {target.name}; download it by hand from {url}")
    query = f"id={file_id}&export=download&confirm={confirm.group(1).decode()}" + (f"&uuid={uuid.group(1).decode()}" if uuid else "")
    _fetch(f"https://drive.usercontent.google.com/download?{query}", target)


def download_sources(root: str | Path, configs: tuple[str, ...]) -> AroSources:
    """Fetch the original files of `configs` into `root` (needs network); Flickr30k images cannot be fetched."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vg_dir = coco_dir = None
    if {"relation", "attribution"} & set(configs):
        vg_dir = root / "vg"
        vg_dir.mkdir(exist_ok=True)
        for name in ("visual_genome_relation.json", "visual_genome_attribution.json", "vgr_vga_images.zip"):
            if not (vg_dir / name).exists():
                _fetch_google_drive(GOOGLE_DRIVE_IDS[name], vg_dir / name)
        if not (vg_dir / "images").exists():
            with zipfile.ZipFile(vg_dir / "vgr_vga_images.zip") as archive:
                archive.extractall(vg_dir)
    if "coco_order" in configs:
        coco_dir = root / "coco"
        coco_dir.mkdir(exist_ok=True)
        if not (coco_dir / "coco_karpathy_test.json").exists():
            _fetch(KARPATHY_URL.format(name="coco_karpathy_test.json"), coco_dir / "coco_karpathy_test.json")
        if not (coco_dir / "val2014").exists():
            _fetch(COCO_VAL2014_URL, coco_dir / "val2014.zip")
            with zipfile.ZipFile(coco_dir / "val2014.zip") as archive:
                archive.extractall(coco_dir)
    if "flickr30k_order" in configs:
        raise RuntimeError(
            "Flickr30k images cannot be downloaded for you: request them from the authors at "
            f"{FLICKR30K_FORM}, then pass --flickr-dir (the folder holding flickr30k-images/) and "
            f"--flickr-annotations ({KARPATHY_URL.format(name='flickr30k_test.json')})."
        )
    return AroSources(vg_dir=str(vg_dir) if vg_dir else None, coco_dir=str(coco_dir) if coco_dir else None)


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload exactly the built folder as a dataset repo; the token comes from the usual login or HF_TOKEN."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset", commit_message="Build ARO with aro build")
    return str(url)
