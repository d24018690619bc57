# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False, auto_pickle=False
"""
The compiled ring buffer, int16/float conversion, mixing and crossfade of the
live audio path.

Same API and bit-identical results as the plain-Python twin
:mod:`denoisecast.audio._ringbuffer_py`; every sample loop runs without the GIL
so the media path and the denoise workers never wait on each other here.
Import it through :mod:`denoisecast.audio.ringbuffer`.
"""

from libc.math cimport rintf
from libc.string cimport memcpy

import numpy as np

from denoisecast.audio._ringbuffer_common import (
    HOP_SAMPLES,
    OVERFLOW_POLICIES,
    RingBufferOverflow,
    check_geometry,
    equal_power_table,
    policy_code,
)

__all__ = [
    "Crossfader",
    "RingBuffer",
    "crossfade",
    "float32_to_int16",
    "int16_to_float32",
    "mix_into",
]

# Indices into OVERFLOW_POLICIES.
cdef enum:
    DROP_OLDEST = 0
    DROP_NEWEST = 1
    RAISE = 2

cdef float INT16_TO_FLOAT = 1.0 / 32768.0
# dtype objects, not scalar types: comparing against these is much cheaper.
cdef object FLOAT32 = np.dtype(np.float32)
cdef object INT16 = np.dtype(np.int16)


