"""The build report as one self-contained HTML page: inline CSS and SVG, thumbnails as data: URIs, nothing fetched.

Bounded whatever the chunk count: every chunk is listed as text, the frames of at most
MAX_PAGE_THUMBS chunks (spread evenly over the video) are embedded, and each prompt is shown up to
PROMPT_SHOWN characters."""

from __future__ import annotations

import base64
import html
from typing import Iterable

from ltxflow import __version__
from ltxflow.report import spread
from ltxflow.report.gather import ChunkRow, Report, Seam
from ltxflow.timeline import fps_str, frame_to_seconds, timecode

WEAKEST_SHOWN = 5
MAX_PAGE_THUMBS = 200  # chunks whose two frames the page embeds (some 40 KB each): about 8 MB at most
PROMPT_SHOWN = 1000  # characters of a chunk's prompt on the page; the rest is counted
STRIP_W, STRIP_H = 1200, 190  # the waveform strip's drawing units (it scales to the page's width)
LANE_Y, WAVE_TOP, WAVE_BOTTOM, TICKS_Y = 2, 26, 150, 156

CSS = """
:root { --ink: #1d2330; --muted: #5d6678; --line: #d8dce5; --bg: #f6f7fa; --card: #fff; --bad: #d7263d;
        --ok: #2a9d5c; --warn: #d98a00; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color: var(--ink); background: var(--bg); }
h1 { margin: 0 0 4px; font-size: 26px; } h2 { margin: 32px 0 10px; font-size: 19px; }
h3 { margin: 0 0 6px; font-size: 15px; }
.sub { color: var(--muted); margin: 0 0 16px; }
dl.summary { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 4px 18px;
             background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; }
dl.summary dt, .facts dt { color: var(--muted); } dl dd { margin: 0; overflow-wrap: anywhere; }
svg#waveform { display: block; width: 100%; height: auto; background: #11151f; border-radius: 8px; }
svg .wave { fill: #4fb3d9; } svg .gap { fill: #ffffff; opacity: .10; }
svg .beat { stroke: #8b93a7; stroke-width: 1; opacity: .55; } svg .bar { stroke: #e8ebf2; stroke-width: 2; }
svg .scene-band { opacity: .9; } svg .scene-name { fill: #fff; font: 12px system-ui, sans-serif; }
svg .seam-line { stroke: #f4d35e; stroke-width: 1.5; stroke-dasharray: 4 3; }
svg .seam-line.cut { stroke: #c9ced9; stroke-dasharray: none; }
svg .seam-line.worst { stroke: var(--bad); stroke-width: 3.5; stroke-dasharray: none; }
svg .time { fill: #aab1c2; font: 11px system-ui, sans-serif; }
.legend { color: var(--muted); font-size: 12.5px; margin: 6px 0 0; }
.legend i { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin: 0 4px 0 12px; }
ol#weakest { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 10px 10px 40px; }
ol#weakest li.worst { color: var(--bad); font-weight: 600; }
table.seams { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); }
table.seams th, table.seams td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); }
table.seams td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.seam.worst { background: #fde4e7; } tr.seam.worst td { color: var(--bad); font-weight: 600; }
tr.seam.cut td { color: var(--muted); }
.scene { margin-top: 28px; } .scene > h2 small { color: var(--muted); font-weight: normal; font-size: 14px; }
article.chunk { display: flex; gap: 18px; background: var(--card); border: 1px solid var(--line);
                border-left: 5px solid var(--ok); border-radius: 8px; padding: 12px; margin: 10px 0; }
article.chunk.stale { border-left-color: var(--warn); } article.chunk.missing { border-left-color: #9aa2b1; }
.thumbs { display: flex; gap: 8px; flex: none; }
figure { margin: 0; } figcaption { color: var(--muted); font-size: 12px; }
img.thumb { display: block; width: 240px; height: auto; border-radius: 4px; background: #000; }
div.thumb.none { width: 240px; height: 135px; display: grid; place-items: center; border-radius: 4px;
                 color: var(--muted); background: repeating-linear-gradient(45deg, #eceef3 0 10px, #f6f7fa 10px 20px); }
.facts { flex: 1; min-width: 0; }
.facts dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
.state { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; margin-left: 8px; color: #fff;
         background: var(--ok); } .state.stale { background: var(--warn); } .state.missing { background: #9aa2b1; }
.prompt { white-space: pre-wrap; }
ul.notes { margin: 6px 0 0; padding-left: 18px; color: var(--warn); }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
"""


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def render_html(report: Report, contact_name: str | None = None) -> str:
    """The whole page. Every string from the project (names, prompts, paths) is escaped."""
    rp = report.plan.project
    title = f"{rp.name}: build report"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{e(rp.name)}</h1>", f'<p class="sub">build report &middot; {e(rp.file)}</p>',
             _summary(report, contact_name), "<h2>Timeline</h2>", _strip(report), _legend(report),
             "<h2>Seams</h2>", _weakest(report), _seam_table(report), _thumbs_note(report), *_scenes(report),
             f"<footer>made by ltxflow {e(__version__)} on {e(report.generated.isoformat(timespec='seconds'))}"
             "</footer></body></html>"]
    return "\n".join(parts) + "\n"


