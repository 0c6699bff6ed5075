"""The talk-through media service: one relay (:class:`~callsec_ari.media.relay.MediaRelay`) per
call with a talk-through capture, and the executor handlers of the relay commands.

- ``OpenMedia`` -> a relay bound on ``[capture] media_host`` (two ephemeral UDP ports) ->
  ``MediaOpened``. In-band digits its filter detects are posted to the call as
  ``DtmfReceived(leg="caller-media")``.
- ``ConnectMedia`` -> the relay learns the media channels' RTP addresses -> ``MediaConnected``.
- ``CloseMedia`` -> the relay is closed; its final evidence is signed and stored with the
  capture record (``captures.media_evidence``) -> ``MediaClosed`` (the flow shows the agent
  "tones masked: N, leaked: 0").

Evidence key: HMAC-SHA256 with a key derived from the keyring's audit HMAC key
(``audit-hmac.key``): ``HMAC-SHA256(audit key, "callsec-ari media evidence v1")``. Whoever can
verify the audit trail can verify the evidence (:meth:`MediaFeature.verify`), and a signature
made for one purpose can never pass for the other.

A relay never outlives its call: the dispatcher's finish hook (:meth:`call_finished`) closes a
relay its flow did not close, and :meth:`close_all` closes every relay when callsec stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.errors import MediaUnavailable
from callsec_ari.capture.talkthrough import MEDIA_CALLER, MEDIA_DIGITS
from callsec_ari.config import CaptureSettings
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.events import DtmfReceived, Event, LegGone
from callsec_ari.core.ports import CallDirectory, CallHandle, ServiceRegistry
from callsec_ari.core.signing import derive_key
from callsec_ari.logs import Figure
from callsec_ari.media.evidence import Evidence, sign_evidence, verify_evidence
from callsec_ari.media.process import MediaWorker
from callsec_ari.media.relay import FilterOptions, MediaRelay
from callsec_ari.store.context import Store

log = logging.getLogger(__name__)

EVIDENCE_KEY_LABEL = b"callsec-ari media evidence v1"


class Relay(Protocol):
    """What the service needs of a relay (:class:`MediaRelay`; tests pass a fake)."""

    async def open(self) -> None: ...

    @property
    def caller_port(self) -> int: ...

    @property
    def agent_port(self) -> int: ...

    def set_peers(self, *, caller: tuple[str, int] | None = None,
                  agent: tuple[str, int] | None = None) -> None: ...

    def close(self) -> Evidence: ...

    @property
    def closed(self) -> bool: ...


@runtime_checkable
class AsyncClosable(Protocol):
    """A relay whose final evidence comes later (:class:`ProcessRelay`); None: it was lost."""

    async def aclose(self) -> Evidence | None: ...


RelayFactory = Callable[..., Relay]


def evidence_key(audit_key: bytes) -> bytes:
    """The evidence signing key, derived from the audit HMAC key."""
    return derive_key(audit_key, EVIDENCE_KEY_LABEL)


class MediaFeature:
    def __init__(self, store: Store, dispatcher: CallDirectory, settings: CaptureSettings, *,
                 key: bytes, relay_factory: RelayFactory = MediaRelay) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.options = FilterOptions(
            replacement="tone" if settings.talk_through_replacement == "tone" else "silence",
            flush_after_ms=settings.talk_through_lookahead_ms)
        self.host = settings.media_host
        self.peer_host = settings.media_peer_host or settings.media_host
        self._key = key
        self._factory = relay_factory
        #: call id -> (capture id, relay)
        self.relays: dict[str, tuple[str, Relay]] = {}
        #: ``[capture] media_worker = process``: the worker process holding the relays.
        self.worker: MediaWorker | None = None

    @classmethod
    def from_store(cls, store: Store, dispatcher: CallDirectory, settings: CaptureSettings,
                   **kwargs: Any) -> MediaFeature:
        worker = None
        if settings.media_worker == "process" and "relay_factory" not in kwargs:
            worker = MediaWorker(nice=settings.media_nice,
                                 realtime=settings.media_realtime_priority)
            kwargs["relay_factory"] = worker.relay
        feature = cls(store, dispatcher, settings,
                      key=evidence_key(store.keyring.audit_key()), **kwargs)
        if worker is not None:
            feature.worker, worker.on_lost = worker, feature.relay_lost
        return feature

    async def run(self) -> None:
        """The media worker's life (a task in callsec's TaskGroup); nothing when inline."""
        if self.worker is not None:
            await self.worker.run()

    def relay_lost(self, call_id: str) -> None:
        """The worker died with this call's relay: the flow hears it as its media leg gone."""
        if call_id in self.relays:
            self.dispatcher.post(call_id, LegGone(at=asyncio.get_running_loop().time(),
                                                  leg=MEDIA_CALLER, cause="media_worker_lost"))

    def register(self, executor: ServiceRegistry) -> None:
        executor.register(cp.OpenMedia, self.open_media)
        executor.register(cp.ConnectMedia, self.connect_media)
        executor.register(cp.CloseMedia, self.close_media)

    # -- OpenMedia / ConnectMedia ---------------------------------------------------------
    def _digit_sink(self, call_id: str) -> Callable[[str, float], None]:
        def post(key: str, at: float) -> None:
            self.dispatcher.post(call_id, DtmfReceived(at=at, digit=key, leg=MEDIA_DIGITS))
        return post

    async def open_media(self, call: CallHandle, cmd: cp.OpenMedia) -> Sequence[Event]:
        self._close(call.call_id, "replaced")  # one relay per call
        relay = self._factory(options=self.options, on_digit=self._digit_sink(call.call_id),
                              host=self.host, peer_host=self.peer_host, call_id=call.call_id)
        self.relays[call.call_id] = (cmd.capture_id, relay)
        try:
            await relay.open()
        except (OSError, CallsecError) as exc:
            self.relays.pop(call.call_id, None)
            relay.close()
            raise MediaUnavailable("the media relay cannot open its ports", details={
                "capture_id": cmd.capture_id, "reason": type(exc).__name__}) from None
        return [cp.MediaOpened(capture_id=cmd.capture_id, host=self.host,
                               caller_port=relay.caller_port, agent_port=relay.agent_port,
                               at=asyncio.get_running_loop().time())]

    async def connect_media(self, call: CallHandle, cmd: cp.ConnectMedia) -> Sequence[Event]:
        found = self.relays.get(call.call_id)
        if found is None or found[0] != cmd.capture_id:
            raise MediaUnavailable("no media relay for this capture", details={
                "capture_id": cmd.capture_id})
        found[1].set_peers(caller=cmd.caller, agent=cmd.agent)
        return [cp.MediaConnected(capture_id=cmd.capture_id,
                                  at=asyncio.get_running_loop().time())]

    # -- CloseMedia -----------------------------------------------------------------------
    async def close_media(self, call: CallHandle, cmd: cp.CloseMedia) -> Sequence[Event]:
        found = self.relays.pop(call.call_id, None)
        if found is None:
            return ()
        capture_id, relay = found
        final = await relay.aclose() if isinstance(relay, AsyncClosable) else relay.close()
        if final is None:  # lost with the media worker: no evidence to sign
            call.log.error("capture %s: media evidence lost with the media worker", capture_id)
            return [cp.MediaClosed(capture_id=capture_id, at=asyncio.get_running_loop().time(),
                                   evidence=())]
        evidence = final
        signed = sign_evidence(evidence, capture_id=capture_id, key=self._key)
        try:
            await asyncio.to_thread(self.store.captures.set_media_evidence, capture_id,
                                    call.call_id, signed)
        except CallsecError as exc:  # the capture goes on; its evidence is logged below
            call.log.warning("capture %s: media evidence not stored: %s", capture_id,
                             exc.error_id)
        call.log.info("capture %s media closed: %s frames relayed, %s flattened, %s digits, "
                      "%s leaked tone frames, %s packets dropped", capture_id,
                      *map(Figure, (evidence.frames_relayed, evidence.frames_flattened,
                                    evidence.digits_detected, evidence.leaked_tone_frames,
                                    evidence.packets_dropped)))
        return [cp.MediaClosed(capture_id=capture_id, at=asyncio.get_running_loop().time(),
                               evidence=_flat(evidence))]

    def verify(self, signed: Mapping[str, Any]) -> bool:
        """True when ``signed`` (a stored ``media_evidence``) carries a valid signature."""
        return verify_evidence(signed, key=self._key)

    # -- life cycle -------------------------------------------------------------------------
    def _close(self, call_id: str, why: str) -> None:
        found = self.relays.pop(call_id, None)
        if found is None:
            return
        evidence = found[1].close()
        log.warning("capture %s: media relay closed (%s): %s frames relayed, %s leaked",
                    found[0], why, Figure(evidence.frames_relayed),
                    Figure(evidence.leaked_tone_frames),
                    extra={"call_id": call_id})

    def call_finished(self, call: CallHandle) -> None:
        """The dispatcher's finish hook: a relay the flow did not close is closed now."""
        self._close(call.call_id, "call finished")

    def close_all(self) -> None:
        for call_id in list(self.relays):
            self._close(call_id, "callsec stopping")


def _flat(evidence: Evidence) -> tuple[tuple[str, int | float | str], ...]:
    return tuple((name, value) for name, value in evidence.as_dict().items()
                 if isinstance(value, int | float | str))
