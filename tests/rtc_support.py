"""
aiortc peers for the tests: a publisher that sends a sound file, a listener
that records what it hears, and noisy speech made with espeak-ng.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from twisted.trial.unittest import SkipTest, TestCase

from denoisecast.live.rtc.seam import aio

RATE = 48000


def noisy_speech_file(test: Any) -> Path:
    """The noisy speech wav of ``noisy_speech``, in a fresh directory of C{test}'s."""
    directory = Path(test.mktemp())
    directory.mkdir(parents=True)
    noisy, _, _ = noisy_speech(directory)
    return noisy


def noisy_speech(directory: Path, seconds_pause: float = 1.0, noise_db: float = -30.0) -> tuple[Path, np.ndarray, np.ndarray]:
    """
    espeak-ng speech with pauses, plus white noise; returns the noisy wav,
    the clean speech and the noise, all 48 kHz mono float.
    """
    if shutil.which("espeak-ng") is None:
        raise SkipTest("espeak-ng is not installed")
    parts = []
    for i, text in enumerate(["Hello friends, this is a live broadcast.", "The noise should be gone now."]):
        wav = directory / f"speech{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
        parts.append(read_mono(wav))
    pause = np.zeros(int(seconds_pause * RATE), dtype=np.float32)
    clean = np.concatenate([pause, parts[0], pause, parts[1], pause]).astype(np.float32)
    clean *= 0.5 / max(1e-6, float(np.abs(clean).max()))
    rng = np.random.default_rng(7)
    noise = (rng.standard_normal(len(clean)) * 10 ** (noise_db / 20)).astype(np.float32)
    noisy = directory / "noisy.wav"
    write_mono(noisy, clean + noise)
    return noisy, clean, noise


def read_mono(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        chunks = [
            out.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for out in resampler.resample(frame)
        ]
    return np.concatenate(chunks).astype(np.float32)


def write_mono(path: Path, audio: np.ndarray) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=RATE, layout="mono")
        pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def close_later(test: TestCase, pc: RTCPeerConnection) -> None:
    test.addCleanup(lambda: aio(pc.close()))


async def publisher(test: TestCase, source: Path | None) -> tuple[RTCPeerConnection, str]:
    """A peer connection sending C{source} (looped off) and its offer SDP."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    close_later(test, pc)
    if source is not None:
        player = MediaPlayer(str(source))
        pc.addTrack(player.audio)
    else:
        pc.createDataChannel("nothing")
    await aio(pc.setLocalDescription(await aio(pc.createOffer())))
    return pc, pc.localDescription.sdp


async def answer(pc: RTCPeerConnection, sdp: str) -> None:
    await aio(pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer")))


class Recorder:
    """Records the first audio track a peer connection receives (48 kHz mono)."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.chunks: list[np.ndarray] = []
        self.task: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()
        pc.on("track", self._track)

    def _track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.task is None:
            self.task = asyncio.ensure_future(self._record(track))

    async def _record(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        try:
            while True:
                frame = await track.recv()
                for out in resampler.resample(frame):
                    self.chunks.append(out.to_ndarray().reshape(-1).copy())
        except MediaStreamError:
            pass
        finally:
            self.ended.set()

    @property
    def samples(self) -> int:
        return sum(len(c) for c in self.chunks)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.float32)


async def listener(test: TestCase) -> tuple[RTCPeerConnection, str, Recorder]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    close_later(test, pc)
    pc.addTransceiver("audio", direction="recvonly")
    recorder = Recorder(pc)
    test.addCleanup(lambda: recorder.task.cancel() if recorder.task is not None else None)
    await aio(pc.setLocalDescription(await aio(pc.createOffer())))
    return pc, pc.localDescription.sdp, recorder


def envelope(audio: np.ndarray, window: int = 960) -> np.ndarray:
    """RMS per 20 ms window."""
    n = len(audio) // window
    return np.sqrt(np.mean(audio[: n * window].reshape(n, window) ** 2, axis=1) + 1e-12)


def best_correlation(received: np.ndarray, clean: np.ndarray) -> tuple[float, int]:
    """Peak correlation of the two envelopes over lags, and the lag in windows."""
    a, b = envelope(received), envelope(clean)
    a = (a - a.mean()) / (a.std() + 1e-9)
    b = (b - b.mean()) / (b.std() + 1e-9)
    best, lag = -1.0, 0
    for shift in range(0, max(1, len(a) - len(b) // 2)):
        seg = a[shift : shift + len(b)]
        if len(seg) < len(b) // 2:
            break
        corr = float(np.dot(seg, b[: len(seg)]) / len(seg))
        if corr > best:
            best, lag = corr, shift
    return best, lag