def _summary(report: Report, contact_name: str | None) -> str:
    rp = report.plan.project
    rows = report.rows
    rendered = sum(1 for r in rows if r.state == "rendered")
    video = f"{report.video}" if report.video else "none"
    built = report.video_date.isoformat(timespec="seconds") if report.video_date else "not built yet"
    items = [("project", rp.name), ("file", rp.file), ("video", video), ("built", built),
             ("size", f"{rp.width}x{rp.height}"), ("fps", fps_str(rp.fps)),
             ("frames", f"{rp.total_frames}"), ("duration", timecode(rp.total_frames, rp.fps)),
             ("backend", rp.backend), ("chunks", f"{len(rows)} ({rendered} rendered, {len(rows) - rendered} not)"),
             ("cost", f"${report.spent_usd:.2f} spent" + (f", about ${report.to_spend_usd:.2f} still to render"
                                                             if report.to_spend_usd else "")),
             ("ltxflow", __version__), ("report made", report.generated.isoformat(timespec="seconds")),
             ("contact sheet", contact_name or "none")]
    body = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items)
    return f'<dl class="summary">{body}</dl>'


def _x(report: Report, seconds: float) -> float:
    rp = report.plan.project
    total = float(frame_to_seconds(rp.total_frames, rp.fps)) or 1.0
    return round(seconds / total * STRIP_W, 2)


def _fx(report: Report, frame: int) -> float:
    return _x(report, float(frame_to_seconds(frame, report.plan.project.fps)))


def _strip(report: Report) -> str:
    """The waveform strip: scenes on top, the track's peak envelope, quiet gaps shaded, beat ticks
    (bar starts stronger), seam lines (the worst in red), a time axis."""
    rp = report.plan.project
    total_s = float(frame_to_seconds(rp.total_frames, rp.fps))
    out = [f'<svg id="waveform" viewBox="0 0 {STRIP_W} {STRIP_H}" role="img" '
           f'aria-label="the master track with beats, gaps, scenes and seams">']
    palette = ("#3d5a80", "#6d597a", "#2a6f60", "#8c5e34", "#5b4b8a", "#7a3e48")
    for i, s in enumerate(rp.scenes):
        x0, x1 = _fx(report, s.start_frame), _fx(report, s.end_frame)
        room = max(0, int((x1 - x0 - 8) / 7))
        name = s.id if len(s.id) <= room else s.id[:max(0, room - 1)] + "\u2026" if room > 1 else ""
        out.append(f'<g><title>{e(s.id)}: {e(timecode(s.start_frame, rp.fps))}-{e(timecode(s.end_frame, rp.fps))}'
                   f'</title><rect class="scene-band" x="{x0}" y="{LANE_Y}" width="{max(0.0, x1 - x0 - 1)}" '
                   f'height="18" fill="{palette[i % len(palette)]}"/><text class="scene-name" x="{x0 + 4}" '
                   f'y="{LANE_Y + 13}">{e(name)}</text></g>')
    grid = rp.music
    if grid is not None:
        for a, b in grid.gaps:
            if a < total_s:
                x0, x1 = _x(report, a), _x(report, min(b, total_s))
                out.append(f'<rect class="gap" x="{x0}" y="{WAVE_TOP}" width="{max(0.5, x1 - x0)}" '
                           f'height="{WAVE_BOTTOM - WAVE_TOP}"><title>quiet {a:.2f}-{b:.2f} s</title></rect>')
    out.append(_wave_path(report))
    if grid is not None:
        bars = set(grid.bars)
        for b in grid.beats:
            if b <= total_s:
                x = _x(report, b)
                y0, cls = (TICKS_Y - 6, "bar") if b in bars else (TICKS_Y, "beat")
                out.append(f'<line class="{cls}" x1="{x}" x2="{x}" y1="{y0}" y2="{TICKS_Y + 12}"/>')
    worst = report.worst
    for s in report.seams:
        cls = "seam-line" + (" worst" if s is worst else "") + ("" if s.chained else " cut")
        x = _fx(report, s.frame)
        out.append(f'<line class="{cls}" x1="{x}" x2="{x}" y1="{WAVE_TOP - 4}" y2="{WAVE_BOTTOM + 4}">'
                   f'<title>{e(_seam_label(report, s))}</title></line>')
    step = _tick_step(total_s)
    t = 0.0
    while t <= total_s + 1e-9:
        anchor = "start" if t == 0 else "end" if _x(report, t) > STRIP_W - 30 else "middle"
        out.append(f'<text class="time" x="{_x(report, t)}" y="{STRIP_H - 4}" text-anchor="{anchor}">'
                   f'{int(t) // 60}:{int(t) % 60:02d}</text>')
        t += step
    out.append("</svg>")
    return "".join(out)


