"""The team services as local processes: PostgreSQL, an S3 server, an MLflow tracking server, a Prefect server.

`deploy/docker-compose.yml` runs the same four services in containers for teams that have Docker; this module
starts them as plain processes on loopback for machines without it (the reference machine, CI) and for the tests,
with the same settings: one PostgreSQL with a database for MLflow and one for Prefect, an S3 bucket that holds
MLflow's artifacts (proxied by the MLflow server, so clients need no S3 credentials for tracking) and the DVC
remote, Prefect's server on PostgreSQL.

Orchestration glue written here by hand: no library starts this set of servers without Docker. Credentials are
generated once per state directory and live only in `<state>/env.sh` (mode 0600) and in the servers' environment;
the URIs carry none (libpq and asyncpg read PGPASSWORD), so nothing secret reaches params, MLflow or logs.

    python -m deploy.services start [--state .team]   # prints the exports a shell needs; writes <state>/env.sh
    source .team/env.sh                                # MLFLOW_TRACKING_URI, PREFECT_API_URL, AWS_*, ...
    python -m deploy.services stop  [--state .team]    # stops every process it started, by PID
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flows.executables import venv_exe

HOST = "127.0.0.1"
PG_USER = "alignflow"
BUCKET = "alignflow"
DATABASES = ("mlflow", "prefect")


class ServiceError(RuntimeError):
    """A service did not start; the message names it and the log file to read."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    """Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<major>/bin."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if not found:
        raise ServiceError(f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql-15)")
    return found


