"""vCard files with mutated cards between good ones, imported into the real store: the import
never raises, every good card becomes (or updates) its customer, bad cards are reported by
position and UID without their values, and the report adds up."""

from __future__ import annotations

import itertools
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callsec_ari.store.context import Store
from callsec_ari.store.vcard import import_vcards

_serial = itertools.count(1)


def good_card(n: int, version: str) -> tuple[str, str, str]:
    """(card text, UID, mobile): unique per call across the whole run."""
    mobile = f"+49152{os.getpid() % 100:02d}{n:06d}"
    uid = f"fuzz-{os.getpid()}-{n}"
    tel = f"TEL;VALUE=uri;TYPE=cell:tel:{mobile}" if version == "4.0" \
        else f"TEL;TYPE=CELL:{mobile}"
    lines = ["BEGIN:VCARD", f"VERSION:{version}", f"UID:{uid}", f"FN:Fuzz Kunde {n}",
             f"N:Kunde {n};Fuzz;;;", tel, f"EMAIL:fuzz.{n}@example.org", "LANG:de"]
    return "\r\n".join([*lines, "END:VCARD"]) + "\r\n", uid, mobile


MUTATIONS = ["delete", "duplicate", "truncate", "garbage", "value", "no_end", "bad_phone",
             "bad_email", "bad_method", "empty_uid"]


def mutate(text: str, how: str, index: int, junk: str) -> str:
    lines = text.rstrip("\r\n").split("\r\n")
    index = 2 + index % (len(lines) - 3)  # a line between VERSION and END
    if how == "delete":
        del lines[index]
    elif how == "duplicate":
        lines.insert(index, lines[index])
    elif how == "truncate":
        lines[index] = lines[index][: len(junk) % max(1, len(lines[index]))]
    elif how == "garbage":
        lines.insert(index, junk)
    elif how == "value":
        lines[index] = lines[index].split(":", 1)[0] + ":" + junk
    elif how == "no_end":
        lines.pop()
    elif how == "bad_phone":
        lines = [("TEL;TYPE=CELL:+49 000 " + junk[:5]) if ln.startswith("TEL") else ln
                 for ln in lines]
    elif how == "bad_email":
        lines = [("EMAIL:" + junk) if ln.startswith("EMAIL") else ln for ln in lines]
    elif how == "bad_method":
        lines.insert(index, "X-CALLSEC-METHOD:" + junk)
    else:
        lines = [("UID:" if ln.startswith("UID") else ln) for ln in lines]
    return "\r\n".join(lines) + "\r\n"


CARDS = st.lists(st.tuples(st.booleans(), st.sampled_from(MUTATIONS), st.integers(0, 50),
                           st.text(max_size=25), st.sampled_from(["3.0", "4.0"])),
                 min_size=1, max_size=6)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(CARDS)
def test_mutated_cards_between_good_ones_never_break_the_import(
        store: Store, cards: list[tuple[bool, str, int, str, str]]) -> None:
    text, good, mobiles = "", [], []
    for intact, how, index, junk, version in cards:
        card, uid, mobile = good_card(next(_serial), version)
        mobiles.append(mobile)
        if intact:
            good.append((uid, mobile))
            text += card
        else:
            text += mutate(card, how, index, junk)
    report = import_vcards(store.customers, text)
    begins = sum(ln.strip().upper() == "BEGIN:VCARD" for ln in text.splitlines())
    assert report.total == begins
    failed_uids = {f.uid for f in report.failed}
    for uid, mobile in good:
        customer = store.customers.find_by_phone(mobile)
        assert customer is not None and customer.uid == uid, uid
        assert uid not in failed_uids
    for failure in report.failed:
        assert 1 <= failure.position <= begins and failure.line >= 1
        shown = str(failure)
        assert not any(m[3:] in shown for m in mobiles) and "@example.org" not in shown