cdef object _checked(object array, object dtype, str name):
    """
    Refuse what the twin refuses, with the same exception types: only
    one-dimensional, contiguous numpy arrays of the exact dtype.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype.name}, got {array.dtype.name}")
    # ndim and contiguity are checked by the typed memoryview the caller
    # makes, which raises ValueError just like the twin.
    return array


cdef object _out(object out, object dtype, Py_ssize_t length):
    if out is None:
        return np.empty(length, dtype=dtype)
    _checked(out, dtype, "out")
    if not out.flags.writeable:
        raise ValueError("out must be writable")
    if out.shape[0] != length:
        raise ValueError(f"out must hold {length} samples, holds {out.shape[0]}")
    return out


cdef void _int16_to_float(const short *src, float *dst, Py_ssize_t count) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(count):
        dst[i] = <float>src[i] * INT16_TO_FLOAT


cdef class RingBuffer:
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

    cdef float[::1] _data
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _hop
    cdef Py_ssize_t _head
    cdef Py_ssize_t _size
    cdef int _policy
    cdef unsigned long long _overflow_count
    cdef unsigned long long _dropped_samples

    def __init__(self, Py_ssize_t capacity, Py_ssize_t hop=HOP_SAMPLES,
                 str overflow="drop_oldest"):
        check_geometry(capacity, hop)
        self._policy = policy_code(overflow)
        self._data = np.zeros(capacity, dtype=np.float32)
        self._capacity = capacity
        self._hop = hop
        self._head = 0
        self._size = 0
        self._overflow_count = 0
        self._dropped_samples = 0

    @property
    def capacity(self):
        """Samples the buffer holds at most."""
        return self._capacity

    @property
    def hop(self):
        """Samples in one hop, the unit of every read."""
        return self._hop

    @property
    def overflow(self):
        """The overflow policy's name."""
        return OVERFLOW_POLICIES[self._policy]

    @property
    def available(self):
        """Samples buffered, whole hops or not."""
        return self._size

    @property
    def hops_available(self):
        """Whole hops that can be read now."""
        return self._size // self._hop

    @property
    def free(self):
        """Samples that can be written without overflowing."""
        return self._capacity - self._size

    @property
    def overflow_count(self):
        """Writes that did not fit, whatever the policy did about them."""
        return self._overflow_count

    @property
    def dropped_samples(self):
        """Samples lost to overflows, buffered or written."""
        return self._dropped_samples

    def clear(self):
        """Forget every buffered sample; the counters are kept."""
        self._head = 0
        self._size = 0

    def write(self, samples):
        """
        Append float32 samples and return how many were stored (fewer than
        given only after an overflow).
        """
        cdef const float[::1] view = _checked(samples, FLOAT32, "samples")
        cdef Py_ssize_t skip, count
        count = self._make_room(view.shape[0], &skip)
        if count == 0:
            return 0
        cdef Py_ssize_t tail = (self._head + self._size) % self._capacity
        cdef Py_ssize_t first = min(count, self._capacity - tail)
        cdef float *data = &self._data[0]
        cdef const float *src = &view[skip]
        with nogil:
            memcpy(data + tail, src, first * sizeof(float))
            memcpy(data, src + first, (count - first) * sizeof(float))
        self._size += count
        return count

    def write_int16(self, samples):
        """
        Append int16 samples (as decoded from the network), scaled to
        [-1, 1); return how many were stored.
        """
        cdef const short[::1] view = _checked(samples, INT16, "samples")
        cdef Py_ssize_t skip, count
        count = self._make_room(view.shape[0], &skip)
        if count == 0:
            return 0
        cdef Py_ssize_t tail = (self._head + self._size) % self._capacity
        cdef Py_ssize_t first = min(count, self._capacity - tail)
        cdef float *data = &self._data[0]
        cdef const short *src = &view[skip]
        with nogil:
            _int16_to_float(src, data + tail, first)
            _int16_to_float(src + first, data, count - first)
        self._size += count
        return count

    cdef Py_ssize_t _make_room(self, Py_ssize_t count, Py_ssize_t *skip) except -1:
        """
        Apply the overflow policy to a write of ``count`` samples: drop what
        must go, and return how many of the write's samples to store, starting
        at ``skip[0]``.
        """
        cdef Py_ssize_t free = self._capacity - self._size
        cdef Py_ssize_t drop
        skip[0] = 0
        if count <= free:
            return count
        self._overflow_count += 1
        if self._policy == RAISE:
            raise RingBufferOverflow(count, free)
        if self._policy == DROP_NEWEST:
            self._dropped_samples += count - free
            return free
        if count >= self._capacity:
            # A write larger than the whole buffer: all that was buffered and
            # the write's head are lost.
            skip[0] = count - self._capacity
            self._dropped_samples += self._size + skip[0]
            self._head = 0
            self._size = 0
            return self._capacity
        drop = count - free
        self._dropped_samples += drop
        self._head = (self._head + drop) % self._capacity
        self._size -= drop
        return count

    cdef object _hops(self, Py_ssize_t hops, object out):
        if hops < 0:
            raise ValueError(f"cannot read {hops} hops")
        if hops > self._size // self._hop:
            raise ValueError(
                f"{hops} hops requested, {self._size // self._hop} available"
            )
        cdef Py_ssize_t count = hops * self._hop
        out = _out(out, FLOAT32, count)
        if count == 0:
            return out
        cdef float[::1] view = out
        cdef float *dst = &view[0]
        cdef float *data = &self._data[0]
        cdef Py_ssize_t first = min(count, self._capacity - self._head)
        cdef Py_ssize_t head = self._head
        with nogil:
            memcpy(dst, data + head, first * sizeof(float))
            memcpy(dst + first, data, (count - first) * sizeof(float))
        return out

    def peek_hops(self, Py_ssize_t hops, out=None):
        """
        Copy the oldest ``hops`` whole hops without consuming them (for a
        look-ahead); ``ValueError`` if fewer are buffered.
        """
        return self._hops(hops, out)

    def read_hops(self, Py_ssize_t hops, out=None):
        """
        Remove and return the oldest ``hops`` whole hops (into ``out`` when
        given, e.g. one row of a batch); ``ValueError`` if fewer are buffered.
        """
        out = self._hops(hops, out)
        self._consume(hops * self._hop)
        return out

    def skip_hops(self, Py_ssize_t hops):
        """Consume ``hops`` whole hops without copying them (after a peek)."""
        if hops < 0 or hops > self._size // self._hop:
            raise ValueError(
                f"cannot skip {hops} hops, {self._size // self._hop} available"
            )
        self._consume(hops * self._hop)

    cdef void _consume(self, Py_ssize_t count):
        self._head = (self._head + count) % self._capacity
        self._size -= count
        if self._size == 0:
            self._head = 0


def int16_to_float32(samples, out=None):
    """Scale int16 samples to float32 in [-1, 1) by dividing by 32768."""
    cdef const short[::1] src = _checked(samples, INT16, "samples")
    cdef Py_ssize_t count = src.shape[0]
    out = _out(out, FLOAT32, count)
    if count == 0:
        return out
    cdef float[::1] dst = out
    with nogil:
        _int16_to_float(&src[0], &dst[0], count)
    return out


