"""Overlays a person can read: an opaque outline and a translucent fill in a colour that stands
out from the object, steady over a video."""

import numpy as np
import pytest
from scipy import ndimage

from lcm_jax.inference import overlay as ov
from lcm_jax.input_pipeline import video_io

CROSS = ndimage.generate_binary_structure(2, 1)  # 4-neighbours


def _scene(seed=0):
    """A noisy frame [40, 50, 3] and labels: object 1 a box, object 2 a disc cut by the right
    edge, a void band, background elsewhere."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    labels = np.zeros((40, 50), np.uint8)
    labels[5:20, 4:18] = 1
    yy, xx = np.mgrid[:40, :50]
    labels[(yy - 25) ** 2 + (xx - 48) ** 2 < 100] = 2
    labels[35:, :10] = video_io.VOID_LABEL
    return frame, labels


def _border(mask, width):
    """Pixels of mask that erosion by `width` removes; outside the frame counts as inside."""
    return mask & ~ndimage.binary_erosion(mask, CROSS, iterations=width, border_value=1)


@pytest.mark.parametrize("width", [1, 2])
def test_outline_is_the_masks_border_in_the_colour_and_the_fill_is_the_alpha_blend(width):
    frame, labels = _scene()
    colours = {1: np.array([0, 255, 255], np.uint8), 2: np.array([255, 0, 255], np.uint8)}
    drawn = ov.overlay(frame, labels, colours, alpha=0.4, width=width)
    for k, colour in colours.items():
        mask = labels == k
        border = _border(mask, width)
        assert border.any() and (border != mask).any()
        assert (drawn[border] == colour).all()
        fill = mask & ~border
        expected = np.round(0.6 * frame[fill].astype(np.float64) + 0.4 * colour.astype(np.float64))
        np.testing.assert_array_equal(drawn[fill], expected.astype(np.uint8))
    # The disc is cut by the frame's right edge: no outline along the edge itself (where the
    # disc is more than `width` rows from its own top and bottom there).
    rows = np.flatnonzero(labels[:, -1] == 2)[width:-width]
    assert len(rows) > 5 and (drawn[rows, -1] != colours[2]).any(-1).all()
    untouched = (labels == 0) | (labels == video_io.VOID_LABEL)
    np.testing.assert_array_equal(drawn[untouched], frame[untouched])
    # Two objects that touch: each outlines its own side of the shared border.
    touching = np.zeros((10, 10), np.uint8)
    touching[:, :5], touching[:, 5:] = 1, 2
    out = ov.overlay(np.zeros((10, 10, 3), np.uint8), touching, colours, width=1)
    assert (out[:, 4] == colours[1]).all() and (out[:, 5] == colours[2]).all()
    assert (out[:, 3] == np.round(0.5 * colours[1])).all()


def test_a_red_object_is_drawn_in_a_colour_far_from_red_not_in_the_palettes_red():
    # The old overlay blended object 1 with DAVIS's (128, 0, 0): invisible on a red object.
    frame = np.full((32, 32, 3), 120, np.uint8)
    labels = np.zeros((32, 32), np.uint8)
    labels[8:24, 8:24] = 1
    frame[labels == 1] = (200, 30, 30)
    labels[2:6, 2:6] = 2
    frame[labels == 2] = (40, 200, 40)
    colours = ov.pick_colours(frame, labels)
    # By hand: from (200, 30, 30), cyan is sqrt(200² + 225² + 225²) = 375.8 away, white 322.9,
    # azure 308.2, lime 302.5; from (40, 200, 40) with cyan taken, magenta is
    # sqrt(215² + 200² + 215²) = 363.9 away, white 309.0, red 296.4.
    np.testing.assert_array_equal(colours[1], (0, 255, 255))
    np.testing.assert_array_equal(colours[2], (255, 0, 255))
    for k, mean in ((1, (200, 30, 30)), (2, (40, 200, 40))):
        assert np.linalg.norm(colours[k].astype(float) - mean) > 300
    drawn = ov.overlay(frame, labels, colours).astype(float)
    inner = ndimage.binary_erosion(labels == 1, CROSS)
    assert (np.linalg.norm(drawn[inner] - frame[inner], axis=-1) > 180).all()  # half of 375.8


def test_each_object_keeps_its_colour_over_a_video_and_a_new_one_takes_a_free_colour():
    frame, labels = _scene(1)
    first = ov.pick_colours(frame, labels)
    assert set(first) == {1, 2}  # void is not an object
    assert tuple(first[1]) != tuple(first[2])
    # Later frame: object 1 turned the colour it was drawn in, object 3 appears, grey.
    later_frame, later = frame.copy(), labels.copy()
    later_frame[later == 1] = first[1]
    later[30:34, 20:30] = 3
    later_frame[later == 3] = 128
    kept = ov.pick_colours(later_frame, later, first)
    assert set(kept) == {1, 2, 3}
    for k in (1, 2):
        np.testing.assert_array_equal(kept[k], first[k])
    taken = {tuple(first[1]), tuple(first[2])}
    free = [c for c in ov.CANDIDATES if tuple(c) not in taken]
    farthest = max(free, key=lambda c: np.linalg.norm(c.astype(float) - 128))
    np.testing.assert_array_equal(kept[3], farthest)
    assert tuple(kept[3]) not in taken
    # With every candidate taken, objects share them rather than fail.
    many = np.repeat(np.arange(1, 11, dtype=np.uint8), 3)[None].repeat(4, 0)
    picked = ov.pick_colours(np.zeros((4, 30, 3), np.uint8), many)
    assert len(picked) == 10 and len({tuple(c) for c in picked.values()}) == len(ov.CANDIDATES)
