"""The `ganaug` command line. Each command is a thin caller of a module; user errors become one
line `error: ...` and exit status 2."""

from __future__ import annotations

import argparse
import os
import sys

from .errors import UserError

EXIT_USER_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line like every other user error."""

    def error(self, message: str):
        raise UserError(f"{message} (see `{self.prog} --help`)")


def positive_int(text: str) -> int:
    """argparse type for counts that must be >= 1 (torch rejects 0 or negative thread counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


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
                   help="auto, fp32 or bf16 (auto: bf16 autocast where the hardware has it natively "
                        "and a timed training step is faster; measured once per machine and model, cached)")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (default: all cores)")
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
    tc.add_argument("--arch", default=None, help="shallow, deep, cnn or transfer")
    tc.add_argument("--dataset", default="fashion-mnist")
    tc.add_argument("--fraction", type=float, default=1.0, help="share of the real training data")
    tc.add_argument("--epochs", type=int, default=None)
    tc.add_argument("--batch-size", type=int, default=None)
    tc.add_argument("--lr", type=float, default=None)
    tc.add_argument("--classical-aug", action=argparse.BooleanOptionalAction, default=None,
                    help="random shifts, flips, erasing (default: on for transfer, off for the others)")
    tc.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                    help="evaluate and export the mean logits of each image and its mirror image "
                         "(default: on with classical augmentation)")
    tc.add_argument("--synthetic-from", default=None, metavar="GEN_RUN_DIR")
    tc.add_argument("--synthetic-ratio", type=float, default=None, help="synthetic images per real image")
    tc.add_argument("--synthetic-mode", default=None,
                    help="mix (default: train on real + synthetic) or pretrain (synthetic first, "
                         "then fine-tune on real)")
    tc.add_argument("--filter-with", default=None, metavar="CLASSIFIER_RUN_DIR",
                    help="keep only synthetic images this real-data classifier (same subset) "
                         "recognises with at least --min-confidence")
    tc.add_argument("--min-confidence", type=float, default=None)
    tc.add_argument("--pretrained", default=None, metavar="FILE",
                    help="transfer: torchvision-format ResNet-18 ImageNet weights")
    tc.add_argument("--checkpoint-every", type=float, default=None, metavar="SECONDS",
                    help="save a resumable checkpoint at most this often (default 60; 0 = every epoch)")
    tc.add_argument("--resume", default=None, metavar="RUN_DIR",
                    help="continue an interrupted run in its own folder (its saved settings)")
    plot_options(tc)

    tg = sub.add_parser("train-generator", parents=[common], help="train one conditional GAN")
    tg.add_argument("--arch", default=None, help="cgan, cdcgan, acgan or sngan")
    tg.add_argument("--dataset", default="fashion-mnist")
    tg.add_argument("--fraction", type=float, default=1.0,
                    help="share of the real training data (the same images a classifier with "
                         "this fraction and seed trains on)")
    tg.add_argument("--epochs", type=int, default=None)
    tg.add_argument("--batch-size", type=int, default=None)
    tg.add_argument("--lr-g", type=float, default=None, help="generator learning rate")
    tg.add_argument("--lr-d", type=float, default=None, help="discriminator learning rate")
    tg.add_argument("--g-depth", type=int, default=None, metavar="N",
                    help="convolutional generators: extra 3x3 conv blocks at 7x7 and 14x14 "
                         "(default 2)")
    tg.add_argument("--d-mbstd", type=int, default=None, metavar="GROUP",
                    help="convolutional discriminators: a minibatch standard-deviation channel over "
                         "groups of GROUP images, so D sees a lack of diversity (0 = off)")
    tg.add_argument("--d-depth", type=int, default=None, metavar="N",
                    help="convolutional discriminators: extra 3x3 conv blocks at 14x14 and 7x7 "
                         "(default 1)")
    tg.add_argument("--d-projection", action=argparse.BooleanOptionalAction, default=None,
                    help="cdcgan (default on), acgan: add sngan's projection term (class "
                         "embedding . channel sums) to the discriminator")
    tg.add_argument("--diffaugment", action=argparse.BooleanOptionalAction, default=None,
                    help="DiffAugment on real and fake batches (default: on below 2,000 real "
                         "training images, --fraction 0.03 and less; off above)")
    tg.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                    help="sample from an EMA of the generator's weights (default on)")
    tg.add_argument("--ema-decay", type=float, default=None)
    tg.add_argument("--mode-seeking", type=float, default=None, metavar="WEIGHT",
                    help="weight of the mode-seeking term that makes z matter (0 = off)")
    tg.add_argument("--aux-weight", type=float, default=None, metavar="WEIGHT",
                    help="acgan: weight of the class loss")
    tg.add_argument("--aux-fake-weight", type=float, default=None, metavar="SHARE",
                    help="acgan: share of the discriminator's class loss taken on fakes "
                         "(default 0: its class head learns from real images only)")
    tg.add_argument("--twin-weight", type=float, default=None, metavar="WEIGHT",
                    help="acgan: weight of TAC-GAN's twin classifier, a class head on fakes that G "
                         "must fool (counters the pull toward one prototype per class; 0 = off)")
    tg.add_argument("--no-cas", action="store_true",
                    help="skip the classification accuracy score (it trains a CNN)")
    tg.add_argument("--no-metrics", action="store_true", help="skip all generator metrics")
    tg.add_argument("--resume", default=None, metavar="RUN_DIR",
                    help="continue an interrupted run in its own folder")
    plot_options(tg)

    gen = sub.add_parser("generate", parents=[common], help="sample a class-balanced .npz")
    gen.add_argument("run_dir", metavar="GEN_RUN_DIR")
    gen.add_argument("--per-class", type=int, required=True)
    # --out here names the .npz file (the common --out is a folder).

    ev = sub.add_parser("evaluate-generator", parents=[common], help="recompute generator metrics")
    ev.add_argument("run_dir", metavar="GEN_RUN_DIR")
    ev.add_argument("--no-cas", action="store_true", help="skip the classification accuracy score")

    st = sub.add_parser("study", parents=[common], help="run the whole experiment (default: quick preset)")
    st.add_argument("--preset", default=None, help="smoke, quick (default), standard or full")
    st.add_argument("--config", default=None, metavar="FILE.toml", help="override preset fields")
    st.add_argument("--executor", default="local", help="local (default) or ray")
    st.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local one)")
    st.add_argument("--resume", nargs="?", const=True, default=None, metavar="STUDY_DIR",
                    help="continue the latest unfinished study (or STUDY_DIR), skipping finished tasks")
    st.add_argument("--plot-format", default=None, help="png (default), pdf or svg")
    st.add_argument("--workers", type=int, default=None,
                    help="local processes / Ray tasks at once (default: cores // threads per task); "
                         "also on --resume")
    st.add_argument("--interim", nargs="?", const=True, default=None, metavar="STUDY_DIR",
                    help="write a report of the tasks finished so far into STUDY_DIR/interim/ (default: "
                         "the latest unfinished study), running nothing; safe while the study runs")
    st.add_argument("--dry-run", action="store_true",
                    help="print the grid and the estimated time, then stop without writing anything")

    ref = sub.add_parser("build-reference", parents=[common],
                         help="rebuild the reference feature network of the generator metrics")
    ref.add_argument("--dataset", default="fashion-mnist")

    ex = sub.add_parser("export", parents=[common], help="re-export a saved run's model as ONNX")
    ex.add_argument("run_dir", metavar="RUN_DIR", help="a classifier or generator run folder")
    ex.add_argument("--format", default="onnx", help="onnx (default; the only format)")

    demo = sub.add_parser("demo", parents=[common],
                          help="serve the in-browser demo of the runs under --out")
    demo.add_argument("--port", type=int, default=8000, help="0 picks a free port (default 8000)")
    demo.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this machine only)")
    demo.add_argument("--open", action="store_true", help="open the page in a web browser")
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
    from .train_classifier import resume_classifier, train_classifier

    if args.resume:
        result = resume_classifier(args.resume)
        report_classifier(result)
        return
    report_classifier(train_classifier(classifier_config_from_args(args), args.data_dir, args.out))


