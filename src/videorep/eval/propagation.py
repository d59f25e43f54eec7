"""Semi-supervised label propagation over a video, independent of any benchmark.

Given per-frame patch features (any encoder, optionally through a projection) and the first
frame's label map at feature resolution, each later frame takes its labels from a context made of
the first frame plus a queue of the last ``queue`` frames (their features and their *predicted*
soft labels):

* affinity = dot product of L2-normalised features, target patch x source patch;
* only source patches inside a spatial neighbourhood of the target patch are candidates
  (``window="square"``: ``|dy| <= r`` and ``|dx| <= r``, as DINO's script; ``window="disk"``:
  ``dy^2 + dx^2 < r^2``, as CRW's; ``radius <= 0`` disables the restriction);
* the ``topk`` best candidates over *all* context frames are kept (the selection rule below),
  weighted by ``exp(aff / temperature)`` renormalised over the kept ones (a softmax over the
  top-k);
* prediction = weighted sum of the kept sources' labels.

Selection rule (exact; it depends neither on rounding noise nor on memory layout). Let ``x`` be
the target patch's and ``y`` a candidate source's feature, each L2-normalised by
``normalize_features`` (norm in float64 over a contiguous copy, quotient rounded to float32: the
same bits whatever the caller's memory layout, unlike ``F.normalize`` on a strided tensor), and
``a = <x, y>`` their affinity *as a real number* (evaluated in float64 from the float32 vectors:
error <= 1e-13). A candidate is a source patch inside the window of the target in one of the
``n`` context frames; it is ranked by the key

    ( floor(a * 2**20)  descending,      # affinity to a quantum of 2**-20 (AFFINITY_QUANTUM)
      frame             ascending,       # chronological: frame 0, then the queue oldest first
      y_s * w + x_s     ascending )      # the source's flat index in the (untransposed) frame

and the ``topk`` first candidates are kept (all of them if there are fewer). Affinities within the
same quantum count as equal, and such ties (e.g. identical features of saturated patches) go to
the earlier frame, then to the lower flat index; the key is a total order, so the kept set and its
order are unique. The weights are ``softmax(a / temperature)`` over the kept candidates with the
*unquantised* float64 affinities, the weighted sum of their labels is taken in float64 and the
prediction rounded to float32. Only an affinity within 1e-13 of a multiple of ``2**-20`` could
be quantised differently by another float64 evaluation order (a chance of about 2e-7 for a
candidate at the cut).

How the engine finds the rule's top-k cheaply: the float32 affinities of the band matmul are exact
to ``e = gamma_D`` (``D * 2**-24 / (1 - D * 2**-24)``, Higham's bound for a dot product of unit
vectors in any summation order; 2.3e-5 for D 384). Every member of the rule's top-k has
``a > a_k - 2**-20`` (``a_k`` the k-th largest affinity: the k best affinities all have a
quantised key ``>= floor(a_k * 2**20)``), hence a float32 affinity ``> f_k - 2**-20 - 2e`` (``f_k``
the k-th largest float32 one): ``selection_margin``. So, per band, the engine takes each context
frame's ``topk + SPARE`` best float32 candidates (ordinary ``topk``), finds ``f_k`` among them
(the global k-th largest float32 value is always among the per-frame top-k), and applies the rule
exactly (float64 affinity, integer key) to the candidates at or above ``f_k - margin``. If a
frame's ``(topk + SPARE)``-th candidate is itself above that threshold (near-duplicate patches,
e.g. saturated sky), that target's top-k is instead taken exactly over its whole window (float64
affinities with every source, per frame then across frames; a video of identical frames costs
about 10x the usual time per frame). The kept set therefore always contains the rule's top-k, and the
rule is a total order, so this two-stage search (per context frame, then across frames) gives
exactly the global rule's selection, independent of ``SPARE``, of the band size and of the
transposition (tested against a dense oracle with exact ties).

The neighbourhood is never materialised as a dense ``(hw)^2`` mask: the target grid (transposed
so that its longer side runs along the rows) is cut into bands of full-width rows, and each band
is compared only with the source rows its window can reach (``[y0 - r, y1 + r)``, a contiguous
slice of the context buffer, so no copy). Pairs outside the window are set to ``-inf`` through a
boolean mask built from coordinate vectors and cached per band: ``hw * region`` bytes in all,
never ``(hw)^2`` when ``r`` is small against the grid. Working memory is one affinity workspace of
``(1 + queue) * band * region`` floats, allocated once and reused by every band of every frame,
independent of the video length. Context features live in one preallocated ring buffer
``[1 + queue, h, w, D]`` (frame 0 in slot 0): each frame's features are computed once by the
caller, normalised once here, and reused for the next ``queue`` frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch

from videorep.eval.presets import (  # noqa: F401  (re-exported: the presets live there)
    DEFAULT_PRESET,
    LABEL_DOWN,
    LABEL_UP,
    PRESET_SIZES,
    PRESETS,
    WINDOWS,
    PropagationConfig,
    preset_size,
    preset_source,
    resolve_config,
)

AFFINITY_QUANTUM_BITS = 20
AFFINITY_QUANTUM = 2.0**-AFFINITY_QUANTUM_BITS  # affinities closer than this rank as equal
SPARE = 2  # float32 candidates kept per context frame beyond ``topk`` before the exact rule
_PAIR_CHUNK = 256  # candidate pairs per float64 affinity evaluation (reused buffers)
_NORM_CHUNK = 256  # feature rows per float64 normalisation
_UNIT_ROUNDOFF = {"highest": 2.0**-24, "high": 2.0**-11, "medium": 2.0**-8}


def selection_margin(dim: int) -> float:
    """How far below the k-th largest float32 affinity a source of the rule's top-k can rank.

    ``2**-20 + 2 gamma_D``: the quantum plus twice the worst-case error of a float32 dot product
    of two unit vectors of length ``dim`` (any summation order; the roundoff of the current
    ``torch.get_float32_matmul_precision()``), slightly inflated for the norms' own rounding.
    """
    u = _UNIT_ROUNDOFF.get(torch.get_float32_matmul_precision(), 2.0**-8)
    nu = (dim + 2) * u
    if nu >= 0.5:
        return math.inf
    return AFFINITY_QUANTUM + 2.0 * 1.01 * nu / (1.0 - nu) + 1e-12


def normalize_features(feat: torch.Tensor) -> torch.Tensor:
    """``feat [..., D]`` L2-normalised along ``D`` as float32, the same bits for any memory layout.

    The norm is taken in float64 over a contiguous copy and the quotient rounded once to float32
    (``F.normalize`` on a strided tensor, e.g. an encoder's ``[h, w, D]`` view of a channel-first
    map, rounds differently from the same values stored contiguously).
    """
    rows = feat.reshape(-1, feat.shape[-1])  # a copy only if the layout needs one
    out = torch.empty(rows.shape, dtype=torch.float32, device=feat.device)
    for s in range(0, rows.shape[0], _NORM_CHUNK):  # bounded float64 temporaries
        x = rows[s : s + _NORM_CHUNK].to(torch.float64).contiguous()
        out[s : s + _NORM_CHUNK] = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return out.reshape(feat.shape)


def selection_key(affinity: torch.Tensor, position: torch.Tensor, span: int) -> torch.Tensor:
    """Integer keys of the selection rule (larger = kept first); ``-inf`` affinity -> minimum.

    ``position`` = chronological frame rank * h * w + flat source index (``< span``).
    """
    q = torch.floor(affinity * 2.0**AFFINITY_QUANTUM_BITS)
    key = q.clamp(-(2.0**21), 2.0**21).long() * span + (span - 1 - position)
    return key.masked_fill(affinity == float("-inf"), torch.iinfo(torch.int64).min)


def _round_down_f32(x: torch.Tensor) -> torch.Tensor:
    """The largest float32 values ``<= x`` (float64)."""
    y = x.float()
    return torch.where(y.double() > x, torch.nextafter(y, y.new_tensor(float("-inf"))), y)


def _band_rows(rows: int, cols: int, radius: int, target_patches: int = 160) -> int:
    """Rows per target band so that a band holds about ``target_patches`` patches."""
    return max(1, min(rows, target_patches // max(1, cols)))


class LabelPropagator:
    """Frame-by-frame label propagation with a first-frame anchor and a FIFO context queue.

    Usage::

        prop = LabelPropagator(config)
        prop.reset(feat0, label0)          # feat0 [h, w, D], label0 [C, h, w]
        for feat in later_features:        # each [h, w, D]
            label = prop.step(feat)        # [C, h, w], appended to the queue

    Features need not be normalised (they are L2-normalised along ``D`` here). Labels may be
    one-hot or soft; predictions are convex combinations of context labels.
    """

    def __init__(self, config: PropagationConfig, band: int | None = None) -> None:
        self.config = config
        self.band = band  # target rows per band (None: automatic)
        self._geometry: dict = {}
        self._feats: torch.Tensor | None = None  # [1 + queue, h, w, D]
        self._feats_t: torch.Tensor | None = None  # [1 + queue, w, h, D] (kept when w > h)
        self._labels: torch.Tensor | None = None  # [1 + queue, h * w, C]
        self._count = 0  # number of valid slots
        self._work: torch.Tensor | None = None  # flat float32 affinity workspace, reused per band
        self._next = 1  # next queue slot to overwrite
        self._pair_bufs: tuple[torch.Tensor, ...] | None = None  # see _exact_affinities
        self._frame_buf: torch.Tensor | None = None  # see _window_topk

    @property
    def grid(self) -> tuple[int, int]:
        if self._feats is None:
            raise RuntimeError("LabelPropagator.reset() has not been called")
        return int(self._feats.shape[1]), int(self._feats.shape[2])

    def reset(self, feat0: torch.Tensor, label0: torch.Tensor) -> None:
        """Start a video: ``feat0 [h, w, D]`` features and ``label0 [C, h, w]`` labels of frame 0."""
        if feat0.dim() != 3 or label0.dim() != 3:
            raise ValueError(
                f"expected feat0 [h, w, D] and label0 [C, h, w], got "
                f"{tuple(feat0.shape)} and {tuple(label0.shape)}"
            )
        h, w, d = feat0.shape
        if tuple(label0.shape[1:]) != (h, w):
            raise ValueError(f"label0 grid {tuple(label0.shape[1:])} != feature grid {(h, w)}")
        c = label0.shape[0]
        slots = 1 + self.config.queue
        if w > h:  # stored transposed only: the bands run along the longer side
            self._feats_t = feat0.new_empty((slots, w, h, d), dtype=torch.float32)
            self._feats = self._feats_t.permute(0, 2, 1, 3)  # a view, [slots, h, w, D]
        else:
            self._feats_t = None
            self._feats = feat0.new_empty((slots, h, w, d), dtype=torch.float32)
        self._labels = feat0.new_empty((slots, h * w, c), dtype=torch.float32)
        self._geometry = {}
        self._work = None
        self._pair_bufs = None
        self._frame_buf = None
        self._feats[0] = normalize_features(feat0)
        self._labels[0] = label0.float().reshape(c, h * w).t()
        self._count = 1
        self._next = 1
        if self.config.pad_queue and self.config.queue > 0:  # CRW / CropMAE: copies of frame 0
            self._feats[1:] = self._feats[0]
            self._labels[1:] = self._labels[0]
            self._count = slots

    def _push(self, feat: torch.Tensor, label_flat: torch.Tensor) -> None:
        if self.config.queue == 0:
            return
        slot = self._next
        self._feats[slot] = feat
        self._labels[slot] = label_flat
        self._count = min(self._count + 1, 1 + self.config.queue)
        self._next = 1 + (slot % self.config.queue)

    def predict(self, feat: torch.Tensor) -> torch.Tensor:
        """Labels ``[C, h, w]`` of a frame with features ``[h, w, D]``, without updating the queue."""
        return self._predict(normalize_features(feat)).t().reshape(-1, *self.grid)

    def step(self, feat: torch.Tensor) -> torch.Tensor:
        """Predict the labels ``[C, h, w]`` of the next frame and push it onto the queue."""
        if self._feats is None:
            raise RuntimeError("LabelPropagator.reset() has not been called")
        h, w = self.grid
        if tuple(feat.shape) != tuple(self._feats.shape[1:]):
            raise ValueError(f"features {tuple(feat.shape)} != {tuple(self._feats.shape[1:])}")
        feat = normalize_features(feat)
        pred = self._predict(feat)  # [h*w, C]
        self._push(feat, pred)
        return pred.t().reshape(-1, h, w)

    @torch.no_grad()
    def _predict(self, feat: torch.Tensor) -> torch.Tensor:
        """``feat [h, w, D]`` normalised -> labels ``[h*w, C]``.

        Works on the grid transposed so that its longer side runs along the rows of the
        buffer (both windows are symmetric in x and y). Target bands of ``band`` full-width rows
        are compared with the source rows ``[y0 - r, y1 + r)`` of every context frame: a contiguous
        slice of the buffer, so no copy. Out-of-window pairs are filled with ``-inf`` through a
        boolean mask cached per band (``hw * region`` bytes in all, never ``(hw)^2``). The top-k
        follows the module's selection rule: a float32 pre-selection, then the exact rule on the
        candidates that can be in the top-k (see the module docstring).
        """
        cfg = self.config
        n = self._count
        h, w, d = feat.shape
        hw = h * w
        feats = self._feats[:n]  # [n, h, w, D]
        labels = self._labels[:n].reshape(n * hw, -1)  # [n*h*w, C]
        transposed = w > h
        if transposed:  # rows = the longer side; buffer kept transposed (see _store)
            feats = self._feats_t[:n]  # [n, w, h, D]
            feat = feat.transpose(0, 1)
        rows, cols = feat.shape[:2]
        unrestricted = rows + cols  # a radius that reaches every source
        r = cfg.radius if cfg.radius > 0 else unrestricted
        band = self.band or _band_rows(rows, cols, r)
        out = feat.new_empty((hw, labels.shape[1]))
        slot_offset = torch.arange(n, device=feat.device) * hw  # slot -> label row offset
        rank_offset = self._chrono_rank(n).to(feat.device) * hw  # slot -> chronological offset
        margin = selection_margin(d)
        # frame 0 searched over the whole frame (window_first False): its own group of slots
        split = 0 if cfg.window_first or r >= unrestricted else 1
        full = self._feats.shape[0] * band * cols * min(rows, band + 2 * r) * cols
        full += split * band * cols * rows * cols
        ring = (self._feats_t if transposed else self._feats).view(-1, d)  # [slots*h*w, D]
        neg_inf = float("-inf")
        kp_max = cfg.topk + SPARE
        for y0 in range(0, rows, band):
            y1 = min(rows, y0 + band)
            tgt = feat[y0:y1].reshape(-1, d)  # [T, D]
            t = tgt.shape[0]
            # groups of slots sharing one source region: (first slot, last slot + 1, region rows)
            groups = [
                (0, split, 0, rows, unrestricted),
                (split, n, max(0, y0 - r), min(rows, y1 + r), r),
            ]
            groups = [g for g in groups if g[1] > g[0]]
            specs, vals_l, ring_l, pos_l, over_l = [], [], [], [], []
            used = 0
            for c0, c1, ry0, ry1, rg in groups:
                outside, src_pos, tgt_pos = self._band_geometry(
                    rows, cols, y0, y1, ry0, ry1, rg, transposed
                )
                src = feats[c0:c1, ry0:ry1].reshape(c1 - c0, -1, d)  # [g, R, D], a view
                g, region = src.shape[0], src.shape[1]
                aff = self._workspace(used + g * t * region, full)[used:].view(g, t, region)
                used += g * t * region
                torch.bmm(tgt.expand(g, -1, -1), src.transpose(1, 2), out=aff)  # [g, T, R] f32
                if outside is not None:
                    aff.masked_fill_(outside, neg_inf)
                # float32 pre-selection: each frame's top-(k + SPARE)
                kp = min(kp_max, region)
                vals, idx = aff.topk(kp, dim=-1)  # [g, T, kp]
                slots = torch.arange(c0, c1, device=feat.device)[:, None, None]
                rrow = slots * hw + ry0 * cols + idx  # ring rows
                pos = src_pos[idx]  # flat source positions (untransposed)
                over_l.append((vals, kp < region))
                if kp < kp_max:  # pad to a common width with -inf candidates
                    pad = (0, kp_max - kp)
                    vals = torch.nn.functional.pad(vals, pad, value=neg_inf)
                    rrow = torch.nn.functional.pad(rrow, pad)
                    pos = torch.nn.functional.pad(pos, pad)
                vals_l.append(vals)
                ring_l.append(rrow)
                pos_l.append(pos)
                specs.append((c0, c1, src, outside, src_pos, ry0 * cols))
            vals = torch.cat(vals_l)  # [n, T, kp_max]
            rrows, poss = torch.cat(ring_l), torch.cat(pos_l)
            k = min(cfg.topk, int((vals > neg_inf).sum(dim=(0, 2)).min()))
            kth = vals.permute(1, 0, 2).reshape(t, -1).topk(k, dim=-1).values[:, -1]
            thr = _round_down_f32(kth.double() - margin)  # [T]: no top-k member is below it
            above = (vals >= thr[None, :, None]) & (vals > neg_inf)  # [n, T, kp_max]
            sel_a = torch.full((t, k), neg_inf, dtype=torch.float64, device=feat.device)
            sel_flat = torch.zeros((t, k), dtype=torch.long, device=feat.device)
            # a frame whose (k + SPARE)-th is above thr may hold more beyond it
            over = torch.zeros(t, dtype=torch.bool, device=feat.device)
            for gvals, more in over_l:
                if more:
                    over |= (gvals[:, :, -1] >= thr[None, :]).any(0)
            if bool(over.any()):
                above &= ~over[None, :, None]
                hit = over.nonzero()[:, 0]  # targets with near-duplicate candidates
                a_w, flat_w, ring_w = self._window_topk(
                    tgt.index_select(0, hit), specs, hit, rank_offset, slot_offset, n * hw, k
                )
                # the weights use the same pairwise float64 affinities as every other pair
                valid = a_w > neg_inf
                tt = hit[:, None].expand_as(ring_w)[valid]
                a_w[valid] = self._exact_affinities(tgt, ring, tt, ring_w[valid])
                sel_a[hit], sel_flat[hit] = a_w, flat_w
            # the exact rule on the candidates above the threshold
            c_i, t_i, j_i = above.nonzero(as_tuple=True)
            aff_pairs = self._exact_affinities(tgt, ring, t_i, rrows[c_i, t_i, j_i])
            _select_into(
                sel_a,
                sel_flat,
                aff_pairs,
                t_i,
                c_i,
                poss[c_i, t_i, j_i],
                rank_offset,
                slot_offset,
                n * hw,
            )
            weights = torch.softmax(sel_a / cfg.temperature, dim=-1)  # [T, k] float64
            lab = labels[sel_flat].double()  # [T, k, C]
            out[tgt_pos] = torch.einsum("tk,tkc->tc", weights, lab).float()
        return out

    def _exact_affinities(
        self, tgt: torch.Tensor, ring: torch.Tensor, tt: torch.Tensor, src_rows: torch.Tensor
    ) -> torch.Tensor:
        """float64 ``<tgt[tt[i]], ring[src_rows[i]]>`` of float32 rows (the products are exact).

        Evaluated ``_PAIR_CHUNK`` pairs at a time in buffers kept across bands and frames (fresh
        temporaries of a different size per band would fragment the heap; see ``_workspace``).
        """
        pairs, d = tt.numel(), tgt.shape[1]
        if self._pair_bufs is None or self._pair_bufs[0].shape[1] != d:
            self._pair_bufs = (
                tgt.new_empty((_PAIR_CHUNK, d)),
                tgt.new_empty((_PAIR_CHUNK, d), dtype=torch.float64),
                tgt.new_empty((_PAIR_CHUNK, d), dtype=torch.float64),
            )
        g32, x64, y64 = self._pair_bufs
        out = torch.empty(pairs, dtype=torch.float64, device=tgt.device)
        for s in range(0, pairs, _PAIR_CHUNK):
            m = min(_PAIR_CHUNK, pairs - s)
            torch.index_select(tgt, 0, tt[s : s + m], out=g32[:m])
            x64[:m].copy_(g32[:m])
            torch.index_select(ring, 0, src_rows[s : s + m], out=g32[:m])
            y64[:m].copy_(g32[:m])
            torch.sum(x64[:m].mul_(y64[:m]), dim=-1, out=out[s : s + m])
        return out

    def _window_topk(
        self,
        tgt: torch.Tensor,
        specs: list,
        hit: torch.Tensor,
        rank_offset: torch.Tensor,
        slot_offset: torch.Tensor,
        span: int,
        k: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The rule's top-k of targets ``tgt [O, D]`` (band rows ``hit``) over their whole window.

        For targets with many near-ties (e.g. identical features of saturated patches): float64
        affinities with every source of each slot group's region (``specs``: ``(first slot, last
        slot + 1, src [g, R, D], outside [T, R] or None, source positions [R], ring row of the
        region's first source in a slot)``), one context frame at a time (a float64 matmul; its
        rounding differs from the pairwise sums' only in the last bits, so the caller recomputes
        the kept pairs' affinities pairwise), each frame's top-k by the integer key, then the
        top-k of those (exact: the key is a total order). Returns ``(affinities [O, k] float64,
        label rows [O, k], ring rows [O, k])``, best first.
        """
        d = tgt.shape[1]
        hw = self._feats.shape[1] * self._feats.shape[2]
        x64 = tgt.double()
        keys, affs, flats, rings = [], [], [], []
        for c0, c1, src, outside, src_pos, row0 in specs:
            region = src.shape[1]
            if self._frame_buf is None or self._frame_buf.shape[0] < region:
                self._frame_buf = src.new_empty((region, d), dtype=torch.float64)
            y64 = self._frame_buf[:region]
            mask = None if outside is None else outside.index_select(0, hit)
            kc = min(k, region)
            for c in range(c0, c1):
                y64.copy_(src[c - c0])
                a = x64 @ y64.t()  # [O, R]
                if mask is not None:
                    a.masked_fill_(mask, float("-inf"))
                kv, ki = selection_key(a, rank_offset[c] + src_pos, span).topk(kc, dim=-1)
                keys.append(kv)
                affs.append(a.gather(1, ki))
                flats.append(slot_offset[c] + src_pos[ki])
                rings.append(c * hw + row0 + ki)
        pick = torch.cat(keys, 1).topk(k, dim=-1).indices  # [O, k], best key first
        return tuple(torch.cat(x, 1).gather(1, pick) for x in (affs, flats, rings))

    def _chrono_rank(self, n: int) -> torch.Tensor:
        """Chronological position of each of the ``n`` valid slots: frame 0 is 0, then the
        queue from its oldest (1) to its newest frame (``n - 1``)."""
        rank = torch.arange(n)
        q = self.config.queue
        if q > 0 and n == 1 + q:  # full ring: the oldest frame is in the slot overwritten next
            rank[1:] = (torch.arange(1, n) - self._next) % q + 1
        return rank

    def _workspace(self, size: int, full: int) -> torch.Tensor:
        """A flat float32 buffer of at least ``size`` elements, kept across bands and frames.

        Allocated once at ``full`` elements (the largest band with a full queue) when first
        needed. Every band's affinity ``[n, T, R]`` is written into it (``bmm(out=)``) instead of a fresh
        tensor of a slightly different size per band: one ``n * T * R`` block (17 MB for the
        paper settings at 476x882) lives for the whole video, and the allocator cannot pile up
        freed blocks of assorted sizes (glibc keeps such blocks, which once doubled the engine's
        working memory).
        """
        if self._work is None or self._work.numel() < size:
            self._work = self._feats.new_empty(max(size, full))
        return self._work[:size]

    def _band_geometry(
        self, rows: int, cols: int, y0: int, y1: int, ry0: int, ry1: int, r: int, transposed: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Cached ``(outside [T, R] bool or None, source flat positions [R], target positions [T])``.

        Flat positions index the untransposed ``h * w`` grid.
        """
        key = (rows, cols, y0, y1, ry0, ry1, r, transposed, self.config.window)
        if r >= rows + cols and (ry0, ry1) == (0, rows):  # unrestricted: no mask to build
            key = (rows, cols, y0, y1, "all", transposed)
        hit = self._geometry.get(key)
        if hit is not None:
            return hit
        ty = torch.arange(y0, y1)
        sy = torch.arange(ry0, ry1)
        xs = torch.arange(cols)

        def flat(yy: torch.Tensor) -> torch.Tensor:
            grid_y = yy[:, None].expand(-1, cols)
            grid_x = xs[None, :].expand(len(yy), -1)
            if transposed:  # (row, col) of the transposed grid = (x, y) of the frame
                return (grid_x * rows + grid_y).reshape(-1)
            return (grid_y * cols + grid_x).reshape(-1)

        if key[4] == "all":
            outside = None
        else:
            dy = ty[:, None] - sy[None, :]  # [ty, Ry]
            dx = xs[:, None] - xs[None, :]  # [cols, cols]
            if self.config.window == "square":
                valid = (dy.abs() <= r)[:, None, :, None] & (dx.abs() <= r)[None, :, None, :]
            else:
                valid = (dy[:, None, :, None] ** 2 + dx[None, :, None, :] ** 2) < r * r
            valid = valid.reshape(len(ty) * cols, len(sy) * cols)
            outside = None if bool(valid.all()) else ~valid  # 1 byte per pair, broadcast

        device = self._feats.device  # built once per band on the CPU, kept on the buffers' device
        hit = tuple(None if x is None else x.to(device) for x in (outside, flat(sy), flat(ty)))
        self._geometry[key] = hit
        return hit


def _select_into(
    sel_a: torch.Tensor,
    sel_flat: torch.Tensor,
    aff: torch.Tensor,
    tt: torch.Tensor,
    cc: torch.Tensor,
    pos: torch.Tensor,
    rank_offset: torch.Tensor,
    slot_offset: torch.Tensor,
    span: int,
) -> None:
    """Apply the selection rule to candidate pairs (target ``tt``, slot ``cc``, source ``pos``).

    ``aff`` are the pairs' float64 affinities and ``pos`` their sources' flat index ``y * w + x``
    in the untransposed frame. Every member of the rule's top-k of each target in ``tt`` must be
    among the pairs. Writes the kept candidates' affinities and label rows (slot * h * w + flat
    index) into row ``tt`` of ``sel_a`` / ``sel_flat`` ``[T, k]``, in key order (best first).
    """
    pairs = tt.numel()
    if pairs == 0:
        return
    key = selection_key(aff, rank_offset[cc] + pos, span)
    order = torch.sort(key, descending=True, stable=True).indices  # keys are distinct per target
    order = order[torch.sort(tt[order], stable=True).indices]  # by target, best key first
    ts = tt[order]
    counts = torch.bincount(ts, minlength=sel_a.shape[0])
    place = torch.arange(pairs, device=tt.device) - (counts.cumsum(0) - counts)[ts]
    keep = place < sel_a.shape[1]
    order, ts, place = order[keep], ts[keep], place[keep]
    sel_a[ts, place] = aff[order]
    sel_flat[ts, place] = slot_offset[cc[order]] + pos[order]


def propagate(
    features: Iterable[torch.Tensor],
    label0: torch.Tensor,
    config: PropagationConfig,
) -> Iterator[torch.Tensor]:
    """Propagate ``label0 [C, h, w]`` through a stream of features ``[h, w, D]`` (frame 0 first).

    Yields the predicted soft labels ``[C, h, w]`` of frames 1, 2, ... lazily: features are pulled
    one frame at a time, so memory does not grow with the video length.
    """
    it = iter(features)
    try:
        feat0 = next(it)
    except StopIteration:
        return
    prop = LabelPropagator(config)
    prop.reset(feat0, label0)
    for feat in it:
        yield prop.step(feat)


def window_size(config: PropagationConfig) -> int:
    """Number of source positions per context frame in the neighbourhood (unclipped)."""
    r = config.radius
    if r <= 0:
        return -1
    if config.window == "square":
        return (2 * r + 1) ** 2
    return sum(1 for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx < r * r)


__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "LabelPropagator",
    "PropagationConfig",
    "normalize_features",
    "propagate",
    "resolve_config",
    "selection_margin",
    "window_size",
]
