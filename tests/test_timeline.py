"""Time parsing and frame math on rational fps."""

from fractions import Fraction

import pytest

from ltxflow.timeline import (fps_str, frame_to_sample, parse_fps, parse_seconds, round_half_up,
                              seconds_to_frame, timecode)


@pytest.mark.parametrize("value, expected", [
    (24, Fraction(24)), (25.0, Fraction(25)), ("30", Fraction(30)), (60, Fraction(60)),
    ("24000/1001", Fraction(24000, 1001)), ("30000 / 1001", Fraction(30000, 1001)),
    (29.97, Fraction(30000, 1001)), ("23.976", Fraction(24000, 1001)), (59.94, Fraction(60000, 1001)),
    (12.5, Fraction(25, 2)), (1, Fraction(1)),
])
def test_parse_fps(value, expected):
    assert parse_fps(value) == expected


@pytest.mark.parametrize("value", [0, 61, "0/1", "1/0", "abc", True, None, -24, "24fps", 60.5])
def test_parse_fps_rejects(value):
    with pytest.raises(ValueError):
        parse_fps(value)


@pytest.mark.parametrize("value, expected", [
    (0, Fraction(0)), (12, Fraction(12)), (12.1, Fraction(121, 10)), ("21.5", Fraction(43, 2)),
    ("0:21.5", Fraction(43, 2)), ("1:02.250", Fraction(249, 4)), ("1:00:00", Fraction(3600)),
    ("0:00.001", Fraction(1, 1000)), (90, Fraction(90)),
])
def test_parse_seconds(value, expected):
    assert parse_seconds(value) == expected


@pytest.mark.parametrize("value", ["1:60", "1:75:00", "x", "-3", -1, None, True, "1:2:3:4", float("nan")])
def test_parse_seconds_rejects(value):
    with pytest.raises(ValueError):
        parse_seconds(value)


FPS = [Fraction(24), Fraction(25), Fraction(30), Fraction(60), Fraction(24000, 1001)]


@pytest.mark.parametrize("fps", FPS, ids=fps_str)
def test_frame_grid(fps):
    # A 3-minute song lands on round(duration x fps) frames; seconds -> frame is the nearest frame.
    assert seconds_to_frame(Fraction(180), fps) == round_half_up(180 * fps)
    for frame in (0, 1, 7, 481, 4315):
        t = Fraction(frame) / fps
        assert seconds_to_frame(t, fps) == frame
        assert seconds_to_frame(t + Fraction(1, 3) / fps, fps) == frame
        assert seconds_to_frame(t - Fraction(1, 3) / fps, fps) == frame


@pytest.mark.parametrize("fps", FPS, ids=fps_str)
@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_audio_spans_tile_the_samples(fps, rate):
    # Consecutive frame spans map to consecutive sample spans with no gap or overlap.
    bounds = [0, 193, 457, 721, 1000]
    samples = [frame_to_sample(b, fps, rate) for b in bounds]
    assert samples[0] == 0
    assert all(b > a for a, b in zip(samples, samples[1:]))
    assert abs(samples[-1] - Fraction(1000 * rate) / fps) <= Fraction(1, 2)


def test_ntsc_durations_are_exact():
    fps = Fraction(24000, 1001)
    assert seconds_to_frame(Fraction(1001, 24), fps) == 1000  # 41.708333 s is exactly 1000 frames
    assert timecode(1000, fps) == "0:41.708"
    assert timecode(0, Fraction(24)) == "0:00.000"
    assert timecode(24 * 75, Fraction(24)) == "1:15.000"


def test_a_span_is_end_exclusive_and_intersects():
    from ltxflow.timeline import Span

    s = Span(10, 25)
    assert s.count == 15 and Span.of(10, 15) == s and tuple(s) == (10, 25)
    assert s.intersect(Span(20, 40)) == Span(20, 25) and s.intersect(Span(25, 30)) is None
    assert Span(0, 5).intersect(Span(4, 5)) == Span(4, 5)
