"""The propagation engine's top-k selection rule: exact ties, layout independence, a rule oracle.

The rule (module docstring of ``videorep.eval.propagation``): candidates ranked by
``floor(affinity * 2**20)`` descending, then the context frame's chronological position (frame 0,
then the queue oldest first), then the source's flat index ``y * w + x`` in the untransposed frame.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videorep.eval.propagation import (
    AFFINITY_QUANTUM_BITS,
    LabelPropagator,
    PropagationConfig,
    normalize_features,
)


def rule_oracle(ctx_feats, ctx_labels, target, cfg):
    """The rule, brute force: dense float64 affinities, ``np.lexsort`` of the key; tests only.

    ``ctx_feats [n, h, w, D]`` and ``ctx_labels [n, C, h, w]`` in chronological order.
    """
    n, h, w, d = ctx_feats.shape
    src = normalize_features(ctx_feats).reshape(n * h * w, d).double().numpy()
    tgt = normalize_features(target).reshape(h * w, d).double().numpy()
    aff = tgt @ src.T  # [hw, n*hw], columns: frame (chronological) * hw + y * w + x
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy, dx = ys[:, None] - ys[None], xs[:, None] - xs[None]
    if cfg.radius <= 0:
        inside = np.ones((h * w, h * w), dtype=bool)
    elif cfg.window == "square":
        inside = (np.abs(dy) <= cfg.radius) & (np.abs(dx) <= cfg.radius)
    else:
        inside = dy**2 + dx**2 < cfg.radius**2
    inside = np.tile(inside, (1, n))
    labels = ctx_labels.permute(0, 2, 3, 1).reshape(n * h * w, -1).double()
    out = torch.empty(h * w, labels.shape[1], dtype=torch.float64)
    for t in range(h * w):
        cols = np.nonzero(inside[t])[0]
        a = aff[t, cols]
        order = np.lexsort((cols, -np.floor(a * 2.0**AFFINITY_QUANTUM_BITS)))[: cfg.topk]
        weights = torch.softmax(torch.from_numpy(a[order]) / cfg.temperature, dim=0)
        out[t] = weights @ labels[torch.from_numpy(cols[order])]
    return out.float().T.reshape(-1, h, w)


def run_engine(feats, label0, cfg, band=None):
    prop = LabelPropagator(cfg, band=band)
    prop.reset(feats[0], label0)
    return [prop.step(f) for f in feats[1:]]


def run_oracle(feats, label0, cfg):
    """Oracle predictions of frames 1.. with its own chronological context list."""
    history: list[tuple[torch.Tensor, torch.Tensor]] = []
    outs = []
    for t in range(1, len(feats)):
        ctx = [(feats[0], label0)] + (history[-cfg.queue :] if cfg.queue else [])
        pred = rule_oracle(
            torch.stack([f for f, _ in ctx]), torch.stack([lab for _, lab in ctx]), feats[t], cfg
        )
        history.append((feats[t], pred))
        outs.append(pred)
    return outs


def tied_features(frames, h, w, d, distinct, seed):
    """Features drawn from ``distinct`` vectors only: exact ties everywhere."""
    gen = torch.Generator().manual_seed(seed)
    palette = torch.randn(distinct, d, generator=gen)
    ids = torch.randint(distinct, (frames, h, w), generator=gen)
    return list(palette[ids])


@pytest.mark.parametrize(
    "h,w,radius,window,band,queue,topk",
    [
        (5, 9, 3, "square", None, 3, 5),  # w > h: engine works transposed
        (9, 5, 3, "square", 2, 3, 5),  # not transposed
        (6, 11, 2, "disk", 1, 2, 4),
        (7, 7, 0, "square", None, 2, 6),  # unrestricted window
        (4, 10, 1, "square", 3, 0, 3),  # first frame only
    ],
)
def test_engine_equals_rule_oracle_with_exact_ties(h, w, radius, window, band, queue, topk):
    """Few distinct feature vectors: most candidates tie exactly; outputs must be bit-identical.

    Also drives the engine's whole-window gather (more than ``topk + SPARE`` tied candidates in
    a frame) and, with ``queue`` < frames - 1, the ring buffer's wrap-around.
    """
    cfg = PropagationConfig(topk=topk, queue=queue, radius=radius, window=window)
    feats = tied_features(9, h, w, 8, distinct=3, seed=h * w + radius)
    label0 = torch.rand(3, h, w, generator=torch.Generator().manual_seed(1))
    for t, (got, expected) in enumerate(
        zip(run_engine(feats, label0, cfg, band), run_oracle(feats, label0, cfg), strict=True), 1
    ):
        assert torch.equal(got, expected), f"frame {t}"


def test_all_identical_features_pick_first_frame_lowest_indices():
    """Every affinity is exactly 1: each target keeps frame 0's ``topk`` lowest ``y * w + x``
    inside its window, whatever the frame count, queue slots or the engine's transposition."""
    h, w, k = 3, 5, 3
    cfg = PropagationConfig(topk=k, queue=2, radius=1)
    feat = torch.randn(1, 1, 8).expand(h, w, 8)
    label0 = torch.eye(h * w).reshape(h * w, h, w)  # class p = flat position p of frame 0
    prop = LabelPropagator(cfg)
    prop.reset(feat, label0)
    for _ in range(4):  # the queue fills and wraps; frame 0 still wins every tie
        soft = prop.step(feat)
        for y in range(h):
            for x in range(w):
                window = sorted(
                    yy * w + xx
                    for yy in range(max(0, y - 1), min(h, y + 2))
                    for xx in range(max(0, x - 1), min(w, x + 2))
                )
                expected = torch.zeros(h * w)
                expected[window[:k]] = 1.0 / k
                torch.testing.assert_close(soft[:, y, x], expected, rtol=0, atol=1e-7)
    # by hand: target (1, 2) sees rows 0-2, columns 1-3 -> flat 1, 2, 3;
    # target (2, 4) sees rows 1-2, columns 3-4 -> flat 8, 9, 13, 14 -> keeps 8, 9, 13
    assert torch.nonzero(soft[:, 1, 2]).flatten().tolist() == [1, 2, 3]
    assert torch.nonzero(soft[:, 2, 4]).flatten().tolist() == [8, 9, 13]


