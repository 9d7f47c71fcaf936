#!/usr/bin/env python3
"""Probes the service the way a hostile client would, and prints figures.

    scripts/hostile.py tokens  [--backend sqlite|postgres] [--seconds S]
    scripts/hostile.py silent  [--backend …] [--connections N]
    scripts/hostile.py filters [--backend …] [--customers N]
    scripts/hostile.py all     [--backend …]

Each probe starts the release binary (target/release/customers, built if
missing) on a fresh database and a free port of 127.0.0.1, drives it, and
prints one JSON report line. No traffic leaves 127.0.0.1.

- tokens: 32, then 100 connections POST token requests with a new client id
  each, for S seconds; the server's resident memory is sampled (peak) and
  read again 5 s after the burst. Run twice: with the default per-address
  token limit, and with it raised out of the way, so that the figure shows
  the Argon2 bound itself.
- silent: with the server's open-file limit at 1,024 (--server-open-files),
  opens N connections
  that send nothing, then times /health/live during the flood and counts
  the silent connections still open after the first-byte timeout.
- filters: seeds N customers with attributes, then times a list with the
  most attribute filters allowed (10) and one with 100 (refused).
"""

import argparse
import base64
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "customers")
ACCOUNT = "T00000001"
POSTGRES = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Database:
    """A fresh SQLite file or PostgreSQL database, removed afterwards."""

    def __init__(self, backend):
        self.backend = backend
        self.dir = tempfile.mkdtemp(prefix="hostile-")
        if backend == "sqlite":
            self.url = f"sqlite://{self.dir}/customers.db"
        else:
            self.name = f"hostile_{uuid.uuid4().hex[:12]}"
            self.psql(f"CREATE DATABASE {self.name}")
            self.url = POSTGRES.rsplit("/", 1)[0] + "/" + self.name

    def psql(self, sql):
        subprocess.run(["psql", POSTGRES, "-qc", sql], check=True, capture_output=True)

    def drop(self):
        if self.backend == "postgres":
            self.psql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


class Server:
    def __init__(self, db, *args, open_files=None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, CUSTOMERS_LOG="warn")

        def limit_files():
            if open_files:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.process = subprocess.Popen(
            [BINARY, "serve", "--database", db.url, "--listen", f"127.0.0.1:{self.port}", *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, preexec_fn=limit_files, text=True)
        self.client_id = self.secret = None
        for line in self.process.stdout:
            line = line.strip()
            if line.startswith("client_id:"):
                self.client_id = line.split()[-1]
            elif line.startswith("client_secret:"):
                self.secret = line.split()[-1]
                break
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if request(self.port, "GET", "/health/live")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def rss_mib(self, field="VmRSS"):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)

    def token(self):
        body = {"grant_type": "client_credentials", "audience": f"{self.base}/v1/accounts/{ACCOUNT}"}
        basic = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
        status, answer = request(self.port, "POST", f"/v1/accounts/{ACCOUNT}/auth/token", json.dumps(body),
                                 {"authorization": f"Basic {basic}", "content-type": "application/json"})
        return json.loads(answer)["access_token"]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def request(port, method, path, body=None, headers=None, connection=None):
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    answer = response.read()
    if own:
        connection.close()
    return response.status, answer


def flood_tokens(server, connections, seconds):
    statuses = {}
    lock = threading.Lock()
    stop_at = time.time() + seconds

    def worker():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        body = json.dumps({"grant_type": "client_credentials", "audience": f"x/v1/accounts/{ACCOUNT}"})
        while time.time() < stop_at:
            basic = base64.b64encode(f"client_{uuid.uuid4().hex}:x".encode()).decode()
            try:
                status, _ = request(server.port, "POST", f"/v1/accounts/{ACCOUNT}/auth/token", body,
                                    {"authorization": f"Basic {basic}", "content-type": "application/json"},
                                    connection)
            except (OSError, http.client.HTTPException):
                status = "error"
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    peak = server.rss_mib()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, server.rss_mib())
        time.sleep(0.05)
    return statuses, peak


def probe_tokens(backend, seconds):
    results = []
    for label, args in [("default token limit", []), ("token limit out of the way", ["--token-rate-limit", "100000",
                                                                                      "--token-rate-limit-burst", "100000"])]:
        for connections in (32, 100):
            db = Database(backend)
            server = Server(db, *args)
            idle = server.rss_mib()
            statuses, peak = flood_tokens(server, connections, seconds)
            time.sleep(5)
            after = server.rss_mib()
            live = request(server.port, "GET", "/health/live")[0]
            results.append({"probe": "tokens", "backend": backend, "setting": label, "connections": connections,
                            "seconds": seconds, "statuses": {str(k): v for k, v in statuses.items()},
                            "rss_idle_mib": idle, "rss_peak_mib": max(peak, server.rss_mib("VmHWM")),
                            "rss_5s_after_mib": after, "health_live_after": live})
            server.stop()
            db.drop()
    return results


def probe_silent(backend, connections, open_files):
    db = Database(backend)
    server = Server(db, "--first-byte-timeout", "10", open_files=open_files)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(connections + 256, hard), hard))
    sockets, refused = [], 0
    started = time.time()
    for _ in range(connections):
        try:
            sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        except OSError:
            refused += 1
    opened_in = time.time() - started
    timings = []
    for _ in range(5):
        t0 = time.time()
        try:
            status = request(server.port, "GET", "/health/live")[0]
        except OSError:
            status = "error"
        timings.append({"status": status, "ms": round((time.time() - t0) * 1000, 1)})
    time.sleep(12)
    still_open = 0
    for s in sockets:
        s.setblocking(False)
        try:
            still_open += s.recv(1) != b""
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        s.close()
    server.stop()
    db.drop()
    return [{"probe": "silent", "backend": backend, "server_open_files": open_files or "hard limit", "connections": connections,
             "refused_at_connect": refused, "opened_in_s": round(opened_in, 2), "health_live_during": timings,
             "still_open_after_12s": still_open}]


def probe_filters(backend, customers):
    db = Database(backend)
    lines = "".join(json.dumps({"customer_id": f"c{i}", "first_name": f"Name{i}",
                                "attributes": {f"k{j}": f"v{(i + j) % 50}" for j in range(12)}}) + "\n"
                    for i in range(customers))
    subprocess.run([BINARY, "import", "--database", db.url, "--account", ACCOUNT, "--file", "-"], input=lines, text=True,
                   check=True, capture_output=True)
    server = Server(db)
    token = server.token()
    auth = {"authorization": f"Bearer {token}"}
    results = []
    for keys in (10, 100):
        query = "&".join(f"attributes_keys=k{j}&attributes_values=v{j}" for j in range(keys))
        t0 = time.time()
        status, _ = request(server.port, "GET", f"/v1/accounts/{ACCOUNT}/customers/users?{query}", headers=auth)
        results.append({"probe": "filters", "backend": backend, "customers": customers, "keys": keys,
                        "status": status, "ms": round((time.time() - t0) * 1000, 1)})
    server.stop()
    db.drop()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probe", choices=["tokens", "silent", "filters", "all"])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--server-open-files", type=int, default=1024,
                        help="the server's open-file limit for the silent probe (0: its own)")
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "customers"], cwd=ROOT, check=True)
    probes = ["tokens", "silent", "filters"] if args.probe == "all" else [args.probe]
    for probe in probes:
        if probe == "tokens":
            results = probe_tokens(args.backend, args.seconds)
        elif probe == "silent":
            results = probe_silent(args.backend, args.connections, args.server_open_files or None)
        else:
            results = probe_filters(args.backend, args.customers)
        for result in results:
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
