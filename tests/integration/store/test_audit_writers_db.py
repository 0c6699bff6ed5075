"""One audit chain with several writers (#16.2): two callsec processes (two nodes) append at
once to one database, each with several threads; the chain stays one valid chain and
``callsec audit verify`` passes. Within a process, concurrent appends go in as groups (one
transaction and one head lock per group)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from callsec_ari.store.audit import AuditEntry, AuditLog
from callsec_ari.store.context import Store
from callsec_ari.store.models import AuditRow

ROOT = Path(__file__).resolve().parents[3]
NODE = textwrap.dedent("""
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from callsec_ari.config_check import load_settings
    from callsec_ari.store.context import open_store

    store = open_store(load_settings(sys.argv[1], env={}))
    node = sys.argv[2]
    def one(n):
        store.audit.append(f"node:{node}", "cluster.test", f"entry-{n}", {"node": node})
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(int(sys.argv[3]))))
    store.close()
""")


def test_two_processes_appending_at_once_keep_one_valid_chain(config_path: Path,
                                                              store: Store) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    nodes = [subprocess.Popen([sys.executable, "-c", NODE, str(config_path), name, "60"],
                              env=env, stderr=subprocess.PIPE, text=True)
             for name in ("n1", "n2")]
    for proc in nodes:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    with store.db.session() as s:
        actors = dict(s.execute(select(AuditRow.actor, func.count()).where(
            AuditRow.action == "cluster.test").group_by(AuditRow.actor)).all())
    assert actors == {"node:n1": 60, "node:n2": 60}
    done = subprocess.run([sys.executable, "-m", "callsec_ari", "-c", str(config_path),
                           "audit", "verify"], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_concurrent_appends_go_in_as_groups_with_contiguous_entries(store: Store) -> None:
    other = AuditLog(store.db, hmac_key=store.keyring.audit_key())  # a second node's log
    commits: list[int] = []
    original = store.audit._append_group

    def counted(group: list[Any]) -> list[AuditEntry]:
        commits.append(len(group))
        return original(group)

    store.audit._group._write = counted

    def one(n: int) -> int:
        log = store.audit if n % 2 else other
        return log.append("system", "cluster.test", f"entry-{n}", {"n": n}).seq

    with ThreadPoolExecutor(8) as pool:
        seqs = list(pool.map(one, range(200)))
    assert len(set(seqs)) == 200
    assert sum(commits) == 100 and len(commits) < 100  # some went in together
    assert store.audit.verify().ok
