"""BOD-VCL as a trainer Method: losses fall for every framework, bi-level modes, CLI flags."""

import argparse

import pytest
import torch

from videorep.errors import VideorepError
from videorep.methods.bodvcl.method import (
    BODVCL,
    add_train_arguments,
    build_bodvcl,
    config_from_args,
)
from videorep.train.method import Method

SMALL = dict(encoder="tiny3d", koopman_dim=16, proj_hidden_dim=32, queue_size=32, n_prototypes=8)
# the recipe before the paper's became the default: AdamW (passed by _train), no colour
# distortion, inner step of the optimiser's lr (3e-3 here), discarded after the outer gradient
OLD_RECIPE = dict(
    color_jitter=False, persist_inner=False, inner_lr=3e-3, inner_optimizer="sgd", optimizer="adamw"
)


def _videos(b=6, v=2, t=6, s=16, seed=0):
    """Clips [B, V, T, 3, S, S]: a coloured blob moving with a per-video velocity."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.linspace(-1, 1, s)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    colour = torch.rand(b, 1, 1, 3, 1, 1, generator=g)
    vel = 0.15 * torch.randn(b, 1, 1, 2, generator=g)
    start = 0.4 * torch.rand(b, v, 1, 2, generator=g) - 0.2
    c = start + vel * torch.arange(t).view(1, 1, t, 1)
    d = (xx - c[..., 0, None, None]) ** 2 + (yy - c[..., 1, None, None]) ** 2
    blob = torch.exp(-d / 0.08)[:, :, :, None]
    return {"clips": colour * blob + 0.05 * torch.randn(b, v, t, 3, s, s, generator=g)}


def _train(cfg, steps=12, lr=3e-3):
    torch.manual_seed(0)
    model = build_bodvcl({**SMALL, **OLD_RECIPE, **cfg})
    opt = torch.optim.AdamW([p for _, p in model.trainable_parameters()], lr=lr)
    batch = _videos()
    hist = []
    for step in range(steps):
        hist.append(model.optimizer_step([batch], opt, 1.0))
        model.after_optimizer_step(step, steps)
    return model, hist


def _falls(hist, key):
    first = sum(h[key].item() for h in hist[:3]) / 3
    last = sum(h[key].item() for h in hist[-3:]) / 3
    return last < first, first, last


@pytest.mark.parametrize("framework", ["simclr", "moco", "byol", "swav"])
@pytest.mark.parametrize("decoupled", [True, False])
def test_losses_fall_with_fd_bilevel(framework, decoupled):
    _, hist = _train(dict(framework=framework, decoupled=decoupled, bilevel="fd", xi=0.3))
    keys = ["loss_static", "loss_dynamic"] if decoupled else ["loss_clip"]
    for key in keys + ["loss"]:
        ok, first, last = _falls(hist, key)
        assert ok, f"{framework} decoupled={decoupled}: {key} {first:.4f} -> {last:.4f}"
        assert all(torch.isfinite(h[key]) for h in hist)


@pytest.mark.parametrize("bilevel", ["unrolled", "single"])
def test_other_bilevel_modes_train(bilevel):
    _, hist = _train(dict(framework="simclr", bilevel=bilevel, xi=0.3))
    for key in ("loss_static", "loss_dynamic"):
        assert _falls(hist, key)[0], key
    if bilevel == "single":  # L_pred is part of the objective there
        assert _falls(hist, "l_pred")[0]


def test_fd_hypergradient_matches_unrolled():
    """AID-FD equals the exact (unrolled) hypergradient of Eq. 23-25 up to the finite-difference
    error; in float64 with a small radius (no ReLU kink or pinv cut-off crossed) that is ~1e-8."""
    batch = _videos(b=4)
    grads = {}
    for mode in ("fd", "unrolled"):
        torch.manual_seed(0)
        model = build_bodvcl(
            {**SMALL, **OLD_RECIPE, "framework": "simclr", "bilevel": mode, "inner_lr": 0.5}
        )
        model.config.fd_radius = 1e-6
        model.double()
        b = {"clips": batch["clips"].double()}
        opt = torch.optim.SGD([p for _, p in model.trainable_parameters()], lr=0.0)
        model.optimizer_step([b], opt, 1.0)
        grads[mode] = torch.cat([p.grad.flatten() for _, p in model.trainable_parameters()])
    diff = (grads["fd"] - grads["unrolled"]).norm() / grads["unrolled"].norm()
    assert diff < 1e-5, diff
    assert (grads["fd"] - grads["unrolled"]).norm() > 0  # two different code paths


def test_momentum_update_and_queue_after_step():
    model, _ = _train(dict(framework="moco", decoupled=True, momentum=0.5), steps=2)
    online = dict(model.online.named_parameters())
    target = dict(model.target.named_parameters())
    before = {n: t.detach().clone() for n, t in target.items()}
    head = model.heads["static"]
    ptr = int(head.queue_ptr)
    model.training_step(_videos())  # forward with grad enabled: keys become pending
    model.after_optimizer_step(2, 10)
    for n, t in target.items():  # Eq. 3: theta_m <- m theta_m + (1 - m) theta
        assert torch.allclose(t, 0.5 * before[n] + 0.5 * online[n].detach(), atol=1e-6)
    assert int(head.queue_ptr) == (ptr + 12) % 32  # B*V = 12 keys enqueued
    state = model.checkpoint_state()
    assert any(k.startswith("target.") for k in state) and "heads.static.queue" in state


def test_method_contract_and_errors():
    model = build_bodvcl({**SMALL, "framework": "byol", "unknown_trainer_key": 1})
    assert isinstance(model, Method) and isinstance(model, BODVCL)
    assert all(not n.startswith("target.") for n, _ in model.trainable_parameters())
    with pytest.raises(VideorepError, match="clips"):
        model.training_step({"clips": torch.zeros(2, 2, 6, 16, 16)})
    with pytest.raises(VideorepError, match="framework"):
        build_bodvcl({"framework": "dino"})
    with pytest.raises(VideorepError, match="xi"):
        build_bodvcl({**SMALL, "xi": 0.0})
    with pytest.raises(VideorepError, match="bilevel"):
        build_bodvcl({**SMALL, "bilevel": "cg"})


def test_cli_flags():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args(
        "--framework moco --encoder tiny3d --clip-len 8 --stride 4 --views 3 --no-decoupled "
        "--bilevel unrolled --inner-steps 2 --inner-lr 0.05 --xi 0.2 --nu 1e-3 --koopman-dim 32 "
        "--temperature 0.2 --queue-size 64 --momentum 0.9".split()
    )
    cfg = config_from_args(args)
    assert cfg["framework"] == "moco" and cfg["decoupled"] is False and cfg["views"] == 3
    assert cfg["bilevel"] == "unrolled" and cfg["inner_steps"] == 2 and cfg["koopman_dim"] == 32
    model = build_bodvcl(cfg)
    assert model.config.queue_size == 64 and model.config.momentum == 0.9
    assert parser.parse_args([]).decoupled is True
