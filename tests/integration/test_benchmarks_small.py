"""The benchmarks at small size, so they never rot: each completes and every row is printed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from run_all import ROWS, low_rate_rows  # noqa: E402 - bench/ is not a package


@pytest.mark.timeout(1200)
def test_run_all_small_prints_every_row(tmp_path: Path) -> None:
    report = tmp_path / "REPORT.md"
    # Its own broker and keys per benchmark; the session's trust folders are not its.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MEDINS_TRUST_DIR", "MEDINS_KEYRING_DIR", "MEDINS_DATA_KEYS_FILE",
                        "MEDINS_NAMESPACE")}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "run_all.py"), "--small",
                           "--report", str(report)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "FAILED" not in out and "MISSING" not in out, out[-6000:]
    table = report.read_text(encoding="utf-8")
    for row in ROWS + low_rate_rows(50.0):
        label = "records → payment instructions" if row.figure.startswith("outage") \
            else row.figure
        assert label in out and label in table, f"{row.figure} not printed"
    assert "CPUs" in table and "UTC" in table


@pytest.mark.timeout(600)
def test_soak_small_prints_its_memory_figure() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MEDINS_TRUST_DIR", "MEDINS_KEYRING_DIR", "MEDINS_DATA_KEYS_FILE",
                        "MEDINS_NAMESPACE")}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "2000",
                           "--chunk", "500"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert '"figure": "worker RSS growth"' in out and "2,000 events" in out, out[-3000:]
