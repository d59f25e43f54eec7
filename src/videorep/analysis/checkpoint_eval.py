"""Evaluate checkpoints during training (``videorep train cosettle --eval-every N --eval-root DAVIS``).

:class:`CheckpointEvaluator` is the trainer's ``on_checkpoint`` callback: every ``N`` steps (and at
the last step) it runs DAVIS label propagation with the head as it is, on the shared propagation
engine (:func:`videorep.eval.davis.run_davis`), into ``OUT/evals/step-NNNNNN``, and appends
``{"step", "J&F", "J", "F"}`` to ``OUT/checkpoint_evals.jsonl``. The frozen encoder is evaluated
once (``step 0``, ``"frozen": true``) as the reference, and its features are cached across
checkpoints (the encoder is frozen), so each evaluation pays only the head and the propagation.
This is the paper's Fig. 2 (downstream performance over training steps).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from videorep.data.images import parse_size
from videorep.errors import VideorepError
from videorep.eval.presets import DEFAULT_PRESET

LOG = "checkpoint_evals.jsonl"


class CheckpointEvaluator:
    """``on_checkpoint`` callback evaluating the method's head on DAVIS every ``every`` steps."""

    def __init__(
        self,
        root: str | Path,
        every: int,
        size: str = "480x880",
        split: str = "val",
        sequences: list[str] | None = None,
        max_frames: int | None = None,
        preset: str | None = None,
    ) -> None:
        if every < 1:
            raise VideorepError(f"--eval-every {every}: must be at least 1")
        self.root = Path(root)
        if not (self.root / "JPEGImages").is_dir():
            raise VideorepError(f"--eval-root {self.root}: not a DAVIS root (no JPEGImages/)")
        self.year = 2017 if (self.root / "ImageSets" / "2017").is_dir() else 2016
        self.every, self.size, self.split = int(every), parse_size(size), split
        self.sequences, self.max_frames = sequences, max_frames
        self.preset = preset or DEFAULT_PRESET
        self._cached = None
        self.records: list[dict] = []

    def _run(self, trainer, head, name: str) -> dict:  # noqa: ANN001
        from videorep.eval.core import FeatureExtractor
        from videorep.eval.davis import run_davis
        from videorep.eval.feature_cache import CachingEncoder
        from videorep.eval.propagation import resolve_config

        if self._cached is None:
            self._cached = CachingEncoder(trainer.method.encoder)
        extractor = FeatureExtractor(self._cached, self.size, projection=head)
        return run_davis(
            self.root,
            self.year,
            self.split,
            extractor,
            resolve_config(self.preset, "davis"),
            Path(trainer.config.out) / "evals" / name,
            sequences=self.sequences,
            max_frames=self.max_frames,
            settings={"run": name, "step": trainer.step},
            log=lambda m: print(m, file=sys.stderr),
        )

    def _record(self, trainer, step: int, results: dict, frozen: bool) -> None:  # noqa: ANN001
        record = {
            "step": step,
            "frozen": frozen,
            "J&F": results["JF_mean"],
            "J": results["J_mean"],
            "F": results["F_mean"],
        }
        self.records.append(record)
        with open(Path(trainer.config.out) / LOG, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def __call__(self, trainer) -> None:  # noqa: ANN001
        step = int(trainer.step)
        if step % self.every and step != trainer.total_steps:
            return
        log = Path(trainer.config.out) / LOG
        done = set()
        if log.is_file():
            for line in log.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                done.add((rec.get("step"), rec.get("frozen")))
        method = trainer.method
        was_training = method.training
        method.eval()
        try:
            with torch.no_grad():
                if (0, True) not in done:
                    self._record(trainer, 0, self._run(trainer, None, "frozen"), True)
                if (step, False) not in done:
                    results = self._run(trainer, method.head, f"step-{step:06d}")
                    self._record(trainer, step, results, False)
        finally:
            method.train(was_training)


def read_checkpoint_evals(run_dir: str | Path) -> list[dict]:
    """The records of ``RUN_DIR/checkpoint_evals.jsonl`` (empty when there is none)."""
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
