"""The build report (HTML and contact sheet) from real builds, read back with html.parser; its parts on real media."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import statistics
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from test_build import events, ltx, make_project

PROMPT = 'an opening card <script>alert("x")</script> & "friends"'


def make_report_project(root: Path, boundaries: str = "beats") -> Path:
    """Three scenes on a 6 s song at 128x64, 25-frame chunks: intro (keyframe) -> verse (chained) ->
    outro (its own keyframe). `boundaries: beats` analyses the song (a music grid); `even` does not.
    Colours are left as the test backend draws them (known flat colours the seam scores are checked
    against), so color_match is off."""
    return make_project(root, chunking=f"max_frames: 25, boundaries: {boundaries}", scenes=f"""
  - id: intro
    end: 2
    prompt: {json.dumps(PROMPT)}
    image: keyframes/a.png
    color_match: false
  - id: verse
    end: 4.5
    prompt: "the verse, chained from the intro"
    color_match: false
  - id: outro
    prompt: "a second keyframe starts an independent chain"
    image: keyframes/b.png
    color_match: false
""")


# -- reading the page back -----------------------------------------------------------------------

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None]):
        self.tag, self.attrs, self.children = tag, attrs, []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.walk()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list["Node"]:
        return [n for n in self.walk() if (tag is None or n.tag == tag) and (cls is None or cls in n.classes)]


class Page(HTMLParser):
    """The page as a tree; fails on an end tag that closes nothing (a broken page)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return
        raise AssertionError(f"</{tag}> closes nothing")

    def handle_data(self, data):
        self.stack[-1].children.append(data)

    def by_id(self, ident: str) -> Node:
        found = [n for n in self.root.walk() if n.attrs.get("id") == ident]
        assert len(found) == 1, f"{len(found)} elements with id {ident}"
        return found[0]


