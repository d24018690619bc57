"""
The plain-Python (numpy) twin of :mod:`denoisecast.audio._ringbuffer`.

Same API, same results bit for bit, no compiler needed.  It is what runs when
the compiled module is missing, and the reference the compiled module is
tested against.  Use :mod:`denoisecast.audio.ringbuffer`, which picks the
compiled module when it is there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from denoisecast.audio._ringbuffer_common import (
    DROP_NEWEST,
    DROP_OLDEST,
    HOP_SAMPLES,
    INT16_SCALE,
    OVERFLOW_POLICIES,
    RAISE,
    RingBufferOverflow,
    check_geometry,
    equal_power_table,
    policy_code,
)

Float32Array = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]

__all__ = [
    "Crossfader",
    "RingBuffer",
    "crossfade",
    "float32_to_int16",
    "int16_to_float32",
    "mix_into",
]


def _samples(array: Any, dtype: type[np.generic], name: str = "samples") -> Any:
    """
    Accept exactly what the compiled module accepts: a one-dimensional,
    C-contiguous numpy array of ``dtype``.  Converting silently would hide a
    float64 or stereo array that the compiled module refuses.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype != dtype:
        raise ValueError(
            f"{name} must have dtype {np.dtype(dtype).name}, got {array.dtype.name}"
        )
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got {array.ndim} dimensions")
    if not array.flags.c_contiguous:
        raise ValueError(f"{name} must be contiguous")
    return array


def _out(out: Any, dtype: type[np.generic], length: int) -> Any:
    """
    Return a fresh output array, or check a caller's one; writing into a
    caller's array is what lets a scheduler fill one row of a batch in place.
    """
    if out is None:
        return np.empty(length, dtype=dtype)
    _samples(out, dtype, "out")
    if not out.flags.writeable:
        raise ValueError("out must be writable")
    if out.shape[0] != length:
        raise ValueError(f"out must hold {length} samples, holds {out.shape[0]}")
    return out