def float32_to_int16(samples, out=None):
    """
    Scale float32 samples by 32768 to int16, rounding to nearest (ties to
    even) and saturating at -32768 and 32767 instead of wrapping around,
    which would turn a loud peak into a full-scale click.  NaN becomes 0.
    (``rintf`` and the twin's ``numpy.rint`` both round in the FPU's mode,
    which is ties-to-even unless someone changed it.)
    """
    cdef const float[::1] src = _checked(samples, FLOAT32, "samples")
    cdef Py_ssize_t count = src.shape[0], i
    out = _out(out, INT16, count)
    if count == 0:
        return out
    cdef short[::1] dst = out
    cdef float value
    with nogil:
        for i in range(count):
            value = src[i] * <float>32768.0
            if value != value:
                dst[i] = 0
            elif value >= <float>32767.0:
                dst[i] = 32767
            elif value <= <float>-32768.0:
                dst[i] = -32768
            else:
                dst[i] = <short>rintf(value)
    return out


def mix_into(dst, src, float gain=1.0):
    """
    Add ``gain * src`` to ``dst`` in place, in float32 (no saturation here:
    :func:`float32_to_int16` saturates once, at the end of the media path).
    """
    _checked(dst, FLOAT32, "dst")
    _checked(src, FLOAT32, "src")
    if not dst.flags.writeable:
        raise ValueError("dst must be writable")
    if dst.shape[0] != src.shape[0]:
        raise ValueError(f"dst holds {dst.shape[0]} samples, src {src.shape[0]}")
    cdef float[::1] d = dst
    cdef const float[::1] s = src
    cdef Py_ssize_t i, count = d.shape[0]
    cdef float product
    with nogil:
        for i in range(count):
            product = gain * s[i]
            d[i] = d[i] + product


cdef class Crossfader:
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

    cdef double[::1] _table
    cdef Py_ssize_t _length
    cdef bint _wet
    cdef Py_ssize_t _position

    def __init__(self, Py_ssize_t length, bint wet=False):
        self._table = equal_power_table(length)
        self._length = length
        self._wet = wet
        self._position = length if wet else 0

    @property
    def length(self):
        """Samples a full fade takes."""
        return self._length

    @property
    def wet(self):
        """Whether the output is (or is fading toward) the wet signal."""
        return self._wet

    @wet.setter
    def wet(self, bint wet):
        self._wet = wet

    @property
    def position(self):
        """0 is all dry, ``length`` all wet, anything between is a fade."""
        return self._position

    @property
    def fading(self):
        """Whether the output still mixes both signals."""
        return self._position != (self._length if self._wet else 0)

    def reset(self, bint wet):
        """Jump to a signal without fading (for a stream that starts)."""
        self._wet = wet
        self._position = self._length if wet else 0

    def process(self, dry, wet, out=None):
        """
        Mix one block of both signals (same length) into ``out`` and advance
        the fade by that many samples.
        """
        cdef const float[::1] d = _checked(dry, FLOAT32, "dry")
        cdef const float[::1] w = _checked(wet, FLOAT32, "wet")
        cdef Py_ssize_t count = d.shape[0]
        if w.shape[0] != count:
            raise ValueError(f"dry holds {count} samples, wet {w.shape[0]}")
        out = _out(out, FLOAT32, count)
        if count == 0:
            return out
        cdef float[::1] o = out
        cdef const double *table = &self._table[0]
        cdef Py_ssize_t length = self._length
        cdef Py_ssize_t target = length if self._wet else 0
        cdef Py_ssize_t position = self._position
        cdef Py_ssize_t step = 1 if target > position else -1
        cdef Py_ssize_t i = 0
        cdef const float *rest = &w[0] if self._wet else &d[0]
        with nogil:
            while i < count and position != target:
                position += step
                o[i] = <float>(<double>d[i] * table[length - position]
                               + <double>w[i] * table[position])
                i += 1
            if i < count:
                memcpy(&o[i], rest + i, (count - i) * sizeof(float))
        self._position = position
        return out


def crossfade(from_signal, to_signal, length=None):
    """
    Fade from one signal to another over the first ``length`` samples (the
    whole block by default); the rest is ``to_signal``.
    """
    if length is None:
        length = from_signal.shape[0]
    fader = Crossfader(length, wet=False)
    fader.wet = True
    return fader.process(from_signal, to_signal)
