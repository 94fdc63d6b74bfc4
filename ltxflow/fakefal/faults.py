"""Faults the fake fal server injects, from specs like `429x3`, `slow:20@verse`, `422:num_frames`.

Grammar: KIND[:ARG][xCOUNT][@MATCH]. COUNT (default 1) is how many submits it applies to;
MATCH limits it to requests whose prompt contains that text.

  submit:   429 | 500 | 503     answer the submit with that status (nothing is queued)
            lost               queue the job, then drop the connection without answering
            garbled            queue the job, then answer 200 with a body that is not JSON
            stall:N            queue the job, then answer only after N seconds (a build killed meanwhile
                               never learns its request id)
            422:FIELD          reject the body, naming FIELD (fal's validation detail shape)
  job:      slow:N             stay IN_QUEUE for N status polls
            drop               drop the connection on the job's first IN_PROGRESS poll
            error[:MESSAGE]    COMPLETED, with the model's error
            crash              COMPLETED, with an infrastructure error (runner_disconnected)
            gone               the result is gone (404) when fetched
            frames:DELTA       the clip has DELTA more frames than asked (e.g. -8)
            fps:RATE           the clip is encoded at RATE fps
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

SUBMIT_KINDS = ("429", "500", "503", "lost", "garbled", "422", "stall")
JOB_KINDS = ("slow", "drop", "error", "crash", "gone", "frames", "fps")
_SPEC = re.compile(r"^(?P<kind>\d+|[a-z]+)(?::(?P<arg>[^x@][^@]*?))?(?:(?<!\s)x(?P<count>\d+))?(?:@(?P<match>.+))?$")


@dataclass
class Fault:
    kind: str
    arg: str | None = None
    count: int = 1
    match: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "Fault":
        m = _SPEC.match(spec.strip())
        if not m or m["kind"] not in SUBMIT_KINDS + JOB_KINDS:
            raise ValueError(f"bad fault {spec!r}: expected KIND[:ARG][xCOUNT][@MATCH] with KIND one of "
                             f"{', '.join(SUBMIT_KINDS + JOB_KINDS)}")
        fault = cls(m["kind"], m["arg"], int(m["count"] or 1), m["match"])
        if fault.kind in ("slow", "frames", "stall") and not _is_int(fault.arg):
            raise ValueError(f"bad fault {spec!r}: {fault.kind} needs a whole number, e.g. {fault.kind}:3")
        if fault.kind == "fps" and not _is_number(fault.arg):
            raise ValueError(f"bad fault {spec!r}: fps needs a rate, e.g. fps:25")
        if fault.kind == "422" and not fault.arg:
            raise ValueError(f"bad fault {spec!r}: 422 needs the field to reject, e.g. 422:num_frames")
        return fault


class Faults:
    """The faults still to inject; each application uses up one of its count. Thread-safe."""

    def __init__(self, faults: list[Fault] | None = None):
        self.faults = list(faults or [])
        self.lock = threading.Lock()

    def take(self, kinds: tuple[str, ...], prompt: str, limit: int | None = None) -> list[Fault]:
        """Use up one of each fault of `kinds` (at most `limit` faults) that applies to a request
        with `prompt`."""
        taken: list[Fault] = []
        with self.lock:
            for f in self.faults:
                if limit is not None and len(taken) >= limit:
                    break
                if f.kind in kinds and f.count > 0 and (f.match is None or f.match in prompt):
                    if any(t.kind == f.kind for t in taken):
                        continue
                    f.count -= 1
                    taken.append(f)
        return taken


def _is_int(text: str | None) -> bool:
    return text is not None and re.fullmatch(r"-?\d+", text) is not None


def _is_number(text: str | None) -> bool:
    try:
        return text is not None and float(text) > 0
    except ValueError:
        return False
