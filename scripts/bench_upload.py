"""Benchmark `codex media upload` against `aws s3 cp` on a local S3 server, in the same run.

Uploads one large file (1 GiB by default) and many small ones (200 x 1 MiB) with both tools, end to
end as an operator runs them (process start, SHA-256, per-request checksums, verification and the
database row included for codex), alternating the order, and prints each run and the MEDIANS over
the rounds (3 by default): MiB/s, wall time, peak RSS, client and server CPU, and the ratios codex/aws
(wall and client CPU-seconds). Then resume: a codex upload of the large file is killed (SIGKILL) once
about half of its parts are in the bucket, and the same command is run again; it reports the bytes
the second run sent (codex's `sent_bytes`, and the file size minus the parts the server listed before
the rerun), as a share of the file. With --extra: boto3's own transfer engine (s3transfer, 8 threads x
8 MiB parts), codex's fixed cost (one 1 MiB file, whole process) and a plain `curl -T` to a presigned URL
(the server's ceiling).

    python scripts/bench_upload.py                      # s3rver from npm (see --s3rver)
    python scripts/bench_upload.py --server moto        # moto's server (heavy: it is the bottleneck)
    python scripts/bench_upload.py --large-mib 256 --small-count 50 --rounds 1   # quicker
    scripts/radosgw_local.sh start && python scripts/bench_upload.py --server external   # Ceph radosgw

The machine is usually shared: absolute figures are noisy, the ratios against the peer measured in
the same run are the figures to compare.

Needs: awscli in its own venv (`python -m venv /tmp/awsvenv && /tmp/awsvenv/bin/pip install awscli`,
so it does not change the project's boto3), and for s3rver `npm install s3rver` in some directory
(`--s3rver DIR/node_modules/.bin/s3rver`). The embedded PostgreSQL runs under a temporary CODEX_HOME.
Files and server data go to --workdir and are deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024
MP4_HEADER = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
MP3_HEADER = b"ID3\x04\x00\x00\x00\x00\x00\x00"
BUCKET = "codex-bench"


# The boto3 peer: s3transfer's TransferManager (what boto3's upload_file uses), 8 threads, 8 MiB parts
# above 16 MiB, all files submitted at once; no hashing, verification or database, like aws s3 cp.
BOTO3_PEER = """
import os, sys, boto3
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager
url, bucket, *paths = sys.argv[1:]
client = boto3.session.Session().client("s3", endpoint_url=url, region_name="us-east-1")
config = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=8 << 20, max_concurrency=8)
with TransferManager(client, config) as manager:
    futures = [manager.upload(p, bucket, "boto3/" + os.path.basename(p)) for p in paths]
    for f in futures:
        f.result()
