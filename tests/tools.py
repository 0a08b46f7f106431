"""Command-line tools the tests need, taken from Debian's packages when not installed."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / ".medins" / "tools"


def debian_tool(name: str, package: str) -> Path:
    """`name` from PATH, or extracted from Debian's `package` into .medins/tools (no install,
    no root needed beyond `apt-get download`)."""
    found = shutil.which(name)
    if found:
        return Path(found)
    cached = TOOLS / name
    if cached.exists():
        return cached
    TOOLS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True,
                       capture_output=True, timeout=300)
        [deb] = Path(tmp).glob(f"{package}_*.deb")
        subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], check=True, timeout=120)
        shutil.copy2(Path(tmp) / "x" / "usr" / "bin" / name, cached)
    return cached
