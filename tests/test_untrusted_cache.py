"""A pull request can commit files, links included, under a project's cache folder (.ltxflow/).
Nothing planted there may turn a build against its user: every file is parsed as untrusted and
an invalid one is remade (with a warning naming it), a link or another user's cache folder is
refused (exit 2) before anything is read or written, and `cache gc` never follows a link. Through
the real CLI, with the default cache beside the project; outside folders are checked untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ltxflow import uptodate
from ltxflow.execute.cache import Cache
from ltxflow.execute.status import index_path
from ltxflow.files import write_json_atomic
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.music.analysis import load_cached
from ltxflow.plan.keys import content_key

from test_build import events, make_project, media, names

pytestmark = pytest.mark.slow  # builds

LTXFLOW = Path(sys.executable).parent / "ltxflow"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI with the cache where a checkout keeps it: .ltxflow beside the project (no
    LTXFLOW_CACHE_DIR), the music analyses too (no shared LTXFLOW_MUSIC_CACHE)."""
    base = {k: v for k, v in os.environ.items() if k not in ("LTXFLOW_CACHE_DIR", "LTXFLOW_MUSIC_CACHE")}
    return subprocess.run([str(LTXFLOW), *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**base, **(env or {})})


def build(project: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, list]:
    r = run("build", str(project), "--backend", "test", "--log-format", "json", *extra, cwd=project.parent, env=env)
    return r, events(r.stdout)


def warnings(evs: list[dict]) -> str:
    return "\n".join(e["message"] for e in evs if e["event"] == "warning")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: its digest and mtime (to show nothing there was touched)."""
    return {str(p.relative_to(folder)): (sha(p), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def entries(cache: Path) -> dict[str, Path]:
    """chunk id -> its entry folder."""
    return {json.loads((d / "record.json").read_text())["chunk"]: d for d in (cache / "chunks").glob("*/*")}


def edit_record(entry: Path, **changes) -> Path:
    path = entry / "record.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A project built on the test backend (which keeps raw clips) into .ltxflow/; each test gets
    a copy, beside an outside folder holding a video that is not the project's."""
    root = tmp_path_factory.mktemp("untrusted") / "proj"
    root.mkdir()
    project = make_project(root)
    r, _ = build(project)
    assert r.returncode == 0, r.stderr
    return root


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "proj", symlinks=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    # 3 s of a test pattern at another size: it shows in the output's frames if it is ever read
    subprocess.run([find_ffmpeg().path, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x96:rate=24", "-t", "3",
                    "-pix_fmt", "yuv420p", str(outside / "outside.mp4")], check=True)
    (outside / "keep.txt").write_text("the user's own file\n")
    return tmp_path / "proj"


def exact(root: Path, built: Path) -> None:
    """The output is the one a clean build makes, frame for frame and byte for byte."""
    out = root / "out" / "video.mp4"
    assert media(out)[0] == 144
    assert sha(out) == sha(built / "out" / "video.mp4")


def test_a_record_naming_a_file_outside_its_entry_is_remade(root, built):
    outside = root.parent / "outside"
    before = snapshot(outside)
    cache = root / ".ltxflow"
    by_chunk = entries(cache)
    relative = edit_record(by_chunk["intro.0"], raw="../../../../../outside/outside.mp4")
    absolute = edit_record(by_chunk["outro.0"], raw=str(outside / "outside.mp4"))
    for entry in (by_chunk["intro.0"], by_chunk["outro.0"]):  # a clip to make again from the "raw" clip
        for clip in entry.glob("clip.*"):
            clip.unlink()
    r, evs = build(root / "song.yaml")
    assert r.returncode == 0, r.stderr
    said = warnings(evs)
    assert f"{relative}: invalid record (raw: " in said and f"{absolute}: invalid record (raw: " in said
    assert {"intro.0", "outro.0"} <= set(names(evs, "chunk_done"))
    exact(root, built)
    assert snapshot(outside) == before


def test_a_raw_clip_that_is_a_link_out_refuses_the_build_and_gc_removes_the_link(root, built):
    outside = root.parent / "outside"
    before = snapshot(outside)
    entry = entries(root / ".ltxflow")["verse.1"]
    (entry / "raw.mp4").unlink()
    (entry / "raw.mp4").symlink_to(outside / "outside.mp4")
    for clip in entry.glob("clip.*"):
        clip.unlink()
    out = root / "out" / "video.mp4"
    made = out.stat().st_mtime_ns
    r, _ = build(root / "song.yaml")
    assert r.returncode == 2, r.stderr
    assert "holds symbolic links" in r.stderr and str(entry / "raw.mp4") in r.stderr and "cache gc" in r.stderr
    assert out.stat().st_mtime_ns == made
    r = run("cache", "gc", str(root), cwd=root)
    assert r.returncode == 0, r.stderr
    assert not os.path.lexists(entry / "raw.mp4") and snapshot(outside) == before
    r, evs = build(root / "song.yaml")
    assert r.returncode == 0, r.stderr
    assert "verse.1" in names(evs, "chunk_done")
    exact(root, built)
    assert snapshot(outside) == before


