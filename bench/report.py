"""``bench/results/latest.md`` and the README's ``## Performance`` table from ``latest.json``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

START, END = "<!-- bench:latest:start -->", "<!-- bench:latest:end -->"


def _f(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def _ok(flag: bool | None) -> str:
    return "-" if flag is None else ("✅" if flag else "❌")


def calls_table(results: dict[str, Any]) -> list[str]:
    lines = ["| ramp | app | completed (up at once) | DTMF→command p50 / p99 | CPU per call "
             "(event loop) | CPU per event | peak RSS | Asterisk CPU |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for ramp in results.get("calls", {}).get("ramps", []):
        for name in ("callsec", "floor"):
            r = ramp.get(name)
            if not r:
                continue
            lat = r["latency_ms"]
            lines.append(
                f"| {ramp['size']} (+{r['sip']} SIP) | {name} | {r['completed']}/{r['calls']} "
                f"({r['peak_concurrent']}) "
                f"| {_f(lat['p50'], 1)} / {_f(lat['p99'], 1)} ms "
                f"| {_f(r['cpu_ms_per_call'], 1)} ms ({_f(r.get('cpu_ms_per_call_event_loop'), 1)}) "
                f"| {_f(r['cpu_us_per_event'], 0)} µs "
                f"| {_f(r['peak_rss_mib'], 0)} MiB | {_f(r['asterisk_cpu_s'], 1)} s |")
        ratio = ramp.get("ratio")
        if ratio:
            lines.append(f"| {ramp['size']} | **callsec / floor** | | "
                         f"{_f(ratio['latency_p50'], 2)}x / {_f(ratio['latency_p99'], 2)}x | "
                         f"{_f(ratio['cpu_per_call'], 2)}x | {_f(ratio['cpu_per_event'], 2)}x | "
                         f"| |")
    return lines


def wait_table(results: dict[str, Any]) -> list[str]:
    """The DTMF -> command time in two parts: until the app had read and parsed the event
    (Asterisk, the kernel, and the app's event loop busy with other work), then the app's own
    handling until the command left."""
    lines = ["| ramp | app | Asterisk → event read p50 / p99 | read → command sent p50 / p99 |",
             "| ---: | --- | ---: | ---: |"]
    for ramp in results.get("calls", {}).get("ramps", []):
        for name in ("callsec", "floor"):
            lat = (ramp.get(name) or {}).get("latency_ms") or {}
            if "read" not in lat:
                continue
            lines.append(f"| {ramp['size']} | {name} "
                         f"| {_f(lat['read']['p50'], 1)} / {_f(lat['read']['p99'], 1)} ms "
                         f"| {_f(lat['handled']['p50'], 1)} / {_f(lat['handled']['p99'], 1)} ms |")
    return lines if len(lines) > 2 else []


def profile_tables(results: dict[str, Any]) -> list[str]:
    """Per profiled ramp: each part's milliseconds of CPU per call, callsec beside the floor
    (``bench/profile_summary.py``)."""
    out: list[str] = []
    for ramp in results.get("calls", {}).get("ramps", []):
        mine = (ramp.get("callsec") or {}).get("profile")
        if not mine:
            continue
        floor = {row["part"]: row["ms_per_call"]
                 for row in ((ramp.get("floor") or {}).get("profile") or {}).get("parts", [])}
        out += [f"{ramp['size']} calls (py-spy, `{mine['file']}`):", "",
                "| part | callsec ms per call | share | floor ms per call |",
                "| --- | ---: | ---: | ---: |"]
        for row in mine["parts"]:
            out.append(f"| {row['part']} | {_f(row['ms_per_call'], 1)} "
                       f"| {row['share'] * 100:.1f}% | {_f(floor.get(row['part']), 1)} |")
        out.append("")
    return out


def targets_table(results: dict[str, Any]) -> list[str]:
    lines = ["| target | measured | met |", "| --- | --- | :---: |"]
    for t in results.get("targets", []):
        lines.append(f"| {t['target']} | {t['measured']} | {_ok(t['met'])} |")
    return lines


def other_tables(results: dict[str, Any]) -> list[str]:
    core = results.get("core") or {}
    lines = ["| measurement | result |", "| --- | --- |"]
    if core:
        lines.append(f"| sans-I/O flows (verification + connect + capture), one core | "
                     f"{_f(core['events_per_s'], 0)} events/s ({_f(core['us_per_event'], 1)} µs "
                     f"per event, {_f(core['calls_per_s'], 0)} calls/s) |")
    for kind in ("sqlite", "postgresql"):
        store = (results.get("store") or {}).get(kind) or {}
        vault, lookup = store.get("vault"), store.get("caller_id_lookup")
        if vault:
            lines.append(f"| {kind}: vault stores / reveals per second | "
                         f"{_f(vault['stores_per_s'], 0)} / {_f(vault['reveals_per_s'], 0)} |")
        if lookup:
            lines.append(f"| {kind}: caller-ID look-up at {_f(lookup['customers'])} customers "
                         f"p50 / p99 | {_f(lookup['p50_ms'], 2)} / {_f(lookup['p99_ms'], 2)} ms |")
        if store.get("skipped"):
            lines.append(f"| {kind} | skipped: {store['skipped']} |")
    lines += talk_through_rows(results.get("talk_through") or {})
    lines += cluster_rows(results.get("cluster") or {})
    return lines


def cluster_rows(cl: dict[str, Any]) -> list[str]:
    """Two callsec nodes against one on one PostgreSQL, same run (``bench/cluster.py``)."""
    if cl.get("error"):
        return [f"| cluster: one node against two | failed: {cl['error']} |"]
    lines = []
    for key, label in (("one_node", "one node"), ("two_nodes", "two nodes")):
        r = cl.get(key)
        if not r:
            continue
        lat, spread = r["latency_ms"], r.get("events_per_node") or {}
        lines.append(
            f"| cluster ({r['calls']} calls at {_f(cl.get('rate_per_second'), 0)}/s, "
            f"PostgreSQL): {label} | {r['completed']}/{r['calls']} completed, "
            f"{_f(r['completed_per_second'], 1)} calls/s (a call {_f(r.get('call_seconds_p50'), 1)}"
            f" s p50), DTMF→command p50 / p99 "
            f"{_f(lat['p50'], 1)} / {_f(lat['p99'], 1)} ms, {_f(r['cpu_ms_per_call'], 1)} ms "
            f"CPU per call, ARI events per node "
            f"{' / '.join(_f(v, 0) for v in spread.values())} |")
    return lines


def talk_through_rows(tt: dict[str, Any]) -> list[str]:
    if not tt:
        return []
    if tt.get("error"):
        return [f"| talk-through captures | failed: {tt['error']} |"]
    relay = tt.get("relay") or {}
    hold = relay.get("max_hold_ms") or {}
    return [
        f"| talk-through: captures open at once (completed) | "
        f"{tt.get('peak_concurrent_captures')} ({tt.get('completed')}/{tt.get('captures')}), "
        f"all open together {_f(tt.get('all_open_seconds'), 1)} s |",
        f"| talk-through: longest frame hold per capture p50 / p99 / max | "
        f"{_f(hold.get('p50'), 1)} / {_f(hold.get('p99'), 1)} / {_f(hold.get('max'), 1)} ms |",
        f"| talk-through: frames relayed / flattened / leaked | "
        f"{_f(relay.get('frames_relayed'), 0)} / {_f(relay.get('frames_flattened'), 0)} / "
        f"{_f(relay.get('leaked_tone_frames'), 0)} |",
        f"| talk-through: datagrams the kernel dropped (receive buffers full) | "
        f"{_f(tt.get('udp_receive_buffer_drops'), 0)} |",
        f"| talk-through: relays in / realtime priority / look-ahead | "
        f"{tt.get('media_worker', 'inline')} / {tt.get('media_realtime_priority', 0)} / "
        f"{_f(tt.get('lookahead_ms'), 0)} ms (load average at start "
        f"{_f(tt.get('load_average_at_start'), 2)}) |",
        f"| talk-through: callsec CPU per call / per capture-second | "
        f"{_f(tt.get('callsec_cpu_ms_per_call'), 1)} ms / "
        f"{_f(tt.get('callsec_cpu_ms_per_capture_second'), 2)} ms (Asterisk "
        f"{_f(tt.get('asterisk_cpu_s'), 1)} s) |",
    ]


def summary(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    return [f"Run {results['date']} on {m['cores']} cores ({m['cpu_model']}), "
            f"{m['memory_gib']} GiB, Asterisk {m['asterisk']}, Python {m['python']}; "
            f"load average at start {', '.join(str(x) for x in m['load_average_at_start'])}; "
            f"whole run {_f(results.get('seconds'), 0)} s."]


def markdown(results: dict[str, Any]) -> str:
    calls = results.get("calls") or {}
    out = ["# callsec-ari benchmark", "", *summary(results), "", "## Targets", "",
           *targets_table(results), "", "## Concurrent calls on the sandbox", "",
           calls.get("scenario", ""), "", *calls_table(results), ""]
    waits = wait_table(results)
    if waits:
        out += ["Where the DTMF → command time goes (each DTMF event that caused a command):",
                "", *waits, ""]
    profiles = profile_tables(results)
    if profiles:
        out += ["Where callsec's CPU goes (each profile sample is counted in the first part "
                "one of its frames belongs to, `bench/profile_summary.py`; the event loop's "
                "idle waits left out; a part's share times the measured CPU per call):", "",
                *profiles]
    if calls.get("notes"):
        out += [f"- {note}" for note in calls["notes"]] + [""]
    out += ["## Core and store", "", *other_tables(results), ""]
    return "\n".join(out)


def readme_block(results: dict[str, Any]) -> str:
    return "\n".join([START, *summary(results), "", *targets_table(results), "",
                      *calls_table(results), "", *other_tables(results), END])


def update_readme(readme: Path, results: dict[str, Any]) -> bool:
    """Replace the table between the markers in README.md; False if the markers are absent."""
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(lambda _: readme_block(results), text), encoding="utf-8")
    return True
