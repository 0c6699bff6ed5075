"""The capture flows' service commands (executor handlers; the queries and API requests are
:mod:`callsec_ari.capture.service`):

- ``MuteRecording`` -> AMI ``MixMonitorMute`` (both directions) on the caller's channel.
  A channel with no MixMonitor is no failure (Asterisk 22 answers ``Response: Error``,
  ``Message: Cannot set mute flag``, observed on the sandbox: count 0);
  AMI down, login or action refused is (the flow then never starts the capture). With
  ``[ami] enabled = no`` callsec cannot see MixMonitors: count 0 and a warning. A capture's
  first mute also writes its ``capture.requested`` entry (keypad captures) and its row
  (:meth:`CaptureHandlers.record_start`, independent of the mute).
- ``StoreCapture`` -> the sink (:mod:`callsec_ari.capture.sinks`), then the masked record and a
  ``capture.finished`` audit entry. Every holder is wiped afterwards, errors included.
- ``RecordCapture`` -> the record and the audit entry of a capture that stored nothing.
- ``CloseOpenCaptures`` -> after a restart: the call's captures that never finished (their
  row is written, result empty, when the caller's recordings are muted) become ``cancelled``.

Unmuting is retried for a few seconds while AMI is not connected (a restarted callsec gives the
caller back before its AMI link is up); muting is not (the capture then does not start).
Every capture row goes through :class:`~callsec_ari.store.captures.CaptureStore`. Audit entries
hold ids, field kinds, results and reasons: never values. ``capture.requested`` also names the
user whose endpoint the call rang (``agent_user``): after a restart the capture's owner is read
back from it, since an endpoint such as ``1000`` does not survive the audit's digit redaction.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from callsec_ari.access.users import endpoint_name
from callsec_ari.ami.errors import AmiActionError, AmiConnectionError, AmiError, AmiNoSuchChannel
from callsec_ari.capture import protocol as cp
from callsec_ari.capture.errors import RecordingMuteFailed
from callsec_ari.capture.reopen import CaptureNotReopenable
from callsec_ari.capture.sinks import CaptureValues, Sink, SinkResult, wipe_all
from callsec_ari.capture.steering import CaptureSteering, hosted
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.events import Event
from callsec_ari.core.ports import CallDirectory, CallHandle, ServiceRegistry
from callsec_ari.store.context import Store

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
    route = hosted(call.flow)[1]
    return route if route is not None and not route.done else None


class CaptureHandlers:
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
        await asyncio.to_thread(self.store.captures.requested, actor, capture_id, details,
                                endpoint_name(details.get("agent")))

    # -- MuteRecording ----------------------------------------------------------------------
    async def mute_recording(self, call: CallHandle, cmd: cp.MuteRecording) -> Sequence[Event]:
        capture = active_capture(call)
        if cmd.mute and capture is not None:
            count = await self._start_muted(call, cmd, capture)
        else:
            count = await self._mute(call, cmd)
        call.log.info("recordings of the %s %s: %d", cmd.leg,
                      "muted" if cmd.mute else "unmuted", count)
        return [cp.RecordingMuted(mute=cmd.mute, count=count,
                                  at=asyncio.get_running_loop().time())]

    async def _start_muted(self, call: CallHandle, cmd: cp.MuteRecording,
                           capture: CaptureSteering) -> int:
        """The capture's start (audit entry, row) and the AMI mute side by side: the caller
        waits for the slower, not for both. No digit is collected before both are done (the
        flow waits for ``RecordingMuted``); when the start fails the recording is unmuted
        again (it may have been muted meanwhile) and the start's error is the command's."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.record_start(call, capture))
                muted = tg.create_task(self._mute(call, cmd))
        except* CallsecError as group:
            failed = group.exceptions[0]
            if not isinstance(failed, RecordingMuteFailed):
                await self._unmute_after(call, cmd)
            raise failed from None
        return muted.result()

    async def _unmute_after(self, call: CallHandle, cmd: cp.MuteRecording) -> None:
        try:
            await self._mute(call, cp.MuteRecording(leg=cmd.leg, mute=False))
        except CallsecError as exc:
            call.log.warning("recordings of the %s not unmuted after a failed capture start: %s",
                             cmd.leg, exc.error_id)

    async def record_start(self, call: CallHandle, capture: CaptureSteering) -> None:
        """A capture's start, independent of the mute: its ``capture.requested`` entry (from
        the agent's keypad; API requests were audited in ``request``) and its row, in one
        trip to a worker thread (two trips queued twice behind other calls' work under load)."""
        audit: tuple[str, dict[str, Any]] | None = None
        if self._remember(capture.capture_id, call):
            endpoint = call.context.agent_endpoint
            audit = (f"agent:{endpoint or '-'}", {
                "call_id": call.call_id, "fields": list(capture.request.fields),
                "requested_by": capture.request.requested_by, "agent": endpoint})
        save = not capture.request.reopen_fields  # (a re-opened capture's row stays)
        if audit is None and not save:
            return
        unsaved = await self.store.db.offload(self._start_sync, call.call_id, capture, audit, save)
        if unsaved is not None:  # the capture itself does not need its row
            call.log.warning("capture %s: its start was not recorded: %s",
                             capture.capture_id, unsaved.error_id)

    def _start_sync(self, call_id: str, capture: CaptureSteering,
                    audit: tuple[str, dict[str, Any]] | None, save: bool
                    ) -> CallsecError | None:
        """The entry (its error is the start's), then the row, result empty: a restarted
        callsec finds and closes it (its error is returned: only logged)."""
        if audit is not None:
            actor, details = audit
            self.store.captures.requested(actor, capture.capture_id, details,
                                          endpoint_name(details.get("agent")))
        if not save:
            return None
        try:
            self.store.captures.save(capture.capture_id, call_id,
                                     fields=capture.request.fields,
                                     customer_ref=capture.o.customer_ref or None)
        except CallsecError as exc:
            return exc
        return None

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
        await self.store.db.offload(self._save_stored, call.call_id, cmd, result)
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
            if not self.store.captures.replace_fields(
                    cmd.capture_id, cmd.replaces, result.vault_refs, masked, {
                        "call_id": call_id, "fields": list(cmd.replaces),
                        "requested_by": cmd.requested_by,
                        "vaulted": sorted(result.vault_refs)}):
                raise CaptureNotReopenable("the capture is not stored", details={
                    "capture_id": cmd.capture_id})
            return
        sealed = sorted({*result.sealed, *result.sealed_once})
        self.store.captures.save(
            cmd.capture_id, call_id, fields=cmd.fields, customer_ref=cmd.customer_ref or None,
            result="captured", masked=masked, vault_refs=result.vault_refs,
            gateway_token=result.gateway_token, finished=True, audit={
                "call_id": call_id, "result": "captured", "fields": list(cmd.fields),
                "requested_by": cmd.requested_by, "sink": self.sink.name,
                "vaulted": sorted(result.vault_refs),
                "gateway_token": bool(result.gateway_token),
                **({"sealed": sealed} if sealed else {})})

    async def record_capture(self, call: CallHandle, cmd: cp.RecordCapture) -> Sequence[Event]:
        await asyncio.to_thread(
            self.store.captures.save, cmd.capture_id, call.call_id, fields=cmd.fields,
            customer_ref=cmd.customer_ref or None, result=cmd.result,
            masked=masked_dict(cmd.masked), finished=True, audit={
                "call_id": call.call_id, "result": cmd.result, "reason": cmd.reason,
                "fields": list(cmd.fields), "requested_by": cmd.requested_by})
        call.log.info("capture %s ended: %s%s", cmd.capture_id, cmd.result,
                      f" ({cmd.reason})" if cmd.reason else "")
        return ()

    async def close_open_captures(self, call: CallHandle,
                                  cmd: cp.CloseOpenCaptures) -> Sequence[Event]:
        closed = await asyncio.to_thread(self.store.captures.close_open, call.call_id,
                                         cmd.reason)
        for capture_id in closed:
            call.log.info("capture %s ended: cancelled (%s)", capture_id, cmd.reason)
        return ()
