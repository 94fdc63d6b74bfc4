"""Media probing and ffmpeg discovery, on real files made by the real ffmpeg."""

from __future__ import annotations

import random
import stat
import subprocess
from pathlib import Path

import pytest

from ltxflow.media.ffmpeg import FfmpegNotFound, candidates, find_ffmpeg
from ltxflow.media.probe import MediaError, probe_audio, probe_image, probe_lora

from conftest import write_lora, write_png, write_wav

ENCODERS = {"flac": [], "ogg": ["-c:a", "libvorbis"], "mp3": ["-c:a", "libmp3lame"], "m4a": ["-c:a", "aac"]}


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("songs")
    wav = write_wav(d / "song.wav", 3.0, rate=44100, channels=2)
    out = {"wav": wav}
    ff = find_ffmpeg().path
    for ext, args in ENCODERS.items():
        target = d / f"song.{ext}"
        subprocess.run([ff, "-y", "-v", "error", "-i", str(wav), *args, str(target)], check=True)
        out[ext] = target
    return out


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3", "m4a"])
def test_audio_length_to_the_sample(songs, ext):
    track = probe_audio(songs[ext])
    assert (track.sample_rate, track.channels) == (44100, 2)
    # Priming and padding of mp3/aac are removed: every format decodes to the source's 132300 samples.
    assert track.samples == 132300
    assert track.pcm_file.stat().st_size == track.samples * 4


def test_decoded_audio_is_kept_in_a_store_and_reused(songs, tmp_path):
    from ltxflow.media.probe import keep_audio

    store = tmp_path / "store"
    first = probe_audio(songs["mp3"], store)
    assert first.pcm_file.parent != store  # nothing is written until the caller keeps it
    kept = keep_audio(first, store)
    again = probe_audio(songs["mp3"], store)
    assert again.pcm_file == kept.pcm_file and again.facts() == first.facts()
    assert again.span_pcm(1000, 500) == first.span_pcm(1000, 500)
    kept.pcm_file.write_bytes(b"short")  # a damaged store entry is ignored, not trusted
    assert probe_audio(songs["mp3"], store).pcm_file.parent != store


def test_span_digest_covers_samples_and_padding(songs, tmp_path):
    import wave

    track = probe_audio(songs["wav"])
    with wave.open(str(songs["wav"])) as w:
        pcm = w.readframes(w.getnframes())
    assert track.span_pcm(1000, 500) == pcm[1000 * 4:1500 * 4]  # the file's own samples, in place
    # The digest is of the samples: the lossless FLAC of the same song has the same span digests,
    # and a span one sample later does not.
    flac = probe_audio(songs["flac"])
    assert flac.codec != track.codec and flac.span_digest(500, 100) == track.span_digest(500, 100)
    assert track.span_digest(0, 100) != track.span_digest(1, 100)
    # A song that differs only from sample 2000 on: the same digest before it, another across it.
    edited = tmp_path / "edited.wav"
    with wave.open(str(edited), "wb") as w:
        w.setparams((2, 2, 44100, 0, "NONE", "not compressed"))
        w.writeframes(pcm[:2000 * 4] + bytes(len(pcm) - 2000 * 4))
    other = probe_audio(edited)
    assert other.span_digest(0, 2000) == track.span_digest(0, 2000)
    assert other.span_digest(1990, 20) != track.span_digest(1990, 20)
    # Past the end is silence: a span reaching beyond equals the same samples padded with zeros by hand.
    padded = tmp_path / "padded.wav"
    with wave.open(str(padded), "wb") as w:
        w.setparams((2, 2, 44100, 0, "NONE", "not compressed"))
        w.writeframes(pcm[-10 * 4:] + bytes(10 * 4))
    assert track.span_digest(track.samples - 10, 20) == probe_audio(padded).span_digest(0, 20)
    assert track.span_digest(track.samples - 10, 20) != track.span_digest(track.samples - 10, 10)
    assert track.span_digest(track.samples + 5, 10) == track.span_digest(track.samples + 50, 10)
    # Before the start too; and the format is part of it: the same silence at another rate differs.
    assert track.span_digest(-30, 10) == track.span_digest(track.samples + 5, 10)
    assert probe_audio(write_wav(tmp_path / "22k.wav", 1.0, rate=22050, channels=2)).span_digest(-30, 10) != \
        track.span_digest(-30, 10)


