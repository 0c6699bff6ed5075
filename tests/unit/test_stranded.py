"""Callers a dead callsec left mid-flow outside every bridge: which channels are started again,
which are hung up, which are left alone (pure selection), and the order the adapter's recovery
acts in (apology before the flow, a dead call's leg hung up first)."""

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from callsec_ari.ari import models as m
from callsec_ari.ari.errors import AriNotFound
from callsec_ari.ari.models import Bridge
from callsec_ari.ari.stranded import call_of_leg, find_stranded, recover_stranded

APP = "callsec"
FLOWS = frozenset({"verify", "connect", "capture", "probe"})
CALLER = "1733000000.17"


def channel(channel_id: str, app_data: str = "callsec,verify", app_name: str = "Stasis",
            language: str = "en", number: str = "+4915112345678") -> dict[str, Any]:
    return {"id": channel_id, "name": f"PJSIP/pstn-{channel_id}", "state": "Up",
            "caller": {"number": number, "name": ""}, "language": language,
            "dialplan": {"context": "sandbox", "exten": "1000", "priority": 2,
                         "app_name": app_name, "app_data": app_data}}


def sort(channels: list[dict[str, Any]], bridges: tuple[Bridge, ...] = (),
         known: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    found = find_stranded(channels, bridges, app=APP, flows=FLOWS, known=lambda c: c in known)
    return [str(raw["id"]) for raw in found.restart], list(found.hang_up)


def test_a_caller_mid_verification_in_no_bridge_is_started_again() -> None:
    assert sort([channel(CALLER)]) == ([CALLER], [])


def test_a_caller_mid_verification_of_a_connect_call_is_started_again() -> None:
    raw = channel(CALLER, "callsec,connect,PJSIP/agent100,lang=de")
    assert sort([raw]) == ([CALLER], [])


def test_a_call_this_process_runs_is_left_to_its_flow() -> None:
    assert sort([channel(CALLER)], known=frozenset({CALLER})) == ([], [])


def test_callers_with_callsec_bridges_are_left_to_the_bridge_recovery() -> None:
    in_capture = (Bridge(id=f"callsec-capture-{CALLER}", channels=(CALLER,)),)
    dialling = (Bridge(id=f"callsec-call-{CALLER}", channels=()),)  # empty: agent still ringing
    assert sort([channel(CALLER, "callsec,connect,PJSIP/agent100")], in_capture) == ([], [])
    assert sort([channel(CALLER, "callsec,connect,PJSIP/agent100")], dialling) == ([], [])


def test_a_channel_in_a_bridge_someone_else_made_is_not_touched() -> None:
    assert sort([channel(CALLER)], (Bridge(id="conference-7", channels=(CALLER,)),)) == ([], [])


def test_only_channels_running_this_apps_known_flows_are_restarted() -> None:
    others = [channel("a1", app_name="Wait", app_data="60"),          # back in the dialplan
              channel("a2", app_data="callsec"),                      # names no flow
              channel("a3", app_data="callsec,bogus"),                # an unknown flow
              channel("a4", app_data="callsec-bench,verify"),         # another app's line
              channel("a5", app_data="callsecx,verify"),
              {"id": "a6"}]                                           # no dialplan at all
    assert sort(others) == ([], [])


def test_an_agent_leg_whose_call_is_gone_is_hung_up_never_restarted() -> None:
    leg = channel(f"{CALLER}-agent", f"callsec,leg,{CALLER},agent")
    assert sort([leg]) == ([], [f"{CALLER}-agent"])


def test_legs_and_media_of_running_or_adopted_calls_are_left_alone() -> None:
    legs = [channel(f"{CALLER}-agent", app_data=""), channel(f"{CALLER}-media-1", app_data="")]
    assert sort(legs, known=frozenset({CALLER})) == ([], [])
    adopted = (Bridge(id=f"callsec-call-{CALLER}", channels=(f"{CALLER}-agent",)),)
    assert sort(legs, adopted) == ([], [])


def test_a_media_channel_without_its_call_is_hung_up() -> None:
    assert sort([channel(f"{CALLER}-media-rx", app_data="")]) == ([], [f"{CALLER}-media-rx"])


def test_a_restarted_callers_old_leg_is_hung_up_so_the_new_flow_can_dial_again() -> None:
    found = sort([channel(CALLER, "callsec,connect,PJSIP/agent100"),
                  channel(f"{CALLER}-agent", f"callsec,leg,{CALLER},agent")])
    assert found == ([CALLER], [f"{CALLER}-agent"])


def test_what_a_leg_belongs_to() -> None:
    assert call_of_leg("x-agent", []) == "x"
    assert call_of_leg("x-media-2", []) == "x"
    assert call_of_leg("whatever", ["leg", "y", "agent"]) == "y"
    assert call_of_leg("1733000000.17", ["verify"]) is None
    assert call_of_leg("-agent", []) is None and call_of_leg("-media-1", []) is None


ids = st.sampled_from(["c1", "c2", "c1-agent", "c2-agent", "c1-media-1", "c3"])
datas = st.sampled_from(["callsec,verify", "callsec,connect,PJSIP/a", "callsec,leg,c1,agent",
                         "callsec", "other,verify", ""])


@given(st.dictionaries(ids, datas, max_size=6), st.frozensets(st.sampled_from(["c1", "c2"])),
       st.booleans())
def test_no_channel_is_both_restarted_and_hung_up_and_legs_are_never_callers(
        chans: dict[str, str], known: frozenset[str], bridged: bool) -> None:
    bridges = (Bridge(id="callsec-call-c2", channels=("c2",)),) if bridged else ()
    restart, hang_up = sort([channel(k, v) for k, v in chans.items()], bridges, known)
    assert not set(restart) & set(hang_up)
    assert not any(c.endswith("-agent") or "-media-" in c for c in restart)
    assert not set(restart) & known
    assert not any(call_of_leg(c, chans[c].split(",")[1:]) in known for c in hang_up)
    assert all(chans[c].startswith("callsec,") for c in restart)


# --- the adapter's recovery, against a recording fake client -----------------------------------

class FakeClient:
    def __init__(self, channels: list[dict[str, Any]]) -> None:
        self.channels = channels
        self.calls: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, **_: Any) -> Any:
        if path == f"/applications/{APP}":
            return {"channel_ids": [c["id"] for c in self.channels], "bridge_ids": []}
        if path.startswith("/playbacks/"):  # the apology has played
            raise AriNotFound(server="asterisk1", method=method, path=path, ari_status=404)
        assert (method, path) == ("GET", "/channels")
        return self.channels

    async def hangup(self, channel_id: str, reason: str = "normal") -> None:
        self.calls.append(("hangup", channel_id))

    async def play(self, channel_id: str, media: list[str], *, playback_id: str | None = None,
                   lang: str | None = None) -> None:
        self.calls.append(("play", f"{channel_id} {media[0]} {lang}"))


def test_recovery_hangs_up_the_dead_leg_then_apologises_then_starts_the_flow() -> None:
    client = FakeClient([channel(CALLER, "callsec,connect,PJSIP/agent100,lang=de"),
                         channel(f"{CALLER}-agent", f"callsec,leg,{CALLER},agent")])
    started: list[m.StasisStart] = []

    def start(event: m.StasisStart) -> None:
        client.calls.append(("start", event.channel.id))
        started.append(event)

    asyncio.run(recover_stranded(client, APP, flows=FLOWS,  # type: ignore[arg-type]
                                 known=lambda _: False, start=start))
    assert client.calls == [("hangup", f"{CALLER}-agent"),
                            ("play", f"{CALLER} sound:callsec/verification-restarted de"),
                            ("start", CALLER)]
    [event] = started
    assert event.args == ("connect", "PJSIP/agent100", "lang=de")
    assert event.channel.caller_number == "+4915112345678"
