"""Keep the talk-through's added delay from growing: the receiver's backlog, paced on RTP time.

Asterisk plays what the relay sends on its own 20 ms clock (a bridge, a softmix, the agent's
phone): a frame that comes late leaves a gap it fills with silence, and when the late frames
then arrive in a burst they queue behind each other; from then on every frame waits that much
longer. Each stall of the relay's input (Asterisk's sender, the loop, the kernel) adds its
length to the delay for the rest of the capture: the drift from 60 ms to 200 ms and more.

:class:`Backlog` tracks, per direction, when the receiver will have played everything sent so
far: each frame sent adds its duration in RTP time (PCMU: 8,000 timestamp units a second,
one payload byte per unit) after ``max(now, end of the previous frame)``. What is still to
be played when the next frame is due to go is the backlog: a frame finding more than
``silence_ms`` queued ahead of it is dropped if it is silent (speech pauses carry no
information: the delay is pulled back without a gap anyone hears), and any frame finding more
than ``frame_ms`` queued is dropped (a 20 ms gap rather than a delay that stays). Sans-I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

#: RTP clock rate of PCMU; one payload byte is one timestamp unit.
RTP_RATE = 8000.0
#: μ-law bytes whose level is at most about -42 dBFS (|sample| <= 244 on the 16-bit scale)
#: map to 0, louder ones to 1: a frame is silent when ``payload.translate(_LOUD)`` has no 1.
_LOUD = bytes(0 if (code & 0x7F) >= 0x68 else 1 for code in range(256))


def silent(payload: bytes) -> bool:
    """No sample of the μ-law ``payload`` above about -42 dBFS."""
    return b"\x01" not in payload.translate(_LOUD)


@dataclass
class Backlog:
    """One direction's receiver backlog; :meth:`admit` says whether a frame goes out."""

    silence_ms: float = 25.0
    frame_ms: float = 45.0
    end: float = 0.0  # loop time at which the receiver has played all admitted frames
    dropped_silent: int = 0
    dropped_voiced: int = 0

    def admit(self, payload: bytes | memoryview, now: float) -> bool:
        ahead = (self.end - now) * 1000.0
        if ahead > self.silence_ms:
            if ahead > self.frame_ms:
                self.dropped_voiced += 1
                return False
            if silent(bytes(payload)):
                self.dropped_silent += 1
                return False
        self.end = max(self.end, now) + len(payload) / RTP_RATE
        return True

    @property
    def dropped(self) -> int:
        return self.dropped_silent + self.dropped_voiced
