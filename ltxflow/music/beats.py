"""The beat tracker (librosa, imported here only): beats on the kick and snare, not on the hats.

The tempo comes from all bands alike (hats mark the pulse's period even off the beat, and keep a
half-time groove at its real tempo); a local tempo that moves away from it, other than by a
metrical ratio, is tracked as a tempo change. The beats' phase comes from an onset envelope that
weights the bands: below 200 Hz (kick, bass) and 200-3000 Hz (snare body, chord attacks) fully,
above 5 kHz (hats, cymbals) a quarter, so hats louder than the kick, as in many mixes, cannot pull
the beats onto the off-beat. librosa's dynamic-programming tracker runs on it; each beat then moves
onto the attack below 3 kHz near it (`refine`), beats without one of their own are placed between
those with one, and the ends are mended (`extend`). Each beat also gets a downbeat score (its kick
strength plus the chord change at it) from which the grid picks bar 1."""

from __future__ import annotations

from dataclasses import dataclass

LOW_HZ, MID_HZ, HIGH_HZ = 200.0, 3000.0, 5000.0
WEIGHTS = (1.0, 1.0, 0.25)  # low, mid, high bands in the tracking envelope
REFINE_BEFORE, REFINE_AFTER = 0.05, 0.05  # seconds a beat may move to reach its attack
LOCAL_TEMPO_SPREAD = 0.04  # local tempo this far from the global one: track a time-varying tempo
METRICAL = (0.5, 2 / 3, 1.5, 2.0)  # ... unless it is this ratio of it (within the same spread)
ATTACK_LAG = 0.008  # seconds an attack lies past the centre of the window where the flux peaks (click tracks)
ANCHOR = 5.0  # an attack's flux peak stands this many times above the median flux around it
AUDIBLE_DB = 24.0  # an attack this far below the track's loud parts (90th percentile) is no beat


@dataclass(frozen=True)
class Beats:
    tempo: float  # beats per minute (the median where it varies)
    times: tuple[float, ...]  # seconds
    downbeat: tuple[float, ...]  # per beat, 0..1: how much it sounds like a bar's start
    envelope: object  # the tracking onset envelope (numpy, one value per hop)


def band_envelopes(y, sr: int, hop: int):
    """Spectral flux of the log mel spectrogram averaged within each band (low, mid, high), and the
    power spectrogram (for chroma)."""
    import librosa
    import numpy as np

    S = np.abs(librosa.stft(y, n_fft=2048, hop_length=hop)) ** 2
    fmax = sr / 2
    mel_f = librosa.mel_frequencies(n_mels=96 + 2, fmin=30.0, fmax=fmax)[1:-1]
    mel = librosa.feature.melspectrogram(S=S, sr=sr, n_mels=96, fmin=30.0, fmax=fmax)
    log = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    flux = np.maximum(0.0, np.diff(log, axis=1, prepend=log[:, :1]))
    out = []
    for lo, hi in ((0, LOW_HZ), (LOW_HZ, MID_HZ), (HIGH_HZ, fmax)):
        rows = (mel_f >= lo) & (mel_f < hi)
        out.append(flux[rows].mean(axis=0) if rows.any() else np.zeros(flux.shape[1]))
    return out, S


