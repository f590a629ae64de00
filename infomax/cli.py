"""The `infomax` command line. Each verb lives in its own module; this file only routes."""
from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run

    return run(quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infomax", description="Representation learning by maximising mutual information.")
    parser.add_argument("--version", action="version", version=f"infomax {__import__('infomax').__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    demo = verbs.add_parser("demo", help="run the end-to-end demonstration")
    demo.add_argument("--quick", action="store_true", help="smaller shapes, a few seconds")
    demo.set_defaults(handler=_demo)
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
