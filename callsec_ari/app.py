"""The composition root: builds every component from the settings and runs them together.

Nothing else in callsec constructs services or reads the settings globally: each component gets
its typed dependencies here. Every long-running task lives in one ``asyncio.TaskGroup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack

import aiohttp
from prometheus_client import CollectorRegistry, Info, PlatformCollector, ProcessCollector

from callsec_ari import __version__
from callsec_ari.agi.adapter import AgiPort
from callsec_ari.agi.confirm import AriSessionCheck
from callsec_ari.agi.refusals import RefusalAudit
from callsec_ari.agi.server import AgiServer
from callsec_ari.agi.trust import PeerFilter
from callsec_ari.ami.link import AmiLink  # --- AMI ---
from callsec_ari.approval.service import ApprovalFeature
from callsec_ari.ari.adapter import AriAdapter, FlowFactory
from callsec_ari.ari.client import AriClient
from callsec_ari.ari.takeover import Takeover, lease_app
from callsec_ari.capture.media_service import MediaFeature
from callsec_ari.capture.service import CaptureFeature
from callsec_ari.capture.sinks import build_sink
from callsec_ari.config import Settings
from callsec_ari.core.commands import Publish
from callsec_ari.core.errors import CallsecError
from callsec_ari.core.ports import CallHandle
from callsec_ari.flows import FlowRegistry
from callsec_ari.logoutput import reopen_log_files, setup_logging
from callsec_ari.loopwatch import LoopWatch, settle_heap
from callsec_ari.runtime.bus import EventBus
from callsec_ari.runtime.cluster import ClusterNode, NodeRegistry, Observers
from callsec_ari.runtime.dispatcher import Dispatcher
from callsec_ari.runtime.executor import CallExecutor
from callsec_ari.runtime.metrics import CallMetrics, LinkCollector, LinkState
from callsec_ari.runtime.pgbus import PgBus
from callsec_ari.runtime.prompts import PromptBook
from callsec_ari.runtime.sdnotify import Notifier, watchdog, watchdog_interval
from callsec_ari.runtime.trace import BenchTrace
from callsec_ari.status import ControlServer, ErrorRing
from callsec_ari.store.abuse import DbAbuseStore
from callsec_ari.store.audit_watch import export_head
from callsec_ari.store.cluster import ClusterStore, Node
from callsec_ari.store.context import Store, open_store
from callsec_ari.verification.confirm import ConfirmationService
from callsec_ari.verification.delivery.factory import build_deliveries
from callsec_ari.verification.late import LateRecords
from callsec_ari.verification.service import VerificationService
from callsec_ari.web import confirm as confirm_web
from callsec_ari.web.app import WebServer, build_web_server
from callsec_ari.web.cluster import Forwarder, NodeAuth
from callsec_ari.web.deps import CaptureService, WebDeps
from callsec_ari.webhooks import NullNotifier, WebhookNotifier
from callsec_ari.webhooks.service import WebhookService
from callsec_ari.webhooks.store import DeadLetters
from callsec_ari.webhooks.tap import tapped

log = logging.getLogger(__name__)
#: How long a thread may keep the GIL while another waits for it (Python's default: 5 ms).
GIL_SWITCH_INTERVAL_S = 0.001


class Application:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or open_store(settings, upgrade=settings.database.auto_upgrade)
        self.bus = EventBus()
        self.executor = CallExecutor(PromptBook.create(settings.prompt_overrides,
                                                       settings.prompts.sounds_dir))
        # --- signed webhooks (callsec_ari/webhooks): masked call events to [webhooks] urls;
        # other slices raise theirs with self.webhooks.emit(type, call_id, masked_payload) ---
        self.webhook_service: WebhookService | None = None
        self.webhooks: WebhookNotifier = NullNotifier()
        if settings.webhooks.urls:
            self.webhook_service = WebhookService.from_settings(
                settings, DeadLetters(self.store.db, self.store.keys), self.store.audit)
            self.webhooks = self.webhook_service
        self.executor.register(Publish, tapped(self.bus.handle, self.webhooks))
        # --- end signed webhooks ---
        self.finish_hooks: list[Callable[[CallHandle], None]] = []
        # --- metrics and status (prometheus-client registry of this application; no globals) ---
        # --- cluster (#16): heartbeat, call registry, other nodes' calls ---
        self.cluster = ClusterNode(ClusterStore(self.store.db), settings.cluster,
                                   settings.ari.app)
        self.registry = build_registry(self.cluster.node_id)
        self.registry.register(self.cluster)
        self.metrics: CallMetrics | None = CallMetrics(self.registry)
        self.error_ring = ErrorRing(settings.status.last_errors)
        self.started_monotonic = time.monotonic()
        self.late_records: LateRecords | None = None
        self.refusals: RefusalAudit | None = None
        # --- end metrics and status ---
        self.dispatcher = Dispatcher(self.executor, on_finish=self._finished,
                                     observer=Observers(self.metrics, self.cluster))
        self.flows: Mapping[str, FlowFactory] = FlowRegistry(settings).as_mapping()
        self.adapters: list[AriAdapter] = []
        self.agi_server: AgiServer | None = None  # FastAGI, when [agi] enabled
        # --- AMI (callsec_ari/ami): one reconnecting connection when [ami] enabled; the
        # capture feature mutes MixMonitor through it (AMI down: recording_mute_unavailable) ---
        self.ami: AmiLink | None = None
        if settings.ami.enabled:
            self.ami = AmiLink.from_settings(
                settings.ami, reconnect_min=settings.ari.reconnect_min_seconds,
                reconnect_max=settings.ari.reconnect_max_seconds,
                timeout=settings.ari.request_timeout_seconds)
        self.registry.register(LinkCollector("ami", self._ami_state))
        # --- end AMI ---
        # --- HTTP API (callsec_ari/web); the capture feature sets capture_service ---
        self.capture_service: CaptureService | None = None
        self.approvals: ApprovalFeature | None = None
        self.web: WebServer | None = None
        self.web_deps: WebDeps | None = None
        # --- end HTTP API ---
        self.ready = asyncio.Event()
        self.loop_watch = LoopWatch()
        self.notifier = Notifier.from_env()  # systemd Type=notify; no-op outside systemd
        self._stop = asyncio.Event()

    def _ami_state(self) -> list[LinkState]:
        ami = self.ami
        return [] if ami is None else [(ami.server, ami.connected, ami.reconnects)]

    def _finished(self, call: CallHandle) -> None:
        for hook in self.finish_hooks:
            hook(call)

    def stop(self) -> None:
        self._stop.set()

    def _takeover(self) -> Takeover:
        """A dead node's calls adopted by the first alive node (#16.4, ari/takeover.py)."""
        cluster = self.settings.cluster
        every = cluster.heartbeat_seconds

        async def lease(node: Node) -> None:
            await lease_app(self.settings.ari, node, dispatcher=self.dispatcher,
                            flows=self.flows, hooks=self.finish_hooks,
                            released=takeover.node_back(node.node_id), every=every)

        takeover = Takeover(ClusterStore(self.store.db), me=cluster.node(),
                            own_app=self.settings.ari.app, every=every,
                            dead_after=cluster.dead_after_seconds,
                            clients=[a.client for a in self.adapters], lease=lease)
        return takeover

    def reload(self) -> None:
        """SIGHUP: reopen the log files (after logrotate); the configuration is not re-read."""
        count = reopen_log_files()
        log.info("SIGHUP: %d log file(s) reopened; the configuration is not re-read (restart"
                 " to apply changes)", count, extra={"call_id": "-"})

    async def _announce_ready(self) -> None:
        """systemd READY=1 once an ARI websocket is up (the HTTP server already listens)."""
        waits = [asyncio.ensure_future(a.connected.wait()) for a in self.adapters]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        self.notifier.send(f"READY=1\nSTATUS=running, {len(self.adapters)} Asterisk server(s)")

    async def run(self) -> None:
        ari = self.settings.ari
        async with AsyncExitStack() as stack:
            session = await stack.enter_async_context(aiohttp.ClientSession())
            deliveries = build_deliveries(self.settings, session=session)
            late_records = LateRecords()  # results written once the database is back
            self.late_records = late_records
            # limits, lockout counts and TOTP steps: in the database, shared by every node
            v = self.settings.verification
            limits = DbAbuseStore(self.store.db, self.store.keyring.blind_index_key(),
                                  keep_seconds=v.lockout_window_seconds + v.lockout_seconds)
            # one-time links and SMS replies answer the code message (verification/confirm.py)
            confirmations = ConfirmationService(self.settings, self.store, self.dispatcher,
                                                self.bus, self.webhooks)
            VerificationService(self.settings, self.store, deliveries,
                                late_records, limits, confirmations).register(self.executor)
            # --- secure DTMF capture (callsec_ari/capture) ---
            captures = CaptureFeature(
                self.store, self.dispatcher,
                build_sink(self.settings.capture, self.store.vault, session=session),
                ami=lambda: self.ami)
            captures.register(self.executor)
            self.capture_service = captures
            # payment approvals (callsec_ari/approval): a code bound to amount and payee
            self.approvals = ApprovalFeature(self.settings, self.store, self.dispatcher,
                                             deliveries, limits, captures,
                                             notifier=self.webhooks)
            self.approvals.register(self.executor)
            self.approvals.confirmations = confirmations  # approve by link / reply (#18.7)
            # talk-through relays: closed with their call, and all of them when callsec stops
            media = MediaFeature.from_store(self.store, self.dispatcher, self.settings.capture)
            media.register(self.executor)
            self.finish_hooks.append(media.call_finished)
            stack.callback(media.close_all)
            # --- end secure DTMF capture ---
            trace = BenchTrace.from_env()  # `make bench` only: off unless CALLSEC_BENCH_TRACE
            if trace is not None:
                stack.callback(trace.close)
            for index, url in enumerate(ari.urls):
                client = await stack.enter_async_context(AriClient(
                    url, ari.username, ari.password, [ari.app], name=f"asterisk{index + 1}",
                    request_timeout=ari.request_timeout_seconds,
                    reconnect_min=ari.reconnect_min_seconds,
                    reconnect_max=ari.reconnect_max_seconds,
                    app_check=ari.app_check_seconds, rest_over_websocket=True))
                adapter = AriAdapter(client, self.dispatcher, self.flows,
                                     server=f"asterisk{index + 1}", app=ari.app, trace=trace)
                self.adapters.append(adapter)
                self.finish_hooks.append(adapter.forget)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.dispatcher.run(), name="dispatcher")
                runners = [tg.create_task(a.run(), name=f"ari-{a.server}") for a in self.adapters]
                runners.append(tg.create_task(self.loop_watch.run(), name="loop-watch"))
                runners.append(tg.create_task(self._takeover().run(), name="cluster-takeover"))
                if self.notifier.enabled and (every := watchdog_interval()) is not None:
                    runners.append(tg.create_task(watchdog(self.notifier, every),
                                                  name="sd-watchdog"))
                runners.append(tg.create_task(late_records.run(), name="late-records"))
                runners.append(tg.create_task(self.cluster.run(), name="cluster"))
                if self.store.db.dialect == "postgresql":  # other nodes' live events
                    runners.append(tg.create_task(PgBus(
                        self.store.db.engine.url, self.cluster.node_id, self.bus).run(),
                        name="pgbus"))
                runners.append(tg.create_task(  # the audit head, for rollback checks
                    export_head(self.store.audit, self.settings.logging.audit_head_minutes),
                    name="audit-head"))
                runners.append(tg.create_task(media.run(), name="media-worker"))
                if self.webhook_service is not None:  # one worker per URL, bounded queues
                    runners.append(tg.create_task(self.webhook_service.run(session),
                                                  name="webhooks"))
                # --- AMI ---
                if self.ami is not None:
                    runners.append(tg.create_task(self.ami.run(), name="ami"))
                # --- end AMI ---
                # --- FastAGI (callsec_ari/agi) ---
                if self.settings.agi.enabled:
                    # trusted peers only; every session confirmed over ARI before a flow runs
                    refusals = self.refusals = RefusalAudit(self.store.audit)
                    runners.append(tg.create_task(refusals.run(), name="agi-refusals"))
                    agi_port = AgiPort(
                        self.dispatcher, self.flows, refused=refusals.session_refused,
                        check=AriSessionCheck([a.client for a in self.adapters]))
                    self.finish_hooks.append(agi_port.forget)
                    self.agi_server = AgiServer(
                        agi_port.handle, host=self.settings.agi.host, port=self.settings.agi.port,
                        peers=PeerFilter.from_strings(self.settings.agi.allowed_peers),
                        on_refused=refusals.peer_refused)
                    runners.append(tg.create_task(self.agi_server.serve(), name="agi"))
                # --- end FastAGI ---
                # --- HTTP API and agent desk (callsec_ari/web) ---
                if self.settings.web.enabled:
                    self.web, self.web_deps = build_web_server(
                        self.settings, self.store, calls=self.dispatcher, bus=self.bus,
                        ari=self.adapters, latency=deliveries.latency,
                        captures=self.capture_service, registry=self.registry)
                    confirm_web.install(self.web.app, confirmations, self.settings,
                                        self.store.keyring.blind_index_key())
                    self.web_deps.approvals = self.approvals
                    # any node serves every call: the registry's calls, commands forwarded
                    self.web_deps.cluster = self.cluster
                    cluster = self.settings.cluster
                    self.web_deps.forwarder = forwarder = Forwarder(
                        self.cluster, NodeAuth(cluster.secret.encode(), self.cluster.node_id),
                        dead_after=cluster.dead_after_seconds)
                    stack.push_async_callback(forwarder.close)
                    runners.append(tg.create_task(self.web.serve(), name="web"))
                    await self.web.started.wait()
                # --- end HTTP API ---
                if self.settings.status.socket is not None:  # `callsec status`
                    runners.append(tg.create_task(
                        ControlServer(self, self.settings.status.socket).serve(), name="status"))
                settle_heap()
                self.ready.set()
                runners.append(tg.create_task(self._announce_ready(), name="sd-ready"))
                log.info("callsec running: %d Asterisk server(s)", len(self.adapters),
                         extra={"call_id": "-"})
                await self._stop.wait()
                log.info("stopping", extra={"call_id": "-"})
                self.notifier.send("STOPPING=1")
                self.dispatcher.stop()
                for runner in runners:
                    runner.cancel()


