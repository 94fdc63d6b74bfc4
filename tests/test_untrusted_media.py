"""Media in a project folder from someone else (a pull request) cannot turn a build against its user:
a keyframe is decoded as PNG, JPEG or WebP or not at all (never handed to Ghostscript); a song is
read by audio demuxers only (a concat list or playlist never reaches another file); a song's
decoded size is bounded (its length by a limit, its rate by 48 kHz, its channels by stereo); a
damaged decoded-audio store entry is decoded again; a killed decode's temporary file is swept.

Through the real CLI, each with a private TMPDIR and cache, and a folder outside the project
whose files must stay unread (FIFOs, which block whoever opens them), unwritten and undeleted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ltxflow.media.audiodecode import DECODERS
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.probe import MediaError, _kept_track, keep_audio, probe_audio
from ltxflow.media.songlimits import Limits, Sink, TooLong, downmix_weights

from conftest import write_png, write_wav

LTXFLOW = Path(sys.executable).parent / "ltxflow"
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n"


class Folders:
    """tmp_path/proj (the project), tmp_path/outside (must stay untouched), tmp_path/tmp (TMPDIR),
    tmp_path/cache (the cache), tmp_path/bin (first on PATH: a stand-in gs that logs its calls)."""

    def __init__(self, root: Path):
        self.root, self.proj, self.outside = root, root / "proj", root / "outside"
        self.tmp, self.cache, self.gs_log = root / "tmp", root / "cache", root / "gs.log"
        for d in (self.proj / "media", self.proj / "keyframes", self.outside, self.tmp, root / "bin"):
            d.mkdir(parents=True)
        gs = root / "bin" / "gs"
        gs.write_text(f"#!/bin/sh\necho \"gs $*\" >> '{self.gs_log}'\nexit 1\n")
        gs.chmod(0o755)
        os.mkfifo(self.outside / "secret.wav")  # opening it to read blocks: a hang, not a pass
        write_wav(self.outside / "real.wav", 2.0, rate=8000)
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {p.name: (p.lstat().st_size, p.lstat().st_mtime_ns) for p in self.outside.iterdir()}

    def project(self, audio: str = "media/song.wav", image: str | None = None) -> Path:
        """A project on `audio` whose seams fall evenly (no music analysis), with a keyframe."""
        path = self.proj / "project.yaml"
        path.write_text(textwrap.dedent(f"""\
            version: 1
            name: untrusted
            audio: {json.dumps(audio)}
            fps: 24
            resolution: 128x64
            backend: preview
            output: out/untrusted.mp4
            quality: low
            chunking:
              boundaries: even
            scenes:
              - id: one
                prompt: "a card"
            """) + (f"    image: {json.dumps(image)}\n" if image else ""))
        return path

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(LTXFLOW), *args], capture_output=True, text=True, cwd=self.proj,
                              timeout=timeout, env={**self.env(), **(env or {})})

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "LTXFLOW_MAX_SONG_MINUTES"}
        return {**env, "LTXFLOW_CACHE_DIR": str(self.cache), "TMPDIR": str(self.tmp),
                "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ['PATH']}"}

    def kept(self) -> list[dict]:
        """The facts of every song kept in the decoded-audio store."""
        return [json.loads(p.read_text()) for p in self.cache.rglob("*.json") if "sample_rate" in p.read_text()]

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.tmp.glob("ltxflow-*.s16"))

    def assert_outside_untouched(self) -> None:
        assert self.snapshot() == self.before
        assert not self.gs_log.exists()


@pytest.fixture
def f(tmp_path) -> Folders:
    return Folders(tmp_path)


def ffmpeg(*args: str) -> None:
    subprocess.run([find_ffmpeg().path, "-y", "-v", "error", *args], check=True)


def write_channels(path: Path, seconds: float, rate: int, channels: int) -> Path:
    """A 16-bit WAV whose channel c is a tone of 200 * (c + 1) Hz (so a down-mix has something to mix)."""
    t = np.arange(round(seconds * rate)) / rate
    pcm = np.stack([0.2 * np.sin(2 * np.pi * 200 * (c + 1) * t) for c in range(channels)], axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((pcm * 32767).astype("<i2").tobytes())
    return path


# Keyframes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["validate", "build"])
def test_an_eps_named_png_is_refused_without_ghostscript(f, command):
    (f.proj / "keyframes" / "a.png").write_bytes(EPS)
    f.project(image="keyframes/a.png")
    write_wav(f.proj / "media" / "song.wav", 2.0)
    r = f.run(command, "project.yaml")
    assert r.returncode == 2, r.stderr
    assert "keyframes/a.png: not a decodable image: keyframes must be PNG, JPEG or WebP images" in r.stderr
    assert "Traceback" not in r.stderr and not (f.proj / "out").exists()
    f.assert_outside_untouched()  # the stand-in gs was never run


def test_every_image_is_opened_with_the_allowed_decoders_only(tmp_path):
    """probe_image, the preview backend, colour references and the contact sheet: an EPS is
    refused by each (an OSError the caller words), a real PNG named .jpg opens."""
    from PIL import UnidentifiedImageError

    from ltxflow.backends.base import BackendError
    from ltxflow.backends.preview import _load
    from ltxflow.media.images import open_image
    from ltxflow.media.normalize import reference_image
    from ltxflow.media.probe import MediaError, probe_image

    eps = tmp_path / "k.png"
    eps.write_bytes(EPS)
    with pytest.raises(MediaError, match="k.png: not a decodable image: keyframes must be PNG, JPEG or WebP"):
        probe_image(eps)
    with pytest.raises(BackendError, match="cannot read image k.png"):
        _load(eps, 32, 16)
    with pytest.raises(MediaError, match="k.png: cannot be read as a colour reference"):
        reference_image(eps, 32, 16)
    with pytest.raises(UnidentifiedImageError):
        open_image(eps)
    png = tmp_path / "really-a-png.jpg"
    png.write_bytes(write_png(tmp_path / "a.png", (40, 20)).read_bytes())
    assert probe_image(png).format == "PNG"
    with pytest.raises(UnidentifiedImageError):  # the sheet's thumbnails are JPEG, nothing else
        open_image(png, formats=("JPEG",))


# Songs that name other files ---------------------------------------------------------------------

LISTS = {
    "ffconcat": "ffconcat version 1.0\nfile '{target}'\n",
    "hls": "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n{target}\n#EXT-X-ENDLIST\n",
}


@pytest.mark.parametrize("name", ["song.wav", "song.mp3"])
@pytest.mark.parametrize("kind", LISTS)
@pytest.mark.parametrize("via", ["path", "link"])
def test_a_playlist_named_as_a_song_opens_nothing_else(f, name, kind, via):
    """The list names a FIFO outside the project, directly or through a link in the project:
    opening it would hang the run. Every decoder refuses the list itself (FFmpeg does not take
    an HLS list for one unless it is named .m3u8; the demuxer allow-list would refuse it too)."""
    target = f.outside / "secret.wav"
    if via == "link":
        (f.proj / "media" / "inner.wav").symlink_to(target)
        target = f.proj / "media" / "inner.wav"
    (f.proj / "media" / name).write_text(LISTS[kind].format(target=target))
    f.project(audio=f"media/{name}")
    r = f.run("validate", "project.yaml", timeout=60)
    assert r.returncode == 2, r.stderr
    assert f"media/{name}: no decoder reads audio from it (pyav: " in r.stderr
    assert "ffmpeg: a playlist, not a song" in r.stderr
    if kind == "ffconcat":
        assert "pyav: a concat file, not an audio format that is read (only wav, mp3," in r.stderr
    assert not f.cache.exists() and f.leftovers() == []
    f.assert_outside_untouched()


def test_pyav_and_ffmpeg_refuse_any_demuxer_but_audio_ones(tmp_path):
    """An SDP file (RTP from the network), which the ffmpeg decoder's look at the first bytes does
    not know: the demuxer allow-list refuses it."""
    from ltxflow.media.audiodecode import CannotDecode

    sdp = tmp_path / "session.wav"
    sdp.write_text("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n")
    with open(tmp_path / "out.s16", "wb") as out:
        with pytest.raises(CannotDecode, match="^a sdp file, not an audio format that is read"):
            DECODERS["pyav"](sdp, out, Limits())
        with pytest.raises(CannotDecode, match="^not an audio format that is read"):
            DECODERS["ffmpeg"](sdp, out, Limits())


def test_a_song_linked_from_outside_the_project_is_refused(f):
    (f.proj / "media" / "song.wav").symlink_to(f.outside / "secret.wav")
    f.project()
    r = f.run("validate", "project.yaml", timeout=60)
    assert r.returncode == 2, r.stderr
    assert "audio: 'media/song.wav' resolves to" in r.stderr and "outside the project folder" in r.stderr
    f.assert_outside_untouched()


# Bounded decoding --------------------------------------------------------------------------------

def test_a_192khz_8_channel_song_is_kept_as_48khz_stereo(f):
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=192000:cl=7.1", "-t", "30", "-c:a", "flac",
           str(f.proj / "media" / "song.flac"))
    f.project(audio="media/song.flac")
    r = f.run("plan", "project.yaml")
    assert r.returncode == 0, r.stderr
    [facts] = f.kept()
    assert (facts["sample_rate"], facts["channels"], facts["samples"]) == (48000, 2, 30 * 48000)
    assert (facts["source_rate"], facts["source_channels"]) == (192000, 8)
    [pcm] = f.cache.rglob(f"{facts['digest']}.s16")
    assert pcm.stat().st_size == 30 * 48000 * 2 * 2  # not 30 * 192000 * 8 * 2 (92 MB)
    assert f.leftovers() == []
    f.assert_outside_untouched()


@pytest.mark.slow
def test_a_9_channel_song_builds_down_mixed_to_stereo(f):
    import av

    write_channels(f.proj / "media" / "song.wav", 2.0, 44100, 9)
    f.project()
    r = f.run("validate", "project.yaml")
    assert r.returncode == 0, r.stderr
    assert "warning: project.yaml:" in r.stderr and "audio: media/song.wav: down-mixed from 9 channels to stereo" in r.stderr
    r = f.run("build", "project.yaml", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "down-mixed from 9 channels to stereo" in r.stdout + r.stderr
    with av.open(str(f.proj / "out" / "untrusted.mp4")) as video:
        assert video.streams.audio[0].codec_context.channels == 2
    [facts] = f.kept()
    assert (facts["channels"], facts["source_channels"], facts["sample_rate"]) == (2, 9, 44100)
    assert f.leftovers() == []
    f.assert_outside_untouched()


def test_a_downmix_is_noted_when_media_are_checked(tmp_path):
    """The note a validation can show (see project.media.MediaCheck.notes)."""
    from ltxflow.project.media import check_media

    write_channels(tmp_path / "song.wav", 0.5, 96000, 6)
    found = check_media({"audio": "song.wav"}, tmp_path)
    assert found.problems == [] and (found.audio.channels, found.audio.sample_rate) == (2, 48000)
    assert found.notes == [(("audio",), "song.wav: down-mixed from 6 channels to stereo; resampled from 96000 Hz "
                                        "to 48000 Hz (the video's sound is stereo, at most 48 kHz)")]


@pytest.mark.parametrize("channels", [3, 6, 8, 9])
def test_every_decoder_down_mixes_and_resamples_alike(tmp_path, channels):
    songs = [write_channels(tmp_path / "song.wav", 1.0, 96000, channels)]
    if channels <= 8:  # FLAC's most
        songs.append(tmp_path / "song.flac")
        ffmpeg("-i", str(songs[0]), "-c:a", "flac", str(songs[1]))
    tracks = [probe_audio(song, decoders=(d,)) for song in songs for d in DECODERS]
    assert {(t.sample_rate, t.channels, t.samples) for t in tracks} == {(48000, 2, 48000)}
    first = np.fromfile(tracks[0].pcm_file, "<i2")
    for t in tracks[1:]:
        assert np.array_equal(np.fromfile(t.pcm_file, "<i2"), first), t.decoder
    assert np.abs(first).max() > 1000  # not silence
    left, right = zip(*downmix_weights(channels))
    assert max(sum(left), sum(right)) == pytest.approx(1.0)  # a full-scale mix cannot clip


def test_the_sink_gives_the_same_samples_however_the_blocks_are_cut(tmp_path):
    rng = np.random.default_rng(5)
    pcm = (rng.standard_normal(96000 * 6) * 3000).astype("<i2").tobytes()
    outs = []
    for cut in (len(pcm), 4096 * 12, 1001):  # 1001: samples split across blocks, as from a pipe
        with open(tmp_path / f"{cut}.s16", "w+b") as out:
            sink = Sink(out, 96000, 6, Limits())
            for at in range(0, len(pcm), cut):
                sink.write(pcm[at:at + cut])
            assert sink.close("pcm").samples == 48000
            out.seek(0)
            outs.append(out.read())
    assert outs[0] == outs[1] == outs[2]


def test_a_song_over_the_limit_is_refused_at_validation(f):
    write_wav(f.proj / "media" / "song.wav", 6.0)
    f.project()
    r = f.run("validate", "project.yaml", env={"LTXFLOW_MAX_SONG_MINUTES": "0.05"})
    assert r.returncode == 2, r.stderr
    assert ("audio: media/song.wav: the song is 0:06 long, over the 0.05-minute limit for a song (to allow longer "
            "songs, set LTXFLOW_MAX_SONG_MINUTES to their length in minutes)") in r.stderr
    assert not f.cache.exists() and f.leftovers() == []
    r = f.run("validate", "project.yaml", env={"LTXFLOW_MAX_SONG_MINUTES": "soon"})
    assert r.returncode == 2 and "the LTXFLOW_MAX_SONG_MINUTES setting 'soon' is not a positive number" in r.stderr
    r = f.run("plan", "project.yaml")  # the default limit: 30 minutes
    assert r.returncode == 0, r.stderr
    r = f.run("plan", "project.yaml", env={"LTXFLOW_MAX_SONG_MINUTES": "0.05"})  # kept, and still checked
    assert r.returncode == 2 and "the song is 0:06 long, over the 0.05-minute limit" in r.stderr
    f.assert_outside_untouched()


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_a_song_longer_than_its_header_says_stops_decoding_at_the_limit(tmp_path, decoder):
    """An MP3's length is an estimate, so it is not refused on it: the decoder stops at the limit."""
    mp3 = tmp_path / "song.mp3"
    ffmpeg("-i", str(write_wav(tmp_path / "song.wav", 6.0, rate=44100)), "-c:a", "libmp3lame", str(mp3))
    with open(tmp_path / "out.s16", "wb") as out, pytest.raises(TooLong) as caught:
        DECODERS[decoder](mp3, out, Limits(Fraction(3)))
    assert caught.value.seconds is None and (tmp_path / "out.s16").stat().st_size <= 3 * 44100 * 4
    with pytest.raises(MediaError, match="song.mp3: the song goes on past the 0.05-minute limit"):
        probe_audio(mp3, decoders=(decoder,), limits=Limits(Fraction(3)))


