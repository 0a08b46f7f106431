"""Typed platform settings read from the environment (MEDINS_*), one place for config."""
from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("enrollment", "transfer", "reimbursement", "notify")
DEFAULT_WEB_PORTS = {"enrollment": 6066, "transfer": 6067, "reimbursement": 6068, "notify": 6069}


class PlatformSettings(BaseSettings):
    """Settings every worker shares; services subclass it for their own extras."""

    model_config = SettingsConfigDict(env_prefix="MEDINS_", extra="ignore")

    region: str = "210200"
    broker_url: str = "kafka://127.0.0.1:9092"
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        validation_alias=AliasChoices("MEDINS_DATABASE_URL", "DATABASE_URL"),
    )
    topic_partitions: int = 4
    # A cluster: 3 and 2 (docker-compose); the embedded single broker: 1 and unset.
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int | None = None
    topic_retention_hours: float = 7 * 24
    deadletter_retention_days: float = 90
    # Idempotent producers (the outbox relay) where the broker supports them: Kafka does,
    # the embedded Tansu does not.
    producer_idempotence: bool = False
    # Prefix for topics, schemas and consumer groups, so test runs never see each other.
    namespace: str = ""
    # Short consumer-group timeouts: Tansu makes a join wait about half the session timeout.
    dev_timeouts: bool = True
    web_host: str = "127.0.0.1"
    web_port: int = 0
    # Required for /status/<id> when web_host is not loopback (bearer token); see
    # shared/trust/access.py.
    status_token: SecretStr | None = None
    # On SIGTERM/SIGINT a worker gets this long to stop cleanly (notify's drain_seconds fits
    # within it); past it the process exits by itself, whatever state the broker is in.
    # Supervisors (medins up, a container's stop timeout) wait longer than this before a
    # SIGKILL, so the worker's own bounded exit is what ends it.
    stop_deadline_seconds: float = 30.0
    log_format: str = "auto"
    log_level: str = "INFO"
    batch_size: int = 500
    # Latency (issue 15): a consumed batch closes when it holds batch_size records or when
    # this window has passed, whichever is first; under load batches fill before it ends.
    batch_within_seconds: float = 0.01
    # A batch also closes once its records hold this many bytes: 500 applications are ~0.4
    # MB, while 500 hospital uploads of 1,000 settlement records each would be one
    # transaction of half a million records, published only after it commits.
    batch_max_bytes: int = 1_048_576
    # How long the broker may hold a consumer's fetch waiting for data. Tansu answers only
    # when it runs out, so it is added to every event's latency on a quiet topic; Faust's
    # own 1.5 s cost ~400 ms of median. Each idle worker asks 1000/this times a second: an
    # idle `medins up` (8 workers) keeps Tansu at ~90% of a core at 20 ms, ~40% at 100 ms,
    # ~3% at 1,500. Kafka answers as soon as a record is there: docker-compose sets 500.
    fetch_max_wait_ms: int = 20
    # The wait once fetches have brought nothing for 3 s; the first that brings records
    # sets fetch_max_wait_ms back (shared.messaging.app.wait_longer_when_idle). Not above
    # fetch_max_wait_ms: the wait never changes.
    fetch_idle_wait_ms: int = 250
    outbox_relay: bool = True
    outbox_poll_seconds: float = 1.0
    # How often domain gauges (parked payments, claims by stage, ...) are read from the tables.
    gauge_sample_seconds: float = 15.0
    # A row for a topic the broker does not have is set aside after this long (an operator
    # may create the topic meanwhile); other permanent failures are set aside at once.
    outbox_set_aside_after_seconds: float = 300.0
    calendar_dir: Path | None = None
    # The policy book (shared/policy): the folder of versions loaded by default (None: the
    # shipped shared/policies), then extra folders, comma-separated, an agency adds (e.g. the
    # examples of emergency measures); re-read this often so a new file takes effect.
    policy_dir: Path | None = None
    policy_dirs: str = ""
    policy_reload_seconds: float = 30.0
    # How far in the future a sender's timestamp may be (clock skew) before it is refused.
    clock_tolerance_seconds: float = 300.0
    # Local working files (Faust's data dir, the dev stack's mail and SMS folders).
    state_dir: Path = Path(".medins")
    # Message trust (shared/trust): producers' public keys, revocations and an optional
    # authorisation table; and the private keys this process signs with (its region's key
    # for the outbox; the simulated producers' keys in the dev stack and tests).
    trust_dir: Path = Path(".medins/trust")
    keyring_dir: Path = Path(".medins/keys")
    # Data keys sealing health and contact data at rest (shared/db/sealed.py): the text of
    # the keys in MEDINS_DATA_KEYS, else the secret file MEDINS_DATA_KEYS_FILE (a secret
    # mount in production; default `data-keys` in the keyring folder, made by `medins up`
    # and the test session).
    data_keys: SecretStr | None = None
    data_keys_file: Path | None = None
    # Kafka transport (every client: workers, outbox relay, admin, publish). PLAINTEXT for
    # the embedded broker; SASL_SSL with SCRAM-SHA-512 against the agency's Kafka, one
    # principal per producer kind (docker-compose). The CA file verifies the brokers;
    # cert/key files add mutual TLS where the cluster asks for it.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    # Retention in the database (shared/messaging/retention.py: a pruning job in every worker
    # and `medins prune`). Processed-message ids are the duplicate check, so they must outlive
    # every way an event can come again: a topic re-read (MEDINS_TOPIC_RETENTION_HOURS) and a
    # dead letter replayed (MEDINS_DEADLETTER_RETENTION_DAYS); they also record who signed what,
    # kept at least the six months the Cybersecurity Law (art. 21) asks of logs. Set-aside
    # outbox rows (events and dead letters the relay could not publish) live as long as dead
    # letters on the topic. Relayed outbox rows are deleted by the relay on acknowledgement.
    retention_processed_days: float = 180
    retention_set_aside_days: float = 90
    retention_batch_size: int = 5000
    retention_interval_seconds: float = 3600  # 0 turns the job off in the worker

    @model_validator(mode="after")
    def _processed_ids_outlive_replays(self) -> PlatformSettings:
        window = max(self.topic_retention_hours / 24, self.deadletter_retention_days)
        if self.retention_processed_days <= window:
            raise ValueError(
                f"MEDINS_RETENTION_PROCESSED_DAYS ({self.retention_processed_days:g}) must be "
                f"longer than any replay window ({window:g} days: topic and dead-letter "
                "retention), or a replayed event would be applied twice")
        return self

    @field_validator("region")
    @classmethod
    def _region_is_six_digits(cls, value: str) -> str:
        if len(value) != 6 or not value.isdigit():
            raise ValueError("region must be a 6-digit GB/T 2260 code")
        return value

    def data_keys_path(self) -> Path:
        return self.data_keys_file or self.keyring_dir / "data-keys"

    def policy_folders(self) -> list[Path]:
        from shared.policy import folders

        return folders(self.policy_dir, self.policy_dirs)

    def schema_for(self, service: str, region: str | None = None) -> str:
        return f"{self.namespace}r{region or self.region}_{service}"

    def app_id(self, service: str) -> str:
        return f"{self.namespace}medins-{self.region}-{service}"


