"""
Reading and writing audio files through PyAV (FFmpeg): any format FFmpeg
decodes comes in as float32 ``[channels, samples]`` at the engine's rate;
the output format follows the file extension.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from denoisecast.audio import SAMPLE_RATE

#: extension -> (container format, codec, sample format, encoder options)
OUTPUT_FORMATS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    ".wav": ("wav", "pcm_s16le", "s16", {}),
    ".flac": ("flac", "flac", "s16", {}),
    ".ogg": ("ogg", "libopus", "flt", {}),
    ".opus": ("ogg", "libopus", "flt", {}),
    ".mp3": ("mp3", "libmp3lame", "fltp", {}),
}


class AudioFileError(Exception):
    """An input that cannot be decoded or an output that cannot be written."""


def read_audio(path: Path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decodes the first audio stream, resampled to ``rate``, as float32 ``[channels, samples]``."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            channels = stream.codec_context.channels or 1
            layout = "mono" if channels == 1 else ("stereo" if channels == 2 else stream.codec_context.layout.name)
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except AudioFileError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise AudioFileError(f"{path}: cannot read audio ({e})") from e
    if not chunks:
        raise AudioFileError(f"{path}: no audio samples")
    return np.ascontiguousarray(np.concatenate(chunks, axis=1), dtype=np.float32)


def write_audio(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Encodes float ``[channels, samples]`` in the format the extension names."""
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise AudioFileError(f"{path}: unsupported output extension (use {', '.join(OUTPUT_FORMATS)})")
    container_format, codec, sample_format, options = OUTPUT_FORMATS[suffix]
    channels = audio.shape[0]
    layout = "mono" if channels == 1 else "stereo" if channels == 2 else f"{channels}c"
    clipped = np.clip(audio, -1.0, 1.0).astype(np.float32)
    try:
        with av.open(str(path), mode="w", format=container_format) as container:
            stream = container.add_stream(codec, rate=rate, layout=layout)
            if not isinstance(stream, av.audio.stream.AudioStream):
                raise AudioFileError(f"{path}: {codec} is not an audio codec")
            stream.options = dict(options)
            frame_size = 4800
            for start in range(0, clipped.shape[1], frame_size):
                block = np.ascontiguousarray(clipped[:, start : start + frame_size])
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
                frame.sample_rate = rate
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise AudioFileError(f"{path}: cannot write audio ({e})") from e