def track(y, sr: int, hop: int) -> Beats:
    """Beats of a mono signal at `sr` (see the module's docstring)."""
    import librosa
    import numpy as np

    (low, mid, high), S = band_envelopes(y, sr, hop)
    envelope = _detrended(WEIGHTS[0] * low + WEIGHTS[1] * mid + WEIGHTS[2] * high)
    rate = sr / hop
    # The tempo from all bands alike (hats included: they mark the pulse's period even off the beat).
    full = _detrended(low + mid + high)
    tempo = float(librosa.feature.tempo(onset_envelope=full, sr=sr, hop_length=hop)[0])
    local = librosa.feature.tempo(onset_envelope=full, sr=sr, hop_length=hop, aggregate=None, ac_size=6.0)
    local = _smooth(local, round(4 * rate))
    # A local tempo at a metrical ratio of the global one (half, double, dotted, triplet) is a
    # section's rhythm, not a new tempo: the pulse goes on.
    metrical = np.zeros(len(local), dtype=bool)
    for ratio in METRICAL:
        metrical |= np.abs(local / (tempo * ratio) - 1) < LOCAL_TEMPO_SPREAD
    local = np.where(metrical, tempo, local)
    moving = np.abs(local / tempo - 1) > LOCAL_TEMPO_SPREAD
    bpm = local if moving.mean() > 0.1 else tempo
    _, frames = librosa.beat.beat_track(onset_envelope=envelope, sr=sr, hop_length=hop, bpm=bpm, trim=True)
    times = librosa.frames_to_time(frames, sr=sr, hop_length=hop)
    times, found = refine(y, sr, times)
    inside = (times >= REFINE_BEFORE) & (times < len(y) / sr - REFINE_AFTER)  # a cut-off end is no beat
    times = extend(y, sr, times[inside], found[inside])
    kick = np.array([_peak(low, rate, t) for t in times])
    change = chord_change(S, sr, hop, times)
    downbeat = _unit(kick) + _unit(change)
    if len(times) > 1:
        tempo = float(60 / np.median(np.diff(times)))
    return Beats(round(tempo, 3), tuple(float(t) for t in times), tuple(float(v) / 2 for v in downbeat), envelope)


def _detrended(envelope):
    """The envelope less its local mean (a third of a second), floored at 0."""
    import numpy as np

    return np.maximum(envelope - np.convolve(envelope, np.ones(31) / 31, mode="same"), 0.0)


def _smooth(values, width: int):
    import numpy as np
    from scipy.ndimage import median_filter

    return median_filter(np.asarray(values, dtype=float), size=max(1, width), mode="nearest")


def _peak(envelope, rate: float, t: float) -> float:
    """The envelope's peak from 20 ms before `t` to 50 ms after it."""
    lo, hi = max(0, round((t - 0.02) * rate)), min(len(envelope), round((t + 0.05) * rate) + 1)
    return float(envelope[lo:hi].max()) if hi > lo else 0.0


def _unit(values):
    import numpy as np

    values = np.asarray(values, dtype=float)
    top = values.max() if len(values) else 0.0
    return values / top if top > 0 else values


def chord_change(S, sr: int, hop: int, times):
    """Per beat, how much the harmony changes at it: the cosine distance between the mean chroma
    of the beat before it and of the beat after it (chords usually change on downbeats)."""
    import librosa
    import numpy as np

    if len(times) < 2:
        return np.zeros(len(times))
    chroma = librosa.feature.chroma_stft(S=S, sr=sr, hop_length=hop, norm=None)
    frames = librosa.time_to_frames(times, sr=sr, hop_length=hop)
    step = int(np.median(np.diff(frames)))
    edges = np.concatenate([[max(0, frames[0] - step)], frames, [frames[-1] + step]])
    sync = np.stack([chroma[:, a:max(b, a + 1)].mean(axis=1) if a < chroma.shape[1] else np.zeros(12)
                     for a, b in zip(edges[:-1], edges[1:])], axis=1)
    sync = sync / (np.linalg.norm(sync, axis=0, keepdims=True) + 1e-9)
    return 1.0 - np.sum(sync[:, :-1] * sync[:, 1:], axis=0)


def refine(y, sr: int, beats):
    """Beat times moved onto the attack they mark, and whether each found one. Around each beat
    (REFINE_BEFORE/AFTER), a short-time spectrum below MID_HZ (23 ms window, 1.5 ms steps) gives
    the log-magnitude flux; the beat moves to its peak, plus ATTACK_LAG. A beat whose peak is under
    ANCHOR times the window's median flux has no attack of its own there (a hats-only beat of a half-time
    groove, a held chord): it is placed by its neighbours that have one (see `_anchored`). Flux,
    unlike the energy rise, does not ripple with a held bass note; the hats lie above the cut."""
    import numpy as np

    beats = np.asarray(beats, dtype=float)
    if not len(beats):
        return beats, np.zeros(0, dtype=bool)
    times, peaks = attacks(y, sr, beats)
    found = peaks >= ANCHOR
    return _anchored(beats, times, found), found