"""


@dataclass
class Run:
    tool: str
    case: str
    nbytes: int
    wall: float
    peak_rss_mb: float
    client_cpu: float
    server_cpu: float
    ok: bool

    @property
    def mib_s(self) -> float:
        return self.nbytes / MiB / self.wall if self.wall else 0.0


# ------------------------------------------------------------------------------------------ servers


class Server:
    def __init__(
        self, kind: str, workdir: Path, s3rver: str, endpoint: str = "", creds: str = "", procs: str = ""
    ) -> None:
        self.kind = kind
        if kind == "external":  # already running (e.g. Ceph radosgw): not started or stopped here
            self.url = endpoint
            self.key, self.secret = creds.split(":", 1)
            self.proc = None
            self.log = None
            self.pids = _server_pids(procs.split(","))
            self._create_bucket()
            return
        self.data = workdir / "server-data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log = open(workdir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        if kind == "s3rver":
            self.key = self.secret = "S3RVER"
            cmd = [s3rver, "-d", str(self.data), "-a", "127.0.0.1", "-p", "0", "--configure-bucket", BUCKET]
            # Its log goes to a file: a closed pipe would kill it at its first log line.
            self.proc = subprocess.Popen([*cmd, "--silent"], stdout=self.log, stderr=self.log)
        else:
            self.key = self.secret = "testing"
            port = _free_port()
            cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
            self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        try:  # never leave the server running when it fails to come up
            if kind == "s3rver":
                port = _free_port_from_log(workdir / "server.log", self.proc)
            else:
                _wait_port(port)
            self.url = f"http://127.0.0.1:{port}"
            self._create_bucket()
        except BaseException:
            self.stop()
            raise

    def _create_bucket(self) -> None:
        if self.kind in ("moto", "external"):
            import boto3

            # moto wants a location constraint outside us-east-1; codex itself uses region "auto".
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.url,
                region_name="us-east-1",
                aws_access_key_id=self.key,
                aws_secret_access_key=self.secret,
            )
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=BUCKET)

    def client(self):  # type: ignore[no-untyped-def]
        from services.adapters.storage import S3ObjectStore

        return S3ObjectStore(BUCKET, self.url, self.key, self.secret).client

    def _pids(self) -> list[int]:
        return self.pids if self.proc is None else [self.proc.pid]

    def cpu_seconds(self) -> float:
        """CPU time of the server's processes (radosgw, OSD, monitor for an external Ceph)."""
        total = 0.0
        for pid in self._pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def rss_mb(self) -> tuple[float, float]:
        """(current RSS, peak RSS) of the server's processes in MB."""
        rss = hwm = 0
        for pid in self._pids():
            status = Path(f"/proc/{pid}/status").read_text()
            rss += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
            hwm += int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        return rss / 1024, hwm / 1024

    def empty(self) -> None:
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=BUCKET, Key=obj["Key"])

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _server_pids(names: list[str]) -> list[int]:
    """The local processes of an external S3 server, so its CPU time can be reported."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() in names:
                pids.append(int(stat.parent.name))
        except OSError:
            continue
    return pids


def _free_port_from_log(log: Path, proc: subprocess.Popen) -> int:  # type: ignore[type-arg]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        match = re.search(r"listening on [\d.]+:(\d+)", log.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        time.sleep(0.1)
    raise SystemExit("s3rver did not start; see server.log")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not start")


# ---------------------------------------------------------------------------------------- running


def measure(tool: str, case: str, cmd: list[str], env: dict[str, str], nbytes: int, server: Server) -> Run:
    """Run `cmd` under GNU time: its own peak RSS (a child forked from this big Python process would
    inherit our RSS in ru_maxrss), and its CPU time."""
    stats = Path(tempfile.mktemp(prefix="bench-time-"))
    cpu0 = server.cpu_seconds()
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M %U %S", "-o", str(stats), *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.perf_counter() - start
    server_cpu = server.cpu_seconds() - cpu0
    if proc.returncode != 0:
        print(f"  !! {tool} {case} exited {proc.returncode}: {proc.stderr.strip()[-500:]}", file=sys.stderr)
    maxrss_kb, user, system = stats.read_text().split()[-3:]
    stats.unlink()
    return Run(
        tool=tool,
        case=case,
        nbytes=nbytes,
        wall=wall,
        peak_rss_mb=int(maxrss_kb) / 1024,
        client_cpu=float(user) + float(system),
        server_cpu=server_cpu,
        ok=proc.returncode == 0,
    )


def make_files(workdir: Path, large_mib: int, small_count: int, small_mib: int) -> tuple[Path, Path]:
    large = workdir / "large.mp4"
    block = os.urandom(MiB)
    with open(large, "wb") as fh:
        fh.write(MP4_HEADER + block[len(MP4_HEADER) :])
        for i in range(1, large_mib):
            # Vary each MiB so nothing along the way can deduplicate or compress it.
            fh.write(i.to_bytes(8, "little") + block[8:])
    small = workdir / "small"
    small.mkdir()
    for i in range(small_count):
        (small / f"clip-{i:04d}.mp3").write_bytes(MP3_HEADER + os.urandom(small_mib * MiB - len(MP3_HEADER)))
    return large, small


def setup_codex(home: Path, server: Server) -> dict[str, str]:
    env = {
        **os.environ,
        "CODEX_HOME": str(home),
        "R2_ENDPOINT_URL": server.url,
        "R2_ACCESS_KEY_ID": server.key,
        "R2_SECRET_ACCESS_KEY": server.secret,
        "R2_MEDIA_BUCKET": BUCKET,
    }
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = str(ROOT)
    home.mkdir(parents=True, exist_ok=True)
    codex = [sys.executable, "-m", "codex_cli"]
    subprocess.run([*codex, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL, cwd=home)
    script = (
        "from services.bootstrap import Container; from services.settings import Settings;"
        "from services.core.models import Organization;"
        "c = Container(Settings.load()); uow = c.uow().__enter__();"
        "uow.session.add(Organization(slug='bench', name='Bench')); uow.commit()"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=home)
    return env


def resume_case(codex: list[str], env: dict[str, str], large: Path, server: Server) -> None:
    """Kill a codex upload of `large` (SIGKILL) at about half its parts, rerun it, report what it sent."""
    import json

    size = large.stat().st_size
    client = server.client()
    print()
    proc = subprocess.Popen(
        [*codex, str(large)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    kept = 0
    deadline = time.monotonic() + 600
    upload: dict | None = None  # type: ignore[type-arg]
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
            if uploads:
                upload = uploads[0]
                parts = client.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
                kept = sum(int(p["Size"]) for p in parts.get("Parts", []))
                if kept >= size // 2:
                    break
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    if upload is None:
        print("  resume: the upload finished before it could be killed; use a larger --large-mib")
        return
    parts = client.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    kept = sum(int(p["Size"]) for p in parts.get("Parts", []))
    start = time.perf_counter()
    rerun = subprocess.run([*codex, "--json", str(large)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    try:
        line = json.loads(rerun.stdout.splitlines()[-1])
    except (IndexError, ValueError):
        line = {}
    sent = int(line.get("sent_bytes") or 0)
    ok = "succeeded" if rerun.returncode == 0 and line.get("ok") else "FAILED"
    print(
        f"resume: killed with {kept / MiB:.0f} of {size / MiB:.0f} MiB in the bucket"
        f" ({100 * kept / size:.0f}%); the rerun {ok} (resumed: {line.get('resumed')}) in {wall:.2f} s"
        f" and sent {sent / MiB:.0f} MiB = {100 * sent / size:.0f}% of the file"
        f" (size minus the listed parts: {100 * (size - kept) / size:.0f}%)"
    )
    server.empty()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        choices=["s3rver", "moto", "external"],
        default="s3rver",
        help="external: a running server at --endpoint (e.g. Ceph radosgw); its CPU is read from /proc",
    )
    parser.add_argument("--endpoint", default="http://127.0.0.1:7480", help="with --server external")
    parser.add_argument("--creds", default="benchkey:benchsecret", help="KEY:SECRET, with --server external")
    parser.add_argument(
        "--server-procs",
        default="radosgw,ceph-osd,ceph-mon",
        help="process names (as in /proc/PID/comm) whose CPU is the external server's",
    )
    parser.add_argument("--s3rver", default="/tmp/s3rver-bench/node_modules/.bin/s3rver")
    parser.add_argument("--aws", default=shutil.which("aws", path="/tmp/awsvenv/bin") or shutil.which("aws"))
    parser.add_argument("--large-mib", type=int, default=1024)
    parser.add_argument("--small-count", type=int, default=200)
    parser.add_argument("--small-mib", type=int, default=1)
    parser.add_argument(
        "--concurrency", type=int, default=10, help="codex --concurrency (aws-cli: 10 concurrent requests)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--extra", action="store_true", help="also boto3's engine, curl, codex fixed cost")
    parser.add_argument("--no-resume-case", action="store_true", help="skip the kill-and-resume case")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    if not args.aws:
        raise SystemExit("awscli not found: install it in /tmp/awsvenv or pass --aws")

    workdir = Path(tempfile.mkdtemp(prefix="codex-bench-", dir=args.workdir))
    server = None
    try:
        print(f"files: 1 x {args.large_mib} MiB and {args.small_count} x {args.small_mib} MiB in {workdir}")
        large, small = make_files(workdir, args.large_mib, args.small_count, args.small_mib)
        small_files = sorted(str(p) for p in small.iterdir())
        server = Server(args.server, workdir, args.s3rver, args.endpoint, args.creds, args.server_procs)
        codex_env = setup_codex(workdir / "home", server)
        aws_env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": server.key,
            "AWS_SECRET_ACCESS_KEY": server.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(workdir / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "aws-credentials"),
            # The same checksum setting codex uses for R2; aws's default (CRC32 on every part) would
            # add work codex does not do.
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }
        aws_version = subprocess.run([args.aws, "--version"], capture_output=True, text=True, env=aws_env)
        peer = (aws_version.stdout or aws_version.stderr).strip()
        print(f"server: {args.server} at {server.url}; peer: {peer}")
        codex = [sys.executable, "-m", "codex_cli", "media", "upload", "--org", "bench"]
        codex += ["--concurrency", str(args.concurrency)]
        aws = [args.aws, "--endpoint-url", server.url, "s3", "cp", "--only-show-errors"]
        large_bytes = large.stat().st_size
        small_bytes = sum(Path(p).stat().st_size for p in small_files)
        runs: list[Run] = []

        def run_case(tool: str, case: str) -> None:
            if tool == "codex":
                cmd = [*codex, str(large)] if case == "large" else [*codex, *small_files]
                env = codex_env
            elif tool == "aws":
                cmd = (
                    [*aws, str(large), f"s3://{BUCKET}/aws/large.mp4"]
                    if case == "large"
                    else [*aws, "--recursive", str(small), f"s3://{BUCKET}/aws/small/"]
                )
                env = aws_env
            elif tool == "boto3":  # boto3's transfer engine, 8 threads x 8 MiB parts, like the issue's peer
                paths = [str(large)] if case == "large" else small_files
                cmd = [sys.executable, "-c", BOTO3_PEER, server.url, BUCKET, *paths]
                env = aws_env
            elif tool == "sha256":  # openssl reading and hashing the file once: the floor of codex's pre-pass
                cmd = ["openssl", "dgst", "-sha256", str(large)]
                env = dict(os.environ)
            else:  # curl: one plain HTTP PUT to a presigned URL, the server's ceiling
                from services.adapters.storage import S3ObjectStore

                url = S3ObjectStore(BUCKET, server.url, server.key, server.secret).presign_put(
                    "curl/large.mp4", "video/mp4"
                )
                cmd = [
                    "curl",
                    "-sS",
                    "-f",
                    "-o",
                    "/dev/null",
                    "-H",
                    "Content-Type: video/mp4",
                    "-T",
                    str(large),
                    url,
                ]
                env = dict(os.environ)
            if case == "one":  # codex's fixed cost: start, database, S3 client, one 1 MiB file
                cmd, env = [*codex, small_files[0]], codex_env
            nbytes = {"large": large_bytes, "small": small_bytes, "one": Path(small_files[0]).stat().st_size}[
                case
            ]
            run = measure(tool, case, cmd, env, nbytes, server)
            runs.append(run)
            rss, hwm = server.rss_mb()
            print(
                f"  {tool:<5} {case:<5} {run.wall:7.2f} s {run.mib_s:7.1f} MiB/s"
                f"  peak RSS {run.peak_rss_mb:6.0f} MB"
                f"  client CPU {run.client_cpu:5.1f} s  server CPU {run.server_cpu:5.1f} s"
                f"  (server RSS {rss:.0f} MB, peak {hwm:.0f} MB){'' if run.ok else '  FAILED'}",
                flush=True,
            )
            server.empty()

        for round_no in range(args.rounds):
            print(f"round {round_no + 1}")
            tools = ["codex", "aws", *(["boto3"] if args.extra else [])]
            order = tools if round_no % 2 == 0 else tools[::-1]
            for case in ("large", "small"):
                for tool in order:
                    run_case(tool, case)
            if args.extra:
                run_case("codex", "one")
                if shutil.which("curl"):
                    run_case("curl", "large")

        print()
        print(
            f"medians of {args.rounds} round(s), {args.server}, codex --concurrency {args.concurrency}"
            " (a shared machine: compare the ratios):"
        )
        for case, label in (
            ("large", f"1 x {args.large_mib} MiB"),
            ("small", f"{args.small_count} x {args.small_mib} MiB"),
        ):
            med: dict[str, Run] = {}
            for tool in ("codex", "aws", "boto3", "curl"):
                done = [r for r in runs if r.tool == tool and r.case == case and r.ok]
                if done:
                    med[tool] = Run(
                        tool,
                        case,
                        done[0].nbytes,
                        statistics.median(r.wall for r in done),
                        statistics.median(r.peak_rss_mb for r in done),
                        statistics.median(r.client_cpu for r in done),
                        statistics.median(r.server_cpu for r in done),
                        True,
                    )
            for tool, r in med.items():
                print(
                    f"  {label:<14} {tool:<6} {r.mib_s:7.1f} MiB/s  {r.wall:6.2f} s"
                    f"  peak RSS {r.peak_rss_mb:5.0f} MB"
                    f"  client CPU {r.client_cpu:5.2f} s  server CPU {r.server_cpu:5.1f} s"
                )
            if "codex" in med and "aws" in med:
                c, a = med["codex"], med["aws"]
                print(
                    f"  {label:<14} codex/aws: speed {c.mib_s / a.mib_s:.2f}x, wall {c.wall / a.wall:.2f}x,"
                    f" client CPU-seconds {c.client_cpu / a.client_cpu:.2f}x"
                )
            if "codex" in med and "boto3" in med:
                print(f"  {label:<14} codex/boto3 speed: {med['codex'].mib_s / med['boto3'].mib_s:.2f}x")
        one = [r for r in runs if r.case == "one" and r.ok]
        if one:
            r = min(one, key=lambda r: r.wall)
            print(
                f"  codex fixed cost (one 1 MiB file, whole process): {r.wall:.2f} s,"
                f" client CPU {r.client_cpu:.2f} s"
            )
        if not args.no_resume_case:
            resume_case(codex, codex_env, large, server)
    finally:
        if server is not None:
            server.stop()
        home = workdir / "home"
        if (home / "pgdata" / "postmaster.pid").exists():
            subprocess.run(
                [sys.executable, "-m", "codex_cli", "db", "stop"],
                env={**os.environ, "CODEX_HOME": str(home)},
                stdout=subprocess.DEVNULL,
                cwd=ROOT,
            )
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
