"""Build the ARO dataset folder from the original sources, download those sources, and publish the folder.

SugarCrepe's seven splits are built beside ARO's configs from the authors' JSON files and COCO val2017.

>>> sources = AroSources(vg_dir="vg", coco_dir="coco", coco_annotations="coco/coco_karpathy_test.json")
>>> counts, report = build_aro("aro", sources)  # doctest: +SKIP
>>> load_dataset("aro", "relation", split="test")  # doctest: +SKIP
>>> build_aro("aro", AroSources(sugarcrepe_dir="sugar-crepe/data", coco_val2017_dir="coco/val2017"))  # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import json
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import gdown
import requests

from aro.builders.images import MAX_IMAGE_PIXELS
from aro.builders.perturbations import OrderPerturber
from aro.builders.sources import BuildReport, order_rows, retrieval_rows, visual_genome_rows
from aro.builders.sugarcrepe import split_of, sugarcrepe_rows
from aro.builders.writer import configs_yaml, eval_yaml, write_hub_folder
from aro.cards import render
from aro.core.contract import (
    ARO_CONFIGS,
    CHOICE_CONFIGS,
    RETRIEVAL_CONFIGS,
    SUGARCREPE_CONFIGS,
    candidates_of,
    config_features,
    expand_config_names,
    uses_same_words,
)
from aro.core.errors import DownloadFailed, InvalidInput
from aro.core.io import check_output_folder, push_folder

COMMAND = "aro build"  # the writer named in the output's marker: only an earlier build is ever replaced
SKIPPED_LIST = "skipped.json"  # inside the output folder: the items left out with skip_missing
CONFIGS = ARO_CONFIGS + RETRIEVAL_CONFIGS + SUGARCREPE_CONFIGS
# Names that stand for several configs in `configs`.
CONFIG_SETS = {"sugarcrepe": SUGARCREPE_CONFIGS}
# The configs built from the COCO and from the Flickr30k Karpathy test split: ARO's Order set and the retrieval set.
KARPATHY_CONFIGS = {"coco": ("coco_order", "coco_retrieval"), "flickr30k": ("flickr30k_order", "flickr30k_retrieval")}
# Where the original release keeps its files (see the ARO repository's `dataset_zoo/aro_datasets.py`).
GOOGLE_DRIVE_IDS = {
    "visual_genome_relation.json": "1kX2iCHEv0CADL8dSO1nMdW-V0NqIAiP3",
    "visual_genome_attribution.json": "13tWvOrNOLHxl3Rm9cR3geAdHx2qR3-Tw",
    "vgr_vga_images.zip": "1qaPlrwhGNMrR3a11iopZUT_GPP_LrgP9",
}
KARPATHY_URL = "https://storage.googleapis.com/sfr-vision-language-research/datasets/{name}"
COCO_VAL2014_URL = "http://images.cocodataset.org/zips/val2014.zip"
COCO_VAL2017_URL = "http://images.cocodataset.org/zips/val2017.zip"
# The authors' split files at the last commit that changed them (November 2023), so that a download is reproducible.
SUGARCREPE_URL = (
    "https://raw.githubusercontent.com/RAIVNLab/sugar-crepe/546eb51ecd55859f1d1888636bb9399a8df4cd92/data/{name}"
)
FLICKR30K_FORM = "https://forms.illinois.edu/sec/229675"
DOWNLOAD_TIMEOUT = 60  # seconds without a byte before a connection is given up
DOWNLOAD_RETRIES = 5
CARD_METADATA = {
    "pretty_name": "ARO: Attribution, Relation and Order",
    # The sources carry several licences and terms (Visual Genome, COCO, Flickr30k): LICENSE.md lists them.
    "license": "other",
    "license_name": "aro-sources",
    "license_link": "LICENSE.md",
    "task_categories": ["zero-shot-image-classification"],
    "language": ["en"],
    "tags": ["compositionality", "vision-language", "benchmark", "aro", "visual-genome", "coco", "flickr30k"],
}
BENCHMARK_DESCRIPTION = (
    "ARO (Yuksekgonul et al., ICLR 2023): does a vision-language model pick the true caption of an image over the "
    "same words in another order? VG-Relation and VG-Attribution (two captions per image, macro accuracy over "
    "relations or attribute pairs) and COCO-Order and Flickr30k-Order (five captions, accuracy)."
)
SUGARCREPE_DESCRIPTION = (
    " SugarCrepe (Hsieh et al., NeurIPS 2023): the same question with fluent, plausible negatives that replace, swap "
    "or add an object, attribute or relation (seven splits, two captions per COCO image, accuracy)."
)


@dataclass(frozen=True)
class AroSources:
    """Local paths of the original files; a config is built when its sources are given."""

    vg_dir: str | None = None  # holds the two VG JSON files and images/
    coco_dir: str | None = None  # image paths in the Karpathy JSON are relative to it (val2014/...)
    coco_annotations: str | None = None  # coco_karpathy_test.json (default: inside coco_dir)
    flickr_dir: str | None = None  # holds flickr30k-images/ (the user's own copy)
    flickr_annotations: str | None = None  # flickr30k_test.json (default: inside flickr_dir)
    sugarcrepe_dir: str | None = None  # holds SugarCrepe's seven JSON files (the authors' data/, or their repository)
    coco_val2017_dir: str | None = None  # holds the COCO val2017 images the SugarCrepe files name

    def __post_init__(self):
        if (self.sugarcrepe_dir is None) != (self.coco_val2017_dir is None):
            raise InvalidInput(
                "--sugarcrepe-dir and --coco-val2017-dir go together: SugarCrepe's JSON files name COCO val2017 images"
            )

    def paths(self) -> list[Path]:
        """Every source folder and file given."""
        given = (
            self.vg_dir,
            self.coco_dir,
            self.coco_annotations,
            self.flickr_dir,
            self.flickr_annotations,
            self.sugarcrepe_dir,
            self.coco_val2017_dir,
        )
        return [Path(path) for path in given if path is not None]

    def available(self) -> tuple[str, ...]:
        source_of = {"relation": self.vg_dir, "attribution": self.vg_dir}
        source_of |= {config: self.coco_dir for config in KARPATHY_CONFIGS["coco"]}
        source_of |= {config: self.flickr_dir for config in KARPATHY_CONFIGS["flickr30k"]}
        source_of |= dict.fromkeys(SUGARCREPE_CONFIGS, self.sugarcrepe_dir)
        return tuple(config for config in CONFIGS if source_of[config] is not None)


def _tables(
    sources: AroSources, configs, report: BuildReport, perturber, skip_missing: bool, workers: int, **image_checks
) -> dict:
    tables = {}
    for config in configs:
        if config in SUGARCREPE_CONFIGS:
            tables[config, "test"] = sugarcrepe_rows(
                config,
                Path(sources.sugarcrepe_dir),
                Path(sources.coco_val2017_dir),
                report,
                skip_missing,
                workers,
                **image_checks,
            )
        elif config in ("relation", "attribution"):
            annotations = Path(sources.vg_dir) / f"visual_genome_{config}.json"
            tables[config, "test"] = visual_genome_rows(
                config, annotations, Path(sources.vg_dir) / "images", report, skip_missing, workers, **image_checks
            )
        else:
            coco = config in KARPATHY_CONFIGS["coco"]
            images_dir = Path(sources.coco_dir if coco else sources.flickr_dir)
            default_name = "coco_karpathy_test.json" if coco else "flickr30k_test.json"
            annotations = Path(
                (sources.coco_annotations if coco else sources.flickr_annotations) or images_dir / default_name
            )
            rows = order_rows if config.endswith("_order") else retrieval_rows
            tables[config, "test"] = rows(
                config, annotations, images_dir, perturber, report, skip_missing, workers, **image_checks
            )
    return {key: _counting_same_words(rows, key[0], report) for key, rows in tables.items()}


def _counting_same_words(rows, config: str, report: BuildReport):
    """`rows` as they are, counting in `report.same_words` the items of a caption-choice config whose negative uses
    exactly the true caption's words (`contract.uses_same_words`)."""
    if config not in CHOICE_CONFIGS:
        yield from rows
        return
    report.same_words[config] = 0
    for row in rows:
        report.same_words[config] += uses_same_words(candidates_of(row))
        yield row


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
    """Build `configs` (default: every config whose sources are given; "sugarcrepe" stands for its seven) into
    `out_dir`; return counts and report.

    `out_dir` is refused before any work when it is, holds or lies inside a source, when it cannot be made, or when
    it exists and is not exactly an earlier build (replaced only with `overwrite`). Items left out with
    `skip_missing` are listed in `skipped.json` inside the folder. Image paths leading outside their source folder
    are refused unless `allow_outside_source`; images of more than `max_image_pixels` pixels are refused (or
    skipped).
    """
    configs = expand_config_names(configs or sources.available(), CONFIG_SETS)
    unknown = [config for config in configs if config not in CONFIGS]
    if unknown:
        raise InvalidInput(f"unknown config(s) {unknown}: choose from {list(CONFIGS)} or 'sugarcrepe'")
    lacking = [config for config in configs if config not in sources.available()]
    if lacking:
        raise InvalidInput(
            f"no sources given for {lacking}: pass --vg-dir for the VG configs, --coco-dir / --flickr-dir for the "
            "Order configs, --sugarcrepe-dir with --coco-val2017-dir for the SugarCrepe configs"
        )
    if not configs:
        raise InvalidInput(
            "no sources given: pass at least one of --vg-dir, --coco-dir, --flickr-dir, --sugarcrepe-dir"
        )
    check_output_folder(out_dir, COMMAND, sources.paths(), replace=overwrite)
    perturber = None
    if set(configs) & {*KARPATHY_CONFIGS["coco"], *KARPATHY_CONFIGS["flickr30k"]}:
        perturber = OrderPerturber(spacy_pipeline, seed=seed)
    report = BuildReport()
    features = {config: config_features(config) for config in configs}
    sugarcrepe = [config for config in configs if config in SUGARCREPE_CONFIGS]
    metadata = CARD_METADATA | ({"tags": CARD_METADATA["tags"] + ["sugarcrepe"]} if sugarcrepe else {})

    def card(counts: dict) -> str:
        return render(
            "dataset_card.md",
            yaml=configs_yaml(counts, features, metadata),
            counts="\n".join(
                f"| {config} | {rows} | {_same_words_cell(report.same_words.get(config), rows)} |"
                for (config, _), rows in counts.items()
            ),
            seed=seed,
            spacy_pipeline=perturber.nlp.meta["name"] if perturber else "not used",
            outside=_per_config(report.outside_bboxes),
            skipped=f"{len(report.skipped)}" + (f" (listed in `{SKIPPED_LIST}`)" if report.skipped else ""),
            duplicates=_per_config(report.duplicates),
            truncated=_per_config(report.truncated_captions),
            identical=_per_config(report.identical_options),
            sugarcrepe=sugarcrepe_card_section(counts, report) if sugarcrepe else "",
        )

    def extra_files(counts: dict) -> dict[str, str]:
        files = {
            "eval.yaml": eval_yaml(
                CARD_METADATA["pretty_name"],
                BENCHMARK_DESCRIPTION + (SUGARCREPE_DESCRIPTION if sugarcrepe else ""),
                [config for config, _ in counts if config in CHOICE_CONFIGS],
            ),
            "LICENSE.md": render("aro_license.md", sugarcrepe=render("sugarcrepe_license.md") if sugarcrepe else ""),
        }
        if report.skipped:
            files[SKIPPED_LIST] = json.dumps(report.skipped, indent=1)
        return files

    tables = _tables(
        sources,
        configs,
        report,
        perturber,
        skip_missing,
        workers,
        allow_outside=allow_outside_source,
        max_pixels=max_image_pixels,
    )
    counts = write_hub_folder(
        out_dir,
        tables,
        features,
        card,
        overwrite,
        extra_files,
        command=COMMAND,
        inputs=sources.paths(),
        images_once=sugarcrepe,
    )
    return counts, report


