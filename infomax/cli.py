"""The `infomax` command line. Each verb lives in its own module; this file only routes."""
from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run

    return run(quick=args.quick)


def _data_check(args: argparse.Namespace) -> int:
    from .data.check import run

    return run(args.name, args.data_root, download=args.download, image_size=args.image_size)


def add_data_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", metavar="DIR", help="where datasets live (default: $INFOMAX_DATA, else ~/.cache/infomax/data)")
    parser.add_argument("--download", action="store_true", help="fetch missing public datasets (needs network)")
    parser.add_argument("--image-size", type=int, metavar="N", help="imagefolder only: resize images to N x N")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infomax", description="Representation learning by maximising mutual information.")
    parser.add_argument("--version", action="version", version=f"infomax {__import__('infomax').__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    demo = verbs.add_parser("demo", help="run the end-to-end demonstration")
    demo.add_argument("--quick", action="store_true", help="smaller shapes, a few seconds")
    demo.set_defaults(handler=_demo)

    data = verbs.add_parser("data", help="inspect datasets").add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    check = data.add_parser("check", help="find, decode and verify a dataset; print a JSON summary")
    check.add_argument("name", help="cifar10, cifar100, mnist, fashion-mnist, svhn, stl10, imagefolder, digits, mnist-5k")
    add_data_root(check)
    check.set_defaults(handler=_data_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
