"""
Login latency benchmark: a real ``twistd denoisecast`` on loopback, N
concurrent logins, alone and while anonymous registrations flood in, and
optionally while publishers are live.

    .venv/bin/python bench/logins.py --logins 50 --registrations 60 [--publishers 2]

Each login is a fresh client (CSRF, then POST /api/auth/login) in its own
thread; a 503 ``busy`` is retried after the ``Retry-After`` it names, so the
latency printed is what a person would wait until logged in, retries
included.  Prints the median, 90th percentile and maximum per phase, how
many 503s were answered, and the server's password-hashing cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from media import Http, start_server, stop_clients  # noqa: E402

PASSWORD = "bench-password"


def timed_login(base: str, user: str, out: list[tuple[float, int, int]]) -> None:
    client = Http(base)
    began = time.monotonic()
    status = client.call("POST", "/api/auth/login", {"username": user, "password": PASSWORD})
    out.append((time.monotonic() - began, client.busy, status))


def flood_registrations(base: str, names: list[str], out: list[tuple[float, int, int]]) -> None:
    def register(name: str) -> None:
        client = Http(base)
        began = time.monotonic()
        status, _ = client._call("POST", "/api/auth/register", {"username": name, "password": PASSWORD})
        out.append((time.monotonic() - began, int(status == 503), status))

    threads = [threading.Thread(target=register, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def login_phase(base: str, users: list[str], registrations: list[str] | None = None) -> dict[str, object]:
    results: list[tuple[float, int, int]] = []
    flood: list[tuple[float, int, int]] = []
    flooder = None
    if registrations:
        flooder = threading.Thread(target=flood_registrations, args=(base, registrations, flood))
        flooder.start()
        time.sleep(0.2)  # the registrations arrive first, as in the probe
    threads = [threading.Thread(target=timed_login, args=(base, u, results)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if flooder is not None:
        flooder.join()
    seconds = sorted(r[0] for r in results)
    return {
        "n": len(seconds),
        "ok": sum(1 for r in results if r[2] == 200),
        "median": seconds[len(seconds) // 2],
        "p90": seconds[int(0.9 * (len(seconds) - 1))],
        "max": seconds[-1],
        "busy": sum(r[1] for r in results),
        "registrations": {
            "n": len(flood),
            "created": sum(1 for r in flood if r[2] == 201),
            "busy": sum(1 for r in flood if r[2] == 503),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--registrations", type=int, default=60)
    parser.add_argument("--publishers", type=int, default=0, help="broadcasts live during the phases (bench/media.py's publisher)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="denoisecast-bench-logins-"))
    server, base = start_server(work)
    publishers: list[subprocess.Popen[bytes]] = []
    try:
        users = [f"user{i}" for i in range(args.logins)]
        pubs = [f"pub{i}" for i in range(args.publishers)]
        began = time.monotonic()
        for name in users + pubs:
            assert Http(base).call("POST", "/api/auth/register", {"username": name, "password": PASSWORD}) == 201
        per_registration = (time.monotonic() - began) / max(1, len(users) + len(pubs))
        media = str(Path(__file__).with_name("media.py"))
        publishers = [
            subprocess.Popen([sys.executable, media, "--base", base, "--role", "publisher", "--users", p,
                              "--seconds", "600", "--out", str(work / f"{p}.json")])
            for p in pubs
        ]
        if pubs:
            time.sleep(8)  # the broadcasts are up and denoised before the logins start
        phases = {
            "logins alone": login_phase(base, users),
            f"logins during {args.registrations} registrations": login_phase(
                base, users, [f"new{i}" for i in range(args.registrations)]
            ),
        }
    finally:
        stop_clients(work, [f"pub{i}" for i in range(args.publishers)], publishers)
        server.terminate()
        server.wait(30)
    print(f"{os.cpu_count()} cores; {args.publishers} broadcasts live; one registration alone "
          f"{per_registration * 1000:.0f} ms (sequential, HTTP included)")
    for name, found in phases.items():
        flood = found["registrations"]
        print(f"{name}: {found['ok']}/{found['n']} logged in; median {found['median']:.2f} s, "
              f"p90 {found['p90']:.2f} s, max {found['max']:.2f} s; {found['busy']} 503 busy (retried)"
              + (f"; registrations: {flood['created']}/{flood['n']} created, {flood['busy']} answered 503"  # type: ignore[index]
                 if flood["n"] else ""))  # type: ignore[index]
    print(json.dumps(phases))


if __name__ == "__main__":
    main()
