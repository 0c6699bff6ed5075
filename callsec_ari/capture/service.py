"""The capture service: executes the capture flows' service commands and serves the API.

Executor handlers (registered with :meth:`CaptureFeature.register`):

- ``MuteRecording`` -> AMI ``MixMonitorMute`` (both directions) on the caller's channel.
  A channel with no MixMonitor is no failure (Asterisk 22 answers ``Response: Error``,
  ``Message: Cannot set mute flag``, observed on the sandbox: count 0);
  AMI down, login or action refused is (the flow then never starts the capture). With
  ``[ami] enabled = no`` callsec cannot see MixMonitors: count 0 and a warning.
- ``StoreCapture`` -> the sink (:mod:`callsec_ari.capture.sinks`), then the masked record
  (``Records.save_capture``) and a ``capture.finished`` audit entry. Every holder is wiped
  afterwards, errors included.
- ``RecordCapture`` -> the record and the audit entry of a capture that stored nothing.
- ``CloseOpenCaptures`` -> after a restart: the call's captures that never finished (their
  row is written, result empty, when the caller's recordings are muted) become ``cancelled``.

Unmuting is retried for a few seconds while AMI is not connected (a restarted callsec gives the
caller back before its AMI link is up); muting is not (the capture then does not start).

:class:`CaptureFeature` is also the web layer's :class:`~callsec_ari.web.deps.CaptureService`.
Audit entries (``capture.requested``, ``capture.finished``) hold ids, field kinds, results and
reasons: never values. ``capture.requested`` also names the user whose endpoint the call rang
(``agent_user``): after a restart the capture's owner is read back from it, since an endpoint
such as ``1000`` does not survive the audit's digit redaction (``agent`` then reads
``<redacted>``) and a user name does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from callsec_ari.access.models import UserRow
from callsec_ari.access.users import endpoint_name
from callsec_ari.ami.errors import AmiActionError, AmiConnectionError, AmiError, AmiNoSuchChannel
from callsec_ari.capture import protocol as cp
from callsec_ari.capture.errors import (
    CallNotConnected,
    CaptureNotFound,
    CaptureRunning,
    RecordingMuteFailed,
)
from callsec_ari.capture.fields import parse_fields
from callsec_ari.capture.reopen import check_control, replace_fields
from callsec_ari.capture.sinks import CaptureValues, Sink, SinkResult, wipe_all
from callsec_ari.capture.steering import CaptureSteering
from callsec_ari.connect.flow import ConnectFlow, K
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.events import Event
from callsec_ari.core.ports import CallDirectory, CallHandle, ServiceRegistry
from callsec_ari.flows import new_capture_id
from callsec_ari.store.context import Store
from callsec_ari.store.models import CaptureRow, utcnow
from callsec_ari.web.deps import CaptureInfo

log = logging.getLogger(__name__)

#: Asterisk's answer to MixMonitorMute on a channel without a MixMonitor (app_mixmonitor.c).
NO_MIXMONITOR = "cannot set mute flag"
_KNOWN_MAX = 1000
#: Unmuting waits this long (1 s steps) for a disconnected AMI link.
UNMUTE_RETRIES = 8

Masked = tuple[tuple[str, tuple[tuple[str, object], ...]], ...]


class MixMonitorMuter(Protocol):
    """What the capture needs from AMI (``callsec_ari.ami.manager.AmiManager``)."""

    async def mixmonitor_mute(self, channel: str, *,
                              direction: Literal["read", "write", "both"] = "both",
                              mute: bool) -> int:
        """The number of MixMonitors (un)muted; 0 when none records the channel."""
        ...


def masked_dict(masked: Masked) -> dict[str, dict[str, object]]:
    return {kind: dict(pairs) for kind, pairs in masked}


def active_capture(call: CallHandle) -> CaptureSteering | None:
    flow = call.flow
    if isinstance(flow, ConnectFlow) and flow.capture is not None \
            and flow.capture.stage != "done":
        return flow.capture
    return None


def stored_as(row: CaptureRow, fields: Mapping[str, Mapping[str, Any]]) -> str | None:
    """``sealed`` | ``token`` | ``vault`` (what the capture left), None when it stored nothing."""
    if any("sealed" in per_field for per_field in fields.values()):
        return "sealed"
    if row.gateway_token:
        return "token"
    return "vault" if row.vault_refs else None


class CaptureFeature:
    def __init__(self, store: Store, dispatcher: CallDirectory, sink: Sink, *,
                 ami: Callable[[], MixMonitorMuter | None] = lambda: None) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.sink = sink
        self._ami = ami
        #: capture id -> (call id, agent endpoint), for owner checks while callsec runs.
        self._known: OrderedDict[str, tuple[str, str | None]] = OrderedDict()

    def register(self, executor: ServiceRegistry) -> None:
        executor.register(cp.MuteRecording, self.mute_recording)
        executor.register(cp.StoreCapture, self.store_capture)
        executor.register(cp.RecordCapture, self.record_capture)
        executor.register(cp.CloseOpenCaptures, self.close_open_captures)

    def _remember(self, capture_id: str, call: CallHandle) -> bool:
        """Remember the capture's call; False when it was known already."""
        if capture_id in self._known:
            return False
        self._known[capture_id] = (call.call_id, call.context.agent_endpoint)
        while len(self._known) > _KNOWN_MAX:
            self._known.popitem(last=False)
        call.context.capture = capture_id
        return True

    async def _audit_requested(self, actor: str, capture_id: str,
                               details: Mapping[str, Any]) -> None:
        """The ``capture.requested`` entry, naming the user of the call's endpoint."""
        def append() -> None:
            with self.store.db.session() as s:
                name = endpoint_name(details.get("agent"))
                user = s.scalar(select(UserRow.name).where(UserRow.endpoint == name)) \
                    if name else None
                self.store.audit.append(actor, "capture.requested", capture_id, {
                    **details, **({"agent_user": user} if user else {})}, session=s)
        await asyncio.to_thread(append)

    # -- MuteRecording ----------------------------------------------------------------------
    async def mute_recording(self, call: CallHandle, cmd: cp.MuteRecording) -> Sequence[Event]:
        capture = active_capture(call)
        if cmd.mute and capture is not None and self._remember(capture.capture_id, call):
            # Started from the agent's keypad (API requests were audited in request()).
            endpoint = call.context.agent_endpoint
            await self._audit_requested(f"agent:{endpoint or '-'}",
                                        capture.capture_id, {
                                  "call_id": call.call_id, "fields": list(capture.request.fields),
                                  "requested_by": capture.request.requested_by,
                                  "agent": endpoint})
        if cmd.mute and capture is not None and not capture.request.reopen_fields:
            await self._save_started(call, capture)  # (a re-opened capture's row stays)
        count = await self._mute(call, cmd)
        call.log.info("recordings of the %s %s: %d", cmd.leg,
                      "muted" if cmd.mute else "unmuted", count)
        return [cp.RecordingMuted(mute=cmd.mute, count=count,
                                  at=asyncio.get_running_loop().time())]

    async def mute_leg(self, call: CallHandle, leg: str, mute: bool) -> int:
        """(Un)mute a leg's MixMonitor recordings for another slice (payment approvals)."""
        return await self._mute(call, cp.MuteRecording(leg=leg, mute=mute))

    async def _mute(self, call: CallHandle, cmd: cp.MuteRecording) -> int:
        channel = call.context.channel_name if cmd.leg == "caller" else None
        if not channel:
            raise RecordingMuteFailed("no channel to mute for this leg", details={"leg": cmd.leg})
        ami = self._ami()
        if ami is None:
            call.log.warning("AMI is disabled: MixMonitor recordings cannot be muted")
            return 0
        try:
            answer = await self._mute_retrying(ami, str(channel), cmd.mute)
        except AmiNoSuchChannel:
            raise RecordingMuteFailed("the caller's channel is gone",
                                      details={"reason": "no_such_channel"}) from None
        except AmiActionError as exc:
            if (exc.ami_message or "").strip().lower() == NO_MIXMONITOR:
                return 0
            call.log.warning("MixMonitorMute refused: %s", exc.error_id)
            raise RecordingMuteFailed("AMI refused MixMonitorMute",
                                      details={"reason": exc.error_id}) from None
        except AmiError as exc:
            call.log.warning("MixMonitorMute failed: %s", exc.error_id)
            raise RecordingMuteFailed("AMI is not available",
                                      details={"reason": exc.error_id}) from None
        return int(answer)

    @staticmethod
    async def _mute_retrying(ami: MixMonitorMuter, channel: str, mute: bool) -> int:
        for attempt in range(UNMUTE_RETRIES):
            try:
                return await ami.mixmonitor_mute(channel, direction="both", mute=mute)
            except AmiConnectionError:
                if mute or attempt == UNMUTE_RETRIES - 1:
                    raise
            await asyncio.sleep(1.0)
        raise AssertionError("unreachable")

    async def _save_started(self, call: CallHandle, capture: CaptureSteering) -> None:
        """The capture's row, result empty: a restarted callsec finds and closes it."""
        try:
            await asyncio.to_thread(
                self.store.records.save_capture, capture.capture_id, call.call_id,
                fields=capture.request.fields, customer_ref=capture.o.customer_ref or None)
        except CallsecError as exc:  # the capture itself does not need it
            call.log.warning("capture %s: its start was not recorded: %s",
                             capture.capture_id, exc.error_id)

    # -- StoreCapture / RecordCapture -------------------------------------------------------
    async def store_capture(self, call: CallHandle, cmd: cp.StoreCapture) -> Sequence[Event]:
        values = CaptureValues(capture_id=cmd.capture_id, call_id=call.call_id,
                               customer_ref=cmd.customer_ref or None, values=cmd.values)
        try:
            result = await self.sink.store(values)
        except CallsecError as exc:
            call.log.warning("capture %s: the %s sink failed: %s", cmd.capture_id,
                             self.sink.name, exc.error_id)
            raise
        finally:
            wipe_all(cmd.values)
        await asyncio.to_thread(self._save_stored, call.call_id, cmd, result)
        call.log.info("capture %s stored (%s; fields %s)", cmd.capture_id, self.sink.name,
                      ",".join(cmd.fields))
        return [cp.CaptureStored(capture_id=cmd.capture_id, refs=result.refs,
                                 at=asyncio.get_running_loop().time())]

    def _save_stored(self, call_id: str, cmd: cp.StoreCapture, result: SinkResult) -> None:
        masked = masked_dict(cmd.masked)
        card = masked.get("card_number")
        if card is not None:  # the gateway's word on brand and last 4 wins
            if result.brand:
                card["brand"] = result.brand
            if result.last4:
                card["last4"] = result.last4
        for kind, envelope in result.sealed.items():  # ciphertext to the merchant's key only
            masked.setdefault(kind, {})["sealed"] = envelope
        if cmd.replaces:  # a re-opened capture: its new fields replace the stored ones
            replace_fields(self.store, call_id, cmd, result, masked)
            return
        self.store.records.save_capture(
            cmd.capture_id, call_id, fields=cmd.fields, customer_ref=cmd.customer_ref or None,
            result="captured", masked=masked, vault_refs=result.vault_refs,
            gateway_token=result.gateway_token, finished=True)
        self.store.audit.append("system", "capture.finished", cmd.capture_id, {
            "call_id": call_id, "result": "captured", "fields": list(cmd.fields),
            "requested_by": cmd.requested_by, "sink": self.sink.name,
            "vaulted": sorted(result.vault_refs), "gateway_token": bool(result.gateway_token),
            **({"sealed": sorted({*result.sealed, *result.sealed_once})}
               if result.sealed or result.sealed_once else {})})

    async def record_capture(self, call: CallHandle, cmd: cp.RecordCapture) -> Sequence[Event]:
        await asyncio.to_thread(self._save_recorded, call.call_id, cmd)
        call.log.info("capture %s ended: %s%s", cmd.capture_id, cmd.result,
                      f" ({cmd.reason})" if cmd.reason else "")
        return ()

    def _save_recorded(self, call_id: str, cmd: cp.RecordCapture) -> None:
        self.store.records.save_capture(
            cmd.capture_id, call_id, fields=cmd.fields, customer_ref=cmd.customer_ref or None,
            result=cmd.result, masked=masked_dict(cmd.masked), finished=True)
        self.store.audit.append("system", "capture.finished", cmd.capture_id, {
            "call_id": call_id, "result": cmd.result, "reason": cmd.reason,
            "fields": list(cmd.fields), "requested_by": cmd.requested_by})

    async def close_open_captures(self, call: CallHandle,
                                  cmd: cp.CloseOpenCaptures) -> Sequence[Event]:
        closed = await asyncio.to_thread(self._close_open, call.call_id, cmd.reason)
        for capture_id in closed:
            call.log.info("capture %s ended: cancelled (%s)", capture_id, cmd.reason)
        return ()

    def _close_open(self, call_id: str, reason: str) -> list[str]:
        with self.store.db.session() as s:
            rows = s.scalars(select(CaptureRow).where(CaptureRow.call_id == call_id,
                                                      CaptureRow.result.is_(None))).all()
            for row in rows:
                row.result, row.finished_at = "cancelled", utcnow()
                row.masked, row.vault_refs, row.gateway_token = {}, {}, None
                self.store.audit.append("system", "capture.finished", row.capture_id, {
                    "call_id": call_id, "result": "cancelled", "reason": reason,
                    "fields": list(row.fields or [])}, session=s)
            return [row.capture_id for row in rows]

    # -- the web layer's CaptureService ----------------------------------------------------
    async def request(self, call: CallHandle, fields: Sequence[str], *, actor: str,
                      mode: str = "", optional: Sequence[str] = ()) -> str:
        """``mode``: ``bridge`` | ``talk_through``; empty: ``[capture] mode``."""
        kinds = tuple(kind.value for kind in parse_fields(",".join(fields)))
        flow = call.flow
        if not isinstance(flow, ConnectFlow) or flow.state is not K.CONNECTED:
            raise CallNotConnected("captures need a connected call", details={
                "call_id": call.call_id})
        running = active_capture(call)
        if running is not None:
            raise CaptureRunning("a capture is already running on this call", details={
                "call_id": call.call_id, "capture_id": running.capture_id})
        capture_id = new_capture_id()
        self._remember(capture_id, call)
        await self._audit_requested(actor, capture_id, {
            "call_id": call.call_id, "fields": list(kinds), "requested_by": actor,
            "agent": call.context.agent_endpoint, **({"mode": mode} if mode else {})})
        self.dispatcher.post(call.call_id, cp.CaptureRequested(
            capture_id=capture_id, fields=kinds, requested_by=actor, mode=mode,
            optional=tuple(f for f in optional if f in kinds),
            at=asyncio.get_running_loop().time()))
        call.log.info("capture %s requested by %s (fields %s)", capture_id, actor,
                      ",".join(kinds))
        return capture_id

    async def cancel(self, call: CallHandle, capture_id: str, *, actor: str) -> None:
        running = active_capture(call)
        if running is None or running.capture_id != capture_id:
            raise CaptureNotFound("no such capture running on this call", details={
                "call_id": call.call_id, "capture_id": capture_id})
        self.dispatcher.post(call.call_id, cp.CaptureCancelled(
            capture_id=capture_id, by="api", at=asyncio.get_running_loop().time()))
        call.log.info("capture %s cancelled by %s", capture_id, actor)

    async def control_field(self, call: CallHandle, capture_id: str, field: str, action: str,
                            *, actor: str) -> None:
        """Re-request, cancel or skip one field (``FieldControl``; the flow decides whether it
        applies and publishes ``field_requested`` / ``field_cancelled`` / ``field_skipped`` or
        ``field_control_refused``)."""
        check_control(call, active_capture(call), capture_id, field, action, self.sink.name)
        self.dispatcher.post(call.call_id, cp.FieldControl(
            capture_id=capture_id, field=field, action=action, by=actor,
            at=asyncio.get_running_loop().time()))
        call.log.info("capture %s: %s of %s by %s", capture_id, action, field, actor)

    def _running(self, capture_id: str) -> tuple[CallHandle, CaptureSteering] | None:
        for call in self.dispatcher:
            capture = active_capture(call)
            if capture is not None and capture.capture_id == capture_id:
                return call, capture
        return None

    async def get(self, capture_id: str) -> CaptureInfo:
        running = self._running(capture_id)
        if running is not None:
            call, capture = running
            return CaptureInfo(capture_id, call.call_id, call.context.agent_endpoint,
                               "in_progress", {"stage": capture.stage,
                                               "fields": masked_dict(
                                                   capture.entry.masked_summary())})
        found = await asyncio.to_thread(self._stored, capture_id)
        if found is None:
            known = self._known.get(capture_id)
            if known is None:
                raise CaptureNotFound("no such capture", details={"capture_id": capture_id})
            return CaptureInfo(capture_id, known[0], known[1], "requested", {})
        return found

    def _stored(self, capture_id: str) -> CaptureInfo | None:
        with self.store.db.session() as s:
            row = s.get(CaptureRow, capture_id)
            if row is None:
                return None
            endpoint = self._known.get(capture_id, (row.call_id, None))[1]
            if endpoint is None:
                endpoint = self._requested_endpoint(s, capture_id)
            fields = {k: dict(v) for k, v in dict(row.masked or {}).items()}
            masked: dict[str, Any] = {"result": row.result, "fields": fields,
                                      "stored_as": stored_as(row, fields),
                                      "vault_refs": dict(row.vault_refs or {}),
                                      "gateway_token": row.gateway_token,
                                      "finished_at": row.finished_at.isoformat()
                                      if row.finished_at else None,
                                      "media_evidence": row.media_evidence}
            self._hand_over_once(capture_id, fields)
            return CaptureInfo(capture_id, row.call_id, endpoint,
                               row.result or "in_progress", masked)

    def _hand_over_once(self, capture_id: str, fields: dict[str, dict[str, Any]]) -> None:
        """``sink = sealed``: the sealed CVV, held in memory only, goes out with this answer
        (``"once": true``) and is dropped."""
        once = getattr(self.sink, "once", None)
        taken = once.take(capture_id) if once is not None else {}
        for kind, envelope in taken.items():
            fields.setdefault(kind, {})["sealed"] = {**envelope, "once": True}
        if taken:
            log.info("capture %s: sealed %s handed over once and dropped", capture_id,
                     ",".join(sorted(taken)))

    def _requested_endpoint(self, s: Session, capture_id: str) -> str | None:
        """After a restart: the endpoint of the user the call rang (``agent_user`` of the
        ``capture.requested`` entry), or the endpoint as the entry has it (older entries)."""
        for entry in self.store.audit.for_target(capture_id, session=s):
            if entry.action != "capture.requested":
                continue
            user = entry.details.get("agent_user")
            if isinstance(user, str):
                return s.scalar(select(UserRow.endpoint).where(UserRow.name == user))
            agent = entry.details.get("agent")
            return agent if isinstance(agent, str) else None
        return None

    def _vault_refs(self, capture_id: str) -> dict[str, str]:
        with self.store.db.session() as s:
            refs = s.execute(select(CaptureRow.vault_refs).where(
                CaptureRow.capture_id == capture_id)).scalar_one_or_none()
        if refs is None:
            raise CaptureNotFound("no such capture", details={"capture_id": capture_id})
        return {str(k): str(v) for k, v in dict(refs).items()}

    async def reveal(self, capture_id: str, *, kinds: frozenset[str], actor: str,
                     reason: str) -> dict[str, str]:
        """Clear values of the vaulted fields of ``kinds`` (each reveal audited by the vault).
        A CVV is never among them: it was never stored."""
        refs = await asyncio.to_thread(self._vault_refs, capture_id)
        out: dict[str, str] = {}
        for kind, ref in sorted(refs.items()):
            if kind in kinds:
                out[kind] = await asyncio.to_thread(
                    self.store.vault.reveal, ref, actor=actor, reason=reason,
                    allowed=lambda k: k in kinds)
        return out
