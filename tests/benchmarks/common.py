"""Helpers shared by the benchmark scripts in this directory.

Plain functions: logging, PostgreSQL set-up, Django set-up, gunicorn, wrk,
CPU accounting from /proc, machine information and rewriting one section of
docs/PERFORMANCE.md. Each script keeps its own constants and passes them in.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
DOC = ROOT / "docs" / "PERFORMANCE.md"

HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def log(message: str) -> None:
    """Print one progress line, flushed at once."""
    print(f"[bench] {message}", flush=True)


def started_label() -> str:
    """The current time in UTC, as the report shows when a run started."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- PostgreSQL and Django -------------------------------------------------------------


def pg_connect(dbname: str):
    """A psycopg2 connection to ``dbname`` on the local server."""
    import psycopg2

    return psycopg2.connect(host=HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=5)


def recreate_database(name: str) -> None:
    """Drop (forcibly) and create the database ``name``."""
    conn = pg_connect("postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def database_backends(dbname: str) -> list[int]:
    """The pids of the PostgreSQL backends connected to ``dbname``."""
    conn = pg_connect("postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [dbname],
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def postgres_version(dbname: str = "postgres") -> str:
    """``SHOW server_version`` of the local PostgreSQL."""
    conn = pg_connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            return cur.fetchone()[0]
    finally:
        conn.close()


def setup_django(env: Mapping[str, str], unset: Iterable[str]) -> None:
    """Set this process's environment (``unset`` removed, ``env`` set) and
    start Django with the project on ``sys.path``."""
    for name in unset:
        os.environ.pop(name, None)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def child_env(env: Mapping[str, str], unset: Iterable[str]) -> dict[str, str]:
    """This process's environment without ``unset``, with ``env`` on top."""
    unset = set(unset)
    result = {k: v for k, v in os.environ.items() if k not in unset}
    result.update(env)
    return result


# --- gunicorn and HTTP -------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on HOST that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def gunicorn_command(port: int, workers: int, extra: Iterable[str] = ()) -> list[str]:
    """The gunicorn command line: sync workers on HOST:port, 30 s timeout."""
    return [
        str(VENV_BIN / "gunicorn"),
        "backoffice.wsgi",
        "-w",
        str(workers),
        "-k",
        "sync",
        "-b",
        f"{HOST}:{port}",
        "--timeout",
        "30",
        *extra,
    ]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Return redirects as they are instead of following them."""

    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def fetch(url: str, cookie: str = "", timeout: float = 10) -> tuple[int, str]:
    """GET a loopback URL without following redirects: (status, body)."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"loopback only: {url}")
    headers = {"Cookie": cookie} if cookie else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - checked above
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_until_up(
    url: str, proc: subprocess.Popen, ok: tuple[int, ...] = (200,), timeout: float = 30
) -> None:
    """Wait until ``url`` answers with a status in ``ok``; fail if gunicorn exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {proc.returncode}")
        try:
            if fetch(url, timeout=2)[0] in ok:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM the server; SIGKILL its process group if it does not exit."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: only its workers
        proc.wait(timeout=5)


@contextmanager
def gunicorn(command: list[str], env: Mapping[str, str]) -> Iterator[subprocess.Popen]:
    """Run gunicorn (in its own session, output to a temporary log) for the
    block; on failure print the log's tail; stop the server in any case."""
    proc = None
    with tempfile.NamedTemporaryFile("w+", prefix="bench-gunicorn-", suffix=".log") as server_log:
        try:
            proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=dict(env),
                stdout=server_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            yield proc
        except BaseException:
            server_log.flush()
            server_log.seek(0)
            tail = server_log.read()[-3000:]
            if tail:
                log("gunicorn log (tail):\n" + tail)
            raise
        finally:
            stop(proc)


# --- wrk ---------------------------------------------------------------------------------

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
UNITS_B = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


@dataclass
class WrkOutput:
    """What wrk printed: throughput, latency percentiles, totals, errors."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bytes_read: float | None  # None when the "... read" total is missing
    errors: str


def wrk_command(url: str, cookie: str, seconds: int, threads: int, connections: int) -> list[str]:
    """``wrk --latency`` on one URL with a session cookie."""
    return [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Cookie: {cookie}",
        url,
    ]


def wrk_output(command: list[str], seconds: int) -> str:
    """Run a wrk command of ``seconds``; its stdout, or RuntimeError."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return done.stdout


def parse_wrk(output: str) -> WrkOutput:
    """Parse ``wrk --latency`` output; ValueError when it is not there."""

    def latency(pct: str) -> float:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
        if not m:
            raise ValueError(f"no {pct}% latency in wrk output:\n{output}")
        return float(m.group(1)) * UNITS_MS[m.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    if not rps or not total:
        raise ValueError(f"cannot parse wrk output:\n{output}")
    read = re.search(r"^\s*\d+ requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", output, re.M)
    errors = []
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if socket_errors:
        errors.append("socket errors: " + socket_errors.group(1).strip())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors.append(f"non-2xx/3xx: {non2xx.group(1)}")
    return WrkOutput(
        rps=float(rps.group(1)),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        requests=int(total.group(1)),
        bytes_read=float(read.group(1)) * UNITS_B[read.group(2)] if read else None,
        errors="; ".join(errors),
    )


# --- CPU accounting (Linux /proc) --------------------------------------------------------


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def machine_busy_s() -> float:
    """CPU seconds all cores have spent busy (not idle, not iowait) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


# --- Machine information -----------------------------------------------------------------


def command_output(command: list[str]) -> str:
    """A command's stripped stdout, or "?" when it cannot run."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _file_line_value(path: str, prefix: str, sep: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(sep, 1)[1]
    except OSError:
        pass
    return None


def cpu_description() -> str:
    """ "N cores (nproc), <model name>"."""
    model = _file_line_value("/proc/cpuinfo", "model name", ":")
    return f"{command_output(['nproc'])} cores (nproc), {model.strip() if model else '?'}"


def memory_free_g() -> str:
    """Total memory as ``free -g`` reports it."""
    mem = "?"
    for line in command_output(["free", "-g"]).splitlines():
        if line.startswith("Mem:"):
            mem = f"{line.split()[1]} GiB (free -g)"
    return mem


def memory_total() -> str:
    """Total memory from /proc/meminfo, in GiB."""
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB (MemTotal)"
    return mem


def os_description() -> str:
    """ "<PRETTY_NAME>, kernel <release>"."""
    os_name = "?"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return f"{os_name}, kernel {platform.release()}"


def redis_version(url: str = REDIS_URL) -> str:
    """The Redis server's version."""
    import redis

    r = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return r.info("server")["redis_version"]
    finally:
        r.close()


def web_machine_info(bench_db: str) -> dict[str, str]:
    """Machine and software versions for the benchmarks served by gunicorn."""
    import django

    wrk_version = command_output(["wrk", "-v"]).splitlines()
    return {
        "CPU": cpu_description(),
        "memory": memory_free_g(),
        "OS": os_description(),
        "PostgreSQL": postgres_version(bench_db),
        "Redis": redis_version(),
        "Python": platform.python_version(),
        "Django": django.get_version(),
        "gunicorn": command_output([str(VENV_BIN / "gunicorn"), "--version"])
        .replace("gunicorn (version ", "")
        .rstrip(")"),
        "wrk": wrk_version[0] if wrk_version else "?",
    }


# --- Report ------------------------------------------------------------------------------


def shorten_sql(sql: str, limit: int, collapse_inserts: bool = False) -> str:
    """One SQL statement made readable: unquoted names, no column lists, cut
    at ``limit`` characters."""
    sql = re.sub(r'"(\w+)"\."(\w+)"', r"\2", sql)
    sql = re.sub(r"SELECT .*? FROM", "SELECT … FROM", sql, count=1)
    if collapse_inserts:
        sql = re.sub(
            r"INSERT INTO (\S+) \(.*?\) VALUES .*? RETURNING", r"INSERT INTO \1 … RETURNING", sql
        )
    return sql if len(sql) <= limit else sql[: limit - 1] + "…"


def _read_doc(doc: Path) -> str:
    doc.parent.mkdir(parents=True, exist_ok=True)
    return doc.read_text() if doc.exists() else "# Performance\n"


def write_marked_section(start: str, end: str, section: str, doc: Path = DOC) -> None:
    """Replace what lies from the ``start`` marker to the ``end`` marker with
    ``section`` (which holds both markers); append it when they are absent.
    Nothing else in the file changes."""
    text = _read_doc(doc)
    body = section.rstrip("\n")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: body, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    doc.write_text(text)


def write_titled_section(title: str, section: str, doc: Path = DOC) -> None:
    """Replace the section that starts with the heading line ``title`` (up to
    the next ``## `` heading) with ``section``; append it when absent."""
    text = _read_doc(doc)
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip() + "\n\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    doc.write_text(text.rstrip() + "\n")


def pg_machine_info() -> dict[str, str]:
    """The machine, PostgreSQL (with the settings that matter for writes),
    Python, Django and psycopg2, for a benchmark that runs Django in-process."""
    import django
    import psycopg2
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        version = cur.fetchone()[0]
        cur.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('fsync', 'synchronous_commit', 'shared_buffers', 'max_wal_size', 'work_mem')"
        )
        pg_settings = dict(cur.fetchall())
    return {
        "CPU": cpu_description(),
        "memory": memory_total(),
        "OS": os_description(),
        "PostgreSQL": f"{version} ("
        + ", ".join(f"{k}={v}" for k, v in sorted(pg_settings.items()))
        + ")",
        "Python": platform.python_version(),
        "Django": django.get_version(),
        "psycopg2": psycopg2.__version__.split()[0],
    }
