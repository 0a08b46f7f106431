"""`medins up` kills a worker only well after the worker's own stop deadline has passed."""
import pytest

from shared.devstack.supervisor import STOP_GRACE_MARGIN_SECONDS, Stack
from shared.settings import PlatformSettings


def test_the_supervisors_kill_comes_after_the_workers_own_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDINS_STOP_DEADLINE_SECONDS", raising=False)
    default = PlatformSettings().stop_deadline_seconds
    assert Stack(["210200"]).stop_grace() == default + STOP_GRACE_MARGIN_SECONDS
    assert STOP_GRACE_MARGIN_SECONDS >= 10  # never a race with the worker's own exit
    shortened = Stack(["210200"], env={"MEDINS_STOP_DEADLINE_SECONDS": "8"})
    assert shortened.stop_grace() == 8 + STOP_GRACE_MARGIN_SECONDS
    monkeypatch.setenv("MEDINS_STOP_DEADLINE_SECONDS", "12")
    assert PlatformSettings().stop_deadline_seconds == 12
    assert Stack(["210200"]).stop_grace() == 12 + STOP_GRACE_MARGIN_SECONDS
    assert Stack(["210200"], stop_grace_seconds=5).stop_grace() == 5
