"""Launchers for the parts of a scaled-out deployment: PgBouncer in transaction mode in front of a
PostgreSQL database (``pgbouncer``, and ``pgbouncer_admin`` for its console), a Redis master with
a replica watched by a Sentinel (``redis_with_sentinel``), and a one-node Redis Cluster
(``redis_cluster_node``).

Each runs real programs (Debian's ``pgbouncer``, ``redis-server``, ``redis-sentinel``) on free
ports in a folder of the caller's, and stops them on leaving the ``with`` block. Tests, benches and
the multi-instance tests import them::

    with pgbouncer(database_url, tmp_path) as pooled_url: ...
    with redis_with_sentinel(tmp_path) as redis: redis.url; redis.fail_over()
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis
from sqlalchemy.engine import make_url

from tests.redis_server import free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"
START_SECONDS = 30.0  # bounds a wait for a program to answer; a loaded machine may take a while


def _poll(what: str, ready: object, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Call ``ready`` until it returns true; fail with ``what`` after ``timeout`` seconds."""
    assert callable(ready)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except (redis.RedisError, psycopg.Error, OSError):
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


# --- PgBouncer ----------------------------------------------------------------------------------
def _unprivileged_user() -> str | None:
    """PgBouncer refuses to run as root: the user it switches to then (``-u``), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("pgbouncer will not run as root and there is no postgres or nobody user")


@contextmanager
def pgbouncer(database_url: str, workdir: Path, *, pool_size: int = 20) -> Iterator[str]:
    """PgBouncer in transaction mode on a free port in front of database_url; yields a
    postgresql+psycopg URL through it."""
    target = make_url(database_url)
    user = target.username or "postgres"
    port = free_port()
    folder = workdir / f"pgbouncer-{port}"
    folder.mkdir(parents=True)
    # Trust, as the local PostgreSQL does: the user must still be listed in the auth file.
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                # Any database name maps to the same name on the target server.
                f"* = host={target.host or '127.0.0.1'} port={target.port or 5432}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",  # TCP only: no socket file, whatever the folder's path or owner
                "auth_type = trust",
                f"auth_file = {folder / 'userlist.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {pool_size}",
                "max_client_conn = 1000",
                f"admin_users = {user}",
                f"stats_users = {user}",
                "ignore_startup_parameters = extra_float_digits",
                "",
            ]
        )
    )
    argv = [PGBOUNCER]
    switch_to = _unprivileged_user()
    if switch_to is not None:
        argv += ["-u", switch_to]  # it reads its files first, then drops to that user
    process = _spawn([*argv, str(folder / "pgbouncer.ini")], folder / "pgbouncer.log")
    try:
        plain = f"postgresql://{user}@127.0.0.1:{port}/{target.database}"
        _poll(
            f"pgbouncer on port {port} (log: {folder / 'pgbouncer.log'})",
            lambda: _connects(plain),
            START_SECONDS,
            process,
        )
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}/{target.database}"
    finally:
        _stop(process)


def _connects(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=2) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def pgbouncer_admin(pooled_url: str, command: str) -> list[tuple[object, ...]]:
    """Run ``command`` (``SHOW SERVERS``, ``SHOW POOLS`` …) on the console of the PgBouncer
    at ``pooled_url``."""
    url = make_url(pooled_url)
    console = f"postgresql://{url.username}@{url.host}:{url.port}/pgbouncer"
    # The console speaks the simple query protocol only, and knows no transactions.
    with psycopg.connect(console, autocommit=True, prepare_threshold=None) as conn:
        return list(conn.cursor().execute(command.encode(), prepare=False).fetchall())


# --- Redis with Sentinel -------------------------------------------------------------------------
def _redis_command(port: int, *args: object) -> object:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2) as client:
        return client.execute_command(*args)


def _info(port: int, section: str) -> dict[str, object]:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2) as client:
        info: dict[str, object] = client.info(section)
        return info


def _start_redis(workdir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    process = _spawn(
        [
            REDIS_SERVER,
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),
            *("--dir", str(workdir)),
            # Full syncs (a new replica, an old master made replica) start at once, not after 5 s.
            *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
            *extra,
        ],
        workdir / f"redis-{port}.log",
    )
    _poll(f"redis-server on port {port}", lambda: _redis_command(port, "PING"), START_SECONDS, process)
    return process


@dataclass
class SentinelRedis:
    """A Redis master and its replica, watched by one Sentinel, all on free ports."""

    url: str  # the redis+sentinel:// URL
    master_name: str
    sentinel_port: int
    workdir: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    def master_port(self) -> int:
        """Return the port of the master the Sentinel names now."""
        return int(self._master()["port"])

    def _master(self) -> dict[str, str]:
        # SENTINEL MASTER, which redis-py's master discovery reads: it names the new master once
        # the failover has ended (GET-MASTER-ADDR-BY-NAME does as soon as the replica is promoted).
        master = _redis_command(self.sentinel_port, "SENTINEL", "MASTER", self.master_name)
        assert isinstance(master, dict), master
        return {_text(key): _text(value) for key, value in master.items()}

    def replica_ports(self) -> list[int]:
        """Return the ports of the replicas the Sentinel knows as up and linked to the master."""
        replicas = _redis_command(self.sentinel_port, "SENTINEL", "REPLICAS", self.master_name)
        assert isinstance(replicas, list)
        ports = []
        for replica in replicas:
            pairs = (
                zip(replica[::2], replica[1::2], strict=True)
                if isinstance(replica, list)
                else replica.items()
            )
            fields = {_text(key): _text(value) for key, value in pairs}
            if fields["flags"] == "slave" and fields.get("master-link-status") == "ok":
                ports.append(int(fields["port"]))
        return ports

    def command(self, port: int, *args: object) -> object:
        """Run one command on the Redis at ``port`` (a connection of its own)."""
        return _redis_command(port, *args)

    def fail_over(self, timeout: float = 30.0) -> None:
        """Force a failover and wait until the Sentinel names the new master, which then takes writes.

        The master's writes reach the replica first (``WAIT``), and the old master is a replica of
        the new one on return, so this failover loses nothing.
        """
        old = self.master_port()
        _poll("a replica in sync that the Sentinel knows", self.replica_ports, timeout)
        _redis_command(old, "WAIT", 1, int(timeout * 1000))

        def started() -> bool:
            try:
                answer = _redis_command(self.sentinel_port, "SENTINEL", "FAILOVER", self.master_name)
            except redis.ResponseError as error:  # INPROG: the previous failover is still settling
                if "INPROG" in str(error) or "NOGOODSLAVE" in str(error):
                    return False
                raise
            return answer in (b"OK", "OK", True)

        _poll("the Sentinel accepting a failover", started, timeout)
        new = self.wait_for_new_master(old, timeout)
        # The Sentinel makes the old master a replica of the new one when it next reads its INFO,
        # up to 10 s later; until then it still takes writes from the connections it has. Do now
        # what the Sentinel would, so that no write lands there after this returns.
        _redis_command(old, "REPLICAOF", "127.0.0.1", new)
        _poll(
            "the old master following the new one",
            lambda: _info(old, "replication").get("master_link_status") == "up",
            timeout,
        )

    def kill_master(self) -> int:
        """Stop the master process without a word to anyone, as a crashed host would; return its port."""
        port = self.master_port()
        _stop(self.processes[port])
        return port

    def wait_for_new_master(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until the Sentinel names a master other than ``old_port`` that says it is one;
        return its port."""

        def switched() -> bool:
            master = self._master()
            port = int(master["port"])
            settled = "failover_in_progress" not in master["flags"]
            return settled and port != old_port and _info(port, "replication")["role"] == "master"

        _poll(f"a new master in place of {old_port}", switched, timeout)
        return self.master_port()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def redis_with_sentinel(workdir: Path, *, master_name: str = "idp") -> Iterator[SentinelRedis]:
    """A master, a replica and a Sentinel that fails over within about a second of the master's loss."""
    folder = workdir / f"sentinel-{master_name}-{free_port()}"
    folder.mkdir(parents=True)
    with ExitStack() as stack:
        master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
        processes: dict[int, subprocess.Popen[bytes]] = {}
        master = processes[master_port] = _start_redis(folder, master_port)
        stack.callback(lambda: _stop(processes[master_port]))
        replica = processes[replica_port] = _start_redis(
            folder, replica_port, "--replicaof", "127.0.0.1", str(master_port)
        )
        stack.callback(lambda: _stop(processes[replica_port]))
        del master, replica
        # The Sentinel learns the replica from the master's INFO, read at once when it starts.
        _poll(
            "the replica's first sync",
            lambda: _info(replica_port, "replication").get("master_link_status") == "up",
            START_SECONDS,
        )
        config = folder / "sentinel.conf"  # the Sentinel rewrites it: a file of its own
        config.write_text(
            "\n".join(
                [
                    f"port {sentinel_port}",
                    "bind 127.0.0.1",
                    f"dir {folder}",
                    f"sentinel monitor {master_name} 127.0.0.1 {master_port} 1",
                    f"sentinel down-after-milliseconds {master_name} 500",
                    f"sentinel failover-timeout {master_name} 2000",
                    f"sentinel parallel-syncs {master_name} 1",
                    "",
                ]
            )
        )
        sentinel = _spawn([REDIS_SENTINEL, str(config)], folder / f"sentinel-{sentinel_port}.log")
        stack.callback(lambda: _stop(sentinel))
        running = SentinelRedis(
            url=f"redis+sentinel://127.0.0.1:{sentinel_port}/{master_name}/0",
            master_name=master_name,
            sentinel_port=sentinel_port,
            workdir=folder,
            processes=processes,
        )
        _poll("the Sentinel knowing the replica", running.replica_ports, START_SECONDS, sentinel)
        yield running


# --- a one-node Redis Cluster ---------------------------------------------------------------------
@contextmanager
def redis_cluster_node(workdir: Path) -> Iterator[int]:
    """A redis-server in cluster mode owning every slot; yields its port.

    One node answers every key, so a plain client works, yet the node refuses what a cluster
    refuses: a script or a transaction whose keys hash to different slots (CROSSSLOT).
    """
    port = free_port()
    folder = workdir / f"cluster-{port}"
    folder.mkdir(parents=True)
    process = _start_redis(
        folder,
        port,
        *("--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf")),
        # The bus port defaults to port + 10000, past 65535 for a high free port.
        *("--cluster-port", str(free_port())),
    )
    try:
        _redis_command(port, "CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        _poll(
            "the cluster node owning every slot",
            lambda: b"cluster_state:ok" in _as_bytes(_redis_command(port, "CLUSTER", "INFO")),
            START_SECONDS,
            process,
        )
        yield port
    finally:
        _stop(process)


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()
