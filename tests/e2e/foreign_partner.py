"""A partner region built only from the published contract, aiokafka and `cryptography`.

It shows what another implementation must do to take part in transfers: read its inbox
`<ns>medins.<region>.transfer.partner`, take the CloudEvents addressed to it, and answer into
the sender's inbox, keyed by the person's ID number, signed with the region's Ed25519 key: the
headers `ce_signingkey` (`region-<code>/<key id>`) and `ce_signature` (base64 of the
signature over the exact value bytes). Its public key is enrolled with `medins keys create`
or `medins keys add`; the answer's `regioncode` and its answering end (`to_region`) must be
the region's own code.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TRANSFER_OUT = "cn.medins.transfer.partner.transfer-out.v1"
ACKNOWLEDGED = "cn.medins.transfer.partner.acknowledged.v1"
REJECTED = "cn.medins.transfer.partner.rejected.v1"


def inbox(namespace: str, region: str) -> str:
    return f"{namespace}medins.{region}.transfer.partner"


class ForeignPartner:
    def __init__(self, bootstrap: str, namespace: str, region: str,
                 key_file: Path | None = None) -> None:
        self.bootstrap = bootstrap
        self.namespace = namespace
        self.region = region
        # A PEM private key whose file is named `<key id>.key`; by default the newest of
        # this region's keys in the test session's keyring (MEDINS_KEYRING_DIR).
        self.key_file = key_file or self._session_key()

    def _session_key(self) -> Path | None:
        ring = os.environ.get("MEDINS_KEYRING_DIR")
        found = sorted((Path(ring) / f"region-{self.region}").glob("*.key")) if ring else []
        return found[-1] if found else None

    def signature_headers(self, value: bytes) -> list[tuple[str, bytes]] | None:
        if self.key_file is None:
            return None
        private = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
        assert isinstance(private, Ed25519PrivateKey)
        name = f"region-{self.region}/{self.key_file.stem}"
        return [("ce_signingkey", name.encode()),
                ("ce_signature", base64.b64encode(private.sign(value)))]

    async def receive_transfer(self, transfer_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The CloudEvent of a transfer-out addressed to this region, by its transfer id."""
        consumer = AIOKafkaConsumer(inbox(self.namespace, self.region),
                                    bootstrap_servers=self.bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            async with asyncio.timeout(timeout):
                while True:
                    batches = await consumer.getmany(timeout_ms=200)
                    for records in batches.values():
                        for record in records:
                            event = json.loads(record.value)
                            data = event.get("data", {})
                            if (event.get("type") == TRANSFER_OUT
                                    and data.get("to_region") == self.region
                                    and data.get("transfer_id") == transfer_id):
                                event["_key"] = record.key.decode() if record.key else None
                                return event
        finally:
            await consumer.stop()

    async def answer(self, transfer: dict[str, Any], accept: bool, reason: str = "") -> str:
        """Acknowledge (crediting exactly what arrived) or reject, into the sender's inbox."""
        data = transfer["data"]
        common = {k: data[k] for k in ("transfer_id", "person_id", "from_region", "to_region")}
        if accept:
            answer_type, payload = ACKNOWLEDGED, common | {
                "credited_months": data["contribution_months"],
                "credited_balance_fen": data["account_balance_fen"],
                "accepted_on": datetime.now(UTC).date().isoformat()}
        else:
            answer_type, payload = REJECTED, common | {"rule": "not_active", "reason": reason}
        event_id = str(uuid.uuid4())
        event = {
            "specversion": "1.0", "id": event_id, "type": answer_type,
            "source": f"/partner/{self.region}/transfer", "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json", "correlationid": transfer["correlationid"],
            "causationid": transfer["id"], "regioncode": self.region, "data": payload,
        }
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            value = json.dumps(event).encode()
            await producer.send_and_wait(inbox(self.namespace, data["from_region"]), value,
                                         key=data["person_id"].encode(),
                                         headers=self.signature_headers(value))
        finally:
            await producer.stop()
        return event_id
