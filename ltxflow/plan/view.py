"""How a plan is shown: stable JSON for CI scripts and a readable table for people."""

from __future__ import annotations

from typing import Any

from ltxflow.github import markdown_text
from ltxflow.music.grid import describe_text
from ltxflow.plan.planner import Chunk, Plan, StartImage, cost_once
from ltxflow.registry import BACKENDS
from ltxflow.timeline import fps_str, frame_to_seconds, timecode

PLAN_JSON_VERSION = 1


def _seconds(frame: int, plan: Plan) -> float:
    return round(float(frame_to_seconds(frame, plan.project.fps)), 6)


def _start_image_json(s: StartImage) -> dict[str, Any]:
    if s.kind == "keyframe":
        assert s.media is not None
        out: dict[str, Any] = {"kind": "keyframe", "ref": s.media.ref.ref}
        out["sha256" if s.media.digest else "url"] = s.media.digest or s.media.ref.url
        return out
    if s.kind == "chain":
        return {"kind": "chain", "chunk": s.chunk, "frame": s.frame}
    return {"kind": "none"}


def seam_json(c: Chunk, plan: Plan) -> dict[str, Any]:
    """Where a chunk's first frame lands: how the seam was placed (scene | even | beat | gap) and,
    when the project has a music analysis, the nearest beat and the quiet gap it lies in."""
    music = plan.project.music
    out: dict[str, Any] = {"frame": c.start_frame, "time_s": _seconds(c.start_frame, plan), "placed": c.placed}
    if music is not None:
        out["music"] = music.describe(float(frame_to_seconds(c.start_frame, plan.project.fps)))
    return out


def seam_text(c: Chunk, plan: Plan) -> str:
    """'beat 37 (bar 10.1) +0.010s', 'gap 12.30-12.90 s', or how it was placed without music."""
    if plan.project.music is None:
        return c.placed
    return f"{c.placed} | {describe_text(seam_json(c, plan)['music'])}"


def chunk_json(c: Chunk, plan: Plan, status: Any = None) -> dict[str, Any]:
    audio = None
    if c.audio:
        sr = c.audio.sample_rate
        audio = {"start_s": round(c.audio.start_sample / sr, 6), "duration_s": round(c.audio.samples / sr, 6),
                 "start_sample": c.audio.start_sample, "samples": c.audio.samples, "sample_rate": sr,
                 "sha256": c.audio.digest}
    return {
        "id": c.id,
        "scene": c.scene,
        "index": c.index,
        "start_frame": c.start_frame,
        "end_frame": c.end_frame,
        "start_s": _seconds(c.start_frame, plan),
        "end_s": _seconds(c.end_frame, plan),
        "generated_frames": c.generated_frames,
        "kept_frames": c.kept_frames,
        "head_frames": c.head,
        "tail_frames": c.tail,
        "start_image": _start_image_json(c.start_image),
        "end_image": c.end_image.ref.ref if c.end_image else None,
        "chains_from": c.chains_from,
        "endpoint": c.endpoint.id,
        "mode": c.endpoint.mode,
        "seed": c.seed,
        "audio": audio,
        "loras": [{"ref": lo.media.ref.ref, "scale": lo.scale} for lo in c.loras],
        "cost_usd": c.cost_usd,
        "hosted_cost_usd": c.hosted_cost_usd,
        "price_confirmed": c.endpoint.price_confirmed,
        "key": c.key,
        "seam": seam_json(c, plan),
        **({"status": status.status, "reasons": list(status.reasons)} if status is not None else {}),
    }