def _wave_path(report: Report) -> str:
    env = report.envelope
    if not env:
        return (f'<text class="time" x="{STRIP_W / 2}" y="{(WAVE_TOP + WAVE_BOTTOM) / 2}" text-anchor="middle">'
                "the decoded master track is not available</text>")
    mid, amp = (WAVE_TOP + WAVE_BOTTOM) / 2, (WAVE_BOTTOM - WAVE_TOP) / 2
    n = len(env)
    xs = [round((i + 0.5) / n * STRIP_W, 1) for i in range(n)]
    top = " ".join(f"{x},{round(mid - max(p, 0.004) * amp, 1)}" for x, p in zip(xs, env))
    bottom = " ".join(f"{x},{round(mid + max(p, 0.004) * amp, 1)}" for x, p in zip(reversed(xs), reversed(env)))
    return f'<polygon class="wave" points="{top} {bottom}"/>'


def _tick_step(total_s: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300):
        if total_s / step <= 16:
            return float(step)
    return 600.0


def _legend(report: Report) -> str:
    music = ("beats as ticks, bar starts as tall ticks, quiet gaps shaded"
             if report.plan.project.music is not None else
             "no music analysis (the project places nothing on beats, so the track was not analysed)")
    return (f'<p class="legend">{e(music)}.<i style="background:#f4d35e"></i>chained seam'
            '<i style="background:#c9ced9"></i>cut to a keyframe<i style="background:#d7263d"></i>weakest seam</p>')


def _seam_label(report: Report, s: Seam) -> str:
    rp = report.plan.project
    score = f"score {s.score:.2f}" if s.score is not None else "not scored (a side is not rendered)"
    kind = "chained" if s.chained else "cut to a keyframe"
    music = f"; {s.music}" if s.music else ""
    return f"{s.before} | {s.after} at {timecode(s.frame, rp.fps)} (frame {s.frame}), {kind}, {score}{music}"


def _weakest(report: Report) -> str:
    weakest = report.weakest[:WEAKEST_SHOWN]
    intro = ('<p class="legend">Score: the picture change across a seam divided by the typical change between '
             "consecutive frames beside it (about 1: seamless; 3 or more: a visible jump).</p>")
    if not weakest:
        return '<h3>Weakest seams</h3>' + intro + '<ol id="weakest"><li>no chained seams to score</li></ol>'
    items = "".join(f'<li class="{"worst" if i == 0 else ""}">{e(_seam_label(report, s))}</li>'
                    for i, s in enumerate(weakest))
    return f'<h3>Weakest seams</h3>{intro}<ol id="weakest">{items}</ol>'


def _num(value: float | None, digits: int = 2) -> str:
    return "&ndash;" if value is None else f"{value:.{digits}f}"


def _seam_table(report: Report) -> str:
    rp = report.plan.project
    worst = report.worst
    head = ("<tr><th>#</th><th>at</th><th>frame</th><th>between</th><th>kind</th><th>across</th>"
            "<th>typical</th><th>score</th><th>on the music</th></tr>")
    rows = []
    for i, s in enumerate(report.seams, 1):
        cls = "seam" + (" worst" if s is worst else "") + ("" if s.chained else " cut")
        rows.append(f'<tr class="{cls}" id="seam-{i}"><td>{i}</td><td>{e(timecode(s.frame, rp.fps))}</td>'
                    f'<td class="num">{s.frame}</td><td>{e(s.before)} &rarr; {e(s.after)}</td>'
                    f'<td>{"chained" if s.chained else "cut to a keyframe"}</td><td class="num">{_num(s.across)}</td>'
                    f'<td class="num">{_num(s.typical)}</td><td class="num">{_num(s.score)}</td>'
                    f'<td>{e(s.music or "")}</td></tr>')
    if not rows:
        return '<p class="legend">one chunk: no seams.</p>'
    return f'<table class="seams">{head}{"".join(rows)}</table>'


