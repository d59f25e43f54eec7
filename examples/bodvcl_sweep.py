"""Sweep BOD-VCL's xi, nu, M (Koopman dimension) and inner-loop steps on the synthetic videos.

The paper's Tables 9-12 (inner steps, xi, M) and Fig. 12 (nu) vary one setting at a time around
the defaults (xi 0.1, nu 1e-4, M 128, 1 inner step) and report linear-probe accuracy. This script
does the same on the synthetic four-factor videos of Sec. 5.5 (:mod:`videorep.experiments.
synthetic`, independent factors): for every value it pre-trains BOD-VCL (V-SimCLR, the tiny3d
encoder, the paper's recipe: LARS, colour distortion, AID-FD with the kept inner step) for
``--steps`` steps on views that are two renders of the same factors, then fits a linear probe per
factor on the frozen encoder's time-averaged features.

    PYTHONPATH=src python examples/bodvcl_sweep.py --out OUT            # the default grid
    PYTHONPATH=src python examples/bodvcl_sweep.py --out OUT --xi 0.05 0.1 0.3 --nu --koopman-dim \\
        --inner-steps --steps 200                                      # xi only

Writes ``OUT/results.json`` (atomically, after every run; a rerun skips finished runs) and prints
one line per run. Bad values (xi outside (0, 1), M < 2, ...) stop the script before any training
with one line naming the setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from videorep.errors import VideorepError

DEFAULTS = {"xi": 0.1, "nu": 1e-4, "koopman_dim": 128, "inner_steps": 1}
GRID = {
    "xi": [0.01, 0.1, 0.2, 0.3, 0.4],  # Table 11
    "nu": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2],  # Fig. 12
    "koopman_dim": [32, 64, 128, 256],  # Table 12
    "inner_steps": [1, 5, 10],  # Table 9
}


def runs(grid: dict[str, list]) -> list[dict]:
    """One-at-a-time variations around :data:`DEFAULTS` (the defaults once)."""
    out = [dict(DEFAULTS)]
    for name, values in grid.items():
        for value in values:
            cfg = {**DEFAULTS, name: value}
            if cfg not in out:
                out.append(cfg)
    return out


def run_name(cfg: dict) -> str:
    return ",".join(f"{k}={cfg[k]}" for k in DEFAULTS)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    return (x - mean) / std


def train_and_probe(cfg: dict, args: argparse.Namespace, pool, probe) -> dict:  # noqa: ANN001
    """Pre-train one BOD-VCL model; per-factor probe accuracy and the last losses."""
    from videorep.experiments.synthetic import FACTORS, sample_factors
    from videorep.methods.bodvcl.method import build_bodvcl
    from videorep.methods.bodvcl.probe import linear_probe
    from videorep.train.config import TrainConfig

    torch.manual_seed(args.seed)
    model = build_bodvcl(
        {**cfg, "encoder": "tiny3d", "framework": "simclr", "proj_hidden_dim": 256}
    )
    opt = model.build_optimizer(
        model.trainable_parameters(), args.lr, TrainConfig(out=str(args.out), weight_decay=1e-6)
    )
    model.set_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    losses = []
    for step in range(args.steps):
        v0, v1 = pool.pairs(sample_factors(args.batch, "independent", gen), gen)
        model.before_optimizer_step(step)
        metrics = model.optimizer_step([{"clips": _normalise(torch.stack([v0, v1], 1))}], opt, 1.0)
        model.after_optimizer_step(step, args.steps)
        losses.append({k: float(v) for k, v in metrics.items()})
    model.eval()
    feats = {}
    with torch.no_grad():
        for split in ("train", "test"):
            x = _normalise(probe[f"{split}_x"].float() / 255)
            feats[split] = torch.cat(
                [model.online.encoder(c).mean(1) for c in x.split(128)]
            )  # [N, C]
    acc = {
        f: linear_probe(
            feats["train"], probe["train_y"][:, i], feats["test"], probe["test_y"][:, i]
        )["top1"]
        for i, f in enumerate(FACTORS)
    }
    last = losses[-1]
    keys = ("loss", "l_pred", "l_pred_mse", "l_pred_ortho", "hyper_rel", "inner_rel")
    return {"acc": acc, "last": {k: last[k] for k in keys if k in last}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (results.json)")
    for name, values in GRID.items():
        flag = "--" + name.replace("_", "-")
        kind = int if name in ("koopman_dim", "inner_steps") else float
        p.add_argument(
            flag, type=kind, nargs="*", default=values, help=f"values (default {values})"
        )
    p.add_argument("--steps", type=int, default=300, help="pre-training steps per run (300)")
    p.add_argument("--batch", type=int, default=32, help="videos per batch (32)")
    p.add_argument("--lr", type=float, default=1.0, help="LARS learning rate (1.0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    args = p.parse_args(argv)
    try:
        return _main(args)
    except VideorepError as exc:
        print(f"bodvcl_sweep: error: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    from videorep.experiments.synthetic import SyntheticConfig, VideoPool, make_probe_set
    from videorep.methods.bodvcl.method import BODVCLConfig

    grid = {name: getattr(args, name) for name in GRID}
    todo = runs(grid)
    for cfg in todo:  # every value is checked before anything trains
        try:
            BODVCLConfig(**cfg).validate()
        except TypeError as exc:
            raise VideorepError(f"bad setting in {run_name(cfg)}: {exc}") from exc
        if cfg["koopman_dim"] < 2:
            raise VideorepError(f"--koopman-dim must be at least 2, got {cfg['koopman_dim']}")
    for name in ("steps", "batch"):
        if getattr(args, name) < 2:
            raise VideorepError(f"--{name} must be at least 2, got {getattr(args, name)}")
    if args.quick:
        todo = todo[:2]
        args.steps = 2
        args.batch = 4
    syn = SyntheticConfig(seed=args.seed)
    if args.quick:
        syn = SyntheticConfig.quick()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VideorepError(f"cannot create {args.out}: {exc}") from exc
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    pool = VideoPool(syn.pool_per_tuple, torch.Generator().manual_seed(args.seed + 2))
    probe = make_probe_set(syn)
    for cfg in todo:
        name = run_name(cfg)
        if name in results:
            print(f"{name}: done before, skipped")
            continue
        t0 = time.time()
        res = train_and_probe(cfg, args, pool, probe)
        res.update(config=cfg, seconds=round(time.time() - t0, 1), steps=args.steps)
        results[name] = res
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2))
        tmp.replace(path)
        accs = " ".join(f"{k}={v:.3f}" for k, v in res["acc"].items())
        print(f"{name}: {accs} loss={res['last']['loss']:.3f} ({res['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