def test_a_record_of_the_wrong_shape_is_remade_with_a_warning(root, built):
    by_chunk = entries(root / ".ltxflow")
    frames = edit_record(by_chunk["verse.0"], frames=[1])
    stat = edit_record(by_chunk["verse.2"], stat={"raw.mp4": "big"})
    r, evs = build(root / "song.yaml")
    assert r.returncode == 0, r.stderr
    said = warnings(evs)
    assert f"{frames}: invalid record (frames: [1] is not" in said and f"{stat}: invalid record (stat: " in said
    assert {"verse.0", "verse.2"} <= set(names(evs, "chunk_done"))
    assert "Traceback" not in r.stderr
    exact(root, built)


def test_a_truncated_master_audio_is_encoded_again(root, built):
    audio = root / ".ltxflow" / "audio"
    (master,) = audio.glob("master-*.m4a")
    whole = master.read_bytes()
    master.write_bytes(whole[: len(whole) // 3])
    r, evs = build(root / "song.yaml")
    assert r.returncode == 0, r.stderr
    assert master.read_bytes() == whole
    assert json.loads((audio / f"{master.name}.json").read_text()) == {"size": len(whole), "sha256": sha(master)}
    exact(root, built)


def test_invalid_stamp_index_and_output_signature_are_remade(root, built):
    project = root / "song.yaml"
    r, _ = build(project)  # the stamp, index and signature of this copy's own paths
    assert r.returncode == 0, r.stderr
    cache = root / ".ltxflow"
    stamp = uptodate.stamp_path(cache, project, uptodate.stamp_options("test", (), None, None, False))
    data = json.loads(stamp.read_text())
    stamp.write_text(json.dumps({**data, "files": 3}))
    index = index_path(Cache(cache), project)
    index.write_text(json.dumps({"project": str(project), "chunks": {"intro.0": 5}}))
    signature = cache / "outputs" / f"{content_key(str((root / 'out' / 'video.mp4').resolve()))[:24]}.json"
    signature.write_text("[1]")
    r, evs = build(project)
    assert r.returncode == 0, r.stderr
    started = [e for e in evs if e["event"] == "build_started"][0]
    assert started["stale"] == {"reason": "invalid-stamp", "file": str(stamp)}
    assert names(evs, "chunk_done") == []  # every chunk is still cached: only the stitch runs again
    assert [e["skipped"] for e in evs if e["event"] == "stitch_done"] == [False]
    assert uptodate.read_stamp(stamp) is not None and json.loads(signature.read_text())["size"] > 0
    r = run("plan", str(project), "--backend", "test", "--explain", cwd=root)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    exact(root, built)


def test_a_cache_folder_that_is_a_link_is_refused_before_anything_is_written(root):
    outside = root.parent / "outside"
    shutil.rmtree(root / ".ltxflow")
    (root / ".ltxflow").symlink_to(outside)
    before = snapshot(outside)
    for args in (("build", str(root / "song.yaml"), "--backend", "test"), ("cache", "gc", str(root)),
                 ("plan", str(root / "song.yaml")), ("report", str(root / "song.yaml")),
                 ("validate", str(root / "song.yaml"))):
        r = run(*args, cwd=root)
        assert r.returncode == 2, r.stderr
        assert f"the cache folder {root / '.ltxflow'} is a symbolic link" in r.stderr
        assert "LTXFLOW_CACHE_DIR" in r.stderr and "Traceback" not in r.stderr
        assert snapshot(outside) == before and sorted(p.name for p in outside.iterdir()) == ["keep.txt", "outside.mp4"]
    # --cache-dir and LTXFLOW_CACHE_DIR are refused alike when they are links
    r = run("build", str(root / "song.yaml"), "--backend", "test", cwd=root,
            env={"LTXFLOW_CACHE_DIR": str(root / ".ltxflow")})
    assert r.returncode == 2 and "is a symbolic link" in r.stderr, r.stderr
    assert snapshot(outside) == before


def test_a_link_inside_chunks_is_refused_and_gc_removes_only_the_link(root, built):
    outside = root.parent / "outside"
    victim = outside / ("ab" * 32)
    victim.mkdir()
    (victim / "record.json").write_text("{}")
    (victim / "raw.mp4").write_bytes(b"not the user's to lose")
    (root / ".ltxflow" / "chunks" / "ab").mkdir(exist_ok=True)
    link = root / ".ltxflow" / "chunks" / "ab" / ("ab" * 32)
    link.symlink_to(victim)
    shard = root / ".ltxflow" / "report" / "ends" / "zz"
    shard.symlink_to(outside)  # gc's sweep of kept ends must not reach through it either
    before = snapshot(outside)
    r, _ = build(root / "song.yaml")
    assert r.returncode == 2 and str(link) in r.stderr and "symbolic link" in r.stderr, r.stderr
    r = run("cache", "gc", str(root), cwd=root)
    assert r.returncode == 0, r.stderr
    assert not os.path.lexists(link) and not os.path.lexists(shard)
    assert snapshot(outside) == before
    r, _ = build(root / "song.yaml")
    assert r.returncode == 0, r.stderr
    exact(root, built)


def test_gc_removes_what_it_cannot_parse_and_stale_downloads(root):
    cache = root / ".ltxflow"
    keep = {str(p) for p in cache.rglob("*")}
    results = cache / "journal" / "results"
    results.mkdir(parents=True)
    part = results / ".req.mp4.part"
    part.write_bytes(b"half a download")
    young = results / ".other.mp4.part"
    young.write_bytes(b"a download in progress")
    old = time.time() - 2 * 3600
    os.utime(part, (old, old))
    planted = [cache / "stamps" / "junk.json", cache / "outputs" / "junk.json", cache / "index" / "junk.json",
               cache / "chunks" / "zz" / "not-a-key", cache / "chunks" / "cd" / ("cd" * 32)]
    planted[0].write_text('{"ltxflow": 1}')
    planted[1].write_text("[1]")
    planted[2].write_text('{"project": "x", "chunks": {"a": 5}}')
    planted[3].mkdir(parents=True)
    planted[4].mkdir(parents=True)
    (planted[4] / "record.json").write_text(json.dumps({"key": "cd" * 32, "raw": "raw.mp4", "frames": [1]}))
    (planted[4] / "raw.mp4").write_bytes(b"x")
    r = run("cache", "gc", str(root), cwd=root)
    assert r.returncode == 0, r.stderr
    assert not part.exists() and young.exists()
    assert not any(p.exists() for p in planted)
    assert keep <= {str(p) for p in cache.rglob("*")}  # everything the build made is still there


def test_a_music_analysis_holding_nan_is_made_again(tmp_path):
    """validate reads the kept analysis (and keeps nothing); plan keeps it: a bad one is made again."""
    project = make_project(tmp_path, chunking="max_frames: 25, boundaries: beats")
    r = run("plan", str(project), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (kept,) = (tmp_path / ".ltxflow" / "music").glob("*.json")
    data = json.loads(kept.read_text())
    good = data["analysis"]
    assert len(good["beats"]) > 2 and load_cached(kept.parent, good["digest"]) is not None
    # Each shape the analysis must have (checked without the CLI: a fresh analysis takes seconds)
    for bad in ({"beats": good["beats"][::-1]}, {"gaps": [[1.0]]}, {"gaps": [[2.0, 1.0]]}, {"beats": [-1.0]},
                {"downbeat": good["downbeat"][:1]}, {"onset": "loud"}, {"onset_rate": 0}, {"tempo": True},
                {"duration": float("inf")}, {"extra": 1}):
        kept.write_text(json.dumps({**data, "analysis": {**good, **bad}}))
        assert load_cached(kept.parent, good["digest"]) is None, bad
    kept.write_text(json.dumps({**data, "analysis": {**good, "tempo": float("nan")}}))  # NaN, as Python's json writes it
    for command in ("validate", "plan"):
        r = run(command, str(project), cwd=tmp_path)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (command, r.stderr)
    assert json.loads(kept.read_text())["analysis"] == good


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="making another user's folder needs root")
def test_another_users_cache_folder_is_refused(root):
    os.chown(root / ".ltxflow", 12345, -1)
    r, _ = build(root / "song.yaml")
    assert r.returncode == 2 and "belongs to another user (uid 12345" in r.stderr, r.stderr


def test_temp_files_are_removed_when_a_write_fails(tmp_path):
    target = tmp_path / "index" / "x.json"
    target.mkdir(parents=True)  # os.replace onto a folder fails after the temp is written
    with pytest.raises(OSError):
        write_json_atomic(target, {"a": 1})
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]
    cache = Cache(tmp_path / "c")
    for folder in ("audio", "index", "journal/results", "report/levels", "music"):
        temp = cache.root / folder / ".left.tmp"
        temp.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text("x")
        os.utime(temp, (1, 1))
    assert len(cache.stale_tmp()) == 5


def test_a_kept_audio_span_is_used_only_when_its_samples_are_the_spans(tmp_path):
    """audio/span-*.wav is what a backend hears (the preview's pulse, fal's audio_url): a planted or
    damaged one is written again, a link is never read."""
    from conftest import write_wav

    from ltxflow.execute.chunkwork import _span_intact
    from ltxflow.media.probe import probe_audio
    from ltxflow.timeline import Span

    track = probe_audio(write_wav(tmp_path / "song.wav", 3.0, channels=2))
    digest = track.span_digest(8000, 16000)
    span = tmp_path / "span.wav"
    track.write_wav(span, [Span.of(8000, 16000)])
    assert _span_intact(span, digest)
    other = tmp_path / "other.wav"
    track.write_wav(other, [Span.of(0, 16000)])  # the same length, other samples
    assert not _span_intact(other, digest)
    damaged = tmp_path / "damaged.wav"
    damaged.write_bytes(span.read_bytes()[:-2])
    assert not _span_intact(damaged, digest)
    link = tmp_path / "link.wav"
    link.symlink_to(span)
    assert not _span_intact(link, digest)
    assert not _span_intact(tmp_path / "missing.wav", digest)


def test_clips_are_read_with_video_demuxers_only(tmp_path):
    from ltxflow.errors import MediaError
    from ltxflow.media.frames import is_video_file, video_info

    outside = tmp_path / "outside.mp4"
    subprocess.run([find_ffmpeg().path, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=24", "-t", "1",
                    "-pix_fmt", "yuv420p", str(outside)], check=True)
    assert video_info(outside).frames == 24 and is_video_file(outside)
    listing = tmp_path / "clip.mp4"
    listing.write_text(f"ffconcat version 1.0\nfile '{outside}'\n")
    assert not is_video_file(listing)
    with pytest.raises(MediaError, match="not an MP4, MOV, WebM or GIF"):
        video_info(listing)


def test_cache_ls_shows_a_records_text_escaped(root):
    entry = entries(root / ".ltxflow")["verse.0"]
    edit_record(entry, chunk="verse.0\x1b[2J\x1b]0;owned\x07", project="p\u202eroj")
    r = run("cache", "ls", str(root / "song.yaml"), cwd=root)
    assert r.returncode == 0, r.stderr
    assert "verse.0\\x1b[2J\\x1b]0;owned\\x07" in r.stdout and "p\\u202eroj" in r.stdout
    assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\x07" not in r.stdout


def _file_size_limit(limit: int):
    """For a child process: writes past `limit` bytes fail (EFBIG) as they would on a full disk."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _leftovers(*folders: Path) -> list[Path]:
    """Temporary files and work folders a build left: dot-files, *.tmp, *.part, *.s16 outside the
    decoded-audio store, anything in the cache's tmp/."""
    out = []
    for folder in folders:
        for p in folder.rglob("*"):
            if p.name == ".ltxflow" or (p.suffix == ".s16" and p.parent.name == "decoded"):
                continue
            if p.name.startswith(".") or p.suffix in (".tmp", ".part", ".s16") or p.parent.name == "tmp":
                out.append(p)
    return out


@pytest.mark.parametrize("limit, fresh", [(120_000, True), (25_000, False)])
def test_a_full_disk_leaves_no_temp_files_and_loses_nothing_rendered(tmp_path, limit, fresh):
    """A file-size limit stands in for a full disk (the same failed write, EFBIG for ENOSPC):
    decoding the song (fresh) or stitching (after the chunks rendered) fails with a message that
    says what to do, no temp file is left in the project, its cache or TMPDIR, and the next build
    renders nothing that was rendered before the disk filled."""
    root, temp = tmp_path / "proj", tmp_path / "tmpdir"
    root.mkdir()
    temp.mkdir()
    project = make_project(root)
    env = {**{k: v for k, v in os.environ.items() if k not in ("LTXFLOW_CACHE_DIR", "LTXFLOW_MUSIC_CACHE")},
           "TMPDIR": str(temp)}
    command = [str(LTXFLOW), "build", str(project), "--backend", "test", "--log-format", "json"]
    if not fresh:
        assert subprocess.run(command, capture_output=True, env=env, timeout=300).returncode == 0
        project.write_text(project.read_text().replace("an opening card", "an opening card, edited"))
    r = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300,
                       preexec_fn=_file_size_limit(limit))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    if fresh:
        assert "File too large" in r.stderr and "free some space" in r.stderr and "cache gc" in r.stderr
    rendered = set(names(events(r.stdout), "chunk_done"))
    if not fresh:
        assert "the stitch failed" in r.stderr and {"intro.0", "intro.3"} <= rendered
    assert _leftovers(root, temp) == []
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert not rendered & set(names(events(again.stdout), "chunk_done"))  # nothing rendered twice
    assert media(root / "out" / "video.mp4")[0] == 144
    assert _leftovers(root, temp) == []


