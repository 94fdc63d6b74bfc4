"""The build's events: each one's fields, as a contract between what emits them (build, chunk
work, backends) and what reads them (the reporters, CI reading the JSON log).

EVENTS maps an event's name to (required fields, optional fields), each field to the types its
value may have. The JSON log adds `event` and `t` to every line. tests/test_events.py runs builds
of every kind and checks each event they emit against this; a reporter shown an event that does
not match prints it whole instead of failing."""

from __future__ import annotations

from typing import Any

NUM = (int, float)
OPT_STR = (str, type(None))
OPT_INT = (int, type(None))
Fields = dict[str, tuple[type, ...]]

EVENTS: dict[str, tuple[Fields, Fields]] = {
    "build_started": ({"project": OPT_STR, "backend": (str,), "jobs": (int,), "chunks": (int,),
                       "to_render": (int,), "cached": (int,), "output": (str,)},
                      {"cost_now_usd": NUM, "resuming": (int,), "up_to_date": (bool,),
                       "stale": (dict,),  # why a build runs at all: uptodate.check's reason
                       "order": (list,)}),  # the chunks it needs, in plan order
    "chunk_cached": ({"chunk": (str,)}, {}),
    "chunk_started": ({"chunk": (str,)}, {}),
    "chunk_retry": ({"chunk": (str,), "attempt": (int,), "delay_s": NUM, "error": (str,)}, {}),
    # hosted chunks: `collected` names the request of an earlier build this one collected (paid
    # then, not now), `shared_with` the chunk of this build whose request it shared, and
    # `possible_duplicate_charge_usd` the price of a submit that may have been charged twice
    "chunk_done": ({"chunk": (str,), "seconds": NUM, "render_s": NUM, "normalize_s": NUM, "cost_usd": NUM},
                   {"collected": (str,), "shared_with": (str,), "possible_duplicate_charge_usd": NUM}),
    "chunk_failed": ({"chunk": (str,), "error": (str,)}, {}),
    "chunk_skipped": ({"chunk": (str,), "reason": (str,)}, {}),
    "warning": ({"message": (str,)}, {"chunk": (str,)}),
    "stitch_done": ({"output": (str,), "skipped": (bool,), "frames": OPT_INT, "seconds": NUM},
                    {"audio_samples": (int,), "audio_cached": (bool,), "crossfades": (int,),
                     "reencoded_frames": (int,)}),
    # `seams`: the chained seams with scores, weakest first (at most five): before, after, frame, score
    "report_written": ({"report": (str,), "contact_sheet": (str,), "seconds": NUM, "clips_read": (int,),
                        "clips_kept": (int,)}, {"seams": (list,), "seams_scored": (int,)}),
    "build_done": ({"output": OPT_STR, "seconds": NUM, "rendered": (int,), "cached": (int,), "failed": (int,),
                    "skipped": (int,), "cost_usd": NUM},
                   {"breakdown": (dict,), "failures": (dict,), "interrupted": (bool,), "to_render": (int,),
                    "up_to_date": (bool,)}),
    # from hosted and local backends
    "upload_done": ({"chunk": OPT_STR, "file": (str,), "bytes": (int,), "seconds": NUM}, {}),
    # a file uploaded in parts: once it is started (or resumed) and after each part
    "upload_progress": ({"chunk": OPT_STR, "file": (str,), "parts_done": (int,), "parts": (int,),
                         "bytes_done": (int,), "bytes": (int,)}, {}),
    "chunk_submitted": ({"chunk": (str,), "request_id": (str,), "endpoint": (str,)}, {}),
    "chunk_resumed": ({"chunk": (str,), "request_id": (str,), "endpoint": (str,)}, {}),
    "chunk_queue": ({"chunk": (str,), "status": (str,), "queue_position": OPT_INT, "request_id": (str,)}, {}),
    "chunk_log": ({"chunk": (str,), "message": (str,)}, {}),
    "fal_retry": ({"what": (str,), "attempt": (int,), "delay_s": NUM, "error": (str,)}, {}),
    "worker_started": ({"gpu": OPT_STR, "device": (str,), "visible": OPT_STR, "pid": (int,)}, {}),
    # a build on a Ray cluster (--ray): the cluster it got, where each chunk ran (node and actor ids),
    # a chunk sent again because its actor or node died under it
    "cluster_ready": ({"address": (str,), "nodes": (int,), "gpus": (int,), "cpus": (int,), "actors": (int,)},
                      {"shared": OPT_STR}),
    "chunk_placed": ({"chunk": (str,), "node": (str,), "actor": (str,)},
                     {"host": (str,), "gpus": (list,), "requeued": (int,)}),
    "chunk_requeued": ({"chunk": (str,), "attempt": (int,), "error": (str,)}, {}),
}


def problems(name: str, fields: dict[str, Any]) -> list[str]:
    """How an event differs from its contract ([] when it keeps it)."""
    if name not in EVENTS:
        return [f"unknown event {name!r}"]
    required, optional = EVENTS[name]
    out = [f"{name}: {k} is missing" for k in required if k not in fields]
    for k, v in fields.items():
        kinds = required.get(k) or optional.get(k)
        if kinds is None:
            out.append(f"{name}: {k} is not one of its fields")
        elif not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
            out.append(f"{name}: {k} is {type(v).__name__} ({v!r}), expected {' or '.join(t.__name__ for t in kinds)}")
    return out
