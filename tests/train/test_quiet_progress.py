"""Quiet logs: a non-interactive training run writes a handful of progress lines, not one per step."""

from __future__ import annotations

import io
import re
from pathlib import Path

import torch
from torch.utils.data import Dataset

import videorep
from videorep.backbones import load_encoder
from videorep.methods.cosettle import CoSettle, CoSettleConfig
from videorep.train.trainer import TrainConfig, Trainer
from videorep.utils.progress import QUIET_INTERVAL_S, progress_bar, set_postfix


class Noise(Dataset):
    def __init__(self, n: int = 4) -> None:
        self.n = n

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"frames": torch.randn(2, 3, 32, 32, generator=g)}


def progress_lines(text: str, desc: str) -> list[str]:
    """Each redraw of a tqdm bar is one segment between carriage returns / newlines."""
    return [s for s in re.split(r"[\r\n]", text) if s.strip().startswith(desc)]


def test_fifty_steps_write_a_handful_of_progress_lines(tmp_path, capsys) -> None:
    encoder = load_encoder("random_vit_tiny16")
    method = CoSettle(encoder, CoSettleConfig(backbone="random_vit_tiny16", pool=1))
    cfg = TrainConfig(
        out=str(tmp_path / "run"), epochs=50, batch_size=4, lr=1e-3, save_every=1000, progress=True
    )
    trainer = Trainer(method, Noise(), cfg, run_config={"method_config": method.export_config()})
    assert trainer.total_steps == 50
    trainer.fit()
    err = capsys.readouterr().err  # captured stderr is not a terminal
    lines = progress_lines(err, "train")
    # before: set_postfix redrew once per step (>= 50 lines); now: the first draw and the final
    # one (plus one per 30 s, and these 50 tiny steps take far less)
    assert 1 <= len(lines) <= 4, lines
    assert "50/50" in lines[-1]
    assert "loss=" in lines[-1] and "lr=" in lines[-1]  # the postfix shows at the bar's refresh


def test_interval_is_30_s_off_a_terminal_and_1_s_on_one() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet = progress_bar(10, desc="x", file=io.StringIO())
    loud = progress_bar(10, desc="x", file=Tty())
    assert quiet.mininterval == QUIET_INTERVAL_S == 30.0
    assert loud.mininterval == 1.0
    for bar in (quiet, loud):
        bar.close()


def test_postfix_waits_for_the_next_refresh() -> None:
    out = io.StringIO()
    bar = progress_bar(100, desc="x", file=out)
    drawn = len(progress_lines(out.getvalue(), "x"))
    for i in range(100):
        bar.update(1)
        set_postfix(bar, loss=f"{i:.4f}")
    assert len(progress_lines(out.getvalue(), "x")) == drawn  # no redraw within 30 s
    bar.close()
    last = progress_lines(out.getvalue(), "x")[-1]
    assert "100/100" in last and "loss=99.0000" in last


def test_every_bar_goes_through_progress_bar() -> None:
    """No module but ``utils/progress.py`` builds a tqdm bar itself."""
    src = Path(videorep.__file__).parent
    direct = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if re.search(r"\btqdm\b", p.read_text()) and p.name != "progress.py"
    ]
    assert direct == []