def classifier_config_from_args(args):
    """The ClassifierConfig that `train-classifier` (without --resume) trains with."""
    from dataclasses import replace

    from .config import TransferConfig, classifier_config

    if not args.arch:
        raise UserError("--arch is required (shallow, deep, cnn or transfer) unless --resume is given")
    cfg = classifier_config(
        args.arch, dataset=args.dataset, fraction=args.fraction, seed=args.seed,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        classical_aug=args.classical_aug, flip_tta=args.flip_tta, synthetic_from=args.synthetic_from,
        synthetic_ratio=args.synthetic_ratio, synthetic_mode=args.synthetic_mode,
        synthetic_filter_from=args.filter_with, synthetic_min_confidence=args.min_confidence,
        precision=args.precision, device=args.device,
        plot_format=args.plot_format, tensorboard=args.tensorboard,
        checkpoint_seconds=args.checkpoint_every)
    if args.pretrained:
        cfg = replace(cfg, transfer=replace(TransferConfig(), pretrained=args.pretrained))
    return cfg


def report_classifier(result) -> None:
    m = result.metrics
    print(f"{result.run.name}: test accuracy {m['test']['accuracy']:.4f}, macro F1 "
          f"{m['test']['f1']:.4f}, {m['epochs']} epochs in {m['seconds']:.0f} s")
    print(f"results: {result.run.results}")
    print(f"models:  {result.run.models}")


