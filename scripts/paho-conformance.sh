#!/usr/bin/env bash
# Runs the Eclipse Paho MQTT interoperability suites (client_test.py for MQTT 3.1.1 and
# client_test5.py for MQTT 5) against certgate's mTLS listener, through a stunnel client that
# turns the suites' plain TCP into TLS with a device certificate. Run by hand, not by CI; the
# results go into docs/mqtt-conformance.md.
#
#   PAHO_DIR=/tmp/paho/interoperability scripts/paho-conformance.sh
#
# PAHO_DIR is the suite's `interoperability` folder (git archive of eclipse/paho.mqtt.testing;
# the suite is not part of this repository). Needs python3, openssl and stunnel4.
# MQTT_WORKERS (default 1) sets certgate's listener processes.
set -euo pipefail

: "${PAHO_DIR:?set PAHO_DIR to the paho.mqtt.testing interoperability folder}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d /tmp/certgate-paho-XXXXXX)"
chmod 755 "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT="${HTTP_PORT:-$(free_port)}"
MQTT_PORT="${MQTT_PORT:-$(free_port)}"
PLAIN_PORT="${PLAIN_PORT:-$(free_port)}"
ADMIN='management/admin:paho-management-pass'
CERTGATE_PID=''
STUNNEL_PID=''

cleanup() {
  [ -n "$STUNNEL_PID" ] && kill "$STUNNEL_PID" 2>/dev/null || true
  if [ -n "$CERTGATE_PID" ]; then
    kill -TERM "$CERTGATE_PID" 2>/dev/null || true
    wait "$CERTGATE_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

echo "work directory: $WORK"
mkdir -p "$WORK/data"
chmod 755 "$WORK/data"
(
  cd "$REPO"
  HTTP_HOST=127.0.0.1 HTTP_PORT="$HTTP_PORT" MQTT_TLS_HOST=127.0.0.1 MQTT_TLS_PORT="$MQTT_PORT" \
    MQTT_WORKERS="${MQTT_WORKERS:-1}" MQTT_MAX_KEEPALIVE="${MQTT_MAX_KEEPALIVE:-60}" DATA_DIR="$WORK/data" MANAGEMENT_ADMIN_PASSWORD="${ADMIN#*:}" \
    LOG_LEVEL="${LOG_LEVEL:-warn}" exec node_modules/.bin/tsx src/server.ts
) >"$WORK/certgate.log" 2>&1 &
CERTGATE_PID=$!

for _ in $(seq 1 180); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1 && break
  sleep 1
done
curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null || { cat "$WORK/certgate.log"; exit 1; }

api() { # method path body
  curl -sf -u "$4" -X "$1" -H 'content-type: application/json' "http://127.0.0.1:$HTTP_PORT$2" ${3:+-d "$3"}
}
TENANT_AUTH='paho/admin:paho-tenant-pass'
api POST /tenant/tenants '{"id":"paho","company":"Paho","domain":"paho.example.com","adminName":"admin","adminPass":"paho-tenant-pass"}' "$ADMIN" >/dev/null
# Every client id, publish and subscribe to everything but a subscription to `test/nosubscribe`,
# which the suites' test_subscribe_failure expects refused (a deny rule; `#` stays granted and is
# not sent that topic).
PROFILE=$(api POST /tenant/tenants/paho/device-profiles \
  '{"name":"paho","clientIdPolicy":"ANY","acl":{"publish":["#"],"subscribe":["#"],"deny":{"subscribe":["test/nosubscribe"]}}}' "$TENANT_AUTH" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj '/CN=Paho CA' -addext 'basicConstraints=critical,CA:true' -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key -out device.csr -subj '/CN=paho-device' 2>/dev/null
openssl x509 -req -in device.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out device.pem 2>/dev/null
CA_ONE_LINE=$(tr -d '\n' < ca.pem)
api POST /tenant/tenants/paho/trusted-certificates \
  "{\"status\":\"ENABLED\",\"autoRegistrationEnabled\":\"true\",\"deviceProfileId\":\"$PROFILE\",\"certInPemFormat\":\"$CA_ONE_LINE\"}" \
  "$TENANT_AUTH" >/dev/null

# The CA of the listener's own server certificate, made under the data folder at first start.
SERVER_CA=$(find "$WORK/data" -name ca.crt | head -1)
cat >stunnel.conf <<EOF
foreground = yes
pid =
debug = 3
[paho]
client = yes
accept = 127.0.0.1:$PLAIN_PORT
connect = 127.0.0.1:$MQTT_PORT
cert = $WORK/device.pem
key = $WORK/device.key
CAfile = $SERVER_CA
verifyChain = yes
checkHost = localhost
sni = localhost
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
EOF
stunnel4 stunnel.conf >"$WORK/stunnel.log" 2>&1 &
STUNNEL_PID=$!
sleep 1
# The suites' clients wait 0.5 s for a CONNACK: the device's first connection (registration,
# cold caches) is made here, outside the suites.
# With several listener processes each needs its first connection: a few more, in parallel.
mosquitto_pub -h 127.0.0.1 -p "$PLAIN_PORT" -i warmup -t warmup -m warmup -q 1
warmups=()
for i in 1 2 3 4 5 6 7 8; do
  mosquitto_pub -h 127.0.0.1 -p "$PLAIN_PORT" -i "warmup$i" -t warmup -m warmup -q 1 &
  warmups+=($!)
done
wait "${warmups[@]}"

# client_test.py hands its own -p to unittest, which refuses it; this runner keeps the suite's
# code as it is and gives unittest an argv without it.
cat >run_suite.py <<'EOF'
import os, runpy, sys, unittest
sys.path.insert(0, os.getcwd())
suite = sys.argv[1]
sys.argv = [suite] + sys.argv[2:]
real_main = unittest.main
unittest.main = lambda *a, **k: real_main(*a, argv=[suite] + os.environ.get("PAHO_TESTS", "").split(), exit=False, **k)
runpy.run_path(suite, run_name="__main__")
EOF

cd "$PAHO_DIR"
status=0
for suite in client_test.py client_test5.py; do
  echo "== $suite"
  python3 "$WORK/run_suite.py" "$suite" -p "$PLAIN_PORT" 2>&1 | tee "$WORK/$suite.log" | grep -E '^(Ran|OK|FAILED)|^(FAIL|ERROR):' || status=1
done
echo "logs: $WORK/client_test.py.log $WORK/client_test5.py.log $WORK/certgate.log"
exit $status
