"""Measure `codex --help` start-up against `import typer`, and `codex db migrate` on a fresh database.

Usage: python scripts/bench_cli.py [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _time(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    codex = [sys.executable, "-m", "codex_cli"]

    typer_times = [_time([sys.executable, "-c", "import typer"]) for _ in range(args.runs)]
    help_times = [_time([*codex, "--help"]) for _ in range(args.runs)]
    typer_med, help_med = statistics.median(typer_times), statistics.median(help_times)
    print(f"python -c 'import typer'  median {typer_med * 1000:7.1f} ms over {args.runs} runs")
    print(f"codex --help              median {help_med * 1000:7.1f} ms over {args.runs} runs")
    print(f"ratio codex --help / import typer: {help_med / typer_med:.2f}x (target <= 1.5x)")

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env["CODEX_HOME"] = str(Path(tmp) / "home")
        try:
            cold = _time([*codex, "db", "migrate"], env)
            print(f"codex db migrate, fresh CODEX_HOME (initdb + start + migrate): {cold:.2f} s")
            subprocess.run(
                [*codex, "db", "downgrade", "base", "--yes"], check=True, capture_output=True, env=env
            )
            warm = _time([*codex, "db", "migrate"], env)
            print(f"codex db migrate, empty database on a running server:        {warm:.2f} s (target < 3 s)")
            noop = statistics.median(_time([*codex, "db", "status"], env) for _ in range(5))
            print(f"codex db status on the embedded server (median of 5):        {noop:.2f} s")
        finally:
            subprocess.run([*codex, "db", "stop"], capture_output=True, env=env)


if __name__ == "__main__":
    main()
