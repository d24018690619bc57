"""
Recording files: Ogg/Opus that decodes, keeps its length, and survives the
writer being killed mid-way.
"""

from __future__ import annotations

import os
import stat
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
from twisted.trial.unittest import SynchronousTestCase

from denoisecast.audio.opus import OpusStream
from denoisecast.recordings.files import OggOpusWriter, decode, file_peaks, peaks, recorded_duration

RATE = 48000


def tone(seconds: float, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


class WriterTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        Written in odd-sized blocks, the file decodes to the same length
        (within one 20 ms frame) and the same sound.
        """
        path = Path(self.mktemp() + ".ogg")
        signal_in = tone(3.0)
        writer = OggOpusWriter(path)
        for start in range(0, len(signal_in), 1234):
            writer.write(signal_in[start : start + 1234])
        writer.close()
        self.assertLess(abs((recorded_duration(path)) - (3.0)), 0.021)
        decoded = decode(path)
        self.assertLess(abs((len(decoded) / RATE) - (3.0)), 0.021)
        # Opus adds a fixed pre-skip delay: compare loudness, then spectra.
        self.assertLess(abs((float(np.sqrt(np.mean(decoded[4800:-4800] ** 2)))) - (0.3 / np.sqrt(2))), 0.02)
        spectrum = np.abs(np.fft.rfft(decoded[4800:52800]))
        self.assertLess(abs((np.argmax(spectrum) * RATE / 48000) - (440.0)), 2.0)

    def test_private_mode(self) -> None:
        """
        A recording file is created without world (or group write) bits, even
        in a process whose umask would allow them.
        """
        path = Path(self.mktemp() + ".ogg")
        old = os.umask(0)
        try:
            writer = OggOpusWriter(path)
            writer.write(tone(0.1))
            writer.close()
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o640)

    def test_survives_kill(self) -> None:
        """
        A writer process killed with SIGKILL after 3 s of audio leaves a
        file that decodes to nearly all of it.
        """
        path = Path(self.mktemp() + ".ogg")
        script = (
            "import sys, time, numpy as np\n"
            "from pathlib import Path\n"
            "from denoisecast.recordings.files import OggOpusWriter\n"
            "w = OggOpusWriter(Path(sys.argv[1]))\n"
            "t = np.arange(48000 * 3) / 48000\n"
            "s = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)\n"
            "for i in range(0, len(s), 960): w.write(s[i:i + 960])\n"
            "print('written', flush=True)\n"
            "time.sleep(60)\n"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, cwd=os.getcwd(),
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        try:
            self.assertEqual(process.stdout.readline().strip(), b"written")
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()
        survived = recorded_duration(path)
        self.assertGreater(survived, 2.5)
        self.assertLessEqual(survived, 3.0)
        self.assertGreater(len(decode(path)) / RATE, 2.5)

    def test_peaks(self) -> None:
        """
        Peaks follow the signal's loudness slice by slice.
        """
        signal_in = np.concatenate([tone(1.0) * 0.1, tone(1.0)])
        summary = peaks(signal_in, points=10)
        self.assertEqual(len(summary), 10)
        self.assertLess(max(summary[:5]), 0.04)
        self.assertGreater(min(summary[5:]), 0.29)
        self.assertEqual(peaks(np.zeros(0, dtype=np.float32), 4), [0.0] * 4)

    def test_file_peaks_match_and_stay_small(self) -> None:
        """
        The waveform of a file, computed while decoding it piece by piece,
        is exactly what decoding it whole gives, and takes a small fraction
        of the memory: 60 s decoded would be 11.5 MB of samples, the
        streamed summary stays under 1 MB at its peak.
        """
        import tracemalloc

        path = Path(self.mktemp())
        writer = OggOpusWriter(path)
        rng = np.random.default_rng(3)
        loudness = np.repeat(rng.uniform(0.05, 0.6, 60), RATE)
        signal_in = (loudness * np.sin(2 * np.pi * 330 * np.arange(60 * RATE) / RATE)).astype(np.float32)
        for start in range(0, len(signal_in), 960):
            writer.write(signal_in[start : start + 960])
        writer.close()
        expected = peaks(decode(path), points=512)
        tracemalloc.start()
        try:
            streamed = file_peaks(path, points=512)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertEqual(streamed, expected)
        self.assertLess(peak, 1024 * 1024)
        self.assertEqual(file_peaks(path, points=7), peaks(decode(path), points=7))

    def test_file_peaks_of_empty_and_broken_files(self) -> None:
        """
        A file with no audio, or that is not audio, summarises to zeros as
        an empty signal does.
        """
        path = Path(self.mktemp())
        path.write_bytes(b"not audio at all")
        self.assertEqual(file_peaks(path, points=4), [0.0] * 4)

    def test_unreadable_file(self) -> None:
        """
        A file that is not audio has duration 0 rather than an exception.
        """
        path = Path(self.mktemp())
        path.write_bytes(b"not audio at all")
        self.assertEqual(recorded_duration(path), 0.0)


class ReprocessTests(SynchronousTestCase):
    def test_enhance_a_recorded_track(self) -> None:
        """
        ``denoisecast-enhance`` denoises a recording's raw track file again
        (here at a 6 dB attenuation limit) into a new file of the same length.
        """
        from denoisecast.cli.enhance import main

        raw = Path(self.mktemp() + ".raw.ogg")
        rng = np.random.default_rng(3)
        noisy = tone(2.0) + (0.05 * rng.standard_normal(2 * RATE)).astype(np.float32)
        writer = OggOpusWriter(raw)
        writer.write(noisy)
        writer.close()
        out = Path(self.mktemp() + ".wav")
        self.assertEqual(main([str(raw), str(out), "--atten-lim-db", "6"]), 0)
        import av

        with av.open(str(out)) as container:
            frames = sum(frame.samples for frame in container.decode(audio=0))
        self.assertLess(abs(frames / RATE - recorded_duration(raw)), 0.05)


class SharedPacketTests(SynchronousTestCase):
    def test_packets_muxed_unchanged(self) -> None:
        """
        A recording holds the very packets the broadcast sent its listeners
        (byte for byte, no second encoder), timed from the file's start, and
        the originals keep their timestamps for the senders that share them.
        """
        encoder = OpusStream(start_pts=96_000)
        packets = encoder.encode(tone(1.0))
        originals = [(bytes(p), p.pts) for p in packets]
        path = Path(self.mktemp() + ".ogg")
        writer = OggOpusWriter(path, origin=96_000)
        writer.write_packets(packets)
        writer.close()
        self.assertEqual([(bytes(p), p.pts) for p in packets], originals)
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            stored = [(bytes(p), p.pts) for p in container.demux(stream) if p.size]
        self.assertEqual([data for data, _ in stored], [data for data, _ in originals])
        self.assertEqual(stored[0][1], originals[0][1] - 96_000)
        self.assertLess(abs(recorded_duration(path) - 1.0), 0.021)

    def test_encoder_ahead_of_the_file(self) -> None:
        """
        An encoder that was already running when the recording began (a
        listener came first) may hold audio from before the file's start;
        those packets are left out rather than given negative times.
        """
        encoder = OpusStream(0)
        before = encoder.encode(tone(0.51))  # 480 samples stay pending
        path = Path(self.mktemp() + ".ogg")
        writer = OggOpusWriter(path, origin=len(tone(0.51)))
        writer.write_packets(before[-2:] + encoder.encode(tone(1.0)))
        writer.close()
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            times = [p.pts for p in container.demux(stream) if p.size]
        self.assertGreaterEqual(min(times), -312)
        self.assertLess(abs(recorded_duration(path) - 1.0), 0.03)
