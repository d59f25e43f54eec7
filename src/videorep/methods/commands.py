"""``videorep train <method>``: one subcommand per entry of :data:`videorep.methods.METHODS`.

The flags of every subcommand are generated from three dataclasses (see
:mod:`videorep.utils.config`): the trainer's :class:`~videorep.train.trainer.TrainConfig` and the
method's own config and data config (its :class:`~videorep.train.method.MethodPlugin`). A run is
configured by, in order: the field defaults (with the method's trainer defaults), then
``--config FILE`` (JSON or YAML with the sections ``method_config``, ``data`` and ``train``, e.g.
the ``config.json`` of an earlier run), then the flags given on the command line. The run folder
and ``--resume`` are taken from the command line only, so replaying a run's ``config.json``
never writes into that run. The resolved config is saved as ``OUT/config.json``; ``--resume``
refuses a checkpoint written with other settings before anything is built
(:func:`videorep.train.trainer.check_resume`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from videorep.errors import VideorepError
from videorep.methods import METHODS, load_method
from videorep.train.commands import run_distributed
from videorep.train.method import MethodPlugin
from videorep.train.trainer import TrainConfig
from videorep.utils.config import (
    add_arguments,
    build,
    explicit_values,
    load_file,
    merge,
    parser_defaults,
)

#: sections of a config file, besides ``method`` (the method's name)
SECTIONS = ("method_config", "data", "train")
#: keys of a config file that are recorded but not read back
RECORD_ONLY = ("global_batch", "provenance")
#: sections of a recipe read by other commands (``evaluation``: the demo's fusion alpha)
OTHER_COMMANDS = ("evaluation",)
#: trainer settings taken from the command line only (never from ``--config``)
COMMAND_LINE_ONLY = ("out", "resume")


def add_method_parser(methods: argparse._SubParsersAction, plugin: MethodPlugin) -> None:
    """Add ``videorep train NAME`` with the flags generated from the plug-in's configs."""
    p = methods.add_parser(
        plugin.name, help=plugin.help, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="settings from a JSON or YAML file (e.g. a run's config.json or a recipe); flags "
        "given on the command line override them",
    )
    add_arguments(p.add_argument_group("data"), plugin.data_config, "data")
    add_arguments(p.add_argument_group("optimisation"), TrainConfig, "train", plugin.train_defaults)
    add_arguments(p.add_argument_group(plugin.name), plugin.method_config, "method_config")
    if plugin.name == "cosettle":
        _add_eval_every(p)
    p.set_defaults(func=lambda args: train_command(plugin, args))


def _add_eval_every(p: argparse.ArgumentParser) -> None:
    """``--eval-every N --eval-root DAVIS``: J&F of the head every N steps (analysis package)."""
    g = p.add_argument_group("evaluation during training")
    g.add_argument("--eval-every", type=int, default=0, metavar="N", help="evaluate every N steps")
    g.add_argument("--eval-root", default=None, metavar="DAVIS", help="DAVIS root to evaluate on")
    g.add_argument("--eval-size", default="480x880", help="evaluation input HxW")
    g.add_argument("--eval-split", default="val", help="DAVIS split")
    g.add_argument("--eval-max-frames", type=int, default=None, help="frames per sequence")


def _checkpoint_callback(args: argparse.Namespace, train: TrainConfig):  # noqa: ANN202
    """The ``on_checkpoint`` evaluator for ``--eval-every``, or ``None``."""
    every = getattr(args, "eval_every", 0) or 0
    if not every:
        return None
    if not args.eval_root:
        raise VideorepError("--eval-every needs --eval-root DAVIS")
    from videorep.analysis.checkpoint_eval import CheckpointEvaluator

    train.save_every = min(train.save_every, every)  # checkpoints where evaluations fall
    return CheckpointEvaluator(
        args.eval_root,
        every,
        size=args.eval_size,
        split=args.eval_split,
        max_frames=args.eval_max_frames,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=f"train a method ({', '.join(METHODS)})")
    methods = p.add_subparsers(dest="method", metavar="METHOD")
    methods.required = True
    for name in METHODS:
        add_method_parser(methods, load_method(name))


def resolve_configs(plugin: MethodPlugin, args: argparse.Namespace) -> tuple[Any, Any, TrainConfig]:
    """``(method config, data config, TrainConfig)``: defaults, then ``--config``, then flags."""
    file: dict[str, Any] = {}
    if args.config:
        file = load_file(args.config)
        name = file.get("method", plugin.name)
        if name != plugin.name:
            raise VideorepError(
                f"{args.config}: holds a {name} config, not one of {plugin.name}; "
                f"use videorep train {name}"
            )
        unknown = sorted(set(file) - {"method", *SECTIONS, *RECORD_ONLY, *OTHER_COMMANDS})
        if unknown:
            raise VideorepError(
                f"{args.config}: unknown section(s) {', '.join(unknown)}; "
                f"known: {', '.join(SECTIONS)}"
            )
    classes = {"method_config": plugin.method_config, "data": plugin.data_config}
    classes["train"] = TrainConfig
    configs = []
    for section in SECTIONS:
        layer = file.get(section) or {}
        if not isinstance(layer, dict):
            raise VideorepError(f"{args.config}: section {section} must be a mapping")
        if section == "train":
            layer = {k: v for k, v in layer.items() if k not in COMMAND_LINE_ONLY}
        values = merge(parser_defaults(args, section), layer, explicit_values(args, section))
        where = f"{args.config} ({section})" if args.config else section
        configs.append(build(classes[section], values, where))
    method_config, data, train = configs
    return method_config, data, train


def train_command(plugin: MethodPlugin, args: argparse.Namespace) -> int:
    """``videorep train NAME``: :func:`train_main` in the ``torchrun`` process group (if any),
    whose backend follows the run's ``--device`` (``--device cpu`` on a GPU machine: gloo)."""
    device = resolve_configs(plugin, args)[2].device
    return run_distributed(train_main, plugin, args, device=device)


def train_main(plugin: MethodPlugin, args: argparse.Namespace) -> int:
    """Resolve the configs, check a resume, train, print the plug-in's summary line."""
    from videorep.train.checkpoint import load_checkpoint
    from videorep.train.trainer import check_resume, dist_info

    method_config, data, train = resolve_configs(plugin, args)
    if plugin.prepare is not None:
        plugin.prepare(method_config, data)
    checkpoint = Path(train.out) / "checkpoint.pt"
    if train.resume and checkpoint.is_file():  # before anything (a view bank) is built
        config = {"method_config": asdict(method_config), "data": asdict(data)}
        config["train"] = asdict(train)
        check_resume(checkpoint, load_checkpoint(checkpoint), plugin.name, config)
    if train.deterministic:
        from videorep.train.distributed import set_deterministic

        set_deterministic()
    callback = _checkpoint_callback(args, train)
    extra = {"on_checkpoint": callback} if callback is not None else {}
    _, history = plugin.train(method_config, data, train, **extra)
    if history and plugin.summary is not None and dist_info()[0] == 0:
        line = plugin.summary(history, Path(train.out))
        if line is not None:
            print(json.dumps(line))
    return 0