def _thumbs_note(report: Report) -> str:
    n = len(report.rows)
    if n <= MAX_PAGE_THUMBS:
        return ""
    return (f'<p class="legend">The frames of {MAX_PAGE_THUMBS} of the {n} chunks are shown, spread evenly over '
            "the video; every chunk is listed.</p>")


def _scenes(report: Report) -> Iterable[str]:
    rp = report.plan.project
    embedded = {report.rows[i].chunk.id for i in spread(len(report.rows), MAX_PAGE_THUMBS)}
    by_scene: dict[str, list[ChunkRow]] = {}
    for r in report.rows:
        by_scene.setdefault(r.chunk.scene, []).append(r)
    for s in rp.scenes:
        rows = by_scene.get(s.id, [])
        span = f"{timecode(s.start_frame, rp.fps)}-{timecode(s.end_frame, rp.fps)}"
        yield (f'<section class="scene" id="scene-{e(s.id)}"><h2>{e(s.id)} <small>{e(span)}, frames '
               f'{s.start_frame}-{s.end_frame - 1}, {len(rows)} chunk{"s" if len(rows) != 1 else ""}</small></h2>'
               + "".join(_chunk(report, r, r.chunk.id in embedded) for r in rows) + "</section>")


def _thumb(jpeg: bytes | None, what: str, chunk_id: str, frame: int, report: Report, embed: bool = True) -> str:
    caption = f"{what} {timecode(frame, report.plan.project.fps)} (frame {frame})"
    if jpeg is None or not embed:
        shown = "no frame" if jpeg is None else "not embedded"
        return f'<figure><div class="thumb none">{shown}</div><figcaption>{e(caption)}</figcaption></figure>'
    return (f'<figure><img class="thumb" src="{data_uri(jpeg)}" alt="{e(what)} frame of {e(chunk_id)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def _prompt(text: str) -> str:
    if len(text) <= PROMPT_SHOWN:
        return e(text)
    return f"{e(text[:PROMPT_SHOWN])}&hellip; <small>({len(text) - PROMPT_SHOWN} more characters)</small>"


def _chunk(report: Report, r: ChunkRow, embed: bool = True) -> str:
    rp = report.plan.project
    c = r.chunk
    t = r.timings
    start = {"keyframe": f"keyframe {c.start_image.media.ref.ref}" if c.start_image.media else "keyframe",
             "chain": f"chained from {c.start_image.chunk} (its frame {c.start_image.frame})",
             "none": "text and audio only"}[c.start_image.kind]
    facts = [("time", f"{timecode(c.start_frame, rp.fps)}-{timecode(c.end_frame, rp.fps)}"),
             ("frames", f"{c.start_frame}-{c.end_frame - 1} ({c.kept_frames} kept of {c.generated_frames} "
                        f"generated)"),
             ("starts from", start), ("endpoint", c.endpoint.id), ("seed", r.seed),
             ("cost", f"${r.cost_usd:.2f}" + ("" if r.record is not None else " (planned)"))]
    if t:
        facts.append(("render time", f"{t.get('render_s', 0):.1f} s render, {t.get('normalize_s', 0):.1f} s normalize"))
    state = {"rendered": "rendered", "stale": "out of date", "missing": "not rendered"}[r.state]
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts)
    notes = "".join(f"<li>{e(n)}</li>" for n in r.notes)
    thumbs = (_thumb(r.first_jpeg, "first", c.id, c.start_frame, report, embed)
              + _thumb(r.last_jpeg, "last", c.id, c.end_frame - 1, report, embed))
    return (f'<article class="chunk {r.state}" id="chunk-{e(c.id)}"><div class="thumbs">{thumbs}</div>'
            f'<div class="facts"><h3>{e(c.id)}<span class="state {r.state}">{e(state)}</span></h3>'
            f'<dl><dt>prompt</dt><dd class="prompt">{_prompt(r.prompt)}</dd>{dl}</dl>'
            + (f'<ul class="notes">{notes}</ul>' if notes else "") + "</div></article>")
