"""The text and live reporters render every event a build emits, hosted ones included."""

from __future__ import annotations

import io

from ltxflow.progress import JsonReporter, RichReporter, TextReporter

EVENTS = [
    ("build_started", dict(project="p", backend="fal", jobs=2, chunks=2, to_render=2, cached=0, output="o.mp4",
                           cost_now_usd=0.5, resuming=1)),
    ("chunk_started", dict(chunk="a.0")),
    ("upload_done", dict(chunk="a.0", file="span.wav", bytes=10, seconds=0.1)),
    ("chunk_submitted", dict(chunk="a.0", endpoint="fal-ai/x", request_id="r1")),
    ("chunk_resumed", dict(chunk="b.0", endpoint="fal-ai/x", request_id="r0")),
    ("chunk_queue", dict(chunk="a.0", request_id="r1", status="IN_QUEUE", queue_position=3)),
    ("fal_retry", dict(what="status of r1", attempt=1, delay_s=0.5, error="HTTP 503: busy")),
    ("chunk_queue", dict(chunk="a.0", request_id="r1", status="IN_PROGRESS", queue_position=None)),
    ("chunk_log", dict(chunk="a.0", message="Generating video")),
    ("chunk_queue", dict(chunk="a.0", request_id="r1", status="COMPLETED", queue_position=None)),
    ("chunk_done", dict(chunk="a.0", seconds=1.0, render_s=0.9, normalize_s=0.1, cost_usd=0.25)),
    ("chunk_failed", dict(chunk="b.0", error="scene 'b', chunk b.0: fal rejected the submit")),
    ("report_written", dict(report="out/v.report.html", contact_sheet="out/v.contact.png", seconds=0.4,
                            clips_read=1, clips_kept=0)),
    ("build_done", dict(output=None, rendered=1, cached=0, failed=1, skipped=0, cost_usd=0.25, seconds=2.0)),
]


def test_text_reporter_says_what_fal_is_doing():
    out = io.StringIO()
    r = TextReporter(out)
    for name, fields in EVENTS:
        r.event(name, **fields)
    text = out.getvalue()
    for words in ("submitted a.0 to fal-ai/x (request r1)", "b.0: following request r0",
                  "a.0: in queue, position 3", "a.0: running", "a.0: Generating video",
                  "status of r1: retrying in 0.5s (try 2): HTTP 503: busy", "FAILED b.0",
                  "build failed (1 rendered, 0 cached, 1 failed; $0.25 spent",
                  "report: out/v.report.html (contact sheet out/v.contact.png)"):
        assert words in text, words
    assert "COMPLETED" not in text


def test_live_reporter_counts_queued_requests_instead_of_printing_polls():
    out = io.StringIO()
    r = RichReporter(out)
    for name, fields in EVENTS[:6]:
        r.event(name, **fields)
    assert r.waiting == {"a.0"}
    for name, fields in EVENTS[6:]:
        r.event(name, **fields)
    r.close()
    assert r.waiting == set()
    text = out.getvalue()
    assert "submitted a.0" in text and "in queue, position" not in text and "Generating video" not in text


def test_json_reporter_writes_each_event_as_one_line():
    import json

    out = io.StringIO()
    r = JsonReporter(out)
    for name, fields in EVENTS:
        r.event(name, **fields)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in lines] == [n for n, _ in EVENTS]
    assert lines[5]["queue_position"] == 3


# A local build's other events: a chunk from the cache, a retried one, a warning, a chunk skipped
# below a failure, and the stitch (made, then found up to date).
LOCAL = [
    ("build_started", dict(project="p", backend="preview", jobs=1, chunks=3, to_render=2, cached=1,
                           output="out/v.mp4", cost_now_usd=0.0, resuming=0)),
    ("chunk_cached", dict(chunk="a.0")),
    ("chunk_started", dict(chunk="b.0")),
    ("chunk_retry", dict(chunk="b.0", attempt=1, delay_s=2.0, error="connection reset")),
    ("warning", dict(chunk="b.0", message="b.0: the clip deviates from its request (frames 23); conformed")),
    ("chunk_done", dict(chunk="b.0", seconds=1.5, render_s=1.4, normalize_s=0.1, cost_usd=0.0)),
    ("chunk_skipped", dict(chunk="c.0", reason="depends on b.0, which failed")),
    ("stitch_done", dict(output="out/v.mp4", skipped=False, frames=96, audio_samples=64000, audio_cached=False,
                         seconds=0.25, crossfades=2, reencoded_frames=12)),
    ("stitch_done", dict(output="out/v.mp4", skipped=True, frames=96, seconds=0.0)),
    ("build_done", dict(output="out/v.mp4", rendered=1, cached=1, failed=0, skipped=1, cost_usd=0.0, seconds=3.0)),
]


