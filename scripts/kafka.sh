#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) for tests and local use.
#
#   scripts/kafka.sh jars     fetch the broker jars from Maven Central (cached; idempotent)
#   scripts/kafka.sh up       format fresh storage, start the broker on 127.0.0.1:<free port>,
#                             wait until it serves, print its bootstrap address
#   scripts/kafka.sh down     stop the broker started by `up` (by its PID) and delete its data
#   scripts/kafka.sh status   "running <bootstrap> pid <pid>" (exit 0) or "stopped" (exit 1)
#   scripts/kafka.sh bootstrap   print the bootstrap address of the running broker
#
# Environment:
#   EDDY_KAFKA_STATE    state dir (default: <repo>/.kafka): pid, bootstrap, server.properties,
#                       broker.log, data/
#   EDDY_KAFKA_JARS     jar dir (default: <repo>/kafka/target/jars)
#   EDDY_KAFKA_TIMEOUT  seconds to wait for the broker to serve (default: 60)
#   EDDY_KAFKA_HEAP     JVM heap (default: 512m)
#   EDDY_KAFKA_OWNER_PID  if set, a watchdog stops the broker when that process exits (test
#                       fixtures pass their own PID, so a killed test run leaves no broker behind)
#   EDDY_KAFKA_JIT      "c1" (default: client compiler only, starts ~2x faster on a busy 2-core
#                       machine) or "full" (C1+C2, for long-running local brokers)
#   EDDY_PYTHON         python used for free ports (default: python3)
#   JAVA                java binary (default: java on PATH; needs Java 17+)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${EDDY_KAFKA_STATE:-$ROOT/.kafka}"
JARS="${EDDY_KAFKA_JARS:-$ROOT/kafka/target/jars}"
TIMEOUT="${EDDY_KAFKA_TIMEOUT:-60}"
HEAP="${EDDY_KAFKA_HEAP:-512m}"
JIT="${EDDY_KAFKA_JIT:-c1}"
JAVA="${JAVA:-java}"
PYTHON="${EDDY_PYTHON:-python3}"
POM="$ROOT/kafka/pom.xml"

die() { echo "kafka.sh: $*" >&2; exit 1; }

log_tail() {
    for f in "$STATE/broker.log" "$STATE/stdout.log"; do
        if [[ -s "$f" ]]; then
            echo "---- last lines of $f ----" >&2
            tail -n 40 "$f" >&2
        fi
    done
}

# Jars are complete when the stamp is newer than the pom; otherwise (re)fetch them.
jars() {
    local stamp="$JARS/.complete"
    if [[ -f "$stamp" && "$stamp" -nt "$POM" ]]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn (Apache Maven) is needed to fetch the Kafka jars"
    echo "kafka.sh: fetching Kafka broker jars from Maven Central into $JARS" >&2
    rm -rf "$JARS"
    mkdir -p "$JARS"
    mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$JARS" >&2 \
        || die "mvn could not fetch the Kafka jars (see the output above)"
    ls "$JARS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $JARS after mvn"
    touch "$stamp"
}

