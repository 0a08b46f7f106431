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

# The region's own platform: its services read and write the region's topics, form their
# consumer groups, create the region's topics (`medins migrate`) and write partners' inboxes.
SVC="region-${R}"
user "$SVC"
acl "$SVC" --operation All --resource-pattern-type prefixed --topic "$P"
acl "$SVC" --operation All --resource-pattern-type prefixed --group "medins-${R}-"
acl "$SVC" --operation Create --cluster
for partner in ${PARTNERS:-370100 371000 150200 330300}; do
  acl "$SVC" --operation Write --operation Describe --topic "medins.${partner}.transfer.partner"
  # The partner region's platform writes only our inbox for it.
  user "region-${partner}"
  writes "region-${partner}" transfer.partner
done

# Outside systems: only their own topics. Topics still shared by several producers
# (enrollment.requests, reimbursement.requests, transfer.requests) rely on the signature and
# the authorisation table to tell the producers apart.
for who in tax civil-affairs hospital employer-gateway channels review-desk transfer-office bank; do
  user "$who"
done
writes tax tax.payments
writes civil-affairs enrollment.requests
writes hospital enrollment.requests
writes hospital reimbursement.requests
writes employer-gateway enrollment.requests
writes employer-gateway reimbursement.requests
writes channels enrollment.requests
writes channels reimbursement.requests
writes channels transfer.requests
writes channels notify.requests
writes review-desk enrollment.requests
writes review-desk reimbursement.requests
writes transfer-office transfer.requests
# The bank reads the payment instructions and answers with results.
writes bank payments.results
acl bank --operation Read --operation Describe --topic "${P}payments.instructions"
acl bank --operation Read --group "bank-${R}"
echo "principals and ACLs of region ${R} in place"