def cmd_train_generator(args) -> None:
    from .gan_config import generator_config
    from .train_generator import resume_generator, train_generator

    if args.resume:
        result = resume_generator(args.resume)
    else:
        if not args.arch:
            raise UserError("--arch is required (cgan, cdcgan, acgan or sngan) unless --resume is given")
        cfg = generator_config(
            args.arch, dataset=args.dataset, fraction=args.fraction, seed=args.seed,
            epochs=args.epochs, batch_size=args.batch_size, lr_g=args.lr_g, lr_d=args.lr_d,
            g_depth=args.g_depth, d_mbstd=args.d_mbstd, d_depth=args.d_depth,
            d_projection=args.d_projection,
            diffaugment=args.diffaugment, ema=args.ema, ema_decay=args.ema_decay,
            mode_seeking=args.mode_seeking, aux_weight=args.aux_weight,
            aux_fake_weight=args.aux_fake_weight, twin_weight=args.twin_weight,
            precision=args.precision, device=args.device, plot_format=args.plot_format,
            tensorboard=args.tensorboard, cas=not args.no_cas, evaluate=not args.no_metrics)
        result = train_generator(cfg, args.data_dir, args.out)
    m = result.metrics
    summary = f"{result.run.name}: {m['epochs']} epochs in {m['seconds']:.0f} s"
    for key in ("fd_domain", "recall_k3", "gan_test_accuracy", "cas_accuracy"):
        if key in m:
            summary += f", {key} {m[key]:.4g}"
    print(summary)
    print(f"results: {result.run.results}")
    print(f"models:  {result.run.models}")


def cmd_generate(args) -> None:
    from .generate import generate_command

    print(generate_command(args.run_dir, args.per_class, args.out, args.seed))


def cmd_evaluate_generator(args) -> None:
    from .generate import evaluate_command

    m = evaluate_command(args.run_dir, args.data_dir, cas=not args.no_cas, device=args.device)
    for key in ("fd_domain", "kid_domain", "precision_k3", "recall_k3", "density", "coverage",
                "gan_test_accuracy", "cas_accuracy"):
        if key in m:
            print(f"{key:18s} {m[key]:.4f}")


def cmd_study(args) -> None:
    from dataclasses import replace

    from .study import run_study
    from .study_config import load_study_config

    if args.interim:
        if args.resume or args.preset or args.config or args.dry_run:
            raise UserError("--interim reports on an existing study; drop --resume/--preset/--config/--dry-run")
        from .study import interim_report

        interim_report(args.out, args.interim)
        return
    cfg = None
    if not args.resume:
        cfg = load_study_config(args.preset, args.config)
        overrides = {"precision": args.precision, "device": args.device}
        if args.plot_format:
            overrides["plot_format"] = args.plot_format
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v != "auto" or k == "plot_format"})
    elif args.preset or args.config:
        raise UserError("--resume continues a study with its saved configuration; drop --preset/--config")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1; got {args.workers}")
    if args.dry_run:
        if args.resume:
            raise UserError("--dry-run shows a new study's plan; it cannot be combined with --resume")
        from .study import plan_study

        plan_study(cfg, args.executor, workers=args.workers)
        return
    run_study(cfg, args.out, args.data_dir, executor=args.executor, ray_address=args.ray_address,
              resume=args.resume, workers=args.workers)


def cmd_build_reference(args) -> None:
    from .reference import build_reference, reference_path

    meta = build_reference(args.dataset, args.data_dir, args.device)
    print(f"reference network {reference_path(args.dataset)}: validation accuracy "
          f"{meta['val_accuracy']:.4f}, test accuracy {meta['test_accuracy']:.4f}")


def cmd_export(args) -> None:
    from .export_cmd import export_command

    for line in export_command(args.run_dir, args.format):
        print(line)


def cmd_demo(args) -> None:
    from .demo import serve

    serve(args.out, host=args.host, port=args.port, open_browser=args.open)


COMMANDS = {"data": cmd_data, "train-classifier": cmd_train_classifier,
            "train-generator": cmd_train_generator, "generate": cmd_generate,
            "evaluate-generator": cmd_evaluate_generator, "build-reference": cmd_build_reference,
            "export": cmd_export, "demo": cmd_demo, "study": cmd_study}


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
              "(classifiers, generators and studies resume with --resume)", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def main() -> None:
    from .runtime import tune_malloc

    tune_malloc()
    sys.exit(run())
