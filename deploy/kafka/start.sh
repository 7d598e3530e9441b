#!/bin/sh
# Entry point of the kafka container (apache/kafka image): render server.properties
# with the admin password, format the storage once with the admin's SCRAM credential
# (KIP-900), then run the broker in the foreground.
set -eu

: "${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD (docs/production.md)}"
: "${KAFKA_CLUSTER_ID:?set KAFKA_CLUSTER_ID}"
: "${KAFKA_EXTERNAL_HOST:=localhost}"
: "${KAFKA_EXTERNAL_PORT:=9094}"
: "${KAFKA_TLS_KEYSTORE:=/etc/kafka/tls/server.pem}"
: "${KAFKA_RUN_DIR:=/tmp/puente-kafka}"
KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
here=$(dirname "$0")

# The values are pasted into a properties file and a JAAS string: allow no quoting.
case "$KAFKA_ADMIN_PASSWORD" in
  *[!A-Za-z0-9]*) echo "error: KAFKA_ADMIN_PASSWORD must be letters and digits (openssl rand -hex 32)" >&2; exit 1 ;;
esac
if [ "${#KAFKA_ADMIN_PASSWORD}" -lt 24 ]; then
  echo "error: KAFKA_ADMIN_PASSWORD must have at least 24 characters" >&2
  exit 1
fi
case "$KAFKA_EXTERNAL_HOST" in
  *[!A-Za-z0-9.-]*) echo "error: KAFKA_EXTERNAL_HOST must be a host name or address" >&2; exit 1 ;;
esac
case "$KAFKA_EXTERNAL_PORT" in
  '' | *[!0-9]*) echo "error: KAFKA_EXTERNAL_PORT must be a port number" >&2; exit 1 ;;
esac
if [ ! -r "$KAFKA_TLS_KEYSTORE" ]; then
  echo "error: $KAFKA_TLS_KEYSTORE is missing or unreadable (PUENTE_SECRETS_DIR/kafka-tls/server.pem)" >&2
  exit 1
fi

umask 077
run=$KAFKA_RUN_DIR
mkdir -p "$run"
sed -e "s|@ADMIN_PASSWORD@|$KAFKA_ADMIN_PASSWORD|g" \
    -e "s|@EXTERNAL_HOST@|$KAFKA_EXTERNAL_HOST|g" \
    -e "s|@EXTERNAL_PORT@|$KAFKA_EXTERNAL_PORT|g" \
    -e "s|@TLS_KEYSTORE@|$KAFKA_TLS_KEYSTORE|g" \
    "$here/server.properties" > "$run/server.properties"
# Client settings of the healthcheck (kafka-broker-api-versions.sh as admin).
cat > "$run/admin.properties" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
PROPERTIES

"$KAFKA_HOME/bin/kafka-storage.sh" format --ignore-formatted \
  --cluster-id "$KAFKA_CLUSTER_ID" \
  --config "$run/server.properties" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"

exec "$KAFKA_HOME/bin/kafka-server-start.sh" "$run/server.properties"