class EnrollmentSettings(PlatformSettings):
    """Enrollment's practice values (not notice text), so an agency can set its own."""

    # A temporary remote-treatment filing without an end date lasts this long.
    temporary_filing_days: int = 180
    # Days after a paid period ends, with nothing paid for the next, before the person is
    # suspended (from the day after the period): a late payment confirmed by the tax authority
    # within them does not make the status flap. The suspension's date is not moved by it.
    coverage_grace_days: int = 15
    # How often scheduled changes, lapses and deferred institution changes are looked for.
    due_check_seconds: float = 60.0


class ReimbursementSettings(PlatformSettings):
    """Reimbursement's payment handling and practice values."""

    payment_max_attempts: int = 3
    # Maternity allowance (practice): leave days and the wage-to-day divisor.
    maternity_base_days: int = 98
    maternity_difficult_extra_days: int = 15
    maternity_per_extra_baby_days: int = 15
    maternity_days_per_month: int = 30
    # Proactive reimbursement of an outage is paid by this date (Wenzhou: 30 June).
    proactive_pay_by: date | None = None
    originals_mail_to: str = "医疗保障事务服务中心手工报销窗口（请在信封注明报销编号）"


class TransferSettings(PlatformSettings):
    """Transfer's partners and statutory clocks (notice 003; the per-leg split is practice)."""

    # Regions reached electronically; any other partner gets a paper contact letter.
    # Comma-separated in MEDINS_TRANSFER_INTERCONNECTED; unset means every served region.
    transfer_interconnected: str | None = None
    total_days_cross_province: int = 15
    total_days_intra_province: int = 9
    # National practice: the transfer-out office 10 working days, the transfer-in office 5.
    out_leg_days_cross_province: int = 10
    in_leg_days_cross_province: int = 5
    # Our split of the 9 intra-province days, in the same 2:1 proportion.
    out_leg_days_intra_province: int = 6
    in_leg_days_intra_province: int = 3
    overdue_check_seconds: float = 60.0

    def interconnected(self) -> frozenset[str]:
        from shared.identity import REGIONS

        if self.transfer_interconnected is None:
            return frozenset(REGIONS) - {self.region}
        return frozenset(code.strip() for code in self.transfer_interconnected.split(",")
                         if code.strip()) - {self.region}