def _dash_manifest(path: Path, target: Path) -> Path:
    """A DASH manifest whose one representation is `target` (a file URL): ffmpeg's dash demuxer,
    probed from the content whatever the name, would read that file."""
    path.write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT2S" minBufferTime="PT1S"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
 <Period duration="PT2S"><AdaptationSet mimeType="audio/mp4">
  <Representation id="a" bandwidth="128000" codecs="mp4a.40.2" audioSamplingRate="44100">
   <BaseURL>file://{target}</BaseURL></Representation></AdaptationSet></Period>
</MPD>
""")
    return path


def test_ffmpeg_reads_cached_files_with_their_own_demuxers_only(tmp_path):
    from ltxflow.media.encode import MASTER_DEMUXERS, input_args

    ffmpeg = find_ffmpeg().path
    secret = tmp_path / "secret.m4a"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "sine=f=440:r=44100", "-t", "2", "-c:a", "aac",
                    str(secret)], check=True)
    manifest = _dash_manifest(tmp_path / "master-x.m4a", secret)
    # Unconfined, ffmpeg follows the manifest to the secret (what a planted master audio did)...
    r = subprocess.run([ffmpeg, "-v", "error", "-i", str(manifest), "-c", "copy", str(tmp_path / "a.m4a")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "a.m4a").stat().st_size > 1000, r.stderr
    # ...confined to the master audio's demuxers, it refuses to open it.
    r = subprocess.run([ffmpeg, "-v", "error", *input_args(MASTER_DEMUXERS), "-i", str(manifest), "-c", "copy",
                        str(tmp_path / "b.m4a")], capture_output=True, text=True)
    assert r.returncode != 0 and not (tmp_path / "b.m4a").exists()


def test_a_planted_master_audio_with_a_matching_sidecar_is_encoded_again(root, built):
    """The kept master audio is muxed into the output by stream copy: one that is really a
    manifest naming an outside file is not taken, however its sidecar matches."""
    outside = root.parent / "outside"
    audio = root / ".ltxflow" / "audio"
    (master,) = audio.glob("master-*.m4a")
    whole = master.read_bytes()
    secret = outside / "secret.m4a"
    subprocess.run([find_ffmpeg().path, "-v", "error", "-f", "lavfi", "-i", "sine=f=440:r=44100", "-t", "6",
                    "-c:a", "aac", str(secret)], check=True)
    before = snapshot(outside)
    _dash_manifest(master, secret)
    (audio / f"{master.name}.json").write_text(json.dumps({"size": master.stat().st_size, "sha256": sha(master)}))
    r, evs = build(root / "song.yaml")
    assert r.returncode == 0, r.stderr
    assert master.read_bytes() == whole
    exact(root, built)
    assert snapshot(outside) == before


@pytest.mark.parametrize("content", ["ffconcat", "dash"])
def test_a_clip_that_is_a_list_or_manifest_is_remade(root, built, content):
    """A planted clip naming a video outside the project, its record's digest and size made to
    match: the concat demuxer would follow it into the output; it is seen for what it is."""
    outside = root.parent / "outside"
    before = snapshot(outside)
    entry = entries(root / ".ltxflow")["verse.0"]
    clip = next(entry.glob("clip.*"))
    if content == "dash":
        _dash_manifest(clip, outside / "outside.mp4")
    else:
        clip.write_text(f"ffconcat version 1.0\nfile '{outside / 'outside.mp4'}'\n")
    st = clip.stat()
    record = json.loads((entry / "record.json").read_text())
    variant = clip.name.removeprefix("clip.")
    edit_record(entry, variants={**record["variants"], variant: sha(clip)},
                stat={**record["stat"], clip.name: [st.st_size, st.st_mtime_ns]})
    r, evs = build(root / "song.yaml")
    assert r.returncode == 0, r.stderr
    assert "not an MP4, MOV, WebM or GIF file" in warnings(evs)
    exact(root, built)
    assert snapshot(outside) == before