def unit(*dims: int, d: int = 10) -> torch.Tensor:
    v = torch.zeros(d)
    v[list(dims)] = 1.0
    return v / v.norm()


def test_ties_go_to_older_queue_frame_then_lower_flat_index():
    """Hand-built ties with top-1: queue order is chronological, not by ring slot; within a frame
    the lower untransposed ``y * w + x`` wins although the engine stores the grid transposed."""
    h, w = 2, 3  # w > h: stored transposed
    cfg = PropagationConfig(topk=1, queue=2, radius=0)
    feat0 = torch.stack([unit(p) for p in range(6)]).reshape(h, w, 10)  # e_p at position p
    label0 = torch.eye(6).reshape(6, h, w)

    def const(v: torch.Tensor) -> torch.Tensor:
        return v.expand(h, w, -1).clone()

    prop = LabelPropagator(cfg)
    prop.reset(feat0, label0)
    # frames 1-3 copy classes 0, 1, 2 from frame 0 (affinity 0.707, all else <= 0.5)
    for cls, extra in ((0, 6), (1, 7), (2, 8)):
        soft = prop.step(const(unit(cls, extra)))
        assert torch.equal(soft.argmax(0), torch.full((h, w), cls))
    # queue = frames 2 (slot 2) and 3 (slot 1, overwrote frame 1): e_7 + e_8 ties them at 0.5
    soft = prop.predict(const(unit(7, 8)))
    expected = torch.zeros(6, h, w)
    expected[1] = 1.0  # frame 2 (older) labelled class 1; frame 3 would give class 2
    assert torch.equal(soft, expected)
    # e_1 + e_3 ties frame 0's positions 1 = (0, 1) and 3 = (1, 0) at 0.707: flat 1 < 3 wins
    # (in the transposed grid (1, 0) comes first)
    soft = prop.predict(const(unit(1, 3)))
    assert torch.equal(soft.argmax(0), torch.full((h, w), 1))
    assert torch.equal(soft.max(0).values, torch.ones(h, w))


@pytest.mark.parametrize("window,radius,topk", [("square", 3, 2), ("disk", 4, 3), ("square", 0, 2)])
def test_transposed_problem_gives_transposed_labels(window, radius, topk):
    """A diagonal pan fed as ``h x w`` (w > h: the engine works transposed) and as ``w x h`` (not
    transposed) gives bit-identical soft labels, equal to the rule's.

    Patch (y, x) of frame t is patch (y + 1, x + 1) of frame t - 1: every context frame holds an
    exact copy of the target (affinity 1, identical bits), more copies than ``topk``, so the
    chronological tie-break decides (frame 0, then the oldest queued frame), also once the ring
    buffer has wrapped. Such ties do not depend on the orientation of the problem.
    """
    torch.manual_seed(radius)
    h, w, frames = 6, 11, 9
    cfg = PropagationConfig(topk=topk, queue=3, radius=radius, window=window)
    scene = torch.randn(h + frames, w + frames, 16)
    feats = [scene[t : t + h, t : t + w] for t in range(frames)]
    label0 = torch.rand(3, h, w)
    wide = run_engine(feats, label0, cfg)
    tall = run_engine([f.transpose(0, 1) for f in feats], label0.transpose(1, 2), cfg)
    oracle = run_oracle(feats, label0, cfg)
    for t, (a, b, o) in enumerate(zip(wide, tall, oracle, strict=True), 1):
        assert torch.equal(a, b.transpose(1, 2)), f"frame {t}"
        assert torch.equal(a, o), f"frame {t}"