def test_undecodable_audio(tmp_path):
    bad = tmp_path / "x.mp3"
    bad.write_bytes(b"ID3" + random.Random(7).randbytes(64) * 10)  # the same bytes every run
    with pytest.raises(MediaError, match="x.mp3"):
        probe_audio(bad)
    with pytest.raises(MediaError, match="must end in"):
        probe_audio(write_png(tmp_path / "img.png"))
    with pytest.raises(MediaError, match="not found"):
        probe_audio(tmp_path / "missing.wav")


def test_silent_file_without_audio_stream(tmp_path):
    ff = find_ffmpeg().path
    target = tmp_path / "video.m4a"
    subprocess.run([ff, "-y", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.2",
                    "-c:v", "mpeg4", "-f", "mp4", str(target)], check=True)
    with pytest.raises(MediaError, match="no audio stream"):
        probe_audio(target)


def test_images(tmp_path):
    info = probe_image(write_png(tmp_path / "a.png", (96, 54)))
    assert (info.width, info.height, info.format) == (96, 54, "PNG")
    raw = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(MediaError, match="cut.png"):
        probe_image(tmp_path / "cut.png")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(MediaError, match="not a decodable image"):
        probe_image(tmp_path / "text.png")


def test_lora_header(tmp_path):
    assert probe_lora(write_lora(tmp_path / "a.safetensors", tensors=3)).tensors == 3
    (tmp_path / "b.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(MediaError, match="not JSON"):
        probe_lora(tmp_path / "b.safetensors")
    (tmp_path / "c.safetensors").write_bytes(b"\xff" * 8)
    with pytest.raises(MediaError, match="header length"):
        probe_lora(tmp_path / "c.safetensors")


def _fake_ffmpeg(path: Path, works: bool = True) -> Path:
    """A stand-in that answers -version like ffmpeg (or fails), to test the order of preference."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + ("echo 'ffmpeg version 9.9-test'\n" if works else "exit 1\n"))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_ffmpeg_preference(tmp_path):
    on_path = _fake_ffmpeg(tmp_path / "bin" / "ffmpeg")
    env = {"PATH": str(on_path.parent)}
    assert find_ffmpeg(env).path == str(on_path) and find_ffmpeg(env).source == "PATH"
    chosen = _fake_ffmpeg(tmp_path / "chosen" / "ffmpeg")
    env_var = {"PATH": str(on_path.parent), "LTXFLOW_FFMPEG": str(chosen)}
    assert find_ffmpeg(env_var).source == "LTXFLOW_FFMPEG"
    # With no ffmpeg on PATH, the binary imageio-ffmpeg ships is used, and it really works.
    bundled = find_ffmpeg({"PATH": str(tmp_path / "empty")})
    assert bundled.source == "imageio-ffmpeg" and bundled.version
    # A broken ffmpeg on PATH falls through to the bundled one; a broken explicit choice is an error.
    _fake_ffmpeg(tmp_path / "broken" / "ffmpeg", works=False)
    assert find_ffmpeg({"PATH": str(tmp_path / "broken")}).source == "imageio-ffmpeg"
    with pytest.raises(FfmpegNotFound, match="LTXFLOW_FFMPEG"):
        find_ffmpeg({"LTXFLOW_FFMPEG": str(tmp_path / "broken" / "ffmpeg")})
    assert [s for _, s in candidates({"PATH": str(on_path.parent)})] == ["PATH", "imageio-ffmpeg"]


def test_lora_header_nested_too_deep(tmp_path):
    raw = b"[" * 100_000 + b"]" * 100_000
    (tmp_path / "deep.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)
    with pytest.raises(MediaError, match="not JSON"):
        probe_lora(tmp_path / "deep.safetensors")
