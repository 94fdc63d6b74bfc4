"""Splitting scenes into chunks LTX-2.3 accepts."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltxflow.plan.chunks import largest_valid, split_scene, valid_count


@pytest.mark.parametrize("frames, chained, expected", [
    # (generated, head, kept, tail) per chunk
    (9, False, [(9, 0, 9, 0)]),
    (9, True, [(17, 1, 9, 7)]),
    (480, False, [(481, 0, 480, 1)]),
    (481, False, [(481, 0, 481, 0)]),
    (481, True, [(249, 1, 248, 0), (241, 1, 233, 7)]),
    (482, False, [(249, 0, 249, 0), (241, 1, 233, 7)]),
    (490, True, [(249, 1, 248, 0), (249, 1, 242, 6)]),  # no 9-frame runt at the end
    (962, False, [(329, 0, 329, 0), (321, 1, 320, 0), (321, 1, 313, 7)]),
    (1, False, [(9, 0, 1, 8)]),
])
def test_split_table(frames, chained, expected):
    got = [(s.generated, s.head, s.kept, s.tail) for s in split_scene(frames, chained)]
    assert got == expected


def test_5000_frames():
    splits = split_scene(5000, chained=True)
    assert len(splits) == 11  # ceil(5000 / 480): as few chunks as the model allows
    assert {s.generated for s in splits} == {457, 449}
    assert sum(s.kept for s in splits) == 5000


def test_an_end_image_stays_the_last_frame():
    splits = split_scene(482, chained=False, end_anchored=True)
    assert splits[0].tail == 7 and splits[-1].tail == 0
    assert sum(s.kept for s in splits) == 482
    # One chunk: the surplus is dropped just after the start image, not from the end.
    (one,) = split_scene(100, chained=True, end_anchored=True)
    assert (one.generated, one.head, one.kept, one.tail) == (105, 5, 100, 0)
    (tiny,) = split_scene(1, chained=False, end_anchored=True)
    assert (tiny.generated, tiny.head, tiny.kept, tiny.tail) == (9, 8, 1, 0)


@pytest.mark.parametrize("max_frames, expected", [(481, 481), (480, 473), (9, 9), (100, 97), (121, 121)])
def test_largest_valid(max_frames, expected):
    assert largest_valid(max_frames) == expected


@settings(max_examples=400, deadline=None)
@given(frames=st.integers(1, 20000), chained=st.booleans(), max_frames=st.integers(9, 481),
       end_anchored=st.booleans())
def test_split_invariants(frames, chained, max_frames, end_anchored):
    splits = split_scene(frames, chained, max_frames, end_anchored)
    top = largest_valid(max_frames)
    assert sum(s.kept for s in splits) == frames
    for i, s in enumerate(splits):
        assert valid_count(s.generated) and s.generated <= max_frames
        if not (end_anchored and len(splits) == 1):
            assert s.head == (1 if (i > 0 or chained) else 0)
        assert s.head + s.kept + s.tail == s.generated and s.kept >= 1
    if end_anchored:
        assert splits[-1].tail == 0
    # Only one chunk is trimmed, by less than one 8-frame step (or to reach the 9-frame minimum).
    assert sum(1 for s in splits if s.tail) <= 1
    dropped = sum(s.tail + s.head for s in splits) - (len(splits) - 1) - (1 if chained else 0)
    assert dropped <= (8 if len(splits) == 1 else 7)
    # As few chunks as possible, and balanced: generated counts differ by at most one step.
    capacity = (top - (1 if chained else 0)) + (len(splits) - 2) * (top - 1)
    assert len(splits) == 1 or frames > capacity
    gens = [s.generated for s in splits]
    assert max(gens) - min(gens) <= 8
