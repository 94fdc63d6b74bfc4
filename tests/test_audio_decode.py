"""Every song a user can play opens: PyAV, else libsndfile, else the ffmpeg binary, sample-exact
whichever read it; a file none can read exits 2 naming it and the command that converts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ltxflow.media.audiodecode import convert_command, decode_ffmpeg, ffmpeg_decode_args
from ltxflow.media.ffmpeg import find_ffmpeg
from ltxflow.media.probe import MediaError, probe_audio

from conftest import realmedia, write_wav

LTXFLOW = Path(sys.executable).parent / "ltxflow"
DECODERS = ("pyav", "soundfile", "ffmpeg")
SAMPLES = 132300  # 3 s at 44.1 kHz
# Made by the real ffmpeg from one known WAV: (ffmpeg arguments, lossless, decoders that read it).
FORMATS = {
    "wav": ([], True, DECODERS),
    "flac": ([], True, DECODERS),
    "24.flac": (["-c:a", "flac", "-sample_fmt", "s32"], True, DECODERS),
    "ogg": (["-c:a", "libvorbis"], False, DECODERS),
    "mp3": (["-c:a", "libmp3lame"], False, DECODERS),
    "m4a": (["-c:a", "aac"], False, ("pyav", "ffmpeg")),  # libsndfile reads no MP4
}


def pcm(track) -> np.ndarray:
    return np.fromfile(track.pcm_file, "<i2").astype(np.int32)


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("decode")
    wav = write_wav(d / "song.wav", 3.0, rate=44100, channels=2)
    out = {"wav": wav}
    ff = find_ffmpeg().path
    for ext, (args, _, _) in FORMATS.items():
        if ext != "wav":
            out[ext] = d / f"song.{ext}"
            subprocess.run([ff, "-y", "-v", "error", "-i", str(wav), *args, str(out[ext])], check=True)
    return out


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("ext", FORMATS)
def test_each_decoder_reads_to_the_sample(songs, ext, decoder):
    _, lossless, readers = FORMATS[ext]
    if decoder not in readers:
        with pytest.raises(MediaError, match=f"song.{ext}: no decoder reads .*{decoder}: "):
            probe_audio(songs[ext], decoders=(decoder,))
        return
    track = probe_audio(songs[ext], decoders=(decoder,))
    assert (track.decoder, track.sample_rate, track.channels, track.samples) == (decoder, 44100, 2, SAMPLES)
    assert track.facts()["decoder"] == decoder
    source = pcm(probe_audio(songs["wav"], decoders=("soundfile",)))
    if lossless:
        # The same samples as the source (the 24-bit FLAC: the same as the other decoders give).
        if ext == "24.flac":
            assert np.array_equal(pcm(track), pcm(probe_audio(songs[ext], decoders=("pyav",))))
        else:
            assert np.array_equal(pcm(track), source)
    else:
        # Lossy: the count is exact, the samples agree with PyAV's to 16-bit rounding, and they
        # are the song (not shifted: priming and padding are gone).
        assert np.abs(pcm(track) - pcm(probe_audio(songs[ext], decoders=("pyav",)))).max() <= 1
        error = np.sqrt(np.mean((pcm(track) - source).astype(float) ** 2)) / np.sqrt(np.mean(source.astype(float) ** 2))
        assert error < 0.1, error


def test_the_first_decoder_that_reads_it_wins(songs):
    track = probe_audio(songs["m4a"], decoders=("soundfile", "ffmpeg", "pyav"))
    assert (track.decoder, track.samples, track.codec) == ("ffmpeg", SAMPLES, "aac")
    assert probe_audio(songs["m4a"]).decoder == "pyav"  # the default order starts with PyAV


def test_the_kept_track_remembers_its_decoder(songs, tmp_path):
    from ltxflow.media.probe import keep_audio

    first = probe_audio(songs["ogg"], tmp_path, decoders=("soundfile",))
    keep_audio(first, tmp_path)
    again = probe_audio(songs["ogg"], tmp_path)
    assert again.pcm_file.parent == tmp_path and again.facts() == first.facts()
    assert again.decoder == "soundfile" and again.codec == "ogg/vorbis"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Awakening.ogg", "Through Space.ogg"])
def test_real_songs_read_alike_by_every_decoder(name):
    song = realmedia(name)
    tracks = {d: probe_audio(song, decoders=(d,)) for d in DECODERS}
    counts = {d: (t.sample_rate, t.channels, t.samples) for d, t in tracks.items()}
    assert len(set(counts.values())) == 1, counts
    ref = pcm(tracks["pyav"])
    assert np.array_equal(pcm(tracks["ffmpeg"]), ref)  # the same FFmpeg decoder, converted alike
    diff = np.abs(pcm(tracks["soundfile"]) - ref)  # libvorbis, not FFmpeg's decoder: rounding only
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_ffmpeg_arguments_are_safe_on_any_name():
    args = ffmpeg_decode_args("ffmpeg", Path("/music/-i http:x|y.ogg"))
    assert args[args.index("-protocol_whitelist") + 1] == "file"
    assert args[args.index("-i") + 1] == "file:/music/-i http:x|y.ogg"  # a name, never an option or protocol
    assert "-safe" not in args and "-nostdin" in args and args[-1] == "pipe:1"
    assert "-ar" not in args and "-ac" not in args  # the file's own rate and channels


def test_ffmpeg_does_not_follow_lists_to_other_files(songs, tmp_path):
    for text in (f"ffconcat version 1.0\nfile '{songs['wav']}'\n", f"#EXTM3U\n#EXTINF:3,\n{songs['wav']}\n"):
        listing = tmp_path / "list.ogg"
        listing.write_text(text)
        with open(tmp_path / "out.s16", "wb") as out, pytest.raises(Exception, match="a playlist"):
            decode_ffmpeg(listing, out)
        with pytest.raises(MediaError, match="list.ogg: no decoder reads"):
            probe_audio(listing, decoders=("ffmpeg",))


@pytest.mark.parametrize(("name", "command"), [
    ("Through Space.ogg", "ffmpeg -i 'Through Space.ogg' 'Through Space.wav'"),
    ("song.mp3", "ffmpeg -i song.mp3 song.wav"),
    ("odd.wav", "ffmpeg -i odd.wav odd-16bit.wav"),  # never the input's own name
    ("-x's.flac", "ffmpeg -i './-x'\"'\"'s.flac' './-x'\"'\"'s.wav'"),
])
def test_convert_command(name, command):
    assert convert_command(Path("/somewhere") / name) == command


def project(root: Path, audio: str) -> Path:
    """A project on `audio` whose seams fall evenly (no music analysis: these tests are about decoding)."""
    path = root / "project.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        name: real-song
        audio: {json.dumps(audio)}
        fps: 24
        resolution: 640x352
        backend: preview
        model: ltx-2.3-quality
        output: out/real-song.mp4
        chunking:
          boundaries: even
        scenes:
          - id: one
            start: 0
            end: 10
            prompt: "a slow drift through a star field"
          - id: two
            prompt: "the stars fade"
        """))
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LTXFLOW_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run([str(LTXFLOW), *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=env)


def kept_decoders(root: Path) -> list[str]:
    return [json.loads(p.read_text())["decoder"] for p in (root / "cache").rglob("*.json")
            if "decoder" in p.read_text()]


@pytest.mark.slow
def test_a_real_ogg_plans_and_validates_through_the_cli(tmp_path):
    song = realmedia("Through Space.ogg")
    path = project(tmp_path, str(song))
    r = run("plan", "--allow-outside-paths", path.name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("real-song: 640x352 @ 24 fps, backend preview") and "two.0" in r.stdout
    assert kept_decoders(tmp_path) == ["pyav"]  # kept by plan, so validate does not decode it again
    r = run("validate", "--allow-outside-paths", path.name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ok: real-song, 2 scenes, 3:53.750 at 24 fps" in r.stdout  # 11219479 samples, in whole frames


def test_a_song_only_libsndfile_reads_goes_through_the_cli(tmp_path):
    """An excerpt of a real song kept as an Akai MPC2000 sample (a format FFmpeg does not know,
    named .wav): PyAV refuses it with the issue's message, libsndfile reads it to the sample."""
    import soundfile

    excerpt, rate = soundfile.read(realmedia("Through Space.ogg"), frames=12 * 48000, dtype="int16")
    media = tmp_path / "media"
    media.mkdir()
    soundfile.write(media / "excerpt one.wav", excerpt, rate, format="MPC2K", subtype="PCM_16")
    with pytest.raises(MediaError, match=r"pyav: cannot open as audio \(Invalid data found"):
        probe_audio(media / "excerpt one.wav", decoders=("pyav",))
    path = project(tmp_path, "media/excerpt one.wav")
    r = run("plan", path.name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert kept_decoders(tmp_path) == ["soundfile"]
    track = probe_audio(media / "excerpt one.wav")
    assert track.samples == 12 * 48000 and np.array_equal(pcm(track), excerpt.reshape(-1))


def test_a_file_nothing_reads_exits_2_naming_it_and_the_conversion(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "Through Space.ogg").write_bytes(np.random.default_rng(11).bytes(50_000))
    path = project(tmp_path, "media/Through Space.ogg")
    for command in ("validate", "plan"):
        r = run(command, path.name, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert "Through Space.ogg: no decoder reads audio from it (pyav: " in r.stderr
        assert "; soundfile: " in r.stderr and "; ffmpeg: " in r.stderr
        assert "ffmpeg -i 'Through Space.ogg' 'Through Space.wav'" in r.stderr
        assert r.stdout == ""
