"""Training speed: a NegCLIP training step against a bare forward+backward of the same model on the same batch
(the overhead ratio; target <= 1.1), and hard negatives mined per second (word swaps and image neighbours).

    python benchmarks/bench_train.py [--batch-size 32] [--steps 20] [--out bench_train.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import best_time, report

from aro.builders.synthetic import SyntheticSizes, build_synthetic_aro, world_words
from aro.models.negclip import NegCLIPModel
from aro.models.negclip.batches import NegCLIPBatches
from aro.models.negclip.mining import MiningParameters, mine, nearest_images, swap_negatives
from aro.models.negclip.training import NegCLIPTrainingArguments, train
from aro.models.tiny_clip import make_tiny_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--num-workers", type=int, default=1, help="DataLoader workers preparing batches")
    parser.add_argument("--out")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        scenes = args.batch_size * 2 * args.steps // 3 + 1
        build_synthetic_aro(
            folder / "data",
            sizes=SyntheticSizes(
                train_scenes=scenes, test_scenes=4, relation_per_relation=1, attribution_per_pair=1, order_captions=4
            ),
        )
        model, processor = make_tiny_clip(world_words(), image_size=64, patch_size=16)
        model.save_pretrained(folder / "start")
        processor.save_pretrained(folder / "start")

        start = time.perf_counter()
        cache = mine(
            MiningParameters(dataset=str(folder / "data"), dataset_config="scenes", clip_model=str(folder / "start")),
            folder / "mining.parquet",
        )
        mining_seconds = time.perf_counter() - start
        rows_mined = scenes * 3
        rows.append(
            {"measure": "mine (swaps + neighbours, end to end)", "value": rows_mined / mining_seconds, "unit": "rows/s"}
        )

        def timed_run(steps: int, name: str):
            arguments = NegCLIPTrainingArguments(
                output_dir=str(folder / name),
                model_name_or_path=str(folder / "start"),
                dataset=str(folder / "data"),
                dataset_config="scenes",
                mining_cache=str(cache),
                batch_size=args.batch_size,
                epochs=1,
                max_steps=steps,
                learning_rate=1e-4,
                warmup_steps=1,
                num_workers=args.num_workers,
                epoch_rows="captions",  # 2N steps in one epoch
            )
            start = time.perf_counter()
            train(arguments)
            return time.perf_counter() - start, arguments

        # Two runs of N and 2N steps: their difference is N steps without the one-off loading and saving.
        short, _ = timed_run(args.steps, "short")
        long, arguments = timed_run(2 * args.steps, "long")
        train_seconds = (long - short) / args.steps

        # The bare step: the same model, one prepared batch of the same shape, forward + backward + AdamW.
        from aro.metrics.scoring import load_split
        from aro.models.negclip.mining import load_cache

        data = load_split(str(folder / "data"), "scenes", "train")
        negatives, neighbours, _ = load_cache(cache)
        batch = NegCLIPBatches(data, arguments, negatives, neighbours, processor, epoch=0)[0]
        bare_model = NegCLIPModel.from_clip(model).train()
        optimizer = torch.optim.AdamW(bare_model.parameters(), lr=1e-4)

        def bare_step() -> None:
            loss = bare_model(**batch, return_loss=True).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        bare_seconds = best_time(bare_step, repeats=args.steps)
        rows.append({"measure": "training step (data, loss, logging)", "value": train_seconds * 1000, "unit": "ms"})
        rows.append({"measure": "bare forward+backward+AdamW", "value": bare_seconds * 1000, "unit": "ms"})
        rows.append({"measure": "overhead ratio (target <= 1.1)", "value": train_seconds / bare_seconds, "unit": "x"})

        captions = list(data["caption"])
        seconds = best_time(lambda: swap_negatives(captions), repeats=1)
        rows.append({"measure": "word-swap negatives", "value": len(captions) / seconds, "unit": "captions/s"})
        embeddings = torch.nn.functional.normalize(torch.randn(20000, 512), dim=-1)
        ids = [str(index) for index in range(20000)]
        seconds = best_time(lambda: nearest_images(embeddings, ids, k=3), repeats=1)
        rows.append({"measure": "nearest neighbours (20k x 512-d)", "value": 20000 / seconds, "unit": "images/s"})
    report(f"NegCLIP training, batch {args.batch_size} (2x images, 4x texts), tiny CLIP on CPU", rows, args.out)


if __name__ == "__main__":
    main()