def test_text_reporter_says_what_a_local_build_is_doing():
    out = io.StringIO()
    r = TextReporter(out)
    for name, fields in LOCAL:
        r.event(name, **fields)
    lines = out.getvalue().splitlines()
    for words in ("retrying b.0 in 2.0s (attempt 1): connection reset",
                  "warning: b.0: the clip deviates from its request (frames 23); conformed",
                  "done b.0 in 1.5s (2/3)",  # the cached chunk counts towards the total
                  "skipped c.0: depends on b.0, which failed",
                  "stitched out/v.mp4: 96 frames, 2 crossfades in 0.25s", "out/v.mp4 is up to date",
                  "built: out/v.mp4 (1 rendered, 1 cached, 1 skipped; $0.00 spent; 3.0s)"):
        assert sum(words in ln for ln in lines) == 1, (words, lines)
    assert not any("a.0" in ln for ln in lines)  # a cached chunk is counted, not printed
    assert len(lines) == len(LOCAL) - 1  # one line for each event but chunk_cached


def test_quiet_text_reporter_keeps_warnings_failures_skips_and_a_failed_result():
    out = io.StringIO()
    r = TextReporter(out, quiet=True)
    for name, fields in LOCAL:
        r.event(name, **fields)
    lines = out.getvalue().splitlines()
    assert [ln.split("] ", 1)[1].split(":")[0] for ln in lines] == ["warning", "skipped c.0"]  # built: not said
    out = io.StringIO()
    r = TextReporter(out, quiet=True)
    for name, fields in EVENTS:
        r.event(name, **fields)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "FAILED b.0" in lines[0] and lines[1].startswith("build failed (1 rendered")


def test_live_reporter_advances_on_cached_and_skipped_chunks_and_prints_warnings():
    out = io.StringIO()
    r = RichReporter(out)
    for name, fields in LOCAL[:-1]:
        r.event(name, **fields)
    task = r.progress.tasks[0]
    assert (task.completed, task.total) == (3, 3)  # a.0 cached, b.0 done, c.0 skipped
    assert task.fields["status"] == "0 queued, 1 cached, 0 rendering, 1 done, 0 failed, 1 skipped"  # none left
    name, fields = LOCAL[-1]
    r.event(name, **fields)
    r.close()
    text = out.getvalue()
    for words in ("retrying b.0 in 2.0s", "warning: b.0: the clip deviates", "skipped c.0: depends on b.0",
                  "stitched out/v.mp4: 96 frames, 2 crossfades", "out/v.mp4 is up to date", "built: out/v.mp4"):
        assert words in text, words
    assert "done b.0" not in text  # the bar shows it


def test_the_events_fed_here_keep_the_contract():
    """The events above are what builds emit (ltxflow/events.py), so the reporters are tested on
    real lines, not on ones they would show whole as off-contract."""
    from ltxflow.events import problems

    assert [p for name, fields in EVENTS + LOCAL for p in problems(name, fields)] == []


def test_a_build_says_why_it_runs_at_all():
    # build_started's `stale`, uptodate.check's reason as data, worded by the reporter.
    out = io.StringIO()
    r = TextReporter(out)
    for why, words in (({"reason": "file", "file": "/p/keyframes/b.png"}, "b.png changed"),
                       ({"reason": "project"}, "the project file changed"),
                       ({"reason": "no-stamp"}, "no build with these options yet")):
        r.event("build_started", project="p", backend="preview", jobs=4, chunks=2, to_render=1, cached=1,
                output="out/v.mp4", stale=why)
        assert out.getvalue().splitlines()[-1].endswith(f"(backend preview, 4 jobs; {words})")
