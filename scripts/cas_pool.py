"""Score the pool of several finished generator runs as one generator: feature metrics and CAS.

Same protocol as ``ganaug evaluate-generator`` (1,000 generated images per class for fd/kid/prdc/GAN-test,
5,000 per class for CAS, the default CNN, the real test split) except that the images come in equal shares
from every run given, so one can ask whether generators trained with other seeds draw other things::

    python scripts/cas_pool.py pool.json "results/generators/ACGANOriginalGenerator Run 1" "...Run 2" ...

With one run it scores that run's generator on the same footing (other sampling noise than the run's own
metrics.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ganaug.data import get_dataset  # noqa: E402
from ganaug.errors import UserError  # noqa: E402
from ganaug.gen_metrics import balanced_subset, cas_accuracy, feature_metrics  # noqa: E402
from ganaug.generate import generate_balanced, load_generator  # noqa: E402
from ganaug.runs import atomic_write_json  # noqa: E402
from ganaug.runtime import set_threads  # noqa: E402

NOISE_SEED = 12_345  # run i samples with NOISE_SEED + i


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="JSON file for the metrics")
    parser.add_argument("runs", nargs="+", help="generator run folders (same data set)")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--seed", type=int, default=0, help="seed of the feature metrics' draw and of the CAS classifier")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and BLAS threads, as ganaug's --threads (default: all cores)")
    parser.add_argument("--no-cas", action="store_true", help="feature metrics only (CAS trains a CNN: minutes)")
    args = parser.parse_args()

    set_threads(args.threads)
    gens = [load_generator(run) for run in args.runs]
    datasets = {g.cfg.dataset for g in gens}
    if len(datasets) != 1:
        raise UserError(f"the runs use different data sets: {sorted(datasets)}")
    info = get_dataset(datasets.pop())
    protocol = gens[0].cfg  # the per-class image counts of evaluate-generator, as the runs resolved them
    share = protocol.cas_per_class // len(gens)
    pools = [generate_balanced(g, share, NOISE_SEED + i) for i, g in enumerate(gens)]
    images = torch.cat([x for x, _ in pools])
    labels = torch.cat([y for _, y in pools])
    # the feature metrics on metric_per_class images per class, drawn at random from the pool
    subset = torch.from_numpy(balanced_subset(labels.numpy(), protocol.metric_per_class, args.seed))
    start = time.perf_counter()
    metrics = feature_metrics(images[subset], labels[subset], info.name, args.data_dir)
    if not args.no_cas:
        metrics.update(cas_accuracy(images, labels, info, args.data_dir, args.seed, torch.device("cpu")))
    metrics.update({"runs": [str(g.run.results) for g in gens], "per_run_per_class": share,
                    "seconds": round(time.perf_counter() - start, 1)})
    atomic_write_json(Path(args.out), metrics)
    print(json.dumps({k: metrics[k] for k in ("fd_domain", "recall_k3", "coverage", "gan_test_accuracy",
                                              "cas_accuracy") if k in metrics}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:  # a run folder that is missing or not a finished generator
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