def _per_config(counts: dict[str, int]) -> str:
    return ", ".join(f"{config}: {count}" for config, count in counts.items()) or "none"


def _same_words_cell(same_words: int | None, rows: int) -> str:
    """`12 (3.4%)`: the items whose negative uses the true caption's very words; `-` for a retrieval config."""
    return "-" if same_words is None else f"{same_words} ({same_words / rows:.1%})"


def sugarcrepe_card_section(counts: dict, report: BuildReport) -> str:
    """The card's SugarCrepe section, with the file each split came from (and its SHA-256) and its items."""
    rows = []
    for (config, _), items in counts.items():
        if config in SUGARCREPE_CONFIGS:
            name, digest = report.source_files[config]
            first_release = "" if name == f"{split_of(config)}.json" else " (the first release's file)"
            rows.append(f"| {config} | `{name}`{first_release} | `{digest}` | {items} |")
    return render("sugarcrepe_card_section.md", files="\n".join(rows))


def fetch(url: str, target: Path, retries: int = DOWNLOAD_RETRIES, timeout: float = DOWNLOAD_TIMEOUT) -> None:
    """Download `url` to `target` through `<target>.partial`, which a dropped connection, a stalled one (no byte for
    `timeout` seconds) or a killed run leaves behind to resume from (HTTP range requests); `retries` further
    attempts, waiting longer each time."""
    partial = target.with_name(target.name + ".partial")
    for attempt in range(retries + 1):
        start = partial.stat().st_size if partial.exists() else 0
        request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                resumed = response.status == 206  # a server without range support sends the whole file again
                expected = int(response.headers.get("Content-Length", -1))
                received = 0
                with open(partial, "ab" if resumed else "wb") as file:
                    while chunk := response.read(1 << 20):
                        file.write(chunk)
                        received += len(chunk)
                if 0 <= expected != received:
                    raise DownloadFailed(f"connection closed after {received} of {expected} bytes")
            partial.rename(target)
            return
        except urllib.error.HTTPError as error:
            if error.code == 416 and start:  # nothing left past what the partial file holds
                partial.rename(target)
                return
            if error.code < 500:
                raise InvalidInput(f"{url} answered HTTP {error.code} ({error.reason})") from None
            problem = error
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:  # timeouts and resets included
            problem = error
        if attempt < retries:
            time.sleep(min(2**attempt, 30))
    raise DownloadFailed(
        f"could not download {url} ({problem}); run the same command again to resume from {partial.name}"
    )


