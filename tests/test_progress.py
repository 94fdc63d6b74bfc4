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
    ("report_written", dict(report="out/v.report.html", contact_sheet="out/v.contact.png", seconds=0.4)),
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
