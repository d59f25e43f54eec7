"""The ``videorep`` command line.

Each subcommand lives next to the code it drives and registers itself through a
``register(subparsers)`` function listed in ``COMMAND_MODULES``; this module only assembles them,
runs the chosen handler, and turns a :class:`~videorep.errors.VideorepError` into one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from videorep.errors import Interrupted, VideorepError

# Modules exposing ``register(subparsers)``. Imports inside handlers stay lazy so that
# ``videorep --help`` does not pay for importing torch.
COMMAND_MODULES = [
    "videorep.backbones.commands",
    "videorep.data.commands",
    "videorep.methods.commands",
    "videorep.eval.commands",
    "videorep.methods.bodvcl.commands",  # eval finetune (needs the trainer, so not in eval/)
    "videorep.demo",
    "videorep.experiments.commands",
    "videorep.analysis.commands",
    "videorep.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videorep",
        description="Self-supervised video representation learning and evaluation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except VideorepError as exc:
        if isinstance(exc, Interrupted):  # Ctrl-C: work saved; 128 + SIGINT
            if exc.announce:  # torchrun: rank 0 only
                print(f"videorep: {exc}", file=sys.stderr)
            return 130
        print(f"videorep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("videorep: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