def plan_json(plan: Plan, statuses: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plan as stable JSON; with `statuses`, each chunk says `cached` or `render` and why."""
    rp = plan.project
    statuses = statuses or {}
    now = [c for c in plan.chunks if c.id in statuses and statuses[c.id].status == "render"]
    return {
        "plan_version": PLAN_JSON_VERSION,
        "project": rp.name,
        "file": rp.file,
        "backend": rp.backend,
        "fps": float(rp.fps),
        "fps_rational": fps_str(rp.fps),
        "width": rp.width,
        "height": rp.height,
        "generated_size": {"width": rp.gen_width, "height": rp.gen_height},  # what the model renders; scaled to width x height
        "output": str(rp.output),
        "scenes": [
            {"id": s.id, "start_frame": s.start_frame, "end_frame": s.end_frame, "endpoint": s.endpoint.id,
             "chunks": [c.id for c in plan.chunks if c.scene == s.id]}
            for s in rp.scenes
        ],
        "chunks": [chunk_json(c, plan, statuses.get(c.id)) for c in plan.chunks],
        "totals": {
            "frames": plan.total_frames,
            "duration_s": round(float(plan.duration), 6),
            "chunks": len(plan.chunks),
            "generated_frames": sum(c.generated_frames for c in plan.chunks),
            "cost_usd": plan.cost_usd,
            "hosted_cost_usd": plan.hosted_cost_usd,
            "longest_chain": plan.longest_chain,
            **({"to_render": len(now), "cost_now_usd": cost_once(now),
                "submitted": sum(1 for st in statuses.values() if st.status == "submitted")}
               if statuses else {}),
        },
    }


def _start_text(s: StartImage) -> str:
    if s.kind == "keyframe":
        assert s.media is not None
        return s.media.ref.ref.rsplit("/", 1)[-1]
    if s.kind == "chain":
        return f"chain {s.chunk}"
    return "-"


def _money(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.4f}"


def plan_table(plan: Plan, statuses: dict[str, Any] | None = None, explain: bool = False) -> str:
    rp = plan.project
    fps = rp.fps
    statuses = statuses or {}
    head = ("scene", "chunk", "time", "gen/kept", "start image", "endpoint", "seed", "cost", "status", "starts on")
    rows = []
    for c in plan.chunks:
        st = statuses.get(c.id)
        rows.append((
            c.scene, c.id, f"{timecode(c.start_frame, fps)}-{timecode(c.end_frame, fps)}",
            f"{c.generated_frames}/{c.kept_frames}", _start_text(c.start_image),
            c.endpoint.id.removeprefix("fal-ai/") + ("" if c.endpoint.price_confirmed else "*"),
            str(c.seed), _money(c.cost_usd), st.status if st else "-", seam_text(c, plan),
        ))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    right = {3, 6, 7}

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()

    music = rp.music
    tempo = (f"; music {music.analysis.tempo:.1f} BPM, {len(music.beats)} beats, {len(music.bars)} bars of "
             f"{music.beats_per_bar}, {len(music.gaps)} quiet gaps; seams on {rp.boundaries}") if music else ""
    size = f"{rp.width}x{rp.height}" + (f" (generated at {rp.gen_width}x{rp.gen_height}, scaled)" if rp.clip_scale else "")
    out = [f"{rp.name}: {size} @ {fps_str(fps)} fps, backend {rp.backend}{tempo}",
           line(head), line(tuple("-" * w for w in widths))]
    for c, row in zip(plan.chunks, rows):
        out.append(line(row))
        st = statuses.get(c.id)
        if explain and st is not None and st.reasons:
            out.append(f"    {c.id}: {'; '.join(st.reasons)}")
    out.append("")
    now = [c for c in plan.chunks if c.id in statuses and statuses[c.id].status == "render"]
    if statuses:
        submitted = sum(1 for st in statuses.values() if st.status == "submitted")
        out.append(f"to render now: {len(now)} of {len(plan.chunks)} chunks, "
                   f"{_money(cost_once(now))}"
                   + (f" (and {submitted} submitted earlier, paid for, to collect)" if submitted else ""))
    hosted = "" if BACKENDS[rp.backend].priced else f" (on fal: {_money(plan.hosted_cost_usd)})"
    shared = len(plan.chunks) - len({c.key for c in plan.chunks})
    out.append(f"{len(plan.chunks)} chunks, {plan.total_frames} frames ({timecode(plan.total_frames, fps)}), "
               f"{sum(c.generated_frames for c in plan.chunks)} generated, longest chain {plan.longest_chain}; "
               f"cost {_money(plan.cost_usd)}{hosted}"
               + (f"; {shared} chunk{'s' if shared > 1 else ''} share{'' if shared > 1 else 's'} another's render "
                  "(same key), counted once" if shared else ""))
    if any(not c.endpoint.price_confirmed for c in plan.chunks):
        out.append("* price inferred from a sibling endpoint, not confirmed on the endpoint's own page")
    return "\n".join(out)


def plan_markdown(plan: Plan, statuses: dict[str, Any] | None = None) -> str:
    """The plan as GitHub-flavoured Markdown (a job summary, a pull request comment): a row per
    chunk with its status and cost, then what renders now and what the whole video costs."""
    rp = plan.project
    fps = rp.fps
    statuses = statuses or {}
    totals = plan_json(plan, statuses)["totals"]
    out = [f"### ltxflow plan: {markdown_text(rp.name)}", "",
           f"{rp.width}x{rp.height} at {fps_str(fps)} fps, {timecode(plan.total_frames, fps)}, "
           f"backend {markdown_text(rp.backend)}", "",
           "| scene | chunk | time | frames | endpoint | status | cost |", "|---|---|---|--:|---|---|--:|"]
    for c in plan.chunks:
        st = statuses.get(c.id)
        endpoint = markdown_text(c.endpoint.id) + ("" if c.endpoint.price_confirmed else "\\*")
        out.append(f"| {markdown_text(c.scene)} | {markdown_text(c.id)} | {timecode(c.start_frame, fps)}-"
                   f"{timecode(c.end_frame, fps)} | {c.generated_frames} | {endpoint} | "
                   f"{st.status if st else '-'} | {markdown_text(_money(c.cost_usd))} |")
    out.append("")
    if statuses:
        submitted = totals["submitted"]
        out.append(f"- to render now: {totals['to_render']} of {len(plan.chunks)} chunks, "
                   f"{markdown_text(_money(totals['cost_now_usd']))}"
                   + (f" ({submitted} submitted earlier, paid for, to collect)" if submitted else ""))
    hosted = ("" if BACKENDS[rp.backend].priced
              else f" (on fal: {markdown_text(_money(totals['hosted_cost_usd']))})")
    out.append(f"- whole video: {len(plan.chunks)} chunks, {markdown_text(_money(totals['cost_usd']))}{hosted}")
    if any(not c.endpoint.price_confirmed for c in plan.chunks):
        out += ["", "\\* price inferred from a sibling endpoint, not confirmed on the endpoint's own page"]
    return "\n".join(out) + "\n"
