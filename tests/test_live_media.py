"""
The shared-encoding pieces of a broadcast: one Opus stream, per-listener
packet tracks, and the shorter receive buffer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from denoisecast.audio.opus import OpusStream
from denoisecast.live.rtc.media import QUEUE_PACKETS, PacketTrack, shorten_receive_buffer
from denoisecast.live.rtc.seam import aio


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

    def test_one_frame_buffer_puts_a_late_packet_back_in_place(self) -> None:
        """
        With the server's one-frame hold, a packet that arrives after its
        successor still comes out in order (frames leave only in sequence),
        and each frame leaves as soon as the next packet is there.
        """
        from aiortc.jitterbuffer import JitterBuffer
        from aiortc.rtp import RtpPacket

        from denoisecast.live.rtc.media import RECEIVE_PREFETCH

        self.assertEqual(RECEIVE_PREFETCH, 1)
        buffer = JitterBuffer(capacity=16, prefetch=RECEIVE_PREFETCH)
        released = []
        for seq in (0, 1, 3, 2, 4, 5):
            packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, payload=b"%d" % seq)
            packet._data = packet.payload  # type: ignore[attr-defined]  # as aiortc's receiver does
            _, frame = buffer.add(packet)
            released.append(None if frame is None else frame.timestamp // 960)
        # 0 leaves when 1 arrives; 3 before 2 holds 1 back until 2 arrives; then 2 needs 3, which is there.
        self.assertEqual(released, [None, 0, None, 1, 2, 3])

    async def test_decoding_moves_onto_the_loop(self) -> None:
        """
        aiortc's audio receiver still feeds a decoder queue before it starts
        (so an aiortc upgrade that changes it fails here); once replaced,
        received Opus frames are decoded at once into the track's queue and
        the end of the receiver ends the track.
        """
        from aiortc.jitterbuffer import JitterFrame
        from aiortc.rtcrtpparameters import RTCRtpCodecParameters
        from aiortc.rtcrtpreceiver import RemoteStreamTrack

        from denoisecast.audio.opus import OpusStream
        from denoisecast.live.rtc.media import InlineDecoder, decode_on_the_loop

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.addCleanup(lambda: aio(pc.close()))
        receiver = pc.addTransceiver("audio", direction="recvonly").receiver
        self.assertIsNotNone(decode_on_the_loop(receiver))
        self.assertIsNone(decode_on_the_loop(receiver))  # only once, before receiving
        inline = receiver._RTCRtpReceiver__decoder_queue
        self.assertIsInstance(inline, InlineDecoder)
        codec = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
        receiver._track = RemoteStreamTrack(kind="audio")  # as an offer with audio makes it

        packets = OpusStream(0).encode(np.zeros(960 * 3, dtype=np.float32))
        for i, packet in enumerate(packets):
            inline.put((codec, JitterFrame(data=bytes(packet), timestamp=i * 960)))
        track_queue = receiver._track._queue
        self.assertEqual(track_queue.qsize(), len(packets))
        self.assertEqual(track_queue.get_nowait().samples, 960)
        inline.put(None)
        self.assertIsNone(inline.get())  # aiortc's idle thread is let go

    async def test_opus_goes_straight_to_the_sink_as_mono(self) -> None:
        """
        With a sink, Opus is decoded to 48 kHz mono int16 and handed over
        directly (the track gets nothing); the sound is the sound sent.
        G.711 still goes through the track.
        """
        from aiortc.jitterbuffer import JitterFrame
        from aiortc.rtcrtpparameters import RTCRtpCodecParameters
        from aiortc.rtcrtpreceiver import RemoteStreamTrack

        from denoisecast.audio.opus import OpusStream
        from denoisecast.live.rtc.media import decode_on_the_loop

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.addCleanup(lambda: aio(pc.close()))
        receiver = pc.addTransceiver("audio", direction="recvonly").receiver
        inline = decode_on_the_loop(receiver)
        assert inline is not None
        receiver._track = RemoteStreamTrack(kind="audio")
        got: list[np.ndarray] = []
        inline.sink = got.append
        opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(960 * 20) / 48000)).astype(np.float32)
        for i, packet in enumerate(OpusStream(0).encode(tone)):
            inline.put((opus, JitterFrame(data=bytes(packet), timestamp=i * 960)))
        self.assertEqual(len(got), 20)
        self.assertTrue(all(block.dtype == np.int16 and block.shape == (960,) for block in got))
        heard = np.concatenate(got)[4800:] / 32768.0
        self.assertLess(abs(float(np.sqrt(np.mean(heard**2))) - 0.3 / np.sqrt(2)), 0.02)
        self.assertEqual(receiver._track._queue.qsize(), 0)

        pcmu = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, channels=1, payloadType=0)
        inline.put((pcmu, JitterFrame(data=bytes(160), timestamp=0)))
        self.assertEqual(receiver._track._queue.qsize(), 1)
        self.assertEqual(len(got), 20)


    async def test_a_receiver_without_a_track_queue_drops_frames_and_says_so(self) -> None:
        """
        If aiortc's receiver has no track with a frame queue where one is
        expected, frames that do not go to the sink are dropped with one
        warning instead of an AttributeError on the event loop, and the
        end of the receiver still lets aiortc's idle thread go.
        """
        from aiortc.jitterbuffer import JitterFrame
        from aiortc.rtcrtpparameters import RTCRtpCodecParameters

        from denoisecast.live.rtc.media import decode_on_the_loop

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.addCleanup(lambda: aio(pc.close()))
        receiver = pc.addTransceiver("audio", direction="recvonly").receiver
        inline = decode_on_the_loop(receiver)
        assert inline is not None
        receiver._track = None
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        pcmu = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, channels=1, payloadType=0)
        for i in range(3):
            inline.put((pcmu, JitterFrame(data=bytes(160), timestamp=i * 160)))
        warnings = [e for e in events if "no frame queue" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        inline.put(None)
        self.assertIsNone(inline.get())


class DirectSendingTests(TestCase):
    """
    A listener's packets sent directly (``ListenerOutput``) to a real aiortc
    peer over loopback: decodable audio, in order, and the sender's reports
    count them.  An aiortc whose sender internals changed fails here.
    """

    async def connected_pair(self) -> tuple[Any, Any, Any]:
        from twisted.internet.defer import Deferred

        from denoisecast.live.rtc.fanout import ListenerOutput

        server = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.addCleanup(lambda: aio(client.close()))
        self.addCleanup(lambda: aio(server.close()))
        client.addTransceiver("audio", direction="recvonly")
        track_arrived: Deferred[Any] = Deferred()
        client.on("track", track_arrived.callback)
        await aio(client.setLocalDescription(await aio(client.createOffer())))
        await aio(server.setRemoteDescription(client.localDescription))
        output = ListenerOutput()
        self.addCleanup(output.stop)
        output.attach(server.addTrack(output.track))
        await aio(server.setLocalDescription(await aio(server.createAnswer())))
        await aio(client.setRemoteDescription(server.localDescription))
        remote = await track_arrived
        for _ in range(500):
            if server.connectionState == "connected" and output._header is not None:
                break
            await aio(asyncio.sleep(0.01))
        self.assertEqual(server.connectionState, "connected")
        return output, remote, server

    async def test_listener_decodes_what_is_sent_directly(self) -> None:
        from denoisecast.live.rtc.fanout import SharedPacket

        output, remote, server = await self.connected_pair()
        self.assertTrue(output.direct)
        stream = OpusStream(0)
        t = np.arange(48000 * 2) / 48000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone), 4800):  # 100 ms chunks in real time, as a broadcast sends
            output.send([SharedPacket.of(p) for p in stream.encode(tone[start : start + 4800])])
            await aio(asyncio.sleep(0.1))
        frames = []
        while True:
            try:
                frames.append(await aio(asyncio.wait_for(remote.recv(), 0.5)))
            except asyncio.TimeoutError:
                break
        self.assertGreaterEqual(len(frames), 80)  # of 100 sent: the receiver holds a few back
        self.assertEqual(output.track._queue.qsize(), 0)  # aiortc's own sender sent nothing
        pts = [frame.pts for frame in frames]
        self.assertEqual(pts, sorted(pts))
        audio = np.concatenate([frame.to_ndarray().reshape(-1)[::2] for frame in frames[10:]]).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(audio))
        self.assertLess(abs(np.argmax(spectrum) * 48000 / len(audio) - 440), 5)
        stats = await aio(server.getSenders()[0].getStats())
        sent = [s for s in stats.values() if s.type == "outbound-rtp"]
        self.assertEqual(sent[0].packetsSent, output.sent)
        self.assertGreaterEqual(output.sent, 95)

    async def test_listener_that_cannot_keep_up_loses_packets(self) -> None:
        """
        When a listener's socket has more than MAX_QUEUED_BYTES waiting,
        its packets are dropped and counted, not queued without bound.
        """
        from denoisecast.live.rtc.fanout import MAX_QUEUED_BYTES, SharedPacket

        output, _, server = await self.connected_pair()
        pair = server.getSenders()[0].transport.transport._connection._nominated[1]
        transport = pair.protocol.transport
        sent: list[bytes] = []
        self.patch(transport, "sendto", lambda data, address: sent.append(data))
        packets = [SharedPacket.of(p) for p in OpusStream(0).encode(np.zeros(4800, dtype=np.float32))]
        output.send(packets)
        self.assertEqual((len(sent), output.late), (len(packets), 0))
        self.patch(transport, "get_write_buffer_size", lambda: MAX_QUEUED_BYTES + 1)
        output.send(packets)
        self.assertEqual((len(sent), output.late), (len(packets), len(packets)))

    async def test_sends_through_a_turn_relay_are_held_and_their_errors_logged(self) -> None:
        """
        A relayed pair has only a coroutine to send with: every send is
        held until it is done (none collected half-way), and a failed one
        is logged instead of vanishing as an unretrieved task exception.
        """
        from denoisecast.live.rtc.fanout import SharedPacket

        output, _, server = await self.connected_pair()
        pair = server.getSenders()[0].transport.transport._connection._nominated[1]

        class Relay:
            transport = None

            def __init__(self) -> None:
                self.sent: list[bytes] = []

            async def send_data(self, data: bytes, address: tuple[str, int]) -> None:
                await asyncio.sleep(0)
                if len(self.sent) == 2:
                    raise ConnectionError("relay gone")
                self.sent.append(data)

        relay = Relay()
        self.patch(pair, "protocol", relay)
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        packets = [SharedPacket.of(p) for p in OpusStream(0).encode(np.zeros(4800, dtype=np.float32))]
        output.send(packets)
        self.assertEqual(len(output._relayed), len(packets))
        for _ in range(100):
            if not output._relayed:
                break
            await aio(asyncio.sleep(0.01))
        self.assertEqual(output._relayed, set())
        self.assertEqual(len(relay.sent), 2)
        failed = [e for e in events if "through TURN failed" in e.get("log_format", "")]
        self.assertEqual(len(failed), len(packets) - 2)

    async def test_changed_transport_internals_fall_back_to_aiortc(self) -> None:
        """
        If aiortc's transports lose the state direct sending reads, the
        listener's packets go to aiortc's own sender instead (logged once),
        rather than failing every delivery.
        """
        from denoisecast.live.rtc.fanout import SharedPacket

        output, remote, server = await self.connected_pair()
        dtls = server.getSenders()[0].transport
        srtp, dtls._tx_srtp = dtls._tx_srtp, None
        stream = OpusStream(0)
        output.send([SharedPacket.of(p) for p in stream.encode(np.zeros(4800, dtype=np.float32))])
        dtls._tx_srtp = srtp
        self.assertFalse(output.direct)
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)
        for _ in range(10):  # aiortc's sender delivers from now on
            output.send([SharedPacket.of(p) for p in stream.encode(np.zeros(4800, dtype=np.float32))])
            await aio(asyncio.sleep(0.1))
        frame = await aio(asyncio.wait_for(remote.recv(), 2.0))
        self.assertEqual(frame.sample_rate, 48000)

    def test_without_aiortc_internals_packets_go_through_aiortc(self) -> None:
        from denoisecast.live.rtc.fanout import ListenerOutput, SharedPacket

        output = ListenerOutput()
        self.addCleanup(output.stop)
        output.attach(object())
        self.assertFalse(output.direct)
        packets = OpusStream(0).encode(np.zeros(960 * 3, dtype=np.float32))
        output.send([SharedPacket.of(p) for p in packets])
        self.assertEqual([output.track._queue.get_nowait() for _ in packets], packets)


class FakeRecording:
    def __init__(self) -> None:
        self.active = True
        self.writes: list[tuple[int, int, list, list]] = []

    def write(self, position: int, samples: int, denoised: list, raw: list) -> None:
        self.writes.append((position, samples, denoised, raw))


class BroadcastEncodingTests(TestCase):
    def broadcast(self) -> Any:
        from datetime import datetime, timezone

        from denoisecast.live.manager import Broadcast

        return Broadcast("s", {"id": 1, "username": "a"}, None, None, datetime.now(timezone.utc), True, 100.0)  # type: ignore[arg-type]

    def test_recording_and_listeners_share_packets(self) -> None:
        """
        One encoder per signal: a recorded broadcast encodes both signals,
        and a listener gets the very packets the recording gets.
        """
        from denoisecast.live.rtc.fanout import ListenerOutput

        broadcast = self.broadcast()
        recording = FakeRecording()
        broadcast.recording = recording
        output = ListenerOutput()
        output.attach(object())  # no aiortc sender: the packets queue on its track
        track = output.track
        self.addCleanup(output.stop)
        broadcast.listeners[7] = type("L", (), {"output": output, "signal": "denoised"})()
        block = np.zeros(4800, dtype=np.float32)
        broadcast.on_output(block, block)
        broadcast.on_output(block, block)
        self.assertEqual(sorted(broadcast.encoders), ["denoised", "raw"])
        self.assertEqual([(p, n) for p, n, _, _ in recording.writes], [(0, 4800), (4800, 4800)])
        recorded = [packet for _, _, denoised, _ in recording.writes for packet in denoised]
        heard = []
        while not track._queue.empty():
            heard.append(track._queue.get_nowait())
        self.assertEqual([id(p) for p in heard], [id(p) for p in recorded])
        self.assertGreaterEqual(len(recorded), 8)
        self.assertGreaterEqual(sum(len(raw) for _, _, _, raw in recording.writes), 8)

    async def test_encoding_off_the_reactor_keeps_order(self) -> None:
        """
        With an encoding queue, blocks are encoded on a pool thread and
        delivered back on the reactor thread in order: the recording gets
        every block at its position, and the listener the same packets.
        """
        import threading

        from twisted.internet import reactor
        from twisted.python.threadpool import ThreadPool

        from denoisecast.runtime.jobs import SerialJobs
        from denoisecast.live.rtc.fanout import ListenerOutput

        pool = ThreadPool(minthreads=0, maxthreads=2, name="test-opus")
        pool.start()
        self.addCleanup(pool.stop)
        broadcast = self.broadcast()
        broadcast.encoding = SerialJobs(pool)
        threads: list[str] = []

        def back(f: Any, *args: Any) -> None:
            threads.append(threading.current_thread().name)
            reactor.callFromThread(f, *args)

        broadcast.call_from_thread = back
        recording = FakeRecording()
        broadcast.recording = recording
        output = ListenerOutput()
        output.attach(object())
        self.addCleanup(output.stop)
        broadcast.listeners[7] = type("L", (), {"output": output, "signal": "denoised"})()
        rng = np.random.default_rng(3)
        for _ in range(9):  # 45 packets: the track keeps 50
            block = rng.standard_normal(4800).astype(np.float32) * 0.1
            broadcast.on_output(block, block)
        self.assertEqual(recording.writes, [])  # nothing encoded on the reactor thread
        await broadcast.encoding.flushed(reactor)
        await aio(asyncio.sleep(0))
        self.assertEqual([(p, n) for p, n, _, _ in recording.writes], [(i * 4800, 4800) for i in range(9)])
        self.assertTrue(threads and all(name != threading.current_thread().name for name in threads))
        recorded = [packet for _, _, denoised, _ in recording.writes for packet in denoised]
        self.assertEqual([p.pts for p in recorded], sorted(p.pts for p in recorded))
        heard = [output.track._queue.get_nowait() for _ in range(output.track._queue.qsize())]
        self.assertEqual([id(p) for p in heard], [id(p) for p in recorded])

    async def test_a_failed_encoding_loses_one_block(self) -> None:
        """
        A block whose encoding fails on the pool is logged and skipped; the
        blocks after it still reach the recording.
        """
        from twisted.internet import reactor
        from twisted.python.threadpool import ThreadPool

        from denoisecast.runtime.jobs import SerialJobs

        pool = ThreadPool(minthreads=0, maxthreads=1, name="test-opus")
        pool.start()
        self.addCleanup(pool.stop)
        broadcast = self.broadcast()
        broadcast.encoding = SerialJobs(pool)
        broadcast.call_from_thread = reactor.callFromThread
        recording = FakeRecording()
        broadcast.recording = recording
        block = np.zeros(4800, dtype=np.float32)
        broadcast.on_output(block, block)
        await broadcast.encoding.flushed(reactor)
        broadcast.encoders["denoised"].encode = lambda block: 1 / 0  # type: ignore[method-assign]
        broadcast.on_output(block, block)
        await broadcast.encoding.flushed(reactor)
        self.assertEqual(broadcast.encoders, {})  # the next block starts fresh encoders at its position
        broadcast.on_output(block, block)
        await broadcast.encoding.flushed(reactor)
        await aio(asyncio.sleep(0))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual([p for p, _, _, _ in recording.writes], [0, 9600])
        self.assertEqual(broadcast.encoders["raw"].pts, 9600 + 4800)

    def test_no_encoder_without_listener_or_recording(self) -> None:
        """When the recording stops, a signal nobody listens to is no longer encoded."""
        broadcast = self.broadcast()
        recording = FakeRecording()
        broadcast.recording = recording
        block = np.zeros(960, dtype=np.float32)
        broadcast.on_output(block, block)
        self.assertEqual(sorted(broadcast.encoders), ["denoised", "raw"])
        recording.active = False
        broadcast.on_output(block, block)
        self.assertEqual(broadcast.encoders, {})
        self.assertEqual(len(recording.writes), 1)
