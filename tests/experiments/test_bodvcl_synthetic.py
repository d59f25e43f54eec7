"""The Sec. 5.5 synthetic study: data, streams, baselines, a short training run, the CLI; the quick
CLI run and the full study are marked slow."""

import json

import pytest
import torch

from videorep.cli import main
from videorep.errors import VideorepError
from videorep.experiments.synthetic import (
    FACTORS,
    LOSSES,
    SCENARIOS,
    SyntheticConfig,
    TwoStream,
    VideoPool,
    init_model,
    make_probe_set,
    motion_input,
    probe_accuracies,
    render,
    run_one,
    sample_factors,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_scenarios_tie_their_pair():
    g = torch.Generator().manual_seed(0)
    f = sample_factors(400, "static_simple_x_dynamic_complex", g)
    assert torch.equal(f[:, 0], f[:, 3]) and 0.3 < f[:, 1].float().mean() < 0.7
    f = sample_factors(400, "dynamic_simple_x_static_complex", g)
    assert torch.equal(f[:, 2], f[:, 1])
    f = sample_factors(400, "independent", g)
    assert abs(float(f[:, 0].eq(f[:, 3]).float().mean()) - 0.5) < 0.1


def _pair(a, b, n=32, seed=3):
    """Two batches of videos with identical nuisances, differing only in the factors."""
    fa, fb = torch.tensor([a] * n), torch.tensor([b] * n)
    return (render(f, torch.Generator().manual_seed(seed)) for f in (fa, fb))


def test_rendering_and_streams_see_only_their_factors():
    blue, green = _pair([0, 0, 0, 0], [1, 0, 0, 0])
    assert blue.shape == (32, 6, 3, 32, 32) and 0 <= blue.min() and blue.max() <= 1
    corner = blue[:, 0, :, :2, :2].mean(dim=(0, -1, -2))
    assert corner[2] > corner[1] + 0.2  # blue background
    corner = green[:, 0, :, :2, :2].mean(dim=(0, -1, -2))
    assert corner[1] > corner[2] + 0.2  # green background
    # the background colour is invisible in the grey frame differences (iso-luminant, no clipping)
    assert (blue[:, 0] - green[:, 0]).abs().max() > 0.2
    assert (motion_input(blue) - motion_input(green)).abs().max() < 0.01

    up, down = _pair([0, 0, 0, 0], [0, 0, 1, 0])
    assert torch.equal(up[:, 0], down[:, 0])  # brightness change is invisible in the first frame
    assert motion_input(up).mean() > 0.08 and motion_input(down).mean() < -0.08

    circle, pentagon = _pair([0, 0, 0, 0], [0, 1, 0, 0])
    # same area: the red channel (foreground ~1, background <= 0.34) sums to the same total
    excess = [
        (v[:, 0, 0] - v[:, 0, 0, :2, :2].mean((-1, -2), keepdim=True)).sum()
        for v in (circle, pentagon)
    ]
    assert abs(float(excess[1] / excess[0]) - 1) < 0.01
    assert (circle[:, 0] - pentagon[:, 0]).abs().max() > 0.3  # but the contour differs

    za, zm = TwoStream(frames=6, width=8, dim=16)(blue)
    assert za.shape == zm.shape == (32, 16)


def test_pool_pairs_share_the_factors_only():
    pool = VideoPool(4, torch.Generator().manual_seed(0))
    assert pool.videos.dtype == torch.uint8 and pool.videos.shape == (64, 6, 3, 32, 32)
    g = torch.Generator().manual_seed(1)
    f = sample_factors(40, "independent", g)
    v0, v1 = pool.pairs(f, g)
    assert v0.shape == (40, 6, 3, 32, 32)
    assert all(not torch.equal(a, b) for a, b in zip(v0, v1))  # two different renders
    index = {bytes(v.numpy()): pool.factors[i] for i, v in enumerate(pool.videos)}
    for views in (v0, v1):
        got = torch.stack([index[bytes(v.mul(255).round().to(torch.uint8).numpy())] for v in views])
        assert torch.equal(got, f)


def test_untrained_baseline():
    """Random features decode both simple factors, neither stream sees the other's factors, and
    the complex factors stay close to chance."""
    cfg = SyntheticConfig(probe_train=256, probe_test=256)
    acc = probe_accuracies(init_model(cfg), make_probe_set(cfg))
    assert acc["Z"]["static_simple"] > 0.95 and acc["Z"]["dynamic_simple"] > 0.95
    assert acc["A"]["dynamic_simple"] < 0.62 and acc["A"]["dynamic_complex"] < 0.62
    assert acc["M"]["static_simple"] < 0.62
    assert acc["Z"]["static_complex"] < 0.7 and acc["Z"]["dynamic_complex"] < 0.7


def test_short_decoupled_run_learns_the_complex_static_factor():
    cfg = SyntheticConfig(
        steps=100, batch=32, probe_every=100, probe_train=256, probe_test=256, pool_per_tuple=16
    )
    pool = VideoPool(cfg.pool_per_tuple, torch.Generator().manual_seed(2))
    hist = run_one("independent", "decoupled", cfg, make_probe_set(cfg), pool)
    assert hist["step"] == [0, 100] and len(hist["grad_A"]) == len(hist["grad_M"]) == 100
    before, after = hist["acc"]
    assert before["static_complex"] < 0.7 and after["static_complex"] > 0.9
    assert after["static_simple"] > 0.95 and after["dynamic_simple"] > 0.95
    assert sum(hist["loss"][-20:]) < sum(hist["loss"][:20])
    with pytest.raises(VideorepError, match="unknown loss"):
        run_one("independent", "both", cfg, {}, pool)


def test_cli_registers_the_experiment():
    from videorep.cli import build_parser

    args = build_parser().parse_args(
        ["experiment", "bodvcl-synthetic", "--out", "x", "--quick", "--workers", "1"]
    )
    assert args.quick and args.out == "x" and args.workers == 1 and callable(args.func)


@pytest.mark.slow  # ~45 s
def test_quick_cli_run(tmp_path, capsys):
    assert main(["experiment", "bodvcl-synthetic", "--out", str(tmp_path), "--quick"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    for scen in SCENARIOS:
        for loss in LOSSES:
            assert set(res[scen][loss]) == set(FACTORS)
            assert all(0.0 <= a <= 1.0 for a in res[scen][loss].values())
            assert set(res["streams"][scen][loss]) == {"static_stream", "dynamic_stream"}
    base = res["baselines"]
    assert set(base["untrained"]) == set(FACTORS) and 0.5 < base["chance_upper_95"] < 0.7
    assert all(0.5 <= c <= 1 for c in base["chance"].values())
    for name in ("fig5_examples.png", "fig6_correlated.png", "fig7_independent.png"):
        assert (tmp_path / name).stat().st_size > 1000
    out = capsys.readouterr().out
    assert "static_simple_x_dynamic_complex" in out and "untrained model" in out


@pytest.mark.slow  # the full study: ~8 CPU-minutes, 2 processes
def test_full_study_reproduces_the_qualitative_finding(tmp_path):
    """Sec. 5.5: under correlation the coupled loss leaves the harder factor at its untrained
    level, near chance, and the decoupled loss lifts it; with independent factors all four are
    learned (Fig. 6-7)."""
    from videorep.experiments.synthetic import run_study

    res = run_study(tmp_path, SyntheticConfig(), log=lambda *a: None)
    untrained = res["baselines"]["untrained"]
    for scen in ("static_simple_x_dynamic_complex", "dynamic_simple_x_static_complex"):
        easy, hard = SCENARIOS[scen]
        assert res[scen]["coupled"][easy] > 0.95 and res[scen]["decoupled"][easy] > 0.95
        assert res[scen]["coupled"][hard] < min(0.65, untrained[hard] + 0.05)
        assert res[scen]["decoupled"][hard] > 0.95
    for loss in LOSSES:
        assert min(res["independent"][loss].values()) > 0.95


def test_recipes_build_their_optimiser_and_the_cli_takes_them():
    from timm.optim import Lars

    from videorep.cli import build_parser
    from videorep.experiments.synthetic import build_optimizer

    model = TwoStream()
    assert isinstance(build_optimizer(model, SyntheticConfig()), torch.optim.Adam)
    lars = build_optimizer(model, SyntheticConfig(recipe="paper"))
    assert isinstance(lars, Lars) and lars.defaults["lr"] == 0.3 * 64 / 256
    with pytest.raises(VideorepError, match="recipe"):
        build_optimizer(model, SyntheticConfig(recipe="sgd"))
    args = build_parser().parse_args(
        ["experiment", "bodvcl-synthetic", "--out", "x", "--recipe", "paper"]
    )
    assert args.recipe == "paper"
    assert build_parser().parse_args(["experiment", "bodvcl-synthetic", "--out", "x"]).recipe == (
        "adam"
    )
