"""Command line: ``python -m fastloss {demo,bench,info}``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastloss", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="train a classifier with three losses and compare them",
                        add_help=False)
    commands.add_parser("bench", help="time fastloss against the reference and installed peers",
                        add_help=False)
    commands.add_parser("info", help="print version, build and SIMD/OpenMP configuration",
                        add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from ._demo import main as run
    elif args.command == "bench":
        from ._bench import main as run
    else:
        from ._config import main as run
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
