#!/bin/sh
# One principal per kind of producer, each allowed to write only its own topics (run once by
# the `broker-acls` service of docker-compose.yml, and again whenever a producer is enrolled).
#
# The admin connects over the brokers' mutual-TLS listener as a super user; producers and the
# services use SCRAM-SHA-512 over TLS. Passwords come from files in /run/secrets (one per
# principal, named like it), never from this script. Message signatures (shared/trust) still
# decide what is applied: an ACL limits the topics a principal can reach, a signature proves
# which producer wrote an event.
set -eu
BOOT="${BOOTSTRAP:-kafka-1:9094}"
CFG=/etc/kafka/admin.properties
R="${REGION:-210200}"
P="medins.${R}."
BIN=/opt/kafka/bin

user() {  # SCRAM credentials for a principal from its secret file
  "$BIN/kafka-configs.sh" --bootstrap-server "$BOOT" --command-config "$CFG" --alter \
    --entity-type users --entity-name "$1" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$(cat "/run/secrets/kafka-$1")]"
}
acl() {  # acl <principal> <operation...> -- <resource options>
  who="$1"; shift
  "$BIN/kafka-acls.sh" --bootstrap-server "$BOOT" --command-config "$CFG" --add \
    --allow-principal "User:$who" "$@"
}
writes() { acl "$1" --operation Write --operation Describe --topic "${P}$2"; }
owns() { writes "$@"; }     # the region's own outputs (same grant, named apart for the check)
replays() { writes "$@"; }  # the operator's replay of a dead letter to its topic

# The region's own platform: its services read every topic of the region and form their
# consumer groups, but write only what the region produces (the `region-*` topics of
# shared/trust/authorisation.toml: its services' outputs) and its dead letters, so a worker
# taken over cannot put a death or a tax payment on an outside system's topic. It creates
# and configures the region's topics (`medins migrate`) and writes partners' inboxes.
SVC="region-${R}"
user "$SVC"
acl "$SVC" --operation Read --operation Describe --operation DescribeConfigs \
  --resource-pattern-type prefixed --topic "$P"
acl "$SVC" --operation Create --operation AlterConfigs --resource-pattern-type prefixed \
  --topic "$P"
acl "$SVC" --operation All --resource-pattern-type prefixed --group "medins-${R}-"
for topic in enrollment.events transfer.events reimbursement.events notify.events \
    payments.instructions deadletter; do
  owns "$SVC" "$topic"
done
# The operator's replay of dead letters (`medins deadletters replay`) puts a letter back on
# the topic it came from, its producer's signature unchanged: a principal of its own, used
# only by that command, never by a running worker.
OPS="operator-${R}"
user "$OPS"
acl "$OPS" --operation Read --operation Describe --topic "${P}deadletter"
for topic in tax.payments payments.results enrollment.from-channels \
    enrollment.from-review-desk enrollment.from-employers enrollment.from-civil-affairs \
    enrollment.from-hospitals reimbursement.from-channels reimbursement.from-review-desk \
    reimbursement.from-employers reimbursement.from-hospitals transfer.from-channels \
    transfer.from-transfer-office notify.requests transfer.partner; do
  replays "$OPS" "$topic"
done
for partner in ${PARTNERS:-370100 371000 150200 330300}; do
  acl "$SVC" --operation Write --operation Describe --topic "medins.${partner}.transfer.partner"
  # The partner region's platform writes only our inbox for it.
  user "region-${partner}"
  writes "region-${partner}" transfer.partner
done

# Outside systems: only their own topics, each written by exactly one kind of producer (the
# `topics` of shared/trust/authorisation.toml; tests/unit/test_topic_producers.py checks that
# these lines grant the same). So the hospitals' principal cannot record a death, nor a
# channel decide an application, whatever it signs.
for who in tax civil-affairs hospital employer-gateway channels review-desk transfer-office bank; do
  user "$who"
done
writes tax tax.payments
writes civil-affairs enrollment.from-civil-affairs
writes hospital enrollment.from-hospitals
writes hospital reimbursement.from-hospitals
writes employer-gateway enrollment.from-employers
writes employer-gateway reimbursement.from-employers
writes channels enrollment.from-channels
writes channels reimbursement.from-channels
writes channels transfer.from-channels
writes channels notify.requests
writes review-desk enrollment.from-review-desk
writes review-desk reimbursement.from-review-desk
writes transfer-office transfer.from-transfer-office
# The bank reads the payment instructions and answers with results.
writes bank payments.results
acl bank --operation Read --operation Describe --topic "${P}payments.instructions"
acl bank --operation Read --group "bank-${R}"
echo "principals and ACLs of region ${R} in place"
