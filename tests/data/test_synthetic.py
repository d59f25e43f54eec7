"""The generated DAVIS-format set: layout, exact masks, occlusion, motion."""

from __future__ import annotations

import numpy as np
from PIL import Image

from videorep.data.davis import load_sequence
from videorep.data.synthetic import render_sequence, write_davis_set


def test_layout_is_davis_2017(tmp_path) -> None:
    names = write_davis_set(tmp_path, sequences=2, frames=4, height=48, width=80, seed=1)
    assert (tmp_path / "ImageSets" / "2017" / "val.txt").read_text().split() == names
    seq = load_sequence(tmp_path, names[1], 2017)
    assert len(seq.frames) == len(seq.annotations) == 4
    ann = Image.open(seq.annotations[0])
    assert ann.mode == "P" and ann.getpalette()[3:6] == [128, 0, 0]
    assert set(np.unique(np.array(ann))) <= {0, 1, 2}


def test_masks_are_exact_and_nearer_objects_occlude() -> None:
    rng = np.random.default_rng(3)
    images, labels = render_sequence(rng, frames=6, height=64, width=96, objects=3)
    assert all(im.shape == (64, 96, 3) and im.dtype == np.uint8 for im in images)
    # each label map assigns one object per pixel: object 3 (drawn last) is never hidden
    areas = [[int((lab == k).sum()) for k in (1, 2, 3)] for lab in labels]
    assert all(a[2] > 0 for a in areas)
    # objects move: the centroid of object 1 changes over the sequence
    ys, xs = np.nonzero(labels[0] == 1)
    ye, xe = np.nonzero(labels[-1] == 1)
    assert abs(ys.mean() - ye.mean()) + abs(xs.mean() - xe.mean()) > 1.0
    # the rendering is a pure function of the seed
    again, _ = render_sequence(np.random.default_rng(3), frames=6, height=64, width=96, objects=3)
    assert all(np.array_equal(a, b) for a, b in zip(images, again))