class RingBuffer:
    """
    A per-stream FIFO of 48 kHz mono float32 samples between the media path,
    which writes whatever frame sizes the decoder produces, and the denoise
    scheduler, which reads whole hops.

    When a write does not fit, the overflow policy decides: ``"drop_oldest"``
    (the default: latency stays bounded, the oldest audio is lost),
    ``"drop_newest"`` (the tail of the write is lost) or ``"raise"``
    (:class:`RingBufferOverflow`, nothing stored).  ``overflow_count`` counts
    writes that overflowed and ``dropped_samples`` the samples lost, for the
    metrics; ``clear()`` keeps both.

    A buffer is not safe to use from two threads at once: its owner (the
    reactor thread in the live path) writes and reads it, and hands the hops
    it reads, which are copies, to the denoise workers.
    """

    def __init__(
        self, capacity: int, hop: int = HOP_SAMPLES, overflow: str = DROP_OLDEST
    ) -> None:
        check_geometry(capacity, hop)
        self._policy = policy_code(overflow)
        self._data: Float32Array = np.zeros(capacity, dtype=np.float32)
        self._capacity = capacity
        self._hop = hop
        self._head = 0
        self._size = 0
        self._overflow_count = 0
        self._dropped_samples = 0

    @property
    def capacity(self) -> int:
        """Samples the buffer holds at most."""
        return self._capacity

    @property
    def hop(self) -> int:
        """Samples in one hop, the unit of every read."""
        return self._hop

    @property
    def overflow(self) -> str:
        """The overflow policy's name."""
        return OVERFLOW_POLICIES[self._policy]

    @property
    def available(self) -> int:
        """Samples buffered, whole hops or not."""
        return self._size

    @property
    def hops_available(self) -> int:
        """Whole hops that can be read now."""
        return self._size // self._hop

    @property
    def free(self) -> int:
        """Samples that can be written without overflowing."""
        return self._capacity - self._size

    @property
    def overflow_count(self) -> int:
        """Writes that did not fit, whatever the policy did about them."""
        return self._overflow_count

    @property
    def dropped_samples(self) -> int:
        """Samples lost to overflows, buffered or written."""
        return self._dropped_samples

    def clear(self) -> None:
        """Forget every buffered sample; the counters are kept."""
        self._head = 0
        self._size = 0

    def write(self, samples: Float32Array) -> int:
        """
        Append float32 samples and return how many were stored (fewer than
        given only after an overflow).
        """
        return self._store(_samples(samples, np.float32))

    def write_int16(self, samples: Int16Array) -> int:
        """
        Append int16 samples (as decoded from the network), scaled to
        [-1, 1); return how many were stored.
        """
        return self._store(_samples(samples, np.int16))

    def _store(self, samples: Any) -> int:
        count = int(samples.shape[0])
        free = self._capacity - self._size
        if count > free:
            self._overflow_count += 1
            policy = OVERFLOW_POLICIES[self._policy]
            if policy == RAISE:
                raise RingBufferOverflow(count, free)
            if policy == DROP_NEWEST:
                self._dropped_samples += count - free
                samples = samples[:free]
                count = free
            elif count >= self._capacity:
                # DROP_OLDEST with a write larger than the whole buffer: all
                # that was buffered and the write's head are lost.
                skip = count - self._capacity
                self._dropped_samples += self._size + skip
                self._head = 0
                self._size = 0
                samples = samples[skip:]
                count = self._capacity
            else:
                drop = count - free
                self._dropped_samples += drop
                self._head = (self._head + drop) % self._capacity
                self._size -= drop
        tail = (self._head + self._size) % self._capacity
        first = min(count, self._capacity - tail)
        if samples.dtype == np.int16:
            np.multiply(samples[:first], np.float32(1.0 / INT16_SCALE),
                        out=self._data[tail:tail + first], dtype=np.float32)
            np.multiply(samples[first:], np.float32(1.0 / INT16_SCALE),
                        out=self._data[:count - first], dtype=np.float32)
        else:
            self._data[tail:tail + first] = samples[:first]
            self._data[:count - first] = samples[first:]
        self._size += count
        return count

    def _hops(self, hops: int, out: Any) -> Any:
        if hops < 0:
            raise ValueError(f"cannot read {hops} hops")
        if hops > self._size // self._hop:
            raise ValueError(
                f"{hops} hops requested, {self._size // self._hop} available"
            )
        count = hops * self._hop
        out = _out(out, np.float32, count)
        first = min(count, self._capacity - self._head)
        out[:first] = self._data[self._head:self._head + first]
        out[first:] = self._data[:count - first]
        return out

    def peek_hops(self, hops: int, out: Float32Array | None = None) -> Float32Array:
        """
        Copy the oldest ``hops`` whole hops without consuming them (for a
        look-ahead); ``ValueError`` if fewer are buffered.
        """
        return self._hops(hops, out)

    def read_hops(self, hops: int, out: Float32Array | None = None) -> Float32Array:
        """
        Remove and return the oldest ``hops`` whole hops (into ``out`` when
        given, e.g. one row of a batch); ``ValueError`` if fewer are buffered.
        """
        out = self._hops(hops, out)
        self._consume(hops * self._hop)
        return out

    def skip_hops(self, hops: int) -> None:
        """Consume ``hops`` whole hops without copying them (after a peek)."""
        if hops < 0 or hops > self._size // self._hop:
            raise ValueError(
                f"cannot skip {hops} hops, {self._size // self._hop} available"
            )
        self._consume(hops * self._hop)

    def _consume(self, count: int) -> None:
        self._head = (self._head + count) % self._capacity
        self._size -= count
        if self._size == 0:
            self._head = 0


def int16_to_float32(samples: Int16Array, out: Float32Array | None = None) -> Float32Array:
    """Scale int16 samples to float32 in [-1, 1) by dividing by 32768."""
    samples = _samples(samples, np.int16)
    out = _out(out, np.float32, samples.shape[0])
    np.multiply(samples, np.float32(1.0 / INT16_SCALE), out=out, dtype=np.float32)
    return out


