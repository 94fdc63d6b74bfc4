"""The master track's peak envelope, read from its decoded PCM a block at a time (for the report's waveform)."""

from __future__ import annotations

from ltxflow.media.probe import AudioTrack

BLOCK = 1 << 20  # samples per read: memory stays flat whatever the song's length


def peak_envelope(track: AudioTrack, start: int, end: int, points: int) -> list[float]:
    """The peak absolute level (0..1, over all channels) of samples [start, end) in `points`
    equal buckets. Samples outside the track count as silence."""
    import numpy as np

    if end <= start or points < 1:
        return []
    edges = np.linspace(start, end, points + 1).round().astype(np.int64)
    peaks = np.zeros(points, dtype=np.float64)
    lo, hi = max(0, start), min(end, track.samples)
    if hi <= lo:
        return peaks.tolist()
    pcm = np.memmap(track.pcm_file, dtype="<i2", mode="r", shape=(track.samples, track.channels))
    for at in range(lo, hi, BLOCK):
        stop = min(hi, at + BLOCK)
        level = np.abs(pcm[at:stop].astype(np.int32)).max(axis=1)
        # the buckets this block touches, and where each starts inside the block
        first = int(np.searchsorted(edges, at, side="right")) - 1
        last = int(np.searchsorted(edges, stop - 1, side="right")) - 1
        cuts = np.clip(edges[first:last + 1] - at, 0, stop - at)
        peaks[first:last + 1] = np.maximum(peaks[first:last + 1], np.maximum.reduceat(level, cuts))
    del pcm
    return (peaks / 32768).tolist()
