"""Talk-through capture media: the caller's audio reaches the agent with DTMF tones flattened.

Pure modules (no I/O, no asyncio): :mod:`.rtp` (RTP packets and their order), :mod:`.g711`
(μ-law), :mod:`.dtmf` (tone detection, the look-ahead :class:`~.dtmf.ToneFilter`, digits),
:mod:`.pipeline` (one caller-to-agent path: order + filter + counters) and :mod:`.evidence`
(the signed per-capture leak summary). :mod:`.relay` is the only asyncio module: two UDP
sockets between Asterisk's externalMedia channels E1 (caller side) and E2 (agent side).
"""
