"""The contact sheet: a PNG grid of each chunk's first and last kept frames, labelled."""

from __future__ import annotations

import io

from ltxflow.report.gather import ChunkRow, Report
from ltxflow.timeline import fps_str, timecode

THUMB_W = 240  # each frame's width on the sheet
COLUMNS = 3  # chunks per row
PAD, GAP, LABEL_H, HEADER_H = 16, 6, 38, 44
BG, PANEL, INK, MUTED, MISSING = (17, 21, 31), (32, 38, 52), (236, 239, 245), (150, 158, 176), (58, 64, 78)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError):  # a Pillow without FreeType: its small bitmap font
        return ImageFont.load_default()


SHEET_SCHEMA = 1  # bump when what the sheet shows or how it is drawn changes (its stored copies are named by it)


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
             for r in report.rows]
    drawn = [SHEET_SCHEMA, PIL.__version__, rp.name, rp.width, rp.height, fps_str(rp.fps), rp.total_frames, cells]
    return hashlib.sha256(json.dumps(drawn).encode()).hexdigest()


def contact_sheet(report: Report) -> bytes:
    """The sheet as PNG bytes: one cell per chunk (first | last frame, with its id, time range and
    frames), in plan order, COLUMNS cells a row; a chunk without frames gets grey boxes."""
    from PIL import Image, ImageDraw

    rp = report.plan.project
    th = max(2, round(THUMB_W * rp.height / rp.width))
    cell_w, cell_h = 2 * THUMB_W + GAP, LABEL_H + th
    rows = report.rows
    cols = max(1, min(COLUMNS, len(rows)))
    lines = (len(rows) + cols - 1) // cols
    width = PAD * 2 + cols * cell_w + (cols - 1) * PAD
    height = HEADER_H + PAD + lines * cell_h + (lines - 1) * PAD + PAD
    sheet = Image.new("RGB", (width, height), BG)
    draw = ImageDraw.Draw(sheet)
    big, small = _font(18), _font(13)
    rendered = sum(1 for r in rows if r.first_jpeg)
    draw.text((PAD, 10), f"{rp.name}", fill=INK, font=big)
    draw.text((PAD, 30), f"{rp.width}x{rp.height} at {fps_str(rp.fps)} fps, {timecode(rp.total_frames, rp.fps)}, "
                         f"{len(rows)} chunks ({rendered} with frames)", fill=MUTED, font=small)
    for i, row in enumerate(rows):
        x = PAD + (i % cols) * (cell_w + PAD)
        y = HEADER_H + PAD + (i // cols) * (cell_h + PAD)
        _cell(sheet, draw, row, x, y, th, report, (big, small))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _cell(sheet, draw, row: ChunkRow, x: int, y: int, th: int, report: Report, fonts) -> None:
    from PIL import Image

    fps = report.plan.project.fps
    c = row.chunk
    big, small = fonts
    draw.rectangle((x - 4, y - 2, x + 2 * THUMB_W + GAP + 3, y + LABEL_H + th + 3), fill=PANEL)
    draw.text((x, y), c.id, fill=INK, font=big)
    state = {"rendered": "", "stale": "  (out of date)", "missing": "  (not rendered)"}[row.state]
    draw.text((x, y + 20), f"{timecode(c.start_frame, fps)}-{timecode(c.end_frame, fps)}  frames "
                           f"{c.start_frame}-{c.end_frame - 1}{state}", fill=MUTED, font=small)
    for k, jpeg in enumerate((row.first_jpeg, row.last_jpeg)):
        at = (x + k * (THUMB_W + GAP), y + LABEL_H)
        if jpeg is None:
            draw.rectangle((*at, at[0] + THUMB_W - 1, at[1] + th - 1), fill=MISSING)
            draw.text((at[0] + 8, at[1] + th // 2 - 8), "not rendered" if row.state == "missing" else "no frame",
                      fill=MUTED, font=small)
            continue
        with Image.open(io.BytesIO(jpeg)) as img:
            sheet.paste(img.convert("RGB").resize((THUMB_W, th), Image.BILINEAR), at)
