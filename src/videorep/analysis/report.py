"""``videorep report RUN_DIR``: one self-contained report.html of a run.

Gathers what the folder holds: the training curves of ``log.jsonl`` (loss terms, cycle accuracy,
learning rate), the checkpoint evaluations of ``checkpoint_evals.jsonl`` (J&F over steps, the
paper's Fig. 2), every evaluation ``results.json`` below it, and the analyses written by
``videorep analyze`` (``tradeoff.json``, ``spectrum.json``, ``shortcut.json`` with their PNGs).
Images are embedded as base64, so the file can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from videorep.errors import VideorepError

SKIP_DIRS = ("view_bank", "tensorboard")


def _uri_of_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _uri_of_fig(fig) -> str:  # noqa: ANN001
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def _find(run: Path, name: str) -> list[Path]:
    return sorted(p for p in run.rglob(name) if not any(part in SKIP_DIRS for part in p.parts))


def training_curves(history: list[dict]) -> str | None:
    """A PNG data URI with one panel per logged curve (loss terms, cycle accuracy, lr)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        k
        for k in ("loss", "cycle_loss", "reg_loss", "cycle_acc", "lr")
        if any(k in r for r in history)
    ]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        rows = [r for r in history if key in r]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], lw=1)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    uri = _uri_of_fig(fig)
    plt.close(fig)
    return uri


def checkpoint_curve(records: list[dict]) -> str | None:
    """J&F over training steps (head) with the frozen encoder as a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = sorted((r for r in records if not r.get("frozen")), key=lambda r: r["step"])
    if not heads:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([r["step"] for r in heads], [100 * r["J&F"] for r in heads], "o-", label="head")
    for r in records:
        if r.get("frozen"):
            ax.axhline(100 * r["J&F"], color="k", ls="--", lw=1, label="frozen encoder")
            break
    ax.set_xlabel("step")
    ax.set_ylabel("DAVIS J&F")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    uri = _uri_of_fig(fig)
    plt.close(fig)
    return uri


def _results_table(run: Path) -> str | None:
    rows = []
    for path in _find(run, "results.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "JF_mean" not in data:
            continue
        rel = html.escape(str(path.parent.relative_to(run)))
        cells = "".join(
            f"<td>{100 * data.get(k, float('nan')):.1f}</td>"
            for k in ("J_mean", "F_mean", "JF_mean")
        )
        rows.append(f"<tr><td>{rel}</td>{cells}</tr>")
    if not rows:
        return None
    return (
        "<table><tr><th>evaluation</th><th>J</th><th>F</th><th>J&amp;F</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _analyses(run: Path) -> list[str]:
    from videorep.analysis.compare import html_table

    parts = []
    for path in _find(run, "tradeoff.json"):
        summary = json.loads(path.read_text())
        parts.append(f"<h3>Trade-off metrics ({html.escape(str(path.relative_to(run)))})</h3>")
        parts.append(html_table(summary))
        png = path.with_suffix(".png")
        if png.is_file():
            parts.append(f"<img src='{_uri_of_png(png)}' alt='trade-off'>")
    for path in _find(run, "spectrum.json"):
        r = json.loads(path.read_text())
        parts.append(f"<h3>Spectral check ({html.escape(str(path.relative_to(run)))})</h3>")
        parts.append(
            f"<p>Theorem 1 fit: lambda {r['lambda']:.4g}, scale {r['scale']:.4f}, R^2 "
            f"{r['r2']:.3f}; Spearman(mu, mu_pred) {r['spearman']:.3f}; Theorem 2 delta "
            f"{r['delta_theorem2']:.4g}.</p><pre>"
            + html.escape(json.dumps(r["assumptions"], indent=1))
            + "</pre>"
        )
        png = path.with_suffix(".png")
        if png.is_file():
            parts.append(f"<img src='{_uri_of_png(png)}' alt='spectrum'>")
    for path in _find(run, "shortcut.json"):
        r = json.loads(path.read_text())
        parts.append(f"<h3>Shortcut controls ({html.escape(str(path.relative_to(run)))})</h3>")
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>"
            for k, v in r.get("final", {}).items()
        )
        parts.append(f"<table><tr><th>run</th><th>final cycle acc.</th></tr>{rows}</table>")
        png = path.with_suffix(".png")
        if png.is_file():
            parts.append(f"<img src='{_uri_of_png(png)}' alt='shortcut'>")
    return parts


def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for the run folder ``run_dir`` (default into it)."""
    from videorep.analysis.checkpoint_eval import read_checkpoint_evals

    run = Path(run_dir)
    if not run.is_dir():
        raise VideorepError(f"{run}: no such run folder")
    parts = [
        "<!doctype html><meta charset=utf-8><title>videorep report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}td:first-child{text-align:left}img{max-width:100%}</style>",
        f"<h1>videorep run {html.escape(run.name)}</h1>",
    ]
    found = False
    log = run / "log.jsonl"
    if log.is_file():
        history = _read_jsonl(log)
        uri = training_curves(history) if history else None
        if uri:
            found = True
            last = history[-1]
            shown = ", ".join(
                f"{k} {last[k]:.4g}" for k in ("loss", "cycle_acc", "lr") if k in last
            )
            parts += [
                "<h2>Training</h2>",
                f"<p>{len(history)} logged steps; last: step {last.get('step')}, {shown}.</p>",
                f"<img src='{uri}' alt='training curves'>",
            ]
    records = read_checkpoint_evals(run)
    if records:
        found = True
        parts.append("<h2>Checkpoint evaluations (DAVIS J&amp;F over steps)</h2>")
        uri = checkpoint_curve(records)
        if uri:
            parts.append(f"<img src='{uri}' alt='J&F over steps'>")
        rows = "".join(
            f"<tr><td>{'frozen' if r.get('frozen') else r['step']}</td>"
            f"<td>{100 * r['J']:.1f}</td><td>{100 * r['F']:.1f}</td>"
            f"<td>{100 * r['J&F']:.1f}</td></tr>"
            for r in sorted(records, key=lambda r: (not r.get("frozen"), r["step"]))
        )
        parts.append(
            f"<table><tr><th>step</th><th>J</th><th>F</th><th>J&amp;F</th></tr>{rows}</table>"
        )
    table = _results_table(run)
    if table:
        found = True
        parts += ["<h2>Evaluations</h2>", table]
    analyses = _analyses(run)
    if analyses:
        found = True
        parts += ["<h2>Analyses</h2>", *analyses]
    if not found:
        raise VideorepError(
            f"{run}: nothing to report (no log.jsonl, checkpoint_evals.jsonl, results.json or "
            "analysis JSON found)"
        )
    config = run / "config.json"
    if config.is_file():
        parts.append(f"<h2>Settings</h2><pre>{html.escape(config.read_text())}</pre>")
    path = Path(out) if out else run / "report.html"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts))
    tmp.replace(path)
    return path
