"""Several heads on one encoder pass: the Tab. 10-style comparison (JSON, text, HTML, bar plot)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from videorep.analysis.features import cached_encode_videos, project_videos
from videorep.analysis.tradeoff import PAPER_GAMMA, gamma_from, tradeoff_metrics
from videorep.errors import VideorepError

FROZEN = "frozen encoder"
#: ``frozen``: gamma of the frozen encoder alone; ``models``: Eq. 54 over all compared models;
#: or a number (the paper uses 0.3)
GAMMA_RULES = ("frozen", "models")


def resolve_gamma(rule: str | float, results: Mapping) -> tuple[float, str]:
    """The scale factor ``gamma`` for the margin and a note saying how it was chosen."""
    if isinstance(rule, (int, float)):
        return float(rule), f"fixed ({float(rule):g})"
    text = str(rule)
    if text == "frozen":
        if FROZEN not in results:
            raise VideorepError("--gamma frozen needs the frozen encoder in the comparison")
        return gamma_from(results[FROZEN]), "E[D_intra^ori] / E[D_inter^ori] of the frozen encoder"
    if text == "models":
        return gamma_from(list(results.values())), "Eq. 54 over the compared models"
    try:
        return float(text), f"fixed ({float(text):g})"
    except ValueError:
        raise VideorepError(f"--gamma {rule!r}: use frozen, models or a number") from None


def compare_heads(
    encoder: torch.nn.Module,
    sources: Sequence,
    heads: Mapping[str, torch.nn.Module | None],
    frames: int = 40,
    pairs: str = "authors",
    protocol: str = "paper",
    gamma: str | float = "frozen",
    tau: float = 0.03,
    pool: int = 2,
    l2: bool = False,
    resize: int = 256,
    crop: int = 224,
    device: torch.device | str = "cpu",
    progress: bool = True,
    cache: str | None = None,
    cache_key: dict | None = None,
) -> dict:
    """Trade-off metrics of ``heads`` (label -> head, ``None`` = the encoder's own tokens).

    The encoder runs once per frame; every head projects the same tokens. Returns a
    JSON-serialisable summary: ``rows`` (label -> metrics + ``margin``), ``gamma``, ``videos``.
    """
    videos, grid = cached_encode_videos(
        cache, cache_key or {}, encoder, sources, frames, resize, crop, device, progress
    )
    results = {}
    for label, head in heads.items():
        tokens = project_videos(videos, head, device=device)
        results[label] = tradeoff_metrics(
            tokens, grid, pairs=pairs, protocol=protocol, tau=tau, pool=pool, l2=l2
        )
    g, rule = resolve_gamma(gamma, results)
    rows = {}
    for label, r in results.items():
        row = r.to_dict()
        for p, v in zip(row["per_video"], videos):
            p["name"] = v.name
        row["margin"] = r.margin(g)
        row["margin_paper_gamma"] = r.margin(PAPER_GAMMA)
        rows[label] = row
    return {
        "gamma": g,
        "gamma_rule": rule,
        "rows": rows,
        "videos": [{"name": v.name, "frames": len(v.indices), "of": v.num_frames} for v in videos],
        "grid": list(grid),
        "settings": {
            "frames": frames,
            "pairs": pairs,
            "protocol": protocol,
            "tau": tau,
            "pool": pool,
            "l2": l2,
            "resize": resize,
            "crop": crop,
        },
    }


COLUMNS = (
    ("D_inter", "d_inter"),
    ("D_intra", "d_intra"),
    ("D", "margin"),
    ("Cyc.Acc", "cycle_acc"),
    ("D_inter^ori", "d_inter_ori"),
    ("D_intra^ori", "d_intra_ori"),
)


def format_table(summary: dict) -> str:
    """The comparison as fixed-width text (one row per model)."""
    width = max(len(k) for k in summary["rows"]) + 2
    head = "model".ljust(width) + "".join(f"{c:>13}" for c, _ in COLUMNS)
    lines = [head]
    for label, row in summary["rows"].items():
        lines.append(label.ljust(width) + "".join(f"{row[k]:>13.4f}" for _, k in COLUMNS))
    lines.append(
        f"gamma = {summary['gamma']:.4f} ({summary['gamma_rule']}); {len(summary['videos'])} "
        f"videos, protocol {summary['settings']['protocol']}, pairs {summary['settings']['pairs']}"
    )
    return "\n".join(lines)


def html_table(summary: dict) -> str:
    """The comparison as an HTML table (for reports)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c, _ in COLUMNS)
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(f"<td>{row[k]:.4f}</td>" for _, k in COLUMNS)
        + "</tr>"
        for label, row in summary["rows"].items()
    )
    note = (
        f"<p>gamma = {summary['gamma']:.4f} ({html.escape(summary['gamma_rule'])}); "
        f"{len(summary['videos'])} videos; protocol {summary['settings']['protocol']}, "
        f"D_intra frame pairs {summary['settings']['pairs']}; Resize {summary['settings']['resize']} "
        f"+ CenterCrop {summary['settings']['crop']}.</p>"
    )
    return f"<table><tr><th>model</th>{head}</tr>{rows}</table>{note}"


def bar_plot(summary: dict, path: str | Path) -> Path:
    """Grouped bars of D_inter, D_intra, D and the cycle accuracy per model (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary["rows"])
    metrics = COLUMNS[:4]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(metrics), 3.2))
    width = 0.8 / max(1, len(labels))
    for k, label in enumerate(labels):
        xs = [i + (k - (len(labels) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, [summary["rows"][label][key] for _, key in metrics], width, label=label)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([c for c, _ in metrics])
    ax.set_title(f"trade-off metrics (gamma = {summary['gamma']:.3f})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def write_summary(summary: dict, out: str | Path, stem: str = "tradeoff") -> tuple[Path, Path]:
    """``OUT/STEM.json`` and ``OUT/STEM.png``."""
    from videorep.utils.config import write_json_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{stem}.json"
    write_json_atomic(json.loads(json.dumps(summary)), json_path)
    return json_path, bar_plot(summary, out / f"{stem}.png")