# The decoded-audio store -------------------------------------------------------------------------

GOOD = {"codec": "pcm_s16le", "sample_rate": 16000, "channels": 1, "samples": 16000, "decoder": "pyav"}


@pytest.mark.parametrize("change", [
    {"sample_rate": 0}, {"sample_rate": -16000}, {"sample_rate": "16000"}, {"sample_rate": 16000.0},
    {"sample_rate": True}, {"sample_rate": 384000}, {"channels": 0}, {"channels": 3}, {"channels": None},
    {"samples": 0}, {"samples": 8000}, {"codec": 5}, {"codec": ""}, {"codec": "x" * 500}, {"codec": "a\nb"},
    {"decoder": "sh"}, {"source_rate": 0}, {"source_channels": "9"}, {"digest": "other"},
])
def test_a_damaged_store_entry_is_decoded_again(tmp_path, change):
    song = write_wav(tmp_path / "song.wav", 1.0)
    store = tmp_path / "store"
    kept = keep_audio(probe_audio(song), store)
    assert _kept_track(song, kept.digest, store) is not None
    facts = {**GOOD, "digest": kept.digest, **change}
    (store / f"{kept.digest}.json").write_text(json.dumps(facts))
    assert _kept_track(song, kept.digest, store) is None
    assert probe_audio(song, store).facts() == kept.facts()