class NotifySettings(PlatformSettings):
    """Notify's channels: the agency's SMTP relay and the SMS gateway."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_starttls: bool = False
    smtp_use_tls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_max_connections: int = 4
    mail_from: str = "noreply@medins.example.cn"
    smpp_host: str = "127.0.0.1"
    smpp_port: int = 2775
    smpp_system_id: str = "medins"
    smpp_password: str = "medins"
    sms_source_addr: str = "10690000"
    smpp_submit_timeout_seconds: float = 10.0
    # submit_sm unanswered at once per SMPP session, and sessions bound at once: operators set
    # both per account. Each one unanswered when the worker dies is an SMS of unknown outcome.
    smpp_window: int = 10
    smpp_sessions: int = 1
    # Messages claimed per round of a channel's sender (at most the rate allows).
    send_batch_size: int = 200
    # Transient failures are retried (backoff doubling from send_backoff_seconds up to
    # send_backoff_max_seconds, with jitter) until the message is this old, then parked;
    # send_max_attempts > 0 adds a cap on attempts (0: the horizon alone decides).
    send_max_attempts: int = 0
    send_backoff_seconds: float = 1.0
    send_backoff_max_seconds: float = 300.0
    send_retry_horizon_seconds: float = 6 * 3600.0
    # Per channel: this many transient failures in a row stop sending for a pause that
    # doubles up to send_backoff_max_seconds, so an outage does not burn attempts.
    breaker_failures: int = 5
    breaker_open_seconds: float = 5.0
    # On SIGTERM/SIGINT: how long to wait for the gateway's answers of messages in flight.
    drain_seconds: float = 15.0
    # Gateway limits in messages per second; waiting on them never holds up consumption.
    sms_rate_per_second: float = 50.0
    email_rate_per_second: float = 20.0
    # A message still 'sending' after this long had its worker die mid-send: reconcile it.
    unknown_after_seconds: float = 120.0
    # A receipt still linked to no submit answer after this long belongs to an answer that
    # was lost: only then may the reconciliation link it, by handset, to an 'unknown' SMS
    # (an answer that merely trails its receipt is recorded well within it).
    receipt_settle_seconds: float = 60.0
