"""
What the compiled ring buffer and its plain-Python twin share: the audio
constants of the live path, the overflow policies, the overflow error and the
crossfade gain table.  Keeping them in one pure module is what lets both
implementations raise the same exception class and compute bit-identical
crossfades.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from denoisecast.audio import HOP_SAMPLES  # noqa: F401 (the compiled module and the twin import it from here)

#: One decoded WebRTC (Opus) frame: 20 ms at 48 kHz.
FRAME_SAMPLES = 960
#: int16 full scale; int16 -> float divides by it, float -> int16 multiplies.
INT16_SCALE = 32768.0

#: Make room by discarding the oldest buffered samples.  The default: for
#: live audio a bounded latency matters more than a few lost milliseconds.
DROP_OLDEST = "drop_oldest"
#: Keep what is buffered and discard the part of the write that does not fit.
DROP_NEWEST = "drop_newest"
#: Refuse the whole write with :class:`RingBufferOverflow`; nothing is stored.
RAISE = "raise"

OVERFLOW_POLICIES: tuple[str, ...] = (DROP_OLDEST, DROP_NEWEST, RAISE)


class RingBufferOverflow(OverflowError):
    """
    A write did not fit a ring buffer whose overflow policy is ``"raise"``.
    """

    def __init__(self, requested: int, free: int) -> None:
        super().__init__(
            f"ring buffer overflow: {requested} samples written, {free} free"
        )
        self.requested = requested
        self.free = free


def policy_code(policy: str) -> int:
    """
    Map an overflow policy name to its index in :data:`OVERFLOW_POLICIES`,
    refusing unknown names early rather than at the first overflow.
    """
    try:
        return OVERFLOW_POLICIES.index(policy)
    except ValueError:
        raise ValueError(
            f"unknown overflow policy {policy!r}; expected one of "
            f"{', '.join(OVERFLOW_POLICIES)}"
        ) from None


def check_geometry(capacity: int, hop: int) -> None:
    """
    A buffer must hold at least one whole hop, or a reader waiting for a hop
    would wait forever.
    """
    if hop < 1:
        raise ValueError(f"hop must be positive, got {hop}")
    if capacity < hop:
        raise ValueError(f"capacity {capacity} is smaller than one hop ({hop})")


def equal_power_table(length: int) -> npt.NDArray[np.float64]:
    """
    The ``length + 1`` gains ``sin(pi/2 * p / length)`` for positions
    ``p = 0 .. length``.  At position ``p`` the faded-in signal gets
    ``table[p]`` and the faded-out one ``table[length - p]`` (that is the
    cosine), so the two gains' squares always sum to one: the loudness of
    uncorrelated signals stays constant through a switch.

    Both implementations read their gains from this one table, so they agree
    bit for bit.
    """
    if length < 1:
        raise ValueError(f"crossfade length must be positive, got {length}")
    positions = np.arange(length + 1, dtype=np.float64)
    table = np.sin(positions * (np.pi / 2.0 / length))
    # Pin the end points: sin(pi/2) is 1.0 in every libm we know, but an
    # exact 1.0 is what makes a finished fade pass one signal through
    # untouched.
    table[0] = 0.0
    table[length] = 1.0
    return table
