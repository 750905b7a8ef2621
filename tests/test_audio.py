"""The one audio loader: decoding, down-mixing, resampling, the cap, and errors that name the clip."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from helpers import write_tone

from r1_aqa.audio import AudioError, load_audio, load_audio_capped, probe_audio


def test_stereo_44k_becomes_mono_16k(tmp_path):
    sr, seconds = 44_100, 1.5
    t = np.arange(int(sr * seconds)) / sr
    left = 0.6 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "stereo.wav", np.stack([left, np.zeros_like(left)], axis=1), sr)

    wav = load_audio(tmp_path / "stereo.wav")

    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) == 24_000  # 1.5 s at 16 kHz
    assert 0.25 < np.abs(wav).max() < 0.35  # channels averaged: half the left channel's 0.6
    spectrum = np.abs(np.fft.rfft(wav))
    assert abs(np.argmax(spectrum) * 16_000 / len(wav) - 440) < 2  # resampled, not just cut


def test_flac_and_bytes_decode_like_paths(tmp_path):
    path = write_tone(tmp_path / "tone.flac", freq=330, seconds=0.5, sr=22_050, fmt="FLAC")

    info = probe_audio(path)
    from_path = load_audio(path)
    from_bytes = load_audio(path.read_bytes())

    assert (info.sample_rate, info.channels) == (22_050, 1)
    assert info.duration_s == pytest.approx(0.5, abs=1e-3)
    assert len(from_path) == 8_000
    np.testing.assert_array_equal(from_path, from_bytes)


def test_cap_keeps_the_first_seconds(tmp_path):
    path = write_tone(tmp_path / "long.wav", seconds=31, sr=8_000)

    assert len(load_audio(path)) == 31 * 16_000
    assert len(load_audio(path, max_seconds=30)) == 30 * 16_000
    assert probe_audio(path).duration_s == pytest.approx(31)


def test_capped_load_says_whether_the_clip_was_cut(tmp_path):
    for seconds, cut in [(29, False), (30, False), (31, True)]:
        path = write_tone(tmp_path / f"{seconds}.wav", seconds=seconds, sr=8_000)
        wav, was_cut = load_audio_capped(path, max_seconds=30)
        assert (len(wav), was_cut) == (min(seconds, 30) * 16_000, cut)
    assert load_audio_capped(path, max_seconds=None)[1] is False


def test_errors_name_the_clip(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF this is not audio at all" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16_000)
    missing = tmp_path / "missing.wav"

    with pytest.raises(AudioError, match=r"missing\.wav: file not found"):
        load_audio(missing)
    with pytest.raises(AudioError, match=r"corrupt\.wav: cannot decode audio"):
        load_audio(corrupt)
    with pytest.raises(AudioError, match=r"empty\.wav: audio has no samples"):
        probe_audio(empty)
    with pytest.raises(AudioError, match=r"<290 bytes>: cannot decode audio"):
        load_audio(corrupt.read_bytes())
