"""The thin ARI adapter: ARI events -> core events, core channel commands -> ARI REST.

One adapter per Asterisk server. It owns no call logic: a ``StasisStart`` whose first argument
names a flow (``verify``, ``connect``, ``probe``) starts that flow in the dispatcher; later
events for the call's channels are translated and posted in arrival order. After a websocket
reconnect it resynchronises: calls whose caller channel is gone get ``CallerHungUp``, the rest
``Resynchronised``. On every connect, the first included, it adopts the calls a previous
callsec process left in their bridges (:mod:`callsec_ari.ari.recovery`) and starts again the
callers it left mid-flow outside any bridge (:mod:`callsec_ari.ari.stranded`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from callsec_ari.ari import models as m
from callsec_ari.ari.client import AriClient
from callsec_ari.ari.errors import AriError, AriNotFound
from callsec_ari.ari.events import LIVENESS_TYPE
from callsec_ari.ari.external_media import open_external_media
from callsec_ari.ari.moments import PressClock, ReturnToDialplan
from callsec_ari.ari.operations import segment
from callsec_ari.ari.recovery import Adoption, recover
from callsec_ari.ari.stranded import recover_stranded
from callsec_ari.core import commands as c
from callsec_ari.core import events as e
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.flow import Flow
from callsec_ari.core.masking import mask_phone
from callsec_ari.core.ports import CallContext, CallHandle
from callsec_ari.logs import call_logger
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.trace import BenchTrace

log = logging.getLogger(__name__)

#: The only ARI events the adapter acts on (``_stasis_start`` and ``_translate``). On every
#: (re)connect Asterisk is asked to send no others (``PUT /applications/{app}/eventFilter``):
#: a call's ChannelVarset, ChannelStateChange, PlaybackStarted, bridge and dialplan events are
#: more than half of its traffic, serialised by Asterisk and parsed here for nothing.
#: Handle a new event type in ``_translate``? Add it here (tests/unit/test_ari_adapter.py
#: replays recorded calls with and without the filtered events to catch a missing one).
#: ``RESTResponse`` answers REST calls made over the events websocket: Asterisk filters it
#: like an event (left out, every such call would wait for an answer that never comes).
EVENT_TYPES = ("StasisStart", "StasisEnd", "ChannelDtmfReceived", "PlaybackFinished",
               "ChannelDestroyed", "ChannelHangupRequest", LIVENESS_TYPE, "RESTResponse")

FlowFactory = Callable[[str, e.CallStarted], Flow]
#: What a ``ChannelDtmfReceived`` may carry: one key (a malformed event never reaches a flow).
DTMF_KEYS = frozenset("0123456789*#ABCD")


def parse_stasis_args(
    args: Sequence[str],
) -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """``("connect", "PJSIP/agent100", "lang=de")`` -> flow, positional args, options."""
    if not args:
        return "", (), ()
    positional: list[str] = []
    options: list[tuple[str, str]] = []
    for arg in args[1:]:
        key, sep, value = arg.partition("=")
        if sep and key.isidentifier():
            options.append((key.strip().lower(), value.strip()))
        elif arg:
            positional.append(arg)
    return args[0].strip().lower(), tuple(positional), tuple(options)


class AriAdapter:
    """Translates one server's events and carries out channel commands for its calls."""

    def __init__(self, client: AriClient, dispatcher: Dispatcher,
                 flows: Mapping[str, FlowFactory], *, server: str = "asterisk",
                 app: str = "callsec", trace: BenchTrace | None = None) -> None:
        self.client = client
        self.trace = trace  # bench only (CALLSEC_BENCH_TRACE); None in production
        self.client_app = app
        self.dispatcher = dispatcher
        self.flows = flows
        self.server = server
        #: channel id -> (call id, leg)
        self.channels: dict[str, tuple[str, str]] = {}
        #: when each key was pressed, keeping Asterisk's spacing per channel
        self.presses = PressClock()
        self.playbacks: dict[str, str] = {}
        #: Dialled legs whose StasisStart (answer) was seen.
        self._answered: set[str] = set()
        #: media channel id -> set when its StasisStart came (``CreateExternalMedia``).
        self._media_started: dict[str, asyncio.Event] = {}
        self.connected = asyncio.Event()

    # -- events in ----------------------------------------------------------------------
    async def run(self) -> None:
        async for event in self.client.events():
            try:
                await self.on_event(event)
            except AriError as exc:
                log.warning("ARI request while handling %s failed: %s", event.type, exc.error_id,
                            extra={"call_id": "-"})

    async def on_event(self, event: m.AriEvent) -> None:
        at = asyncio.get_running_loop().time()
        if self.trace is not None:
            self.trace.event()
        if isinstance(event, m.Connected):
            self.connected.set()
            await self.filter_events()
            await self.adopt_orphans(at)
            await self.restart_stranded(at)
            if event.reconnect:
                await self.resynchronise(at)
            return
        if isinstance(event, m.Disconnected):
            self.connected.clear()
            return
        if isinstance(event, m.StasisStart):
            self._stasis_start(event, at)
            return
        self._translate(event, at)

    async def filter_events(self) -> None:
        """Ask Asterisk for :data:`EVENT_TYPES` only (Asterisk 16.3+; older ones send all,
        which the adapter ignores as before)."""
        try:
            await self.client.request(
                "PUT", f"/applications/{segment(self.client_app)}/eventFilter",
                json={"allowed": [{"type": name} for name in EVENT_TYPES], "disallowed": []})
        except AriError as exc:
            log.warning("ARI %s: cannot filter the app's events (%s); receiving all of them",
                        self.server, exc.error_id, extra={"call_id": "-"})

    def _stasis_start(self, event: m.StasisStart, at: float) -> None:
        channel = event.channel
        if event.args[:1] == ("leg",) and len(event.args) >= 3:
            # A leg callsec dialled answered: ("leg", call id, leg name).
            call_id, leg = event.args[1], event.args[2]
            self.channels[channel.id] = (call_id, leg)
            self._answered.add(channel.id)
            self.dispatcher.post(call_id, e.LegAnswered(at=at, leg=leg))
            return
        if channel.id in self.channels:
            media = self._media_started.get(channel.id)
            if media is not None:
                media.set()  # a media channel callsec created: not a new call
            return
        flow_name, positional, options = parse_stasis_args(event.args)
        clog = call_logger(log, channel.id)
        factory = self.flows.get(flow_name)
        started = e.CallStarted(
            at=at, flow=flow_name, args=positional, options=options,
            language=dict(options).get("lang") or channel.language or "en",
            caller_number=channel.caller_number or "",
            attestation=channel.channelvars.get("STIR_SHAKEN_ATTESTATION", "") or "",
        )
        flow: Flow | None = None
        if factory is None:
            clog.error("Stasis(%s) names no callsec flow; returning the channel to the dialplan",
                       flow_name or "<empty>")
        else:
            try:
                flow = factory(channel.id, started)
            except CallsecError as exc:
                clog.error("flow %s cannot start: %s (%s); returning the channel to the "
                           "dialplan", flow_name, exc.message, exc.error_id)
        if flow is None:
            self.channels[channel.id] = (channel.id, "orphan")
            self.dispatcher.start_call(channel.id, ReturnToDialplan(channel.id), started,
                                       CallContext(port=self, channel_id=channel.id))
            return
        self.channels[channel.id] = (channel.id, "caller")
        clog.info("call entered flow %s on %s", flow_name, self.server)
        self.dispatcher.start_call(channel.id, flow, started, CallContext(
            port=self, channel_id=channel.id, server=self.server, flow=flow_name,
            channel_name=channel.name, caller_masked=mask_phone(channel.caller_number)))

    def _translate(self, event: m.AriEvent, at: float) -> None:
        if isinstance(event, m.ChannelDtmfReceived):
            found = self.channels.get(event.channel.id)
            if found and event.digit not in DTMF_KEYS:  # a malformed event: no key at all
                log.warning("ignored a DTMF event without a valid key",
                            extra={"call_id": found[0]})
            elif found:
                log.debug("a key on the %s leg", found[1], extra={"call_id": found[0]})
                dtmf = e.DtmfReceived(at=self.presses.at(event, at), digit=event.digit,
                                      duration_ms=event.duration_ms, leg=found[1])
                if self.trace is not None and event.timestamp is not None:
                    self.trace.stamp(dtmf, event.timestamp.timestamp())
                self.dispatcher.post(found[0], dtmf)
        elif isinstance(event, m.PlaybackFinished):
            call_id = self.playbacks.pop(event.playback.id, None)
            if call_id:
                self.dispatcher.post(
                    call_id, e.PlaybackFinished(at=at, playback_id=event.playback.id))
        elif isinstance(event, m.ChannelDestroyed):
            self._gone(event.channel.id, at, event.cause_txt or "")
        elif isinstance(event, (m.ChannelHangupRequest, m.StasisEnd)):
            self._gone(event.channel.id, at)

    def _gone(self, channel_id: str, at: float, cause: str = "") -> None:
        self.presses.forget(channel_id)
        found = self.channels.get(channel_id)
        if found is None or found[1] == "gone":
            return
        self.channels[channel_id] = (found[0], "gone")
        if found[1] in ("caller", "orphan"):
            self.dispatcher.post(found[0], e.CallerHungUp(at=at))
        else:
            self.dispatcher.post(found[0], e.LegGone(at=at, leg=found[1], cause=cause))

    async def resynchronise(self, at: float) -> None:
        """After a reconnect: which of our calls still have their channels in Asterisk?"""
        try:
            present = {ch.id for ch in await self.client.list_channels()}
        except AriError as exc:
            log.warning("resync after reconnect failed: %s", exc.error_id, extra={"call_id": "-"})
            return
        for channel_id, (call_id, leg) in list(self.channels.items()):
            if leg not in ("caller", "orphan"):
                if channel_id not in present:
                    self._gone(channel_id, at)  # a leg that ended while we could not hear it
                continue
            if channel_id in present:
                self.dispatcher.post(call_id, e.Resynchronised(at=at))
            else:
                self._gone(channel_id, at)
        await self._answered_meanwhile(at)
        log.info("resynchronised %d call(s) on %s", len(self.channels), self.server,
                 extra={"call_id": "-"})

    async def _answered_meanwhile(self, at: float) -> None:
        """A leg callsec dialled that answered while the websocket was down: its StasisStart
        was lost, but it is in the application now. The flow gets the ``LegAnswered`` it missed
        (the agent would otherwise wait for the dial timer while the caller hears "unavailable")."""
        waiting = {channel_id for channel_id, (_call, leg) in self.channels.items()
                   if leg not in ("caller", "orphan", "gone") and not leg.startswith("media-")
                   and channel_id not in self._answered}
        if not waiting:
            return
        try:
            listing = await self.client.request(
                "GET", f"/applications/{segment(self.client_app)}")
        except AriError as exc:
            log.warning("resync: cannot list the application's channels: %s", exc.error_id,
                        extra={"call_id": "-"})
            return
        in_app = set(listing.get("channel_ids") or ()) if isinstance(listing, Mapping) else set()
        for channel_id in sorted(waiting & in_app):
            call_id, leg = self.channels[channel_id]
            self._answered.add(channel_id)
            call_logger(log, call_id).info("the %s answered while the websocket was down", leg)
            self.dispatcher.post(call_id, e.LegAnswered(at=at, leg=leg))

    async def adopt_orphans(self, at: float) -> None:
        """Take over the calls a previous callsec process left behind (see ``recovery``)."""
        found = await recover(self.client, self.client_app, flows=self.flows,
                              parse=parse_stasis_args,
                              known=lambda call_id: self.dispatcher.get(call_id) is not None)
        for adopted in found:
            try:
                self._adopt(adopted, at)
            except CallsecError as exc:
                log.error("cannot adopt a call left behind: %s", exc.error_id,
                          extra={"call_id": adopted.orphan.call_id})

    async def restart_stranded(self, at: float) -> None:
        """Start again the callers a previous callsec left mid-flow (see ``stranded``)."""
        await recover_stranded(
            self.client, self.client_app, flows=self.flows.keys(),
            known=lambda call_id: self.dispatcher.get(call_id) is not None,
            start=lambda event: self._stasis_start(event, at))

    def _adopt(self, adopted: Adoption, at: float) -> None:
        orphan = adopted.orphan
        self.channels[orphan.call_id] = (orphan.call_id,
                                         "caller" if orphan.caller_present else "gone")
        if orphan.agent_present:
            self.channels[orphan.agent_id] = (orphan.call_id, "agent")
            self._answered.add(orphan.agent_id)
        call_logger(log, orphan.call_id).warning(
            "adopting a call left by a previous callsec (capture bridge: %s, agent: %s)",
            "yes" if orphan.capture else "no", "yes" if orphan.agent_bridged else "no")
        self.dispatcher.start_call(orphan.call_id, adopted.flow, orphan.event(at), CallContext(
            port=self, channel_id=orphan.call_id, server=self.server,
            flow="connect", channel_name=adopted.channel_name,
            caller_masked=mask_phone(adopted.caller_number),
            endpoints={"agent": adopted.agent_endpoint} if adopted.agent_endpoint else {},
            verification=adopted.verification or None))

    def forget(self, call: CallHandle) -> None:
        for channel_id, (call_id, _leg) in list(self.channels.items()):
            if call_id == call.call_id:
                del self.channels[channel_id]
                self._answered.discard(channel_id)
        for playback_id, call_id in list(self.playbacks.items()):
            if call_id == call.call_id:
                del self.playbacks[playback_id]

    # -- commands out ---------------------------------------------------------------------
    def _leg(self, call: CallHandle, leg: str) -> str:
        if leg == "caller":
            return str(call.context.channel_id)
        return f"{call.call_id}-{leg}"

    async def execute(self, call: CallHandle, command: c.Command) -> Sequence[e.Event]:
        channel_id = str(call.context.channel_id)
        if isinstance(command, c.StopPlayback) and \
                self.playbacks.pop(command.playback_id, None) is None:
            return ()  # it finished already (PlaybackFinished came) or never started
        if self.trace is not None:
            self.trace.sent(call.trigger, command.kind)
        if isinstance(command, c.CreateExternalMedia):
            return await self._external_media(call, command)
        if await self._execute_bridging(call, command):
            return ()
        if isinstance(command, c.Answer):
            await self.client.answer(channel_id)
        elif isinstance(command, c.Play) and command.bridge_id:
            self.playbacks[command.playback_id] = call.call_id
            await self.client.play_bridge(command.bridge_id, command.media,
                                          playback_id=command.playback_id, lang=command.language)
        elif isinstance(command, c.Play):
            self.playbacks[command.playback_id] = call.call_id
            await self.client.play(self._leg(call, command.leg), command.media,
                                   playback_id=command.playback_id, lang=command.language)
        elif isinstance(command, c.StopPlayback):
            try:
                await self.client.stop_playback(command.playback_id)
            except AriNotFound:
                pass  # it finished meanwhile
        elif isinstance(command, c.SetVariables):
            for name, value in command.values:
                await self.client.set_variable(channel_id, name, value)
        elif isinstance(command, c.ContinueDialplan):
            await self.client.continue_in_dialplan(channel_id)
        elif isinstance(command, c.Hangup):
            await self.client.hangup(channel_id, reason=command.reason)
        else:
            raise AriError(f"no ARI translation for command {command.kind}")
        return ()

    async def _execute_bridging(self, call: CallHandle, command: c.Command) -> bool:
        client = self.client
        if isinstance(command, c.CreateBridge):
            await client.create_bridge(command.bridge_id, type="mixing,dtmf_events",
                                       name=command.name or command.bridge_id)
        elif isinstance(command, c.AddToBridge):
            await client.add_channel(command.bridge_id, self._leg(call, command.leg),
                                     absorb_dtmf=command.absorb_dtmf, mute=command.mute)
        elif isinstance(command, c.RemoveFromBridge):
            await _ignore_gone(client.remove_channel(command.bridge_id,
                                                     self._leg(call, command.leg)))
        elif isinstance(command, c.DestroyBridge):
            await _ignore_gone(client.destroy_bridge(command.bridge_id))
        elif isinstance(command, c.StartMoh):
            await client.start_moh(self._leg(call, command.leg), command.moh_class or None)
        elif isinstance(command, c.StopMoh):
            await _ignore_gone(client.stop_moh(self._leg(call, command.leg)))
        elif isinstance(command, c.DialLeg):
            leg_channel = self._leg(call, command.leg)
            self.channels[leg_channel] = (call.call_id, command.leg)
            call.context.endpoints[command.leg] = command.endpoint
            await client.originate(command.endpoint, app=self.client_app,
                                   app_args=f"leg,{call.call_id},{command.leg}",
                                   caller_id=command.caller_id or None,
                                   timeout=command.timeout, channel_id=leg_channel,
                                   originator=str(call.context.channel_id))
        elif isinstance(command, c.HangupLeg):
            await _ignore_gone(client.hangup(self._leg(call, command.leg)))
        else:
            return False
        return True

    async def _external_media(self, call: CallHandle,
                              command: c.CreateExternalMedia) -> Sequence[e.Event]:
        channel_id = self._leg(call, command.leg)
        self.channels[channel_id] = (call.call_id, command.leg)  # before its StasisStart
        started = self._media_started[channel_id] = asyncio.Event()
        try:
            return [await open_external_media(self.client, app=self.client_app,
                                              channel_id=channel_id, command=command,
                                              started=started)]
        finally:
            self._media_started.pop(channel_id, None)

    def snapshot(self) -> dict[str, Any]:
        return {"server": self.server, "connected": self.connected.is_set(),
                "channels": len(self.channels)}


async def _ignore_gone(request: Awaitable[Any]) -> None:
    """Tear-down requests: a channel or bridge that is already gone is what we wanted."""
    try:
        await request
    except AriNotFound:
        pass