def float32_to_int16(samples: Float32Array, out: Int16Array | None = None) -> Int16Array:
    """
    Scale float32 samples by 32768 to int16, rounding to nearest (ties to
    even) and saturating at -32768 and 32767 instead of wrapping around,
    which would turn a loud peak into a full-scale click.  NaN becomes 0.
    """
    samples = _samples(samples, np.float32)
    out = _out(out, np.int16, samples.shape[0])
    scaled = samples * np.float32(INT16_SCALE)
    np.nan_to_num(scaled, copy=False, nan=0.0)
    np.clip(scaled, -INT16_SCALE, INT16_SCALE - 1.0, out=scaled)
    np.rint(scaled, out=scaled)
    out[:] = scaled.astype(np.int16)
    return out


def mix_into(dst: Float32Array, src: Float32Array, gain: float = 1.0) -> None:
    """
    Add ``gain * src`` to ``dst`` in place, in float32 (no saturation here:
    :func:`float32_to_int16` saturates once, at the end of the media path).
    """
    _samples(dst, np.float32, "dst")
    _samples(src, np.float32, "src")
    if not dst.flags.writeable:
        raise ValueError("dst must be writable")
    if dst.shape[0] != src.shape[0]:
        raise ValueError(f"dst holds {dst.shape[0]} samples, src {src.shape[0]}")
    dst += np.float32(gain) * src


class Crossfader:
    """
    Switches between a dry (raw, delay-matched) and a wet (denoised) signal
    with an equal-power crossfade of ``length`` samples, so that turning
    denoise on or off is never a click.

    It is stateful so a fade may start near the end of one chunk and finish in
    the next, and a switch back in mid-fade turns around from where the fade
    is instead of jumping.  ``position`` runs from 0 (all dry) to ``length``
    (all wet) and moves one step per output sample toward the target.

    Equal power keeps the loudness of uncorrelated signals constant; for
    identical ones the mid-fade sum is up to 3 dB louder (gains 0.707 + 0.707)
    for a moment, which is heard as a slight swell, never as a click.
    """

    def __init__(self, length: int, wet: bool = False) -> None:
        self._table = equal_power_table(length)
        self._length = length
        self._wet = bool(wet)
        self._position = length if wet else 0

    @property
    def length(self) -> int:
        """Samples a full fade takes."""
        return self._length

    @property
    def wet(self) -> bool:
        """Whether the output is (or is fading toward) the wet signal."""
        return self._wet

    @wet.setter
    def wet(self, wet: bool) -> None:
        self._wet = bool(wet)

    @property
    def position(self) -> int:
        """0 is all dry, ``length`` all wet, anything between is a fade."""
        return self._position

    @property
    def fading(self) -> bool:
        """Whether the output still mixes both signals."""
        return self._position != (self._length if self._wet else 0)

    def reset(self, wet: bool) -> None:
        """Jump to a signal without fading (for a stream that starts)."""
        self._wet = bool(wet)
        self._position = self._length if self._wet else 0

    def process(
        self, dry: Float32Array, wet: Float32Array, out: Float32Array | None = None
    ) -> Float32Array:
        """
        Mix one block of both signals (same length) into ``out`` and advance
        the fade by that many samples.
        """
        _samples(dry, np.float32, "dry")
        _samples(wet, np.float32, "wet")
        count = dry.shape[0]
        if wet.shape[0] != count:
            raise ValueError(f"dry holds {count} samples, wet {wet.shape[0]}")
        out = _out(out, np.float32, count)
        target = self._length if self._wet else 0
        start = self._position
        steps = min(count, abs(target - start))
        if steps:
            direction = 1 if target > start else -1
            positions = start + direction * np.arange(1, steps + 1)
            mixed = (
                dry[:steps].astype(np.float64) * self._table[self._length - positions]
                + wet[:steps].astype(np.float64) * self._table[positions]
            )
            out[:steps] = mixed.astype(np.float32)
            self._position = target if steps == abs(target - start) else int(positions[-1])
        out[steps:] = (wet if self._wet else dry)[steps:]
        return out


def crossfade(
    from_signal: Float32Array, to_signal: Float32Array, length: int | None = None
) -> Float32Array:
    """
    Fade from one signal to another over the first ``length`` samples (the
    whole block by default); the rest is ``to_signal``.
    """
    if length is None:
        length = from_signal.shape[0]
    fader = Crossfader(length, wet=False)
    fader.wet = True
    return fader.process(from_signal, to_signal)
