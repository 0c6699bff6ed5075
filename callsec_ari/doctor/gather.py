"""Collect :class:`~callsec_ari.doctor.model.Facts` from one Asterisk over ARI and AMI.

ARI (our :class:`~callsec_ari.ari.client.AriClient`): ``GET /endpoints`` and each PJSIP
endpoint's effective options (``/asterisk/config/dynamic/res_pjsip/endpoint/{id}``: templates,
defaults and pjsip_wizard included), ``/asterisk/logging`` (the logger channels as running),
``/asterisk/modules``. AMI (:class:`~callsec_ari.ami.manager.AmiManager`, events on):
``GetConfig`` of the files in :data:`~callsec_ari.doctor.model.CONFIG_FILES`, a harmless
``MixMonitorMute`` (unmute, on a channel that cannot exist) to learn whether callsec's user may
mute, ``ModuleCheck`` when ARI is down, and a ``DTMF*`` subscription for the whole run (events on
callsec's own connection prove its user can read digits). Nothing is changed on the Asterisk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from callsec_ari.ami.errors import (
    AmiConfigNotFound,
    AmiError,
    AmiNoSuchChannel,
    AmiPermissionError,
)
from callsec_ari.ami.manager import AmiManager, AmiSubscription, ConfigCategory
from callsec_ari.ari.client import AriClient
from callsec_ari.ari.errors import AriError
from callsec_ari.ari.operations import segment
from callsec_ari.config import Settings
from callsec_ari.doctor.checks import CDR_BACKENDS
from callsec_ari.doctor.model import CONFIG_FILES, Facts, LogChannel, is_true, parse_levels

#: A channel name no Asterisk channel can have (the mute-permission probe).
PROBE_CHANNEL = "callsec-doctor/permission-probe"
_MODULES_OF_INTEREST = ("app_mixmonitor", "res_agi", *CDR_BACKENDS)
_PARALLEL = 8


async def gather(settings: Settings, *, ari_url: str, listen: float = 0.0) -> Facts:
    facts = Facts(settings=settings, ari_url=ari_url)
    timeout = settings.ari.request_timeout_seconds
    async with contextlib.AsyncExitStack() as stack:
        ami: AmiManager | None = None
        subscription: AmiSubscription | None = None
        if settings.ami.enabled:
            candidate = AmiManager(settings.ami.host, settings.ami.port, settings.ami.username,
                                   settings.ami.password, timeout=timeout,
                                   action_timeout=timeout, events=True)
            try:
                ami = await stack.enter_async_context(candidate)
            except AmiError as exc:
                facts.ami_error = exc.message
            else:
                subscription = stack.enter_context(ami.subscribe("DTMF*"))
                await _gather_ami(ami, facts)
        await _gather_ari(settings, ari_url, facts)
        if facts.modules is None and ami is not None:
            facts.modules = await _modules_via_ami(ami)
        apply_config_files(facts)
        if listen > 0 and subscription is not None:
            await asyncio.sleep(listen)
        if subscription is not None:
            facts.observed_events = [event.name for event in subscription.pending()]
    return facts


# -- AMI --------------------------------------------------------------------------------------
async def _gather_ami(ami: AmiManager, facts: Facts) -> None:
    try:
        for filename in CONFIG_FILES:
            try:
                facts.configs[filename] = await ami.get_config_categories(filename)
            except AmiConfigNotFound:
                facts.configs[filename] = []
            except AmiPermissionError as exc:
                facts.config_error = exc.ami_message or exc.message
                break
        try:
            await ami.mixmonitor_mute(PROBE_CHANNEL, mute=False)
            facts.can_mute = True
        except AmiNoSuchChannel:
            facts.can_mute = True
        except AmiPermissionError:
            facts.can_mute = False
    except AmiError as exc:  # lost mid-way
        facts.ami_error = exc.message


async def _modules_via_ami(ami: AmiManager) -> set[str] | None:
    try:
        return {m for m in _MODULES_OF_INTEREST if await ami.module_loaded(m)}
    except AmiError:
        return None


# -- ARI --------------------------------------------------------------------------------------
async def _gather_ari(settings: Settings, url: str, facts: Facts) -> None:
    ari = settings.ari
    async with AriClient(url, ari.username, ari.password, [ari.app],
                         request_timeout=ari.request_timeout_seconds) as client:
        try:
            listed = await client.request("GET", "/endpoints")
            names = sorted({str(e.get("resource")) for e in _items(listed)
                            if e.get("technology") == "PJSIP" and e.get("resource")})
            facts.endpoints = await _endpoint_options(client, names)
            facts.log_channels = _log_channels(await client.request("GET", "/asterisk/logging"))
            facts.modules = {str(m.get("name", "")).removesuffix(".so")
                             for m in _items(await client.request("GET", "/asterisk/modules"))
                             if m.get("status") == "Running"}
        except AriError as exc:
            facts.ari_error = exc.message


async def _endpoint_options(client: AriClient, names: list[str]) -> dict[str, dict[str, str]]:
    limit = asyncio.Semaphore(_PARALLEL)
    results: dict[str, dict[str, str]] = {}

    async def one(name: str) -> None:
        async with limit:
            try:
                fields = await client.request(
                    "GET", f"/asterisk/config/dynamic/res_pjsip/endpoint/{segment(name)}")
            except AriError:
                return  # e.g. a realtime endpoint: pjsip.conf may still describe it
        results[name] = {str(f.get("attribute", "")).lower(): str(f.get("value", ""))
                         for f in _items(fields)}

    async with asyncio.TaskGroup() as tg:
        for name in names:
            tg.create_task(one(name))
    return {name: results.get(name, {}) for name in names}


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _log_channels(value: Any) -> list[LogChannel]:
    channels = []
    for item in _items(value):
        if item.get("status") not in (None, "Enabled"):
            continue
        kind = str(item.get("type", "")).lower()
        name = str(item.get("channel") or kind)
        levels = parse_levels(",".join(str(item.get("configuration", "")).split()))
        channels.append(LogChannel(name=name, kind=kind, levels=levels))
    return channels


# -- config files -----------------------------------------------------------------------------
def apply_config_files(facts: Facts) -> None:
    """Trunks from pjsip.conf / pjsip_wizard.conf; endpoints and logger channels when ARI
    could not tell."""
    if facts.log_channels is None:
        facts.log_channels = _conf_log_channels(facts.section("logger.conf", "logfiles"))
    pjsip = facts.config("pjsip.conf")
    if pjsip is None:
        return
    trunks: set[str] = set()
    conf_endpoints: dict[str, dict[str, str]] = {}
    for category in pjsip:
        kind = (category.get("type") or "").lower()
        if kind == "endpoint":
            conf_endpoints[category.name] = _last_values(category)
        elif kind in ("identify", "registration") and category.get("endpoint"):
            trunks.add(str(category.get("endpoint")))
    for category in facts.config("pjsip_wizard.conf") or []:
        if ((category.get("type") or "").lower() == "wizard" and category.get("remote_hosts")
                and not is_true(category.get("accepts_registrations"))):
            trunks.add(category.name)
    facts.trunks = trunks
    if facts.endpoints is None:
        facts.endpoints = conf_endpoints
    else:
        for name, opts in facts.endpoints.items():
            if not opts and name in conf_endpoints:
                facts.endpoints[name] = conf_endpoints[name]


def _last_values(category: ConfigCategory) -> dict[str, str]:
    """An endpoint's options as written, with res_pjsip's defaults for the two that matter."""
    values = {"direct_media": "yes", "dtmf_mode": "rfc4733"}
    values.update({key.lower(): value for key, value in category.items})
    return values


def _conf_log_channels(logfiles: ConfigCategory | None) -> list[LogChannel] | None:
    if logfiles is None:
        return None
    channels = []
    for name, spec in logfiles.items:
        kind = "console" if name == "console" else (
            "syslog" if name.startswith("syslog") else "file")
        channels.append(LogChannel(name=name, kind=kind, levels=parse_levels(spec)))
    return channels