def fetch_google_drive(
    file_id: str, target: Path, retries: int = DOWNLOAD_RETRIES, timeout: float = DOWNLOAD_TIMEOUT
) -> None:
    """Download a Google Drive file with `gdown`, which passes Drive's confirmation page for large files, resumes
    partial downloads and writes `target` only when complete."""
    try:
        written = gdown.download(id=file_id, output=str(target), resume=True, timeout=timeout, retries=retries)
    except (gdown.exceptions.FileURLRetrievalError, requests.RequestException, OSError) as error:
        written, problem = None, error
    else:
        problem = "no file was served"
    if written is None or not target.is_file():
        raise DownloadFailed(
            f"Google Drive did not serve {target.name} ({problem}); download it by hand from "
            f"https://drive.google.com/uc?id={file_id} into {target.parent}, then run the same command again"
        )


def extract(archive: Path, folder: str) -> None:
    """Extract `folder` from the zip `archive` beside it, after testing every member's checksum; the folder
    appears only when complete, so an interrupted extraction is redone by the next run."""
    destination = archive.parent / folder
    try:
        with zipfile.ZipFile(archive) as opened:
            damaged = opened.testzip()
            if damaged is None and not any(name.startswith(f"{folder}/") for name in opened.namelist()):
                raise InvalidInput(f"{archive} holds no {folder}/ folder")
            if damaged is None:
                with tempfile.TemporaryDirectory(prefix=f".{folder}-", dir=archive.parent) as staging:
                    opened.extractall(staging)  # zipfile drops `..` and absolute parts of member names
                    Path(staging, folder).rename(destination)
    except (zipfile.BadZipFile, EOFError) as error:
        damaged = str(error)
    if damaged is not None:
        archive.unlink()
        raise InvalidInput(
            f"{archive} is damaged ({damaged}): it was deleted, run the same command again to download it anew"
        )


