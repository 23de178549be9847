"""What the mirror-image average (``--flip-tta``) would give a finished classifier run that was trained
without it: validation and test accuracy from one view per image and from the mean logits of each image
and its mirror image, computed from the run's ``model.onnx`` with onnxruntime::

    python scripts/flip_tta.py "results/classifiers/TransferLearningNNOriginalClassifier Run 1"

The validation split is rebuilt from the run's config.json (same data set, fraction, seed and split
function). A run trained with ``--flip-tta`` already holds the average in its graph: this script says so
and stops, since mirroring its input again would measure nothing new.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ganaug.data import prepare  # noqa: E402
from ganaug.errors import UserError  # noqa: E402
from ganaug.export import onnx_session  # noqa: E402
from ganaug.runs import resolve_run  # noqa: E402

BATCH = 500


def logits(session, images: np.ndarray) -> np.ndarray:
    x = (images[:, None] / 255).astype(np.float32)
    return np.concatenate([session.run(["logits"], {"image": x[i:i + BATCH]})[0]
                           for i in range(0, len(x), BATCH)])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a classifier run folder (results/ or models/ twin)")
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args(argv)
    run = resolve_run(args.run, "classifiers")
    config = json.loads((run.results / "config.json").read_text())
    if config.get("flip_tta"):
        raise UserError(f"{run.results} was trained with --flip-tta: its metrics.json already has both "
                        "(test, test_single_view)")
    session = onnx_session(run.models / "model.onnx")
    data = prepare(args.data_dir, config["dataset"], config["fraction"], config["seed"], config["val_fraction"])
    out = {}
    for split, x, y in (("val", data.val_x, data.val_y), ("test", data.test_x, data.test_y)):
        images, labels = x.numpy(), y.numpy()
        one, mirrored = logits(session, images), logits(session, images[:, :, ::-1])
        out[split] = {"one_view": float((one.argmax(1) == labels).mean()),
                      "mirror_average": float(((one + mirrored).argmax(1) == labels).mean())}
        print(f"{split}: one view {out[split]['one_view']:.4f}, mean of both views "
              f"{out[split]['mirror_average']:.4f} ({len(labels)} images)")
    return out


if __name__ == "__main__":
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
