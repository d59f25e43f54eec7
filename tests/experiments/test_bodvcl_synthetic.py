"""The Sec. 5.5 synthetic study: data, model, quick CLI run; the full run is marked slow."""

import json

import pytest
import torch

from videorep.cli import main
from videorep.experiments.synthetic import (
    FACTORS,
    LOSSES,
    SCENARIOS,
    SyntheticConfig,
    TwoStream,
    render,
    sample_factors,
)


def test_factors_and_rendering():
    g = torch.Generator().manual_seed(0)
    f = sample_factors(400, "static_simple_x_dynamic_complex", g)
    assert torch.equal(f[:, 0], f[:, 3]) and 0.3 < f[:, 1].float().mean() < 0.7
    f = sample_factors(400, "dynamic_simple_x_static_complex", g)
    assert torch.equal(f[:, 2], f[:, 1])
    f = sample_factors(400, "independent", g)
    assert abs(float(f[:, 0].eq(f[:, 3]).float().mean()) - 0.5) < 0.1
    f = torch.tensor([[0, 0, 0, 0], [1, 0, 1, 0]])
    v = render(f, g, size=32, frames=6)
    assert v.shape == (2, 6, 3, 32, 32) and 0 <= v.min() and v.max() <= 1
    corner = v[:, :, :, :3, :3].mean(dim=(-1, -2))  # background pixels
    assert corner[0, 0, 2] > corner[0, 0, 1] and corner[1, 0, 1] > corner[1, 0, 2]  # blue/green
    assert corner[0, -1].mean() > corner[0, 0].mean() + 0.1  # brightening
    assert corner[1, -1].mean() < corner[1, 0].mean() - 0.1  # darkening
    za, zm = TwoStream(frames=6, width=8, dim=16)(v)
    assert za.shape == zm.shape == (2, 16)


def test_cli_registers_the_experiment():
    from videorep.cli import build_parser

    args = build_parser().parse_args(["experiment", "bodvcl-synthetic", "--out", "x", "--quick"])
    assert args.quick and args.out == "x" and callable(args.func)


@pytest.mark.slow  # ~15 s on an idle 2-core CPU, ~50 s on a busy one
def test_quick_cli_run(tmp_path, capsys):
    assert main(["experiment", "bodvcl-synthetic", "--out", str(tmp_path), "--quick"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    for scen in SCENARIOS:
        for loss in LOSSES:
            assert set(res[scen][loss]) == set(FACTORS)
            assert all(0.0 <= a <= 1.0 for a in res[scen][loss].values())
    for name in ("fig5_examples.png", "fig6_correlated.png", "fig7_independent.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "static_simple_x_dynamic_complex" in capsys.readouterr().out


@pytest.mark.slow
def test_full_study_reproduces_the_qualitative_finding(tmp_path):
    """Sec. 5.5: under correlation the coupled loss leaves the harder factor near chance and the
    decoupled loss lifts it; with independent factors all four are learned."""
    from videorep.experiments.synthetic import run_study

    res = run_study(tmp_path, SyntheticConfig(), log=lambda *a: None)
    for scen, (easy, hard) in (
        ("static_simple_x_dynamic_complex", ("static_simple", "dynamic_complex")),
        ("dynamic_simple_x_static_complex", ("dynamic_simple", "static_complex")),
    ):
        assert res[scen]["coupled"][easy] > 0.95
        assert res[scen]["coupled"][hard] < 0.7
        assert res[scen]["decoupled"][hard] > res[scen]["coupled"][hard] + 0.1
    assert min(res["independent"]["decoupled"].values()) > 0.75
