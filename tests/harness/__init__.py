"""Test harness for the real-Asterisk sandbox (``tools/sandbox.sh``).

Plain aiohttp against B's and A's ARI, independent of ``callsec_ari``'s own client:
``sandbox`` (ports, credentials, paths, :func:`ensure_sandbox`), ``carrier`` (calls from B),
``agent`` (the agents' phones on B), ``local`` (Local-channel callers on A), ``goertzel``
(DTMF in recorded audio).
"""
