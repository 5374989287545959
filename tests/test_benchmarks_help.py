"""Every benchmarks/*.py script answers --help with exit 0 (scripts parse their arguments before importing
torch where it matters; all run at once in parallel subprocesses, so the suite pays about one startup)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))


def _help(script: Path) -> tuple[str, int, str]:
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=240)
    return script.name, proc.returncode, (proc.stdout + proc.stderr)[:800]


@pytest.mark.timeout(300)
def test_every_benchmark_script_answers_help():
    assert SCRIPTS, "no scripts under benchmarks/"
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_help, SCRIPTS))
    failed = [f"{name}: exit {rc}\n{out}" for name, rc, out in results if rc != 0]
    assert not failed, "\n\n".join(failed)
    assert all("usage" in out.lower() for _, _, out in results)
