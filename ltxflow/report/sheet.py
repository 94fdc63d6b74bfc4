"""The contact sheet: a PNG grid of each chunk's first and last kept frames, labelled; bounded in
pixels whatever the chunk count (past MAX_SHEET_PIXELS, chunks spread evenly over the video)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from ltxflow.report import spread
from ltxflow.report.gather import ChunkRow, Report
from ltxflow.timeline import fps_str, timecode

THUMB_W = 240  # each frame's width on the sheet (a frame taller than wide: THUMB_H tall instead)
THUMB_H = 240
COLUMNS = 3  # chunks per row
# The sheet's size at most: some 48 MB while it is drawn, whatever the chunk count (a sheet of every
# chunk of 10,000 was 3.65 GB). A landscape video shows up to about 165 chunks; past what fits, the
# sheet shows chunks spread evenly over the video and says so (the HTML report lists every chunk).
MAX_SHEET_PIXELS = 16_000_000
PAD, GAP, LABEL_H, HEADER_H = 16, 6, 38, 44
BG, PANEL, INK, MUTED, MISSING = (17, 21, 31), (32, 38, 52), (236, 239, 245), (150, 158, 176), (58, 64, 78)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError):  # a Pillow without FreeType: its small bitmap font
        return ImageFont.load_default()


SHEET_SCHEMA = 2  # bump when what the sheet shows or how it is drawn changes (its stored copies are named by it)


def sheet_key(report: Report) -> str:
    """Names the sheet `report` draws by everything drawn on it (a stored sheet with this name is
    the same picture): the header, each cell's labels and its two thumbnails' bytes, the drawing
    code's version and Pillow's (its fonts)."""
    import hashlib
    import json

    import PIL

    rp = report.plan.project
    cells = [[r.chunk.id, r.chunk.start_frame, r.chunk.end_frame, r.state,
              *(hashlib.sha256(j).hexdigest() if j else None for j in (r.first_jpeg, r.last_jpeg))]
             for r in layout(report).rows]
    header = [len(report.rows), sum(1 for r in report.rows if r.first_jpeg)]
    drawn = [SHEET_SCHEMA, PIL.__version__, rp.name, rp.width, rp.height, fps_str(rp.fps), rp.total_frames, header,
             cells]
    return hashlib.sha256(json.dumps(drawn).encode()).hexdigest()


@dataclass(frozen=True)
class Layout:
    """Where things go on the sheet: `rows`, the chunks drawn (all, or at most what fits in
    MAX_SHEET_PIXELS, spread evenly); each frame tw x th; `cols` cells a line; the sheet's size."""

    rows: tuple[ChunkRow, ...]
    tw: int
    th: int
    cols: int
    width: int
    height: int

    @property
    def cell_w(self) -> int:
        return 2 * THUMB_W + GAP  # as wide as a landscape pair: room for the labels

    @property
    def cell_h(self) -> int:
        return LABEL_H + self.th


def layout(report: Report) -> Layout:
    """The sheet's layout: frames THUMB_W wide (portrait ones THUMB_H tall), as many chunks as fit
    in MAX_SHEET_PIXELS."""
    rp = report.plan.project
    th = max(2, round(THUMB_W * rp.height / rp.width))
    tw = THUMB_W
    if th > THUMB_H:  # a portrait frame: as tall as a square one, not three times as tall
        tw, th = max(2, round(THUMB_H * rp.width / rp.height)), THUMB_H
    n = len(report.rows)
    cols = max(1, min(COLUMNS, n))
    width = PAD * 2 + cols * (2 * THUMB_W + GAP) + (cols - 1) * PAD
    lines_fit = max(1, (MAX_SHEET_PIXELS // width - HEADER_H - PAD) // (LABEL_H + th + PAD))
    rows = tuple(report.rows[i] for i in spread(n, lines_fit * cols))
    lines = max(1, (len(rows) + cols - 1) // cols)
    height = HEADER_H + PAD + lines * (LABEL_H + th) + (lines - 1) * PAD + PAD
    return Layout(rows, tw, th, cols, width, height)


def contact_sheet(report: Report) -> bytes:
    """The sheet as PNG bytes: one cell per chunk (first | last frame, with its id, time range and
    frames), in plan order, COLUMNS cells a row; a chunk without frames gets grey boxes. At most
    MAX_SHEET_PIXELS: past what fits, chunks spread evenly over the video (see layout), and the
    header says how many are shown."""
    from PIL import Image, ImageDraw

    rp = report.plan.project
    at = layout(report)
    sheet = Image.new("RGB", (at.width, at.height), BG)
    draw = ImageDraw.Draw(sheet)
    big, small = _font(18), _font(13)
    n = len(report.rows)
    rendered = sum(1 for r in report.rows if r.first_jpeg)
    shown = "" if len(at.rows) == n else f"; {len(at.rows)} shown, spread evenly over the video"
    draw.text((PAD, 10), f"{rp.name}", fill=INK, font=big)
    draw.text((PAD, 30), f"{rp.width}x{rp.height} at {fps_str(rp.fps)} fps, {timecode(rp.total_frames, rp.fps)}, "
                         f"{n} chunks ({rendered} with frames){shown}", fill=MUTED, font=small)
    for i, row in enumerate(at.rows):
        x = PAD + (i % at.cols) * (at.cell_w + PAD)
        y = HEADER_H + PAD + (i // at.cols) * (at.cell_h + PAD)
        _cell(sheet, draw, row, x, y, at, report, (big, small))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _cell(sheet, draw, row: ChunkRow, x: int, y: int, at: Layout, report: Report, fonts) -> None:
    from PIL import Image

    from ltxflow.media.images import open_image

    fps = report.plan.project.fps
    c = row.chunk
    big, small = fonts
    tw, th = at.tw, at.th
    draw.rectangle((x - 4, y - 2, x + at.cell_w + 3, y + LABEL_H + th + 3), fill=PANEL)
    draw.text((x, y), c.id, fill=INK, font=big)
    state = {"rendered": "", "stale": "  (out of date)", "missing": "  (not rendered)"}[row.state]
    draw.text((x, y + 20), f"{timecode(c.start_frame, fps)}-{timecode(c.end_frame, fps)}  frames "
                           f"{c.start_frame}-{c.end_frame - 1}{state}", fill=MUTED, font=small)
    for k, jpeg in enumerate((row.first_jpeg, row.last_jpeg)):
        left = x + (at.cell_w - 2 * tw - GAP) // 2  # a narrow (portrait) pair centred in its cell
        xy = (left + k * (tw + GAP), y + LABEL_H)
        if jpeg is None:
            draw.rectangle((*xy, xy[0] + tw - 1, xy[1] + th - 1), fill=MISSING)
            draw.text((xy[0] + 8, xy[1] + th // 2 - 8), "not rendered" if row.state == "missing" else "no frame",
                      fill=MUTED, font=small)
            continue
        with open_image(io.BytesIO(jpeg), formats=("JPEG",)) as img:  # our own thumbnails: JPEG only
            sheet.paste(img.convert("RGB").resize((tw, th), Image.BILINEAR), xy)