def test_a_store_entry_that_is_a_link_is_not_read(tmp_path):
    song = write_wav(tmp_path / "song.wav", 1.0)
    store = tmp_path / "store"
    kept = keep_audio(probe_audio(song), store)
    secret = tmp_path / "secret"
    secret.write_bytes(b"k" * kept.pcm_file.stat().st_size)
    kept.pcm_file.unlink()
    kept.pcm_file.symlink_to(secret)
    assert _kept_track(song, kept.digest, store) is None


def test_plan_decodes_again_over_a_zero_sample_rate(f):
    write_wav(f.proj / "media" / "song.wav", 2.0)
    f.project()
    assert f.run("plan", "project.yaml").returncode == 0
    [facts_file] = [p for p in f.cache.rglob("*.json") if "sample_rate" in p.read_text()]
    facts_file.write_text(json.dumps({**json.loads(facts_file.read_text()), "sample_rate": 0}))
    r = f.run("plan", "project.yaml")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and json.loads(facts_file.read_text())["sample_rate"] == 16000
    f.assert_outside_untouched()


# Temporary files ---------------------------------------------------------------------------------

def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_next_decode_sweeps_what_a_killed_one_left(f):
    dead, alive = dead_pid(), os.getpid()
    names = [f"ltxflow-{dead}-0123456789ab-x1y2.s16", f"ltxflow-{alive}-0123456789ab-x1y2.s16",
             "ltxflow-0123456789ab-old1.s16", f"ltxflow-{dead}-0123456789ab-x1y2.s16.keep"]
    for name in names:
        (f.tmp / name).write_bytes(b"\0" * 4096)
    (f.tmp / f"ltxflow-{dead}-fedcba987654-link.s16").symlink_to(f.outside / "real.wav")
    write_wav(f.proj / "media" / "song.wav", 2.0)
    f.project()
    r = f.run("plan", "project.yaml")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in f.tmp.iterdir()) == sorted(names[1:] + [f"ltxflow-{dead}-fedcba987654-link.s16"])
    f.assert_outside_untouched()


def test_a_leftover_still_locked_by_its_process_is_kept(tmp_path):
    """A live process in another PID namespace looks dead to os.kill; its lock keeps its file."""
    import fcntl

    from ltxflow.media.temppcm import sweep_leftovers

    held = tmp_path / f"ltxflow-{dead_pid()}-0123456789ab-held.s16"
    held.write_bytes(b"\0")
    with open(held, "rb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        sweep_leftovers(tmp_path)
        assert held.exists()
    sweep_leftovers(tmp_path)
    assert not held.exists()


def test_sigterm_while_decoding_leaves_no_temporary_file(f):
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=192000:cl=7.1", "-t", "120", "-c:a", "flac",
           str(f.proj / "media" / "song.flac"))
    f.project(audio="media/song.flac")
    proc = subprocess.Popen([str(LTXFLOW), "plan", "project.yaml"], cwd=f.proj, env=f.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size for p in f.tmp.glob(f"ltxflow-{proc.pid}-*.s16")):
        assert time.monotonic() < deadline and proc.poll() is None, "the decode never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert f.leftovers() == [] and not f.cache.exists()
    f.assert_outside_untouched()
