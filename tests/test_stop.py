"""Stopping a build: the ffmpeg seams and the test backend give up as soon as the build's stop is
set, killing their ffmpeg and leaving no partial file (the end-to-end checks are in test_build.py)."""

from __future__ import annotations

import threading
from fractions import Fraction

import numpy as np
import pytest

from ltxflow.errors import Stopped
from ltxflow.media.encode import LOSSLESS_VIDEO, FrameWriter, encode_frames_args, run
from ltxflow.media.ffmpeg import find_ffmpeg


def test_a_frame_writer_stops_at_the_next_frame_and_removes_its_file(tmp_path):
    out = tmp_path / "clip.mp4"
    stop = threading.Event()
    frame = np.zeros((32, 64, 3), dtype=np.uint8)
    args = encode_frames_args(find_ffmpeg().path, 64, 32, Fraction(24), out, LOSSLESS_VIDEO)
    with pytest.raises(Stopped):
        with FrameWriter(args, out, "clip", stop=stop) as writer:
            for i in range(100):
                if i == 5:
                    stop.set()
                writer.write(frame)
    assert writer.frames == 5
    assert writer.proc is not None and writer.proc.poll() is not None  # killed and reaped
    assert not out.exists()
    with pytest.raises(Stopped):  # once stopped, no encoder starts
        FrameWriter(args, out, "clip", stop=stop).__enter__()


def test_run_kills_ffmpeg_when_the_stop_is_set():
    # Silence read at its own pace (-re): a minute of real time unless killed.
    args = [find_ffmpeg().path, "-nostdin", "-re", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "60",
            "-f", "null", "-"]
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(Stopped, match="silence: stopped"):
        run(args, what="silence", stop=stop)


def test_the_test_backend_gives_up_its_sleep(tmp_path):
    from ltxflow.backends.base import ChunkRequest
    from ltxflow.backends.testing import TestBackend

    stop = threading.Event()
    backend = TestBackend.from_env({"LTXFLOW_TEST_BACKEND": "sleep=60"}, stop=stop)
    request = ChunkRequest(chunk_id="a.0", key="k", scene_id="a", endpoint="e", mode="image-to-video",
                           family="ltx-2.3-quality", prompt="p", values={}, args={}, seed=1, frames=9, width=64,
                           height=32, fps=Fraction(24), timeline_frame=0)
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(Stopped):
        backend.render(request, tmp_path)
    assert list(tmp_path.iterdir()) == []
