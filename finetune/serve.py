"""The web tier's one entry point: `python -m finetune.serve` (used by `make run`, the Dockerfile, docker-compose and
the tests).

A small pre-fork supervisor: it opens the listening socket once, then starts WEB_WORKERS daphne processes that all
accept on that socket (`daphne --fd`), so the kernel spreads connections over them and every core serves HTTP and
websockets. Each worker runs at most WEB_THREADS requests at once (finetune.web) over a psycopg connection pool of
DB_POOL_MAX_SIZE connections, so the whole tier never holds more than WEB_WORKERS x DB_POOL_MAX_SIZE database
connections. A worker that dies is started again; SIGTERM/SIGINT stop them all.

    python -m finetune.serve --host 0.0.0.0 --port 8000 [--workers N] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Connections the rest of a one-host deployment holds (training worker + its heartbeat thread, two default worker
# children, the inference worker, beat, the Celery parents) plus room for an operator's psql and migrations.
OTHER_PROCESSES_CONNECTIONS = 12


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        sys.exit(f"{name} must be an integer, got {value!r}")


def default_workers() -> int:
    """One web process per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Plan:
    """How the web tier is laid out: processes, requests at once per process, pooled connections per process."""

    workers: int
    threads: int
    pool_size: int

    @property
    def max_connections(self) -> int:
        return self.workers * self.pool_size


def make_plan(workers: int | None, threads: int | None) -> Plan:
    workers = workers or _env_int("WEB_WORKERS", 0) or default_workers()
    threads = threads or _env_int("WEB_THREADS", 0) or 6
    # One connection per request thread, plus two for what runs outside them (websocket handshakes, downloads and
    # the playground's one-shot answer, which give theirs back before waiting).
    pool = _env_int("DB_POOL_MAX_SIZE", 0) or threads + 2
    return Plan(workers=workers, threads=threads, pool_size=pool)


def check_connection_budget(plan: Plan, env: dict[str, str]) -> str:
    """Compare the tier's connections with PostgreSQL's max_connections; refuse a plan that cannot fit."""
    os.environ.update({k: v for k, v in env.items() if k.startswith(("DB_", "POSTGRES_", "DATABASE_"))})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "finetune.settings")
    try:
        import psycopg

        from finetune import settings

        db = settings.DATABASES["default"]
        with psycopg.connect(
            dbname=db["NAME"],
            user=db["USER"],
            password=db["PASSWORD"],
            host=db["HOST"],
            port=db["PORT"] or None,
            connect_timeout=5,
        ) as conn:
            row = conn.execute("SHOW max_connections").fetchone()
            reserved = conn.execute("SHOW superuser_reserved_connections").fetchone()
        limit = int(row[0]) - int(reserved[0]) if row and reserved else 0
    except Exception as exc:  # the database may come up later; the pool retries then
        return f"database connection budget not checked ({exc.__class__.__name__}: {exc})"
    need = plan.max_connections + OTHER_PROCESSES_CONNECTIONS
    line = (
        f"database connections: web {plan.workers} x {plan.pool_size} = {plan.max_connections}, "
        f"other processes ~{OTHER_PROCESSES_CONNECTIONS}, PostgreSQL allows {limit}"
    )
    if need > limit:
        sys.exit(
            f"{line}: too many. Lower WEB_WORKERS or DB_POOL_MAX_SIZE, raise max_connections, or put PgBouncer "
            "in front of PostgreSQL (README: Serving many users)."
        )
    return line


class Supervisor:
    """Starts the daphne workers on a shared socket, restarts any that die, stops them all on a signal."""

    def __init__(self, sock: socket.socket, plan: Plan, env: dict[str, str], daphne_args: list[str]) -> None:
        self.sock, self.plan, self.env, self.daphne_args = sock, plan, env, daphne_args
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.restarts: list[float] = []

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "daphne",
            "--fd",
            str(self.sock.fileno()),
            *self.daphne_args,
            "finetune.asgi:application",
        ]

    def spawn(self) -> None:
        proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, pass_fds=[self.sock.fileno()])
        self.children[proc.pid] = proc

    def stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for _ in range(self.plan.workers):
            self.spawn()
        while not self.stopping:
            time.sleep(0.2)
            for pid, proc in list(self.children.items()):
                if proc.poll() is None or self.stopping:
                    continue
                del self.children[pid]
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < 60] + [now]
                if len(self.restarts) > 5 * self.plan.workers:
                    print("finetune.serve: web workers keep dying; giving up", file=sys.stderr, flush=True)
                    self.stopping = True
                    break
                print(
                    f"finetune.serve: web worker {pid} exited with {proc.returncode}; starting another",
                    file=sys.stderr,
                    flush=True,
                )
                self.spawn()
        return self.shutdown()

    def shutdown(self, grace_s: float = 10.0) -> int:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.children.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.sock.close()
        return 0


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _fresh_metrics_dir() -> Path:
    """An empty folder where the web processes keep their request metrics, so /metrics, answered by any one of them,
    counts all of them (prometheus_client's multiprocess mode; emptied at each start)."""
    import shutil
    import tempfile

    folder = Path(tempfile.gettempdir()) / f"finetune-metrics-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=_env_int("PORT", 8000))
    parser.add_argument("--workers", type=int, default=None, help="web processes (WEB_WORKERS; default: one per core)")
    parser.add_argument(
        "--threads", type=int, default=None, help="requests each process runs at once (WEB_THREADS; default 6)"
    )
    parser.add_argument(
        "--access-log",
        default=os.environ.get("WEB_ACCESS_LOG", ""),
        help="file for the access log, - for stdout (WEB_ACCESS_LOG; default: none)",
    )
    args = parser.parse_args(argv)

    plan = make_plan(args.workers, args.threads)
    env = dict(os.environ)
    env.update({"WEB_THREADS": str(plan.threads), "DB_POOL_MAX_SIZE": str(plan.pool_size), "FINETUNE_PROCESS": "web"})
    env.setdefault("DB_APPLICATION_NAME", "finetune-web")
    if plan.workers > 1 and not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = str(_fresh_metrics_dir())
    env.setdefault("DB_STATEMENT_TIMEOUT_MS", "30000")
    daphne_args = [
        "-v",
        "1" if args.access_log else "0",
        "--http-timeout",
        env.get("WEB_HTTP_TIMEOUT_S", "300"),
        "--application-close-timeout",
        "10",
    ]
    if args.access_log:
        daphne_args += ["--access-log", args.access_log]
    if env.get("BEHIND_PROXY", "").lower() in ("1", "true", "yes", "on"):
        daphne_args.append("--proxy-headers")

    budget = check_connection_budget(plan, env)
    sock = listen(args.host, args.port)
    print(
        f"finetune.serve: http://{args.host}:{args.port}/ with {plan.workers} daphne workers x {plan.threads} "
        f"requests at once; {budget}",
        flush=True,
    )
    return Supervisor(sock, plan, env, daphne_args).run()


if __name__ == "__main__":
    sys.exit(main())
