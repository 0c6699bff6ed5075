"""The capture service's queries and API requests (the web layer's
:class:`~callsec_ari.web.deps.CaptureService`): request, cancel and control a capture on a
connected call (posted to the call's flow), read a running or stored capture, reveal vaulted
values. The flows' service commands are :mod:`callsec_ari.capture.handlers`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from callsec_ari.capture import protocol as cp
from callsec_ari.capture.errors import CallNotConnected, CaptureNotFound, CaptureRunning
from callsec_ari.capture.fields import parse_fields
from callsec_ari.capture.handlers import CaptureHandlers, active_capture, masked_dict
from callsec_ari.capture.protocol import CaptureInfo, new_capture_id
from callsec_ari.capture.reopen import check_control
from callsec_ari.capture.steering import CaptureSteering, hosted
from callsec_ari.core.ports import CallHandle

log = logging.getLogger(__name__)


def stored_as(gateway_token: str | None, vault_refs: Mapping[str, str],
              fields: Mapping[str, Mapping[str, Any]]) -> str | None:
    """``sealed`` | ``token`` | ``vault`` (what the capture left), None when it stored nothing."""
    if any("sealed" in per_field for per_field in fields.values()):
        return "sealed"
    if gateway_token:
        return "token"
    return "vault" if vault_refs else None


class CaptureFeature(CaptureHandlers):
    # -- the web layer's CaptureService ----------------------------------------------------
    async def request(self, call: CallHandle, fields: Sequence[str], *, actor: str,
                      mode: str = "", optional: Sequence[str] = ()) -> str:
        """``mode``: ``bridge`` | ``talk_through``; empty: ``[capture] mode``."""
        kinds = tuple(kind.value for kind in parse_fields(",".join(fields)))
        if not hosted(call.flow)[0]:
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
        row = self.store.captures.get(capture_id, self._known.get(capture_id, ("", None))[1])
        if row is None:
            return None
        masked: dict[str, Any] = {"result": row.result, "fields": row.fields,
                                  "stored_as": stored_as(row.gateway_token, row.vault_refs,
                                                         row.fields),
                                  "vault_refs": row.vault_refs,
                                  "gateway_token": row.gateway_token,
                                  "finished_at": row.finished_at.isoformat()
                                  if row.finished_at else None,
                                  "media_evidence": row.media_evidence}
        self._hand_over_once(capture_id, row.fields)
        return CaptureInfo(capture_id, row.call_id, row.requested_endpoint,
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

    async def reveal(self, capture_id: str, *, kinds: frozenset[str], actor: str,
                     reason: str) -> dict[str, str]:
        """Clear values of the vaulted fields of ``kinds`` (each reveal audited by the vault).
        A CVV is never among them: it was never stored."""
        refs = await asyncio.to_thread(self.store.captures.vault_refs, capture_id)
        if refs is None:
            raise CaptureNotFound("no such capture", details={"capture_id": capture_id})
        out: dict[str, str] = {}
        for kind, ref in sorted(refs.items()):
            if kind in kinds:
                out[kind] = await asyncio.to_thread(
                    self.store.vault.reveal, ref, actor=actor, reason=reason,
                    allowed=lambda k: k in kinds)
        return out
