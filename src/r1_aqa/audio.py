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
    wav, sr, channels = _decode(src)
    return AudioInfo(duration_s=len(wav) / sr, sample_rate=sr, channels=channels)


def _decode(src: str | os.PathLike | bytes) -> tuple[np.ndarray, int, int]:
    try:
        with _open(src) as f:
            data = f.read(dtype="float32", always_2d=True)
            sr = f.samplerate
    except AudioError:
        raise
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError with terse messages
        raise AudioError(f"{_name(src)}: cannot decode audio ({e})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{_name(src)}: audio has no samples")
    return data.mean(axis=1), sr, data.shape[1]


def load_audio(
    src: str | os.PathLike | bytes,
    sampling_rate: int = SAMPLE_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Load ``src`` as float32 mono at ``sampling_rate`` (channels averaged, soxr resampling).

    ``max_seconds`` keeps only the first that many seconds. Raises ``AudioError`` naming the clip.
    """
    wav, sr, _ = _decode(src)
    if max_seconds is not None:
        wav = wav[: int(round(max_seconds * sr))]
    if sr != sampling_rate:
        import soxr

        wav = soxr.resample(wav, sr, sampling_rate, quality="HQ")
    return np.ascontiguousarray(wav, dtype=np.float32)