def read_page(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert [n.tag for n in page.stack] == ["#root"], "elements left open"
    return text, page


def seam_rows(page: Page) -> list[dict]:
    rows = []
    for tr in page.root.find_all("tr", "seam"):
        cells = [td.text() for td in tr.find_all("td")]
        before, after = cells[3].split(" \u2192 ")
        num = lambda s: None if s == "\u2013" else float(s)  # noqa: E731
        rows.append({"frame": int(cells[2]), "before": before, "after": after, "chained": cells[4] == "chained",
                     "across": num(cells[5]), "typical": num(cells[6]), "score": num(cells[7]), "music": cells[8],
                     "worst": "worst" in tr.classes})
    return rows


# -- what the test backend draws (backends/testing.py): flat colours by chunk id and frame ------------

def colour(chunk_id: str, i: int) -> np.ndarray:
    s = hashlib.sha256(chunk_id.encode()).digest()
    return np.array([(s[0] + 3 * i) % 256, s[1], (s[2] + i) % 256], dtype=float)


def expected_seams(plan: dict) -> list[dict]:
    """Across and typical for every seam, from the test backend's colours and the plan's frames."""
    out = []
    chunks = plan["chunks"]
    for a, b in zip(chunks, chunks[1:]):
        last = a["head_frames"] + a["kept_frames"] - 1
        first = b["head_frames"]
        steps = [np.abs(colour(a["id"], i) - colour(a["id"], i - 1)).mean() for i in range(last - 7, last + 1)]
        steps += [np.abs(colour(b["id"], i + 1) - colour(b["id"], i)).mean() for i in range(first, first + 8)]
        typical = statistics.median(steps)
        # the change that lasts: a flash that fades within 3 frames on either side does not count
        mad = lambda ca, ia, cb, ib: np.abs(colour(ca, ia) - colour(cb, ib)).mean()  # noqa: E731
        step_a, step_b = statistics.median(steps[:8]), statistics.median(steps[8:])
        across = min([mad(a["id"], last, b["id"], first)]
                     + [max(0.0, mad(a["id"], last, b["id"], first + k) - k * step_b) for k in (1, 2, 3)]
                     + [max(0.0, mad(a["id"], last - k, b["id"], first) - k * step_a) for k in (1, 2, 3)])
        out.append({"frame": b["start_frame"], "before": a["id"], "after": b["id"],
                    "chained": b["chains_from"] == a["id"], "across": across, "typical": typical})
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    project = make_report_project(root)
    r = ltx("build", str(project), "--backend", "test", "--log-format", "json", cwd=root, check=True)
    plan = json.loads(ltx("plan", str(project), "--backend", "test", "--json", cwd=root, check=True).stdout)
    return project, events(r.stdout), plan


def test_build_writes_a_self_contained_report(built):
    project, evs, plan = built
    out = project.parent / "out"
    written = [e for e in evs if e["event"] == "report_written"]
    assert written and written[0]["report"] == str(out / "video.report.html")
    assert written[0]["contact_sheet"] == str(out / "video.contact.png")
    assert [e["event"] for e in evs].index("report_written") < [e["event"] for e in evs].index("build_done")
    text, page = read_page(out / "video.report.html")

    assert "http://" not in text and "https://" not in text and "<script" not in text and "@import" not in text
    for node in page.root.walk():
        for name in ("src", "href", "xlink:href", "srcset", "poster", "action"):
            value = node.attrs.get(name)
            assert value is None or value.startswith("data:"), f"<{node.tag} {name}={value[:40]!r}>"

    ids = [c["id"] for c in plan["chunks"]]
    assert len(ids) >= 6
    for cid in ids:
        article = page.by_id(f"chunk-{cid}")
        assert "rendered" in article.classes
        thumbs = article.find_all("img", "thumb")
        assert len(thumbs) == 2
        for img in thumbs:
            assert img.attrs["src"].startswith("data:image/jpeg;base64,")
            from PIL import Image

            with Image.open(io.BytesIO(base64.b64decode(img.attrs["src"].split(",", 1)[1]))) as im:
                assert im.size == (128, 64)
        facts = article.text()
        c = next(c for c in plan["chunks"] if c["id"] == cid)
        for words in (f"seed{c['seed']}", c["endpoint"], f"{c['start_frame']}-{c['end_frame'] - 1}",
                      "render time"):
            assert words in facts.replace("\n", ""), (cid, words)

    # The prompt reaches the page escaped: no script element, and its text reads as written.
    intro = page.by_id("chunk-intro.0").find_all("dd", "prompt")[0]
    assert intro.text() == PROMPT
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;friends&quot;" in text


def test_seam_scores_match_what_the_frames_hold(built):
    project, _, plan = built
    _, page = read_page(project.parent / "out" / "video.report.html")
    rows = seam_rows(page)
    expected = expected_seams(plan)
    assert [(r["frame"], r["before"], r["after"], r["chained"]) for r in rows] == \
        [(e["frame"], e["before"], e["after"], e["chained"]) for e in expected]
    for r, e in zip(rows, expected):
        assert r["across"] == pytest.approx(e["across"], abs=2.0), r
        assert r["typical"] == pytest.approx(e["typical"], abs=0.5), r
        assert r["score"] == pytest.approx(r["across"] / max(r["typical"], 2.0), rel=0.01)
    # The worst is the chained seam with the largest jump for its neighbourhood; cuts to a keyframe
    # are listed but not ranked.
    chained = [e for e in expected if e["chained"]]
    worst = max(chained, key=lambda e: e["across"] / max(e["typical"], 2.0))
    marked = [r for r in rows if r["worst"]]
    assert [(r["before"], r["after"]) for r in marked] == [(worst["before"], worst["after"])]
    first = page.by_id("weakest").find_all("li")[0]
    assert "worst" in first.classes and first.text().startswith(f"{worst['before']} | {worst['after']} ")
    assert len(page.by_id("weakest").find_all("li")) == min(5, len(chained))

    # The strip: the envelope, beats and bars (the project has a music grid), one line per seam,
    # the worst one coloured, scene names; every seam row says where it lands on the music.
    strip = page.by_id("waveform")
    assert len(strip.find_all("polygon", "wave")) == 1
    assert strip.find_all("line", "beat") and strip.find_all("line", "bar")
    assert len(strip.find_all("line", "seam-line")) == len(rows)
    assert len(strip.find_all("line", "worst")) == 1
    assert [t.text() for t in strip.find_all("text", "scene-name")] == ["intro", "verse", "outro"]
    assert len(rows) == len(plan["chunks"]) - 1 >= 4
    assert all(r["music"].startswith("beat ") for r in rows)


def test_contact_sheet_shows_every_chunk(built):
    from PIL import Image

    from ltxflow.report.sheet import COLUMNS, GAP, HEADER_H, LABEL_H, PAD, THUMB_W

    project, _, plan = built
    with Image.open(project.parent / "out" / "video.contact.png") as im:
        sheet = np.asarray(im.convert("RGB"))
    th = THUMB_W // 2  # the video is 128x64
    n = len(plan["chunks"])
    assert sheet.shape[:2] == (HEADER_H + PAD + ((n + COLUMNS - 1) // COLUMNS) * (LABEL_H + th + PAD),
                               2 * PAD + COLUMNS * (2 * THUMB_W + GAP) + (COLUMNS - 1) * PAD)
    # Each chunk's cell holds its first and last kept frames: the test backend's colours.
    for k, c in enumerate(plan["chunks"]):
        x = PAD + (k % COLUMNS) * (2 * THUMB_W + GAP + PAD) + THUMB_W // 2
        y = HEADER_H + PAD + (k // COLUMNS) * (LABEL_H + th + PAD) + LABEL_H + th // 2
        for dx, frame in ((0, c["head_frames"]), (THUMB_W + GAP, c["head_frames"] + c["kept_frames"] - 1)):
            assert np.abs(sheet[y, x + dx].astype(float) - colour(c["id"], frame)).max() <= 6, c["id"]


def test_report_command_after_a_build_agrees_with_the_build(built):
    project, _, plan = built
    target = project.parent / "elsewhere" / "again.report.html"
    r = ltx("report", str(project), "--backend", "test", "-o", str(target), cwd=project.parent, check=True)
    assert r.stdout.strip() == str(target)
    assert (project.parent / "elsewhere" / "again.contact.png").is_file()
    assert f"{len(plan['chunks'])} of {len(plan['chunks'])} chunks rendered" in r.stderr
    _, page = read_page(target)
    _, from_build = read_page(project.parent / "out" / "video.report.html")
    assert seam_rows(page) == seam_rows(from_build)


def test_report_on_a_partly_rendered_cache_without_music(tmp_path):
    project = make_report_project(tmp_path, boundaries="even")
    ltx("build", str(project), "--backend", "test", "--only", "outro", cwd=tmp_path, check=True)
    assert (tmp_path / "out" / "video.outro.report.html").is_file()
    r = ltx("report", str(project), "--backend", "test", cwd=tmp_path, check=True)
    html_path = tmp_path / "out" / "video.report.html"
    assert r.stdout.strip() == str(html_path) and (tmp_path / "out" / "video.contact.png").is_file()
    plan = json.loads(ltx("plan", str(project), "--backend", "test", "--json", cwd=tmp_path, check=True).stdout)
    text, page = read_page(html_path)
    for c in plan["chunks"]:
        article = page.by_id(f"chunk-{c['id']}")
        if c["scene"] == "outro":
            assert "rendered" in article.classes and len(article.find_all("img", "thumb")) == 2
        else:
            assert "missing" in article.classes and not article.find_all("img")
            assert len(article.find_all("div", "none")) == 2 and "not rendered: new" in article.text()
    rendered = sum(1 for c in plan["chunks"] if c["scene"] == "outro")
    assert f"{rendered} of {len(plan['chunks'])} chunks rendered" in r.stderr
    rows = seam_rows(page)
    # Seams beside an unrendered chunk have no score; the one inside the rendered outro has one.
    unscored = [r for r in rows if not r["after"].startswith("outro")]
    inside = [r for r in rows if r["before"].startswith("outro")]
    assert len(unscored) >= 3 and len(inside) >= 1, rows
    assert all(r["score"] is None for r in unscored)
    assert all(r["score"] is not None for r in inside)
    # No music analysis: no beats drawn, and the page says why.
    assert not page.by_id("waveform").find_all("line", "beat") and "no music analysis" in text
    assert rows and all(r["music"] == "" for r in rows)
    assert page.by_id("waveform").find_all("polygon", "wave")


def test_a_report_that_cannot_be_written_never_fails_the_build(tmp_path):
    project = make_report_project(tmp_path, boundaries="even")
    blocker = tmp_path / "out" / "video.report.html"
    blocker.mkdir(parents=True)  # a folder where the report goes
    r = ltx("build", str(project), "--backend", "test", "--log-format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    evs = events(r.stdout)
    assert (tmp_path / "out" / "video.mp4").is_file()
    assert any(e["event"] == "warning" and "report" in e["message"] for e in evs)
    assert not any(e["event"] == "report_written" for e in evs)
    # The next build has nothing to render, but writes the missing report.
    blocker.rmdir()
    r = ltx("build", str(project), "--backend", "test", "--log-format", "json", cwd=tmp_path, check=True)
    evs = events(r.stdout)
    assert not any(e["event"] == "chunk_started" for e in evs)
    assert any(e["event"] == "report_written" for e in evs) and blocker.is_file()
    text = ltx("build", str(project), "--backend", "test", cwd=tmp_path, check=True).stderr
    assert "up to date" in text  # with the report there, the no-op check skips the build again


def test_invalid_project_exits_2_and_writes_no_report(tmp_path):
    project = make_report_project(tmp_path)
    text = project.read_text()
    assert 'fps: "24"' in text
    project.write_text(text.replace('fps: "24"', 'fps: "99"'))
    r = ltx("report", str(project), cwd=tmp_path)
    assert r.returncode == 2 and "fps" in r.stderr
    assert not (tmp_path / "out").exists()


# -- the parts, on real media --------------------------------------------------------------------

def test_clip_ends_reads_the_first_and_last_frames(tmp_path):
    """A clip with keyframes every 8 frames: the tail comes from a seek, and matches the frames written."""
    from ltxflow.media.encode import FrameWriter, encode_frames_args, output_format
    from ltxflow.media.ffmpeg import find_ffmpeg
    from ltxflow.media.thumbs import clip_ends

    clip = tmp_path / "grey.mp4"
    args = encode_frames_args(find_ffmpeg().path, 64, 32, Fraction(24), clip,
                              [*output_format("mp4", "high").video, "-g", "8"])
    with FrameWriter(args, clip, "test clip") as w:
        for i in range(60):
            w.write(np.full((32, 64, 3), 4 * i, dtype=np.uint8))
    for told in (60, 50):  # a wrong count makes it decode the whole clip instead
        ends = clip_ends(clip, 4, told)
        assert [round(f.mean() / 4) for f in ends.head] == [0, 1, 2, 3]
        assert [round(f.mean() / 4) for f in ends.tail] == [56, 57, 58, 59]
        assert ends.first.shape == (32, 64, 3)


def test_peak_envelope_matches_the_samples(tmp_path):
    from ltxflow.media.probe import AudioTrack
    from ltxflow.media.waveform import peak_envelope

    rng = np.random.default_rng(3)
    pcm = (rng.standard_normal((48_001, 2)) * 4000).clip(-32768, 32767).astype("<i2")
    pcm[10_000:12_000] = 0
    path = tmp_path / "song.s16"
    pcm.tofile(path)
    track = AudioTrack(path, "d", "pcm_s16le", 16000, 2, len(pcm), path)
    env = peak_envelope(track, 0, 60_000, 30)  # past the end is silence
    edges = np.linspace(0, 60_000, 31).round().astype(int)
    want = [np.abs(pcm[a:min(b, len(pcm))].astype(int)).max() / 32768 if a < len(pcm) else 0.0
            for a, b in zip(edges, edges[1:])]
    assert env == pytest.approx(want)
    assert env[-1] == 0.0 and env[5] == 0.0 and min(env[:5]) > 0.1


def test_seam_score_and_report_paths():
    from ltxflow.report import paths_for_html, report_paths
    from ltxflow.report.gather import Seam

    s = lambda across, typical: Seam(10, "a.0", "a.1", True, across, typical, None)  # noqa: E731
    assert s(6.0, 3.0).score == 2.0 and s(6.0, 0.02).score == 3.0  # a still picture: the floor of 2 levels
    assert s(None, None).score is None
    assert report_paths(Path("out/v.mp4")).html == Path("out/v.report.html")
    assert report_paths(Path("out/v.verse.mp4")).contact == Path("out/v.verse.contact.png")
    assert paths_for_html(Path("x/page.html")).contact == Path("x/page.contact.png")


def test_a_flash_on_the_seam_is_not_a_jump_but_a_lasting_change_is():
    """An animatic brightens the frame on a beat and lets it fade; a seam placed on that beat
    must not score as a jump. A change that stays (a colour step, a cut) scores in full."""
    from ltxflow.media.thumbs import lasting_jump

    level = lambda v: np.full((18, 32, 3), v, np.uint8)  # noqa: E731
    still = [level(100)] * 9  # the 9 frames the report reads at each end of a clip
    flash = [level(v) for v in (125, 108, 103, 101, 100, 100, 100, 100, 100)]
    assert lasting_jump(still, flash) < 2  # not a jump: under the floor of a frame step
    assert lasting_jump(flash[::-1], still) < 2  # a flash just before the seam
    assert lasting_jump(still, [level(110)] * 9) == pytest.approx(10.0)
    # motion: the frames after keep moving by a step a frame; what is left is the jump itself
    assert lasting_jump(still, [level(110 + k) for k in range(9)]) == pytest.approx(10.0)
    assert lasting_jump([level(92 + k) for k in range(9)], [level(110)] * 9) == pytest.approx(10.0)


@pytest.mark.slow
def test_the_demos_seams_score_as_the_legend_says(tmp_path):
    """The demo as a newcomer builds it: its chained seams are seamless (its animatic flashes on
    the beats the seams are placed on: a flash is not a jump) and the cut to the outro's keyframe
    is a visible jump, as the legend words the scores."""
    import shutil

    from conftest import DEMO

    demo = tmp_path / "demo"
    shutil.copytree(DEMO.parent, demo, ignore=shutil.ignore_patterns(".ltxflow", "out"))
    ltx("build", str(demo / DEMO.name), cwd=demo, check=True)
    text, page = read_page(demo / "out" / "neon-nights.report.html")
    assert "about 1: seamless; 3 or more: a visible jump" in text
    rows = seam_rows(page)
    chained = [r["score"] for r in rows if r["chained"]]
    cuts = [r["score"] for r in rows if not r["chained"]]
    assert len(chained) == 3 and all(s < 2 for s in chained), rows
    assert cuts and all(s >= 3 for s in cuts), rows


# -- the ends store: a report decodes only clips it has not seen ------------------------------------

def ends_files(cache: Path) -> dict[str, int]:
    """The ends store's files (report/ends/, by clip digest) and their mtimes."""
    return {p.name: p.stat().st_mtime_ns for p in (cache / "report" / "ends").rglob("*.npz")}


def clip_files(cache: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (cache / "chunks").rglob("clip.*")}


def test_reports_read_only_the_clips_they_have_not_seen(tmp_path):
    """The preview backend burns the prompt in, so an edited prompt makes other bytes (the test
    backend's clips depend on the chunk id alone: the same bytes, whose stored ends serve)."""
    project = make_report_project(tmp_path, boundaries="even")
    cache = tmp_path / "cache"
    r = ltx("build", str(project), "--backend", "preview", "--log-format", "json", "-j", "1", cwd=tmp_path, check=True)
    evs = events(r.stdout)
    chunks = [e["chunk"] for e in evs if e["event"] == "chunk_done"]
    written = next(e for e in evs if e["event"] == "report_written")
    assert (written["clips_read"], written["clips_kept"]) == (len(chunks), 0)
    stored = ends_files(cache)
    assert len(stored) == len(chunks)
    # Where the build's seconds went: wall-clock phases add up to at most the build's seconds,
    # and with one chunk at a time, so do the seconds summed over chunks inside the chunks phase.
    done = next(e for e in evs if e["event"] == "build_done")
    b = done["breakdown"]
    assert set(b) == {"plan_s", "chunks_s", "render_s", "normalize_s", "color_s", "stitch_s", "report_s"}
    assert all(v >= 0 for v in b.values()) and b["render_s"] > 0 and b["stitch_s"] > 0 and b["report_s"] > 0
    assert b["plan_s"] + b["chunks_s"] + b["stitch_s"] + b["report_s"] <= done["seconds"] + 0.005  # five values rounded to 1 ms
    assert b["render_s"] + b["normalize_s"] + b["color_s"] <= b["chunks_s"] + 0.003
    page_before = read_page(tmp_path / "out" / "video.report.html")[1]

    # Written again from an unchanged cache: no clip is decoded, no stored file is rewritten, and
    # the contact sheet is the one kept by its content (marked here to tell it from a new drawing).
    (sheet,) = (cache / "report" / "sheets").glob("*.png")
    assert sheet.read_bytes() == (tmp_path / "out" / "video.contact.png").read_bytes()
    sheet.write_bytes(b"the kept sheet")
    r = ltx("report", str(project), "--backend", "preview", cwd=tmp_path, check=True)
    assert f"0 clips read, {len(chunks)} from the thumbnail store" in r.stderr
    assert ends_files(cache) == stored
    assert (tmp_path / "out" / "video.contact.png").read_bytes() == b"the kept sheet"
    assert seam_rows(read_page(tmp_path / "out" / "video.report.html")[1]) == seam_rows(page_before)

    # One scene's prompt changes: the build renders its chunks and the report reads only their clips
    # (the seams beside them use the neighbours' stored ends).
    project.write_text(project.read_text().replace("a second keyframe starts", "another keyframe starts"))
    r = ltx("build", str(project), "--backend", "preview", "--log-format", "json", cwd=tmp_path, check=True)
    evs = events(r.stdout)
    again = [e["chunk"] for e in evs if e["event"] == "chunk_done"]
    assert again and all(c.startswith("outro") for c in again)
    written = next(e for e in evs if e["event"] == "report_written")
    assert (written["clips_read"], written["clips_kept"]) == (len(again), len(chunks) - len(again))
    now = ends_files(cache)
    assert {k: v for k, v in now.items() if k in stored} == stored  # the others' ends untouched
    assert (tmp_path / "out" / "video.contact.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # drawn anew
    assert len(list((cache / "report" / "sheets").glob("*.png"))) == 2
    assert len(now) == len(stored) + len(again)
    got = seam_rows(read_page(tmp_path / "out" / "video.report.html")[1])
    before = seam_rows(page_before)
    assert [r for r in got if r["after"] not in again] == [r for r in before if r["after"] not in again]
    assert [r for r in got if r["after"] in again] != [r for r in before if r["after"] in again]


def test_a_cached_range_build_renders_and_decodes_nothing(tmp_path):
    project = make_report_project(tmp_path, boundaries="even")
    cache = tmp_path / "cache"
    ltx("build", str(project), "--backend", "test", cwd=tmp_path, check=True)
    ltx("build", str(project), "--backend", "test", "--range", "1.5-3", cwd=tmp_path, check=True)  # makes its parts
    clips, stored = clip_files(cache), ends_files(cache)
    out = tmp_path / "out" / "video.1.5s-3s.mp4"
    out.unlink()  # the no-op check falls through: the build runs, with everything cached
    r = ltx("build", str(project), "--backend", "test", "--range", "1.5-3", "--log-format", "json", cwd=tmp_path,
            check=True)
    evs = events(r.stdout)
    assert [e for e in evs if e["event"] in ("chunk_started", "chunk_done")] == []
    assert next(e for e in evs if e["event"] == "report_written")["clips_read"] == 0
    assert clip_files(cache) == clips and ends_files(cache) == stored  # no clip made or read again
    assert out.is_file()


def test_the_ends_store_checks_a_clip_that_moved(tmp_path):
    """A stored clip's ends are trusted while the file's size, mtime and inode are as when it was
    read; after that its bytes are hashed, and other bytes are read again."""
    import os

    from ltxflow.media.encode import FrameWriter, encode_frames_args, output_format
    from ltxflow.media.ffmpeg import find_ffmpeg
    from ltxflow.media.probe import file_digest
    from ltxflow.report.ends import EndsStore

    def clip(path: Path, shade: int) -> Path:
        args = encode_frames_args(find_ffmpeg().path, 48, 32, Fraction(24), path, output_format("mp4", "high").video)
        with FrameWriter(args, path, "test clip") as w:
            for i in range(12):
                w.write(np.full((32, 48, 3), (shade + 4 * i) % 256, dtype=np.uint8))
        return path

    store = EndsStore(tmp_path / "ends")
    a = clip(tmp_path / "a.mp4", 40)
    digest = file_digest(a)
    first = store.ends(a, digest, 4, 12)
    assert first.read and store.path(digest, 4).is_file()
    assert not store.ends(a, digest, 4, 12).read  # kept
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))  # moved, same bytes: hashed, kept
    assert not store.ends(a, digest, 4, 12).read
    clip(tmp_path / "b.mp4", 200).replace(a)  # other bytes under the same name and recorded digest
    again = store.ends(a, digest, 4, 12)
    assert again.read and not np.array_equal(again.first, first.first)
