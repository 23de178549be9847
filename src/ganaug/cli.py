"""The `ganaug` command line. Each command is a thin caller of a module; user errors become one
line `error: ...` and exit status 2."""

from __future__ import annotations

import argparse
import os
import sys

from .errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line like every other user error."""

    def error(self, message: str):
        raise UserError(f"{message} (see `{self.prog} --help`)")


def common_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--data-dir", default=os.environ.get("GANAUG_DATA_DIR", "./data"),
                   help="folder with <dataset>/*.gz (env GANAUG_DATA_DIR; default ./data)")
    g.add_argument("--out", default=os.environ.get("GANAUG_OUT", "."),
                   help="folder that holds models/ and results/ (env GANAUG_OUT; default .)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda (auto uses CUDA if present)")
    g.add_argument("--precision", default="auto",
                   help="auto, fp32 or bf16 (auto: bf16 autocast where the hardware has it)")
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    return p


def plot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plot-format", default="png", help="png (default), pdf or svg")
    p.add_argument("--tensorboard", action="store_true", help="also log to tensorboard/ in the run folder")


def build_parser() -> Parser:
    common = common_options()
    parser = Parser(prog="ganaug", description="Does synthetic data from a conditional GAN make "
                    "an image classifier better, and when?")
    parser.add_argument("--version", action="version", version=f"ganaug {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    data = sub.add_parser("data", help="check or download the data sets")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    check = data_sub.add_parser("check", parents=[common], help="verify checksums and print counts")
    check.add_argument("--dataset", default=None, help="one data set (default: all)")
    dl = data_sub.add_parser("download", parents=[common], help="fetch the official files")
    dl.add_argument("--dataset", required=True)
    dl.add_argument("--mirror", default=None, help="base URL to fetch from instead of the official ones")

    tc = sub.add_parser("train-classifier", parents=[common], help="train one classifier")
    tc.add_argument("--arch", required=True, help="shallow, deep, cnn or transfer")
    tc.add_argument("--dataset", default="fashion-mnist")
    tc.add_argument("--fraction", type=float, default=1.0, help="share of the real training data")
    tc.add_argument("--epochs", type=int, default=None)
    tc.add_argument("--batch-size", type=int, default=None)
    tc.add_argument("--lr", type=float, default=None)
    tc.add_argument("--classical-aug", action="store_true", help="random shifts, flips, erasing")
    tc.add_argument("--synthetic-from", default=None, metavar="GEN_RUN_DIR")
    tc.add_argument("--synthetic-ratio", type=float, default=None, help="synthetic images per real image")
    tc.add_argument("--pretrained", default=None, metavar="FILE",
                    help="transfer: torchvision-format ResNet-18 ImageNet weights")
    plot_options(tc)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ganaug")
    except PackageNotFoundError:
        return "unknown"


def cmd_data(args) -> None:
    from . import download
    from .data import DATASETS, get_dataset

    if args.data_command == "check":
        names = [args.dataset] if args.dataset else list(DATASETS)
        for name in names:
            get_dataset(name)
            for line in download.check(args.data_dir, name):
                print(line)
        print("all files match the official checksums")
    else:
        for line in download.download(args.data_dir, args.dataset, args.mirror):
            print(line)


def cmd_train_classifier(args) -> None:
    from dataclasses import replace

    from .config import TransferConfig, classifier_config
    from .train_classifier import train_classifier

    cfg = classifier_config(
        args.arch, dataset=args.dataset, fraction=args.fraction, seed=args.seed,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        classical_aug=args.classical_aug, synthetic_from=args.synthetic_from,
        synthetic_ratio=args.synthetic_ratio, precision=args.precision, device=args.device,
        plot_format=args.plot_format, tensorboard=args.tensorboard)
    if args.pretrained:
        cfg = replace(cfg, transfer=replace(TransferConfig(), pretrained=args.pretrained))
    result = train_classifier(cfg, args.data_dir, args.out)
    m = result.metrics
    print(f"{result.run.name}: test accuracy {m['test']['accuracy']:.4f}, macro F1 "
          f"{m['test']['f1']:.4f}, {m['epochs']} epochs in {m['seconds']:.0f} s")
    print(f"results: {result.run.results}")
    print(f"models:  {result.run.models}")


COMMANDS = {"data": cmd_data, "train-classifier": cmd_train_classifier}


def run(argv: list[str] | None = None) -> int:
    """Parse and run one command; return the exit status (used by tests in-process)."""
    try:
        args = build_parser().parse_args(argv)
        from .runtime import set_threads

        set_threads(args.threads)
        COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted; the unfinished run folder is marked INCOMPLETE "
              "(generators and studies resume with --resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def main() -> None:
    from .runtime import tune_malloc

    tune_malloc()
    sys.exit(run())