running_pid() {
    [[ -f "$STATE/pid" ]] || return 1
    local pid
    pid="$(cat "$STATE/pid")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# Two distinct free ports on 127.0.0.1 (broker, controller) and a random KRaft cluster id.
# The id never starts with "-": the storage tool would read it as an option (as Kafka's own
# random ids avoid it).
ports_and_cluster_id() {
    "$PYTHON" - <<'PY'
import base64, socket, uuid
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
cluster_id = "-"
while cluster_id.startswith("-"):
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
print(*(s.getsockname()[1] for s in socks), cluster_id)
PY
}

write_config() {
    local port="$1" cport="$2"
    cat >"$STATE/server.properties" <<EOF
# Written by scripts/kafka.sh: a single-node KRaft broker tuned for tests and local use.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$STATE/data
# Topics: 1 partition unless created with more; replication factor 1 everywhere; topics must be
# created explicitly (a typo in a topic name fails loudly instead of creating a new topic).
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fast consumer-group joins, small logs, few threads (2-core CI machines).
group.initial.rebalance.delay.ms=0
log.segment.bytes=16777216
log.retention.hours=24
log.retention.check.interval.ms=60000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=2
delete.topic.enable=true
EOF
    # Command-line tools (storage format): warnings only, to stdout.log.
    cat >"$STATE/log4j2-tools.properties" <<EOF
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
EOF
    cat >"$STATE/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $STATE/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
}

up() {
    local pid
    if pid="$(running_pid)"; then
        echo "kafka.sh: already running (pid $pid)" >&2
        cat "$STATE/bootstrap"
        return 0
    fi
    "$JAVA" -version >/dev/null 2>&1 || die "no working java ($JAVA); Kafka needs Java 17+"
    jars
    rm -rf "$STATE/data" "$STATE/pid" "$STATE/bootstrap" "$STATE/broker.log" "$STATE/stdout.log"
    mkdir -p "$STATE/data"
    local port cport cluster_id start
    start="$(date +%s%N)"
    read -r port cport cluster_id < <(ports_and_cluster_id) || true
    [[ "$port" =~ ^[0-9]+$ && "$cport" =~ ^[0-9]+$ && ${#cluster_id} -eq 22 ]] \
        || die "could not pick free ports / a cluster id with $PYTHON (got '$port' '$cport' '$cluster_id')"
    write_config "$port" "$cport"
    local common=(-Djava.awt.headless=true "-Dkafka.logs.dir=$STATE" -cp "$JARS/*")
    local jvm=(-Xms128m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        "-Dlog4j2.configurationFile=$STATE/log4j2.properties" "${common[@]}")
    case "$JIT" in
        c1) jvm=(-XX:TieredStopAtLevel=1 "${jvm[@]}") ;;
        full) ;;
        *) die "EDDY_KAFKA_JIT must be c1 or full, got '$JIT'" ;;
    esac
    local format=("$JAVA" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC
        "-Dlog4j2.configurationFile=$STATE/log4j2-tools.properties" "${common[@]}"
        kafka.tools.StorageTool format -t "$cluster_id" -c "$STATE/server.properties")
    # One retry on a clean directory: a JVM starved on a busy machine can fail to start.
    if ! "${format[@]}" >"$STATE/stdout.log" 2>&1; then
        echo "kafka.sh: formatting failed; retrying once. Output:" >&2
        cat "$STATE/stdout.log" >&2
        rm -rf "$STATE/data" && mkdir -p "$STATE/data"
        "${format[@]}" >"$STATE/stdout.log" 2>&1 \
            || { log_tail; die "formatting the Kafka storage failed"; }
    fi
    # setsid: the broker outlives the shell that started it (make kafka-up) and its signals.
    setsid nohup "$JAVA" "${jvm[@]}" kafka.Kafka "$STATE/server.properties" \
        >>"$STATE/stdout.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$STATE/pid"
    if [[ -n "${EDDY_KAFKA_OWNER_PID:-}" ]]; then
        setsid nohup bash -c '
            while kill -0 "$0" 2>/dev/null && kill -0 "$1" 2>/dev/null; do sleep 1; done
            kill -TERM "$1" 2>/dev/null || exit 0
            for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || exit 0; sleep 0.1; done
            kill -KILL "$1" 2>/dev/null' "$EDDY_KAFKA_OWNER_PID" "$pid" >/dev/null 2>&1 </dev/null &
    fi
    local deadline=$((SECONDS + TIMEOUT))
    until grep -q "Kafka Server started" "$STATE/broker.log" 2>/dev/null \
        && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log_tail
            rm -f "$STATE/pid"
            die "the broker exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            log_tail
            kill -KILL "$pid" 2>/dev/null || true
            rm -f "$STATE/pid"
            die "the broker did not serve on 127.0.0.1:$port within ${TIMEOUT}s"
        fi
        sleep 0.1
    done
    echo "127.0.0.1:$port" >"$STATE/bootstrap"
    local ms=$((($(date +%s%N) - start) / 1000000))
    printf 'kafka.sh: broker up at 127.0.0.1:%s (pid %s) in %d.%03ds\n' "$port" "$pid" $((ms / 1000)) $((ms % 1000)) >&2
    echo "127.0.0.1:$port"
}

down() {
    local pid
    if ! pid="$(running_pid)"; then
        echo "kafka.sh: not running" >&2
        rm -f "$STATE/pid" "$STATE/bootstrap"
        return 0
    fi
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "kafka.sh: broker pid $pid ignored SIGTERM for 30s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -rf "$STATE/pid" "$STATE/bootstrap" "$STATE/data"
    echo "kafka.sh: broker stopped (pid $pid)" >&2
}

status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running $(cat "$STATE/bootstrap" 2>/dev/null || echo '(starting)') pid $pid"
    else
        echo "stopped"
        return 1
    fi
}

bootstrap() {
    running_pid >/dev/null || die "no broker running (state dir $STATE); run: make kafka-up"
    cat "$STATE/bootstrap"
}

case "${1:-}" in
    jars) jars ;;
    up) up ;;
    down) down ;;
    status) status ;;
    bootstrap) bootstrap ;;
    *) echo "usage: $0 jars|up|down|status|bootstrap" >&2; exit 2 ;;
esac
