"""The shipped dialplan (dialplan/extensions_callsec.conf) hard-codes nothing an operator must
choose: no agent, no Stasis app name, no FastAGI address; every wrapper reads [globals] and
walks all of its Gosub arguments. (The real calls: test_dialplan_wrappers_sandbox.py.)"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIALPLAN = REPO / "dialplan" / "extensions_callsec.conf"
WRAPPERS = ("callsec-verify", "callsec-connect", "callsec-agi-verify", "callsec-agi-capture")


def contexts() -> dict[str, list[str]]:
    """Context name -> its dialplan lines without comments."""
    found: dict[str, list[str]] = {}
    current = ""
    for raw in DIALPLAN.read_text().splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            found[current] = []
        elif current:
            found[current].append(line)
    return found


def test_every_wrapper_exists() -> None:
    assert set(WRAPPERS) <= set(contexts())


def test_no_agent_app_name_or_agi_address_is_hard_coded() -> None:
    code = "\n".join(line for lines in contexts().values() for line in lines)
    assert "agent100" not in code and "PJSIP/" not in code
    # the one Stasis() runs on a node's app taken from CALLSEC_APP ([callsec-node])
    assert re.findall(r"Stasis\([^)]*\)", code) == ["Stasis(${CALLSEC_NODE},${CALLSEC_STASIS_ARGS})"]
    assert "Set(CALLSEC_NODE=${CUT(CALLSEC_APP,&," in code
    assert not re.search(r"AGI\((?!\$\{CALLSEC_AGI\})", code)
    assert "agi://" not in code


def test_stasis_wrappers_walk_every_argument_up_to_argc() -> None:
    for name in ("callsec-verify", "callsec-connect"):
        code = "\n".join(contexts()[name])
        assert "${ARGC}" in code and "${ARG${i}}" in code, name
        assert "Set(CALLSEC_STASIS_ARGS=${args})" in code, name
        assert "Gosub(callsec-node,s,1)" in code, name


def test_nodes_are_tried_in_turn_and_a_down_one_is_skipped() -> None:
    code = "\n".join(contexts()["callsec-node"])
    assert "FIELDQTY(CALLSEC_APP,&)" in code and "GLOBAL(CALLSEC_NEXT_NODE)" in code
    assert '"${STASISSTATUS}" != "FAILED"' in code  # app not registered: the next node
    assert "Set(CALLSEC_ERROR=no_node)" in code and "Set(CALLSEC_RESULT=error)" in code


def test_fastagi_wrappers_share_one_runner_that_walks_every_argument() -> None:
    runner = "\n".join(contexts()["callsec-agi-run"])
    assert "${ARGC}" in runner and "URIENCODE" in runner
    for name in ("callsec-agi-verify", "callsec-agi-capture"):
        assert "Goto(callsec-agi-run,s,1)" in "\n".join(contexts()[name]), name


def test_a_missing_target_or_global_is_a_warning_and_an_error_result() -> None:
    code = "\n".join(line for lines in contexts().values() for line in lines)
    for reason in ("no_app", "no_agi", "no_target"):
        assert f"Set(CALLSEC_ERROR={reason})" in code
    assert code.count("Log(WARNING,") >= 3
    assert code.count("Set(CALLSEC_RESULT=error)") >= 3