@dataclass
class ServiceSet:
    """Ports, credentials and PIDs of one set of services; saved as <state>/services.json."""

    state: Path
    pg_port: int = 0
    s3_port: int = 0
    mlflow_port: int = 0
    prefect_port: int = 0
    pg_password: str = ""
    s3_key: str = ""
    s3_secret: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    startup_s: dict[str, float] = field(default_factory=dict)

    # Addresses and the environment a client (alignflow, dvc, a Prefect worker) needs

    @property
    def s3_endpoint(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"

    @property
    def prefect_api(self) -> str:
        return f"http://{HOST}:{self.prefect_port}/api"

    def pg_url(self, db: str, driver: str = "postgresql") -> str:
        return f"{driver}://{PG_USER}@{HOST}:{self.pg_port}/{db}"

    def client_env(self) -> dict[str, str]:
        """What a client process needs: tracking and orchestration servers, and the S3 remote's credentials."""
        return {
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "PREFECT_API_URL": self.prefect_api,
            "AWS_ACCESS_KEY_ID": self.s3_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret,
            "AWS_ENDPOINT_URL": self.s3_endpoint,      # boto3 ≥ 1.28 and s3fs read it: the DVC remote's endpoint
            "AWS_DEFAULT_REGION": "us-east-1",
            "ALIGNFLOW_DVC_REMOTE_URL": f"s3://{BUCKET}/dvc",
        }

    def _server_env(self) -> dict[str, str]:
        return dict(os.environ, PGPASSWORD=self.pg_password, AWS_ACCESS_KEY_ID=self.s3_key,
                    AWS_SECRET_ACCESS_KEY=self.s3_secret, AWS_DEFAULT_REGION="us-east-1",
                    MLFLOW_S3_ENDPOINT_URL=self.s3_endpoint, AWS_ENDPOINT_URL=self.s3_endpoint)

    # Persistence

    def save(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        data = asdict(self) | {"state": str(self.state)}
        path = self.state / "services.json"
        path.write_text(json.dumps(data, indent=2))
        path.chmod(0o600)
        env = self.state / "env.sh"
        env.write_text("".join(f"export {k}='{v}'\n" for k, v in self.client_env().items()))
        env.chmod(0o600)

    @classmethod
    def load(cls, state: Path) -> ServiceSet:
        data = json.loads((state / "services.json").read_text())
        data["state"] = Path(data["state"])
        return cls(**data)

    # Start

    def start(self) -> ServiceSet:
        """Start whatever is not running yet (a second start is a no-op for live services)."""
        self.state.mkdir(parents=True, exist_ok=True)
        for name in ("pg", "s3", "mlflow", "prefect"):
            if not getattr(self, f"{name}_port"):
                setattr(self, f"{name}_port", free_port())
        self.pg_password = self.pg_password or secrets.token_urlsafe(18)
        self.s3_key = self.s3_key or "alignflow" + secrets.token_hex(4)
        self.s3_secret = self.s3_secret or secrets.token_urlsafe(24)
        self.save()
        for name, starter in (("postgres", self._start_postgres), ("s3", self._start_s3),
                              ("mlflow", self._start_mlflow), ("prefect", self._start_prefect)):
            if name in self.pids and _alive(self.pids[name]):
                continue
            t0 = time.perf_counter()
            starter()
            self.startup_s[name] = round(time.perf_counter() - t0, 2)
            self.save()
        return self

    def _pg_data(self) -> Path:
        """<state>/pg; as root, a directory of the `postgres` user under the temp dir instead (PostgreSQL refuses to
        run as root, and the state directory may sit under a path only root can traverse, e.g. pytest's tmp)."""
        if os.geteuid() != 0:
            return self.state / "pg"
        import hashlib
        import tempfile

        tag = hashlib.sha256(str(self.state.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"alignflow-pg-{tag}"

    def _start_postgres(self) -> None:
        """initdb once, then pg_ctl start on loopback (as the `postgres` user when we are root)."""
        data = self._pg_data()
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if not (data / "PG_VERSION").exists():
            data.mkdir(parents=True, exist_ok=True)
            pwfile = data.parent / f".{data.name}-pwfile"
            pwfile.write_text(self.pg_password + "\n")
            if os.geteuid() == 0:
                shutil.chown(data, "postgres")
                shutil.chown(pwfile, "postgres")
            pwfile.chmod(0o600)
            _run([*as_pg, _pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "--pwfile", str(pwfile),
                  "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8"], self.state / "pg-init.log")
            pwfile.unlink()
        log = data / "postgres.log"  # inside the data directory: the server's user writes it
        opts = f"-p {self.pg_port} -c listen_addresses={HOST} -k {data}"
        _run([*as_pg, _pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start"],
             self.state / "pg-ctl.log")
        self.pids["postgres"] = int((data / "postmaster.pid").read_text().split()[0])
        env = self._server_env()
        for db in DATABASES:  # psql/createdb are client tools: they run as us, with PGPASSWORD
            exists = subprocess.run([_pg_bin("psql"), "-h", HOST, "-p", str(self.pg_port), "-U", PG_USER, "-d",
                                     "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{db}'"],
                                    env=env, capture_output=True, text=True, check=True).stdout.strip()
            if not exists:
                subprocess.run([_pg_bin("createdb"), "-h", HOST, "-p", str(self.pg_port), "-U", PG_USER, db],
                               env=env, check=True, capture_output=True)

    def _start_s3(self) -> None:
        """moto's S3 server (moto[server] from PyPI); MinIO in docker-compose.yml speaks the same protocol."""
        self._spawn("s3", [venv_exe("moto_server"), "-H", HOST, "-p", str(self.s3_port)])
        _wait_http(f"{self.s3_endpoint}/", "s3", self.state / "s3.log", self.pids["s3"])
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint, aws_access_key_id=self.s3_key,
                          aws_secret_access_key=self.s3_secret, region_name="us-east-1")
        if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=BUCKET)

    def _start_mlflow(self) -> None:
        """MLflow on PostgreSQL; artifacts go to S3 *through* the server (--serve-artifacts), so a client needs only
        the tracking URI."""
        self._spawn("mlflow", [venv_exe("mlflow"), "server", "--host", HOST, "--port", str(self.mlflow_port),
                               "--workers", "1", "--backend-store-uri", self.pg_url("mlflow", "postgresql+psycopg2"),
                               "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--serve-artifacts"])
        _wait_http(f"{self.mlflow_uri}/health", "mlflow", self.state / "mlflow.log", self.pids["mlflow"], timeout=180)

    def _start_prefect(self) -> None:
        env = {"PREFECT_API_DATABASE_CONNECTION_URL": self.pg_url("prefect", "postgresql+asyncpg"),
               "PREFECT_HOME": str(self.state / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_API_URL": self.prefect_api}
        self._spawn("prefect", [venv_exe("prefect"), "server", "start", "--host", HOST, "--port",
                                str(self.prefect_port)], extra_env=env)
        _wait_http(f"{self.prefect_api}/health", "prefect", self.state / "prefect.log", self.pids["prefect"],
                   timeout=180)

    def _spawn(self, name: str, cmd: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = open(self.state / f"{name}.log", "ab")
        proc = subprocess.Popen(cmd, env=self._server_env() | (extra_env or {}), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.state)
        self.pids[name] = proc.pid
        self.save()

    # Stop

    def stop(self) -> None:
        """Stop every service by the PID it was started with (the whole process group: servers fork workers)."""
        for name in ("prefect", "mlflow", "s3"):
            pid = self.pids.pop(name, None)
            if pid and _alive(pid):
                _kill_group(pid)
        if "postgres" in self.pids:
            as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run([*as_pg, _pg_bin("pg_ctl"), "-D", str(self._pg_data()), "-m", "fast", "-w", "stop"],
                           capture_output=True)
            pid = self.pids.pop("postgres")
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.save()


    def destroy(self) -> None:
        """Stop, then delete every byte the services stored (the databases, the bucket, the logs): for tests and
        benchmarks, never for a team's real state."""
        self.stop()
        shutil.rmtree(self._pg_data(), ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)


def _run(cmd: list[str], log: Path) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    log.write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise ServiceError(f"{Path(cmd[0] if cmd[0] != 'runuser' else cmd[3]).name} failed (exit {r.returncode}); "
                           f"see {log}:\n{(r.stdout + r.stderr)[-2000:]}")


def _wait_http(url: str, name: str, log: Path, pid: int, timeout: float = 60) -> None:
    """Until the server answers; fails at once, with its log's tail, if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(pid):
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except OSError:
            time.sleep(0.3)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise ServiceError(f"{name} did not answer {url} (exited, or not within {timeout:.0f} s); see {log}:\n{tail}")


def _exited(pid: int) -> bool:
    """True once our child `pid` has exited (reaped here); False for a live one or a process not ours."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not _alive(pid)
    return done == pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pid: int, grace: float = 10) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if not _alive(pid):
            return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deploy.services", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["start", "stop", "env"])
    ap.add_argument("--state", type=Path, default=Path(".team"), help="where data, logs and PIDs live")
    args = ap.parse_args(argv)
    state = args.state.resolve()
    if args.action == "start":
        services = (ServiceSet.load(state) if (state / "services.json").exists() else ServiceSet(state)).start()
        print(f"# started in {sum(services.startup_s.values()):.1f} s: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in services.startup_s.items()))
        print(f"# source {state / 'env.sh'}")
        return 0
    if not (state / "services.json").exists():
        print(f"no services in {state}", file=sys.stderr)
        return 2
    services = ServiceSet.load(state)
    if args.action == "stop":
        services.stop()
    else:
        print((state / "env.sh").read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