def build_registry(node_id: str = "") -> CollectorRegistry:
    """The application's metrics registry: process and platform metrics and build info (the
    runtime's counters and the web layer's state collector register themselves); with a node
    id, every sample is labelled ``node`` (:class:`NodeRegistry`)."""
    registry = NodeRegistry(node_id) if node_id else CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    Info("callsec_build", "callsec version", registry=registry).info({"version": __version__})
    return registry


async def _main(settings: Settings) -> None:
    app = Application(settings)
    # Everything built so far (modules, the schema, settings, the app) lives as long as the
    # process: out of the collector's sight, a full collection no longer walks it each time.
    gc.freeze()
    logging.getLogger().addHandler(app.error_ring)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, app.stop)
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, app.reload)
    await app.run()


def run_forever(settings: Settings) -> int:
    """``callsec run``: returns the process exit code."""
    setup_logging(settings.logging.level, settings.logging.file, fmt=settings.logging.format)
    # Worker threads (database, SMTP) hold the GIL while the event loop waits for it: for up
    # to the switch interval on every wake-up. Python's default 5 ms became the loop's latency
    # under load (bench, 100 calls: DTMF -> next REST call p50 11.3 ms; 4.8 ms at 1 ms).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        asyncio.run(_main(settings))
    except BaseExceptionGroup as group:
        fatal, rest = group.split(CallsecError)
        if rest is not None or fatal is None:
            raise
        for exc in fatal.exceptions:
            log.error("callsec cannot run: %s", exc, extra={"call_id": "-"})
        return 1
    return 0