def download_sources(root: str | Path, configs: tuple[str, ...]) -> AroSources:
    """Fetch the original files of `configs` into `root` (needs network); Flickr30k images cannot be fetched.
    SugarCrepe's files come from the authors' repository at a fixed commit, its images in COCO's val2017 archive.

    Every file is fetched only when absent, with a timeout, retries and resumption, so a failed run is finished by
    running it again; archives are tested before they are extracted.
    """
    if set(KARPATHY_CONFIGS["flickr30k"]) & set(configs):
        raise InvalidInput(
            "Flickr30k images cannot be downloaded for you: request them from the authors at "
            f"{FLICKR30K_FORM}, then pass --flickr-dir (the folder holding flickr30k-images/) and "
            f"--flickr-annotations ({KARPATHY_URL.format(name='flickr30k_test.json')})."
        )
    configs = expand_config_names(configs, CONFIG_SETS)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vg_dir = coco_dir = sugarcrepe_dir = coco2017_dir = None
    if {"relation", "attribution"} & set(configs):
        vg_dir = root / "vg"
        vg_dir.mkdir(exist_ok=True)
        for name in ("visual_genome_relation.json", "visual_genome_attribution.json", "vgr_vga_images.zip"):
            if not (vg_dir / name).exists() and not (name.endswith(".zip") and (vg_dir / "images").exists()):
                fetch_google_drive(GOOGLE_DRIVE_IDS[name], vg_dir / name)
        if not (vg_dir / "images").exists():
            extract(vg_dir / "vgr_vga_images.zip", "images")
    if set(KARPATHY_CONFIGS["coco"]) & set(configs):
        coco_dir = root / "coco"
        coco_dir.mkdir(exist_ok=True)
        if not (coco_dir / "coco_karpathy_test.json").exists():
            fetch(KARPATHY_URL.format(name="coco_karpathy_test.json"), coco_dir / "coco_karpathy_test.json")
        if not (coco_dir / "val2014").exists():
            if not (coco_dir / "val2014.zip").exists():
                fetch(COCO_VAL2014_URL, coco_dir / "val2014.zip")
            extract(coco_dir / "val2014.zip", "val2014")
    if set(SUGARCREPE_CONFIGS) & set(configs):
        sugarcrepe_dir, coco2017_dir = root / "sugarcrepe", root / "coco2017"
        sugarcrepe_dir.mkdir(exist_ok=True)
        coco2017_dir.mkdir(exist_ok=True)
        for config in [config for config in SUGARCREPE_CONFIGS if config in configs]:
            name = f"{split_of(config)}.json"
            if not (sugarcrepe_dir / name).exists():
                fetch(SUGARCREPE_URL.format(name=name), sugarcrepe_dir / name)
        if not (coco2017_dir / "val2017").exists():
            if not (coco2017_dir / "val2017.zip").exists():
                fetch(COCO_VAL2017_URL, coco2017_dir / "val2017.zip")
            extract(coco2017_dir / "val2017.zip", "val2017")
    return AroSources(
        vg_dir=str(vg_dir) if vg_dir else None,
        coco_dir=str(coco_dir) if coco_dir else None,
        sugarcrepe_dir=str(sugarcrepe_dir) if sugarcrepe_dir else None,
        coco_val2017_dir=str(coco2017_dir / "val2017") if coco2017_dir else None,
    )


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload exactly the built folder as a dataset repo; the token comes from the usual login or HF_TOKEN."""
    return push_folder(folder, repo_id, repo_type="dataset", private=private, commit_message="Build ARO with aro build")
