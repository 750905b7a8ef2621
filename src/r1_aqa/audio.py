"""The one audio loader: a path or encoded bytes -> float32 mono at 16 kHz."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
# Qwen2-Audio's Whisper encoder sees at most 30 s; longer clips are cut to this by default.
QWEN2_AUDIO_MAX_SECONDS = 30.0


class AudioError(ValueError):
    """An audio clip that cannot be used; the message names the clip and the reason."""


@dataclass(frozen=True)
class AudioInfo:
    """What probing a clip found, without keeping its samples."""

    duration_s: float
    sample_rate: int
    channels: int


def _name(src: str | os.PathLike | bytes) -> str:
    return f"<{len(src)} bytes>" if isinstance(src, (bytes, bytearray)) else str(src)


def _open(src: str | os.PathLike | bytes):
    import soundfile as sf

    if isinstance(src, (bytes, bytearray)):
        return sf.SoundFile(io.BytesIO(src))
    if not os.path.exists(src):
        raise AudioError(f"{src}: file not found")
    return sf.SoundFile(src)


def probe_audio(src: str | os.PathLike | bytes) -> AudioInfo:
    """Decode a clip fully and return its duration, sample rate and channels; raise ``AudioError`` if unusable."""
    wav, sr, channels, _ = _decode(src)
    return AudioInfo(duration_s=len(wav) / sr, sample_rate=sr, channels=channels)


def _decode(src: str | os.PathLike | bytes, max_seconds: float | None = None) -> tuple[np.ndarray, int, int, bool]:
    """Mono samples (only the first ``max_seconds`` are decoded), sample rate, channels, and whether it was cut."""
    try:
        with _open(src) as f:
            sr = f.samplerate
            frames = -1 if max_seconds is None else int(round(max_seconds * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
            cut = frames >= 0 and f.frames > frames
    except AudioError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError with terse messages
        raise AudioError(f"{_name(src)}: cannot decode audio ({e})") from None
    check_samples(data, _name(src))
    return data.mean(axis=1), sr, data.shape[1], cut


def check_samples(samples: np.ndarray, name: str) -> None:
    """Raise ``AudioError`` naming the clip when decoded ``samples`` are empty or not all finite (NaN, inf)."""
    if samples.size == 0:
        raise AudioError(f"{name}: audio has no samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: audio has non-finite samples (NaN or inf)")


def load_audio_capped(
    src: str | os.PathLike | bytes,
    max_seconds: float | None,
    sampling_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, bool]:
    """Like :func:`load_audio`, also telling whether the clip was longer than ``max_seconds`` and so cut."""
    wav, sr, _, cut = _decode(src, max_seconds)
    if sr != sampling_rate:
        import soxr

        wav = soxr.resample(wav, sr, sampling_rate, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32), cut


def load_audio(
    src: str | os.PathLike | bytes,
    sampling_rate: int = SAMPLE_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Load ``src`` as float32 mono at ``sampling_rate`` (channels averaged, soxr resampling).

    ``max_seconds`` keeps (and decodes) only the first that many seconds. Raises ``AudioError`` naming the clip.
    """
    return load_audio_capped(src, max_seconds, sampling_rate)[0]
