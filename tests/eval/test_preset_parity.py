"""Each propagation preset against a direct transcription of its reference's algorithm.

The engine (``videorep.eval.core.propagate_masks`` -> ``LabelPropagator``) is banded, sparse and
exact by construction; the functions below are the opposite: slow, dense, and written to read like
the reference code they transcribe (read from the public sources, not copied):

* :func:`crw_family` - CRW ``code/test.py`` and CropMAE ``downstreams/propagation/src/test.py``
  (the same algorithm): the frame list padded at the start with ``queue`` copies of frame 0
  (``make_paths``), context = frame 0 (``long_mem``) + the ``queue`` preceding entries of the
  padded list (``context_index_bank``), a disk mask ``dist < radius`` added as ``-1e10`` to the
  short context only, ``A / temperature``, top-k over all context patches, softmax
  (``mem_efficient_batched_affinity``); first prediction = frame 0's labels; labels: nearest
  (``cv2.INTER_NEAREST``) to the input size, one-hot, bilinear down; predictions: bilinear up to
  the input size, argmax, nearest to the frame size (``dump_predictions``, ``convert_davis``).
* :func:`dino_reference` - DINO ``eval_video_segmentation.py``: ``read_seg`` (PIL nearest to the
  grid, one-hot), ``label_propagation`` (``exp(aff / 0.1)``, ``restrict_neighborhood`` square
  mask multiplied in on every context frame, top-k, zero below the k-th, renormalise),
  a ``queue.Queue(n_last_frames)``, bilinear upsampling, ``norm_mask``, argmax, PIL nearest.
* :func:`paper_params_reference` - videorep's former ``paper`` preset (area labels, square window
  on every frame, softmax over the top-k, bilinear to the frame size).

Arithmetic: the transcriptions compute affinities in float64 (the references use float32, whose
rounding can reorder two sources within ~1e-7 of each other at the top-k cut; the engine's rule is
defined on the exact affinities). cv2's resizes are written out with torch / numpy (see
``videorep.eval.labels``; written again here independently).

Data: the first 8 frames of the real davis-sample ``blackswan`` with its real first-frame mask
(the object split into a left and a right part, so there are three labels), both at half size
(240x427), at reduced input sizes and grids;
features are a fixed random projection of each frame's pixels pooled to the grid (deterministic,
structured enough that the masks move with the swan).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from videorep.data.davis import load_sequence, read_annotation
from videorep.data.images import load_image
from videorep.eval.core import propagate_masks
from videorep.eval.propagation import resolve_config

N_FRAMES = 8
HALF = (240, 427)  # the frames and the mask at half size, to keep the tests fast


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these small ops only lose to thread synchronisation on a busy host."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def blackswan(davis_sample):
    seq = load_sequence(davis_sample, "blackswan", 2016)
    frames = [
        np.asarray(Image.fromarray(load_image(p)).resize(HALF[::-1], Image.BILINEAR))
        for p in seq.frames[:N_FRAMES]
    ]
    labels, void = read_annotation(seq.annotations[0], 2016)
    labels = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(HALF[::-1], 0)).copy()
    void = np.asarray(Image.fromarray(void.astype(np.uint8)).resize(HALF[::-1], 0)).astype(bool)
    ys, xs = np.nonzero(labels)
    labels[(labels == 1) & (np.arange(labels.shape[1])[None, :] > np.median(xs))] = 2
    return frames, labels, void


def features(frames, grid, dim=24, seed=0):
    """``[T, h, w, D]``: each frame pooled to ``2h x 2w``, 2x2 cells unfolded, projected, tanh."""
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(12, dim, generator=g)
    h, w = grid
    out = []
    for rgb in frames:
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        x = F.adaptive_avg_pool2d(x, (2 * h, 2 * w))
        cells = F.unfold(x, 2, stride=2)[0].T  # [h*w, 12]
        out.append(torch.tanh((cells - 0.5) @ proj).reshape(h, w, dim))
    return torch.stack(out)


def engine(feats, labels, void, preset, input_size, **overrides):
    cfg = resolve_config(preset, "davis", **overrides)
    n_classes = int(labels.max()) + 1
    preds = propagate_masks(
        list(feats),
        labels,
        n_classes,
        lambda f: f,
        tuple(feats.shape[1:3]),
        cfg,
        labels.shape,
        void if void.any() else None,
        input_size=input_size,
    )
    return [p for _, p in preds]


# --- CRW / CropMAE -------------------------------------------------------------------------


def cv2_nearest_resize(index_map, height, width):
    """cv2.INTER_NEAREST: destination pixel x reads source floor(x * (1 / (width / src_width)))."""
    src_h, src_w = index_map.shape
    rows = np.minimum(np.floor(np.arange(height) * (1.0 / (height / src_h))).astype(int), src_h - 1)
    cols = np.minimum(np.floor(np.arange(width) * (1.0 / (width / src_w))).astype(int), src_w - 1)
    return index_map[rows][:, cols]


def disk_mask(h, w, radius):
    """MaskedAttention.make: 1 where the Euclidean distance of two grid cells is < radius."""
    gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    gy, gx = gy.reshape(-1), gx.reshape(-1)
    dist = ((gy[:, None] - gy[None]) ** 2 + (gx[:, None] - gx[None]) ** 2).double() ** 0.5
    return (dist < radius).double()  # [source, target], symmetric


def crw_family(feats, labels, topk, queue, radius, temperature, input_size):
    n_frames, h, w, _ = feats.shape
    in_h, in_w = input_size
    # VOSDataset: labels to the input size (nearest), one-hot over frame 0's labels, bilinear
    lblset = np.unique(labels)
    big = cv2_nearest_resize(labels, in_h, in_w)
    onehot = torch.from_numpy(np.stack([big == v for v in lblset])).double()  # [C, H', W']
    small = F.interpolate(onehot[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    # make_paths: the list starts with `queue` copies of frame 0
    padded = [max(0, i - queue) for i in range(n_frames + queue)]
    feat = F.normalize(feats.double(), dim=-1).reshape(n_frames, h * w, -1)
    lbls = [small.reshape(len(lblset), h * w).T.clone() for _ in padded]  # every label file
    for i in range(queue, len(padded)):
        lbls[i] = torch.zeros_like(lbls[i])  # lbls[0, n_context:] *= 0
    mask = torch.where(disk_mask(h, w, radius) > 0, 0.0, -1e10)
    masks = []
    for t in range(n_frames):
        keys = [0] + [t + j for j in range(queue)]  # long_mem [0], then the short context
        blocks = []
        for slot, key in enumerate(keys):
            a = feat[padded[key]] @ feat[t].T  # [source, target]
            if slot >= 1:  # A[0, :, len(long_mem):] += mask
                a = a + mask
            blocks.append(a)
        aff = torch.cat(blocks) / temperature  # [(1 + queue) * hw, hw]
        weights, ids = torch.topk(aff, topk, dim=0)
        weights = F.softmax(weights, dim=0)
        ctx = torch.cat([lbls[k] for k in keys])  # [(1 + queue) * hw, C]
        pred = (ctx[ids] * weights[..., None]).sum(0)  # [hw, C]
        if t == 0:
            pred = lbls[0]
        lbls[t + queue] = pred
        if t == 0:
            continue
        soft = pred.T.reshape(1, -1, h, w).float()
        up = F.interpolate(soft, size=(in_h, in_w), mode="bilinear", align_corners=False)[0]
        index = lblset[up.argmax(0).numpy()].astype(np.uint8)
        masks.append(cv2_nearest_resize(index, *labels.shape))
    return masks


@pytest.mark.parametrize(
    "preset,grid,input_size,overrides",
    [
        ("cropmae", (12, 22), (240, 440), {}),  # 480x880 at half size, a small grid
        pytest.param(
            "cropmae", (12, 22), (240, 440), {"radius": 4}, marks=pytest.mark.slow
        ),  # a window that cuts the grid
        ("crw", (12, 21), HALF, {}),  # --cropSize -1: the frames' own size
    ],
)
def test_crw_family_presets_match_the_reference(blackswan, preset, grid, input_size, overrides):
    frames, labels, void = blackswan
    feats = features(frames, grid)
    cfg = resolve_config(preset, "davis", **overrides)
    want = crw_family(feats, labels, cfg.topk, cfg.queue, cfg.radius, cfg.temperature, input_size)
    got = engine(feats, labels, void, preset, input_size, **overrides)
    assert len(got) == len(want) == N_FRAMES - 1
    for t, (g, e) in enumerate(zip(got, want), start=1):
        assert np.array_equal(g, e), f"frame {t}: {(g != e).sum()} pixels differ"
    assert len(np.unique(got[-1])) == 3  # the masks are not trivial


# --- DINO ----------------------------------------------------------------------------------


def restrict_neighborhood(h, w, size):
    """mask[target, source] = 1 when |dy| <= size and |dx| <= size (DINO's nested loops, with the
    two inner ones as one slice clipped to the grid)."""
    mask = torch.zeros(h, w, h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            mask[i, j, max(0, i - size) : i + size + 1, max(0, j - size) : j + size + 1] = 1
    return mask.reshape(h * w, h * w)


def norm_mask(mask):
    for c in range(mask.shape[0]):
        m = mask[c]
        if m.max() > 0:
            m = m - m.min()
            mask[c] = m / m.max()
    return mask


def dino_reference(feats, labels, topk, n_last, size_mask, temperature, patch):
    n_frames, h, w, _ = feats.shape
    small = np.asarray(Image.fromarray(labels).resize((w, h), 0))  # read_seg, PIL NEAREST
    n_dims = int(small.max()) + 1
    first_seg = F.one_hot(torch.from_numpy(small).long(), n_dims).permute(2, 0, 1).double()
    feat = feats.double().reshape(n_frames, h * w, -1)
    neighbourhood = restrict_neighborhood(h, w, size_mask)
    que = []  # queue.Queue(n_last_frames) of (features, segmentation)
    masks = []
    for cnt in range(1, n_frames):
        used_feats = [feat[0]] + [f for f, _ in que]
        used_segs = [first_seg] + [s for _, s in que]
        tar = F.normalize(feat[cnt], dim=1)
        sources = F.normalize(torch.stack(used_feats), dim=2)
        aff = torch.exp(torch.einsum("td,nsd->nts", tar, sources) / temperature)
        aff = aff * neighbourhood[None]  # [context, target, source]
        aff = aff.transpose(2, 1).reshape(-1, h * w)  # [context * source, target]
        tk_val, _ = torch.topk(aff, dim=0, k=topk)
        tk_val_min = tk_val.min(dim=0).values
        aff[aff < tk_val_min] = 0
        aff = aff / aff.sum(dim=0, keepdim=True)
        segs = torch.stack(used_segs).reshape(len(used_segs), n_dims, -1)
        segs = segs.transpose(2, 1).reshape(-1, n_dims).T  # [C, context * source]
        seg_tar = (segs @ aff).reshape(n_dims, h, w)
        if len(que) == n_last:
            que.pop(0)
        que.append((feat[cnt], seg_tar))
        up = F.interpolate(
            seg_tar[None].float(),
            scale_factor=patch,
            mode="bilinear",
            align_corners=False,
            recompute_scale_factor=False,
        )[0]
        seg = norm_mask(up).argmax(0).numpy().astype(np.uint8)
        ori_h, ori_w = labels.shape
        masks.append(np.asarray(Image.fromarray(seg).resize((ori_w, ori_h), 0)))
    return masks


@pytest.mark.parametrize(
    "grid,patch", [((15, 26), 16), pytest.param((20, 34), 12, marks=pytest.mark.slow)]
)
def test_dino_preset_matches_the_reference(blackswan, grid, patch):
    frames, labels, void = blackswan
    feats = features(frames, grid)
    cfg = resolve_config("dino", "davis")
    input_size = (grid[0] * patch, grid[1] * patch)  # 240x416 (480x832 at half size), 240x408
    want = dino_reference(feats, labels, cfg.topk, cfg.queue, cfg.radius, cfg.temperature, patch)
    got = engine(feats, labels, void, "dino", input_size)
    for t, (g, e) in enumerate(zip(got, want), start=1):
        assert np.array_equal(g, e), f"frame {t}: {(g != e).sum()} pixels differ"
    assert len(np.unique(got[-1])) == 3


# --- videorep's former "paper" preset --------------------------------------------------------


def paper_params_reference(feats, labels, topk, queue, radius, temperature):
    n_frames, h, w, _ = feats.shape
    n_classes = int(labels.max()) + 1
    onehot = F.one_hot(torch.from_numpy(labels).long(), n_classes).permute(2, 0, 1).double()
    label0 = F.interpolate(onehot[None], size=(h, w), mode="area")[0].reshape(n_classes, -1).T
    feat = F.normalize(feats.double(), dim=-1).reshape(n_frames, h * w, -1)
    gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    gy, gx = gy.reshape(-1), gx.reshape(-1)
    inside = ((gy[:, None] - gy[None]).abs() <= radius) & ((gx[:, None] - gx[None]).abs() <= radius)
    history = []
    masks = []
    for t in range(1, n_frames):
        context = [(feat[0], label0)] + history[-queue:]
        aff = torch.cat([feat[t] @ f.T for f, _ in context], dim=1)  # [target, context*source]
        aff = aff.masked_fill(~inside.repeat(1, len(context)), float("-inf"))
        vals, ids = aff.topk(topk, dim=1)
        weights = torch.softmax(vals / temperature, dim=1)
        pred = (weights[..., None] * torch.cat([lab for _, lab in context])[ids]).sum(1)
        history.append((feat[t], pred))
        soft = pred.T.reshape(1, n_classes, h, w).float()
        up = F.interpolate(soft, size=labels.shape, mode="bilinear", align_corners=False)[0]
        masks.append(up.argmax(0).numpy().astype(np.uint8))
    return masks


def test_dino_paper_params_preset_matches_its_definition(blackswan):
    frames, labels, void = blackswan
    feats = features(frames, (12, 22))
    cfg = resolve_config("dino-paper-params", "davis", queue=4, radius=6)
    want = paper_params_reference(feats, labels, cfg.topk, cfg.queue, cfg.radius, cfg.temperature)
    got = engine(feats, labels, void, "dino-paper-params", (240, 440), queue=4, radius=6)
    for t, (g, e) in enumerate(zip(got, want), start=1):
        assert np.array_equal(g, e), f"frame {t}: {(g != e).sum()} pixels differ"


def test_presets_differ_on_the_same_input(blackswan):
    """The knobs act: the four presets do not all give the same masks on this sequence."""
    frames, labels, void = blackswan
    feats = features(frames, (12, 22))
    outs = {p: engine(feats, labels, void, p, (240, 440)) for p in ("cropmae", "dino", "crw")}
    assert not np.array_equal(outs["cropmae"][-1], outs["dino"][-1])
    assert not np.array_equal(outs["cropmae"][-1], outs["crw"][-1])
