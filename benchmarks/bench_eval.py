"""Inference throughput on the real test split: ``fit.predict`` at batch 1,000 (ganaug before) and at
``fit.EVAL_BATCH``, for every classifier, and the reference network's metric pass (features, then a
second forward pass for the GAN-test logits, contiguous) against ``features_and_logits`` (one pass,
channels_last), which every generator evaluation runs twice on 10,000 images.

    .venv/bin/python benchmarks/bench_eval.py               # one torch thread, as study tasks run
    .venv/bin/python benchmarks/bench_eval.py --images 2000 --rounds 3

Untrained weights: only speed is measured, and it does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from common import alternate_rounds, finish_report, start_report

from ganaug.data import get_dataset, load_cached
from ganaug.fit import EVAL_BATCH, build_classifier, predict
from ganaug.reference import REFERENCE_ARCH, REFERENCE_KWARGS, features_and_logits
from ganaug.runtime import tune_malloc

OLD_BATCH = 1000  # ganaug's inference batch before this benchmark


def timed(fn, n: int):
    def run() -> float:
        start = time.perf_counter()
        fn()
        return n / (time.perf_counter() - start)
    return run


def old_metric_pass(model, images):
    """Features at batch 1,000, contiguous, then the logits in a second pass (ganaug before)."""
    with torch.no_grad():
        feats = [model.embed(images[i:i + OLD_BATCH].unsqueeze(1).float() / 255).double()
                 for i in range(0, len(images), OLD_BATCH)]
    return torch.cat(feats), predict(model, images, torch.device("cpu"), batch_size=OLD_BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--images", type=int, default=4000, help="test images per pass")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--archs", default="shallow,deep,cnn,transfer")
    parser.add_argument("--out", default="benchmarks/results/eval.json")
    args = parser.parse_args()
    tune_malloc()
    torch.set_num_threads(args.threads)
    report = start_report(tuned=True)
    info = get_dataset("fashion-mnist")
    images = load_cached(args.data_dir, "fashion-mnist", "test")[0][:args.images]
    cpu = torch.device("cpu")
    report["predict"] = {}
    for arch in args.archs.split(","):
        model = build_classifier(arch, info).eval()
        if arch in ("cnn", "transfer"):  # as they train (CLASSIFIER_DEFAULTS: channels_last)
            model = model.to(memory_format=torch.channels_last)
        n = min(len(images), 1000) if arch == "transfer" else len(images)
        cl = arch in ("cnn", "transfer")
        print(f"\n{arch}: predict on {n} test images")
        predict(model, images[:EVAL_BATCH], cpu, cl)  # warm-up
        rounds = alternate_rounds({
            f"batch {OLD_BATCH}": timed(lambda: predict(model, images[:n], cpu, cl, OLD_BATCH), n),
            f"batch {EVAL_BATCH}": timed(lambda: predict(model, images[:n], cpu, cl), n)}, args.rounds)
        report["predict"][arch] = rounds
    reference = build_classifier(REFERENCE_ARCH, info, **REFERENCE_KWARGS).eval()
    reference_cl = copy.deepcopy(reference).to(memory_format=torch.channels_last)
    print(f"\nreference network: features + GAN-test logits of {len(images)} images")
    report["reference"] = alternate_rounds({
        "two passes, batch 1000": timed(lambda: old_metric_pass(reference, images), len(images)),
        f"one pass, batch {EVAL_BATCH}, cl": timed(lambda: features_and_logits(reference_cl, images),
                                                   len(images))}, args.rounds)
    print("\nmean images/s (ratio new / old)")
    for name, rounds in [*report["predict"].items(), ("reference", report["reference"])]:
        old, new = (sum(v) / len(v) for v in rounds.values())
        print(f"  {name:10s} {old:9.0f} -> {new:9.0f}  ({new / old:.2f}x)")
    finish_report(report, Path(args.out))


if __name__ == "__main__":
    main()