def attacks(y, sr: int, beats, n_fft: int = 512, hop: int = 32):
    """For each beat, the time of the strongest attack below MID_HZ near it, and how far its flux
    stands above the window's median flux."""
    import numpy as np

    window = np.hanning(n_fft)
    bins = round(MID_HZ * n_fft / sr)
    pad = n_fft // 2
    before, after = round(REFINE_BEFORE * sr), round(REFINE_AFTER * sr)
    times, peaks = [], []
    for t in beats:
        c = round(t * sr)
        a, b = c - before - pad - hop, c + after + pad
        seg = np.zeros(b - a)
        lo, hi = max(0, a), min(len(y), b)
        if hi > lo:
            seg[lo - a:hi - a] = y[lo:hi]
        starts = np.arange(0, len(seg) - n_fft + 1, hop)
        frames = np.stack([seg[s:s + n_fft] * window for s in starts])
        mag = np.abs(np.fft.rfft(frames, axis=1))[:, 1:bins]
        log = np.log(mag + 1e-3 * (mag.max() + 1e-12))
        flux = np.maximum(0.0, np.diff(log, axis=0)).sum(axis=1)
        k = int(np.argmax(flux))
        times.append((a + starts[k + 1] + pad) / sr + ATTACK_LAG)
        peaks.append(float(flux[k] / (np.median(flux) + 1e-9)))
    return np.asarray(times), np.asarray(peaks)


def extend(y, sr: int, times, found):
    """The beats with the tracker's edges mended: leading and trailing beats without an attack of
    their own are dropped (the dynamic programme guesses there), then beats are added a period
    (the median of the nearest four) past each end as long as an audible attack is there."""
    import numpy as np

    idx = np.flatnonzero(found)
    if len(idx) < 2:
        return times
    out = list(times[idx[0]:idx[-1] + 1])
    duration = len(y) / sr
    step = 512
    level = 20 * np.log10(np.sqrt(np.mean(y[:len(y) // step * step].reshape(-1, step) ** 2, axis=1)) + 1e-9)
    floor = np.percentile(level, 90) - AUDIBLE_DB

    def attack_near(t: float) -> float | None:
        # A song may open on a beat: an attack at its very first sample is one (the silence
        # before the file is where its rise comes from), so the window may reach before 0.
        if not -REFINE_BEFORE <= t < duration - REFINE_AFTER:
            return None
        (at,), (prominence,) = attacks(y, sr, [max(t, 0.0)])
        at = max(float(at), 0.0)
        if at < REFINE_BEFORE and t < REFINE_BEFORE - period / 2:
            return None
        i = min(len(level) - 1, round(at * sr / step))
        return at if prominence >= ANCHOR and level[max(0, i - 1):i + 2].max() >= floor else None

    for forward in (True, False):
        while True:
            near = out[-5:] if forward else out[:5]
            period = float(np.median(np.diff(near)))
            at = attack_near(near[-1] + period if forward else near[0] - period)
            if at is None:
                break
            out.insert(len(out) if forward else 0, at)
    return np.asarray(out)


def _anchored(raw, refined, found):
    """Beat times where the beats without an attack (`found` False) are placed between the nearest
    ones with one, by index (a steady pulse between them), or, past the first or last of those,
    shifted as the tracker's beats near them were."""
    import numpy as np

    out = refined.copy()
    idx = np.flatnonzero(found)
    if not len(idx):
        return raw.copy()
    shift = float(np.median(refined[idx] - raw[idx]))
    for i in np.flatnonzero(~found):
        j = np.searchsorted(idx, i)
        if 0 < j < len(idx):
            a, b = idx[j - 1], idx[j]
            out[i] = refined[a] + (refined[b] - refined[a]) * (i - a) / (b - a)
        else:
            out[i] = raw[i] + shift
    return out
