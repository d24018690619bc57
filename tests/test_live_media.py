"""
The shared-encoding pieces of a broadcast: one Opus stream, per-listener
packet tracks, and the shorter receive buffer.
"""

from __future__ import annotations

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection
from twisted.trial.unittest import TestCase

from denoisecast.live.media import QUEUE_PACKETS, OpusStream, PacketTrack, shorten_receive_buffer
from denoisecast.live.seam import aio


class MediaTests(TestCase):
    def test_opus_stream_packets(self) -> None:
        """
        Any block length in, one Opus packet per 20 ms out, with running pts.
        """
        stream = OpusStream(start_pts=4800)
        packets = []
        for size in (700, 1300, 1920, 940):  # 4860 samples: five frames, 60 left
            packets += stream.encode(np.zeros(size, dtype=np.float32))
        self.assertGreaterEqual(len(packets), 4)  # the encoder may hold one back
        self.assertEqual(stream.pts, 4800 + 5 * 960)
        self.assertTrue(all(len(bytes(p)) > 0 for p in packets))

    def test_slow_listener_drops_oldest(self) -> None:
        """
        A listener more than QUEUE_PACKETS behind loses its oldest packets,
        counted as late; nobody else is affected.
        """
        track = PacketTrack()
        stream = OpusStream(0)
        packets = stream.encode(np.zeros(960 * (QUEUE_PACKETS + 10), dtype=np.float32))
        for packet in packets:
            track.offer(packet)
        self.assertEqual(track.late, len(packets) - QUEUE_PACKETS)
        track.stop()

    async def test_receive_buffer_shortened(self) -> None:
        """
        aiortc's audio receiver still has the buffer this replaces (so an
        aiortc upgrade that changes it fails here, not silently in production).
        """
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.addCleanup(lambda: aio(pc.close()))
        transceiver = pc.addTransceiver("audio", direction="recvonly")
        self.assertTrue(shorten_receive_buffer(transceiver.receiver, 2))
        self.assertEqual(transceiver.receiver._RTCRtpReceiver__jitter_buffer._prefetch, 2)
