#!/bin/sh
# The kafka-init job (apache/kafka image), run on every `docker compose up`:
#   1. SCRAM users: the hub's four services from the environment, and one per
#      file of PUENTE_SECRETS_DIR/kafka-users: <institution id> (its own systems) and
#      puente-gateway-reader.<institution id> (the gateway serving its HTTP pulls);
#   2. the ACL bindings `puente acl plan --format kafka-acls` wrote for this policy.
# Both steps are idempotent. Topics are created by the kafka-topics job.
set -eu

: "${KAFKA_BOOTSTRAP:=kafka:9092}"
: "${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD}"
: "${KAFKA_ROUTER_PASSWORD:?set KAFKA_ROUTER_PASSWORD}"
: "${KAFKA_GATEWAY_PASSWORD:?set KAFKA_GATEWAY_PASSWORD}"
: "${KAFKA_AUDIT_PASSWORD:?set KAFKA_AUDIT_PASSWORD}"
: "${KAFKA_REFERRALS_PASSWORD:?set KAFKA_REFERRALS_PASSWORD}"
: "${KAFKA_INDICATORS_PASSWORD:?set KAFKA_INDICATORS_PASSWORD}"
: "${KAFKA_USERS_DIR:=/run/puente/kafka-users}"
: "${ACL_PLAN:=/plan/acls.sh}"
PATH=${KAFKA_HOME:-/opt/kafka}/bin:$PATH
export PATH

umask 077
# The plan names this file in every kafka-acls.sh command (--command-config).
config=${KAFKA_ADMIN_CONFIG:-/tmp/admin.properties}
cat > "$config" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
PROPERTIES

scram() {
  # Passwords go into kafka-configs' [password=...] syntax: letters and digits only.
  case "$2" in
    '' | *[!A-Za-z0-9]*)
      echo "error: the Kafka password of $1 must be letters and digits (openssl rand -hex 32)" >&2
      exit 1 ;;
  esac
  kafka-configs.sh --bootstrap-server "$KAFKA_BOOTSTRAP" --command-config "$config" \
    --alter --entity-type users --entity-name "$1" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$2]" > /dev/null
  echo "SCRAM user $1"
}

scram puente-router "$KAFKA_ROUTER_PASSWORD"
scram puente-gateway "$KAFKA_GATEWAY_PASSWORD"
scram puente-audit "$KAFKA_AUDIT_PASSWORD"
# The referral tracker reads as the policy's recipient hub_referrals (its ACLs).
scram hub_referrals "$KAFKA_REFERRALS_PASSWORD"
# The indicators service reads as the policy's recipient hub_indicators (its ACLs).
scram hub_indicators "$KAFKA_INDICATORS_PASSWORD"

if [ -d "$KAFKA_USERS_DIR" ]; then
  for file in "$KAFKA_USERS_DIR"/*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    # An institution id, or the gateway's reader of one (puente-gateway-reader.<id>).
    id=${name#puente-gateway-reader.}
    case "$id" in
      [a-z]*) ;;
      *) echo "skipping $file: not an institution id" >&2; continue ;;
    esac
    case "$id" in
      *[!a-z0-9_]*) echo "skipping $file: not an institution id" >&2; continue ;;
    esac
    scram "$name" "$(tr -d '\n' < "$file")"
  done
fi

echo "applying $ACL_PLAN"
sh "$ACL_PLAN"
echo "kafka-init done"
