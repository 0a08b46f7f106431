"""Retention settings: processed ids outlive every replay window; dead letters expire."""
import pytest
from pydantic import ValidationError

from shared.messaging.admin import TopicPolicy
from shared.messaging.retention import RetentionPolicy, pruner
from shared.settings import PlatformSettings


def test_defaults() -> None:
    settings = PlatformSettings()
    policy = RetentionPolicy.from_settings(settings)
    assert (policy.processed_days, policy.set_aside_days) == (180, 90)
    # Longer than the topics' 7 days and the dead letters' 90 days a replay can reach back.
    assert policy.processed_days > settings.deadletter_retention_days
    assert policy.processed_days > settings.topic_retention_hours / 24
    assert [r.table for r in policy.rules()] == ["processed_messages", "outbox_set_aside"]


@pytest.mark.parametrize("overrides", [
    {"retention_processed_days": 30},  # shorter than the dead letters' 90 days
    {"retention_processed_days": 90},  # equal is not longer
    {"retention_processed_days": 100, "topic_retention_hours": 24 * 120},
    {"deadletter_retention_days": 365},  # dead letters kept longer than the ids
])
def test_processed_ids_shorter_than_a_replay_window_are_refused(
        overrides: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="replay window"):
        PlatformSettings(**overrides)  # type: ignore[arg-type]


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDINS_RETENTION_PROCESSED_DAYS", "400")
    monkeypatch.setenv("MEDINS_RETENTION_SET_ASIDE_DAYS", "30")
    monkeypatch.setenv("MEDINS_RETENTION_BATCH_SIZE", "1000")
    policy = RetentionPolicy.from_settings(PlatformSettings())
    assert (policy.processed_days, policy.set_aside_days, policy.batch_size) == (400, 30, 1000)


def test_the_worker_job_can_be_turned_off() -> None:
    assert pruner(None, PlatformSettings(retention_interval_seconds=0), "enrollment") is None  # type: ignore[arg-type]


def test_dead_letter_topic_has_its_own_retention() -> None:
    policy = TopicPolicy.from_settings(PlatformSettings())
    assert policy.configs("medins.210200.deadletter")["retention.ms"] == str(90 * 86400 * 1000)
    assert policy.configs("medins.210200.enrollment.events")["retention.ms"] == str(
        7 * 86400 * 1000)
