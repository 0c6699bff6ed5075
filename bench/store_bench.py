"""Encrypted-store benchmark (not a test): vault stores/s and reveals/s, and caller-ID
look-up latency (p50/p99) with 1,000,000 customers, on SQLite and PostgreSQL.

    .venv/bin/python bench/store_bench.py bench/results/store.json \
        [--customers 1000000] [--ops 3000] [--pg-url postgresql+psycopg://...]

PostgreSQL is used when ``--pg-url`` or ``CALLSEC_TEST_PG_URL`` is set (``tools/pg.sh start``);
a throwaway database is created in it and dropped afterwards.

How the million customers are built fast: not through ``CustomerStore.create`` (one
transaction each) but by bulk-inserting ready rows: one shared data key (a real one, so
look-ups decrypt), the phone's blind index computed with the real HMAC key for every row;
rows go in with ``executemany`` in 20,000-row batches on SQLite and with ``COPY ... FROM
STDIN`` on PostgreSQL. The customers the look-ups will ask for (drawn before the build) get
their name and phone encrypted with the key (AES-GCM bound to the row, as the store does);
every other row gets random bytes of the very same length in those columns: the tables and
the index are as large as with a million real encryptions, which took most of the build time. A look-up is the full ``CustomerStore.find_by_phone`` (normalise, HMAC, indexed
SELECT, load + decrypt the customer), timed one by one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, make_url, text

from callsec_ari.config_check import load_settings
from callsec_ari.store.context import Store, init_keys, open_store
from callsec_ari.store.customers import CustomerData, Name, Phone
from callsec_ari.store.models import Base, utcnow

BATCH = 20_000


def number(i: int) -> str:
    return f"+4915{10_000_000 + i:09d}"  # +49 15x mobile range, all valid


@contextmanager
def database(kind: str, pg_url: str | None) -> Iterator[Store]:
    with tempfile.TemporaryDirectory(prefix="callsec-bench-") as tmp:
        env = {"CALLSEC_CRYPTO__KEYRING_DIR": f"{tmp}/keys"}
        if kind == "sqlite":
            env["CALLSEC_DATABASE__URL"] = f"sqlite:///{tmp}/bench.db"
            settings = load_settings(None, env=env)
            init_keys(settings)
            store = open_store(settings)
            try:
                yield store
            finally:
                store.close()
            return
        assert pg_url
        name = "callsec_bench_" + secrets.token_hex(4)
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        env["CALLSEC_DATABASE__URL"] = make_url(pg_url).set(database=name).render_as_string(
            hide_password=False)
        settings = load_settings(None, env=env)
        init_keys(settings)
        store = open_store(settings)
        try:
            yield store
        finally:
            store.close()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def bench_vault(store: Store, ops: int, writers: int) -> dict[str, float]:
    """``ops`` stores from ``writers`` threads at once (calls storing their captures side by
    side; three values per call), then the reveals one by one."""
    pans = [f"4{random.randrange(10**14, 10**15)}" for _ in range(ops)]
    store.vault.put("card_number", pans[0], call_id="warm-up")  # pool and statements warm

    def put(i: int) -> str:
        return store.vault.put("card_number", pans[i], call_id=f"call-{i // 3}")

    with ThreadPoolExecutor(writers) as pool:
        started = time.perf_counter()
        refs = list(pool.map(put, range(ops), chunksize=3))
        stores = ops / (time.perf_counter() - started)
    started = time.perf_counter()
    for ref in refs:
        store.vault.reveal(ref, actor="bench", reason="benchmark", allowed=lambda kind: True)
    reveals = ops / (time.perf_counter() - started)
    return {"stores_per_s": round(stores, 1), "reveals_per_s": round(reveals, 1), "ops": ops,
            "writers": writers}


def _name(i: int) -> str:
    return json.dumps({"full": f"Bench {i}", "given": "", "family": ""})


def _rows(store: Store, start: int, stop: int, key: Any, key_id: str, real: set[int]
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = utcnow()
    overhead = len(key.encrypt("x", table="customers", column="name", row_id="x")) - 1
    customers, phones = [], []
    for i in range(start, stop):
        ref, pid, e164 = f"C-B{i:015d}", f"p{i:015d}", number(i)
        if i in real:
            name_enc = key.encrypt(_name(i), table="customers", column="name", row_id=ref)
            number_enc = key.encrypt(e164, table="customer_phones", column="number", row_id=pid)
        else:  # as long as the real ciphertext; only the looked-up rows are ever decrypted
            name_enc = secrets.token_bytes(len(_name(i).encode()) + overhead)
            number_enc = secrets.token_bytes(len(e164.encode()) + overhead)
        customers.append({
            "ref": ref, "key_id": key_id, "language": "de", "preferred_method": "sms",
            "created_at": now, "updated_at": now, "name_enc": name_enc})
        phones.append({
            "id": pid, "customer_ref": ref, "bi": store.blind.phone_e164(e164), "kind": "mobile",
            "receives_codes": True, "position": 0, "number_enc": number_enc})
    return customers, phones


def _copy(store: Store, table: str, rows: list[dict[str, Any]]) -> None:
    raw = store.db.engine.raw_connection()
    try:
        cols = list(rows[0])
        with raw.cursor() as cur, cur.copy(  # type: ignore[attr-defined]
                f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in cols])
        raw.commit()
    finally:
        raw.close()


def build_customers(store: Store, count: int, real: set[int]) -> float:
    started = time.perf_counter()
    with store.db.session() as s:
        key = store.keys.create(s, "customer", "bench-shared")
    for start in range(0, count, BATCH):
        customers, phones = _rows(store, start, min(count, start + BATCH), key, key.key_id,
                                  real)
        if store.db.dialect == "postgresql":
            _copy(store, "customers", customers)
            _copy(store, "customer_phones", phones)
            continue
        with store.db.session() as s:
            s.execute(insert(Base.metadata.tables["customers"]), customers)
            s.execute(insert(Base.metadata.tables["customer_phones"]), phones)
    if store.db.dialect == "postgresql":
        with store.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE customers")
            c.exec_driver_sql("VACUUM ANALYZE customer_phones")
    else:
        with store.db.engine.connect() as c:
            c.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def bench_lookup(store: Store, customers: int, lookups: int) -> dict[str, Any]:
    asked = [random.randrange(customers) for _ in range(lookups)]
    build = build_customers(store, customers, {0, *asked})
    real = store.customers.create(CustomerData(name=Name("Real Person"),
                                               phones=(Phone("+49 170 1234567"),)))
    store.customers.find_by_phone(number(0))  # warm-up
    latencies, misses = [], 0
    for i in asked:
        started = time.perf_counter()
        found = store.customers.find_by_phone(number(i))
        latencies.append((time.perf_counter() - started) * 1000)
        if found is None or found.ref != f"C-B{i:015d}":
            misses += 1
    assert misses == 0, f"{misses} look-ups failed"
    assert store.customers.find_by_phone("0170 1234567") == real
    latencies.sort()
    return {"customers": customers, "lookups": lookups, "build_seconds": round(build, 1),
            "p50_ms": round(statistics.median(latencies), 3),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 3),
            "max_ms": round(latencies[-1], 3)}


def run(kind: str, args: argparse.Namespace, pg_url: str | None) -> dict[str, Any]:
    with database(kind, pg_url) as store:
        print(f"[{kind}] vault ...", file=sys.stderr, flush=True)
        vault = bench_vault(store, args.ops, args.writers)
        print(f"[{kind}] {vault}; building {args.customers} customers ...", file=sys.stderr,
              flush=True)
        lookup = bench_lookup(store, args.customers, args.lookups)
        print(f"[{kind}] {lookup}", file=sys.stderr, flush=True)
        return {"vault": vault, "caller_id_lookup": lookup}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--writers", type=int, default=2,
                        help="threads storing vault items at once")
    parser.add_argument("--pg-url", default=os.environ.get("CALLSEC_TEST_PG_URL"))
    args = parser.parse_args()
    random.seed(1)
    results: dict[str, Any] = {
        "benchmark": "store", "created": utcnow().isoformat(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "targets": {"vault_stores_per_s": 2000, "lookup_p99_ms": 2.0},
        "sqlite": run("sqlite", args, None),
    }
    results["postgresql"] = run("postgresql", args, args.pg_url) if args.pg_url else \
        {"skipped": "no --pg-url / CALLSEC_TEST_PG_URL"}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
