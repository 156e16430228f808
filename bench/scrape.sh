#!/usr/bin/env bash
# Scrape latency of a 10k-series segment through the three front ends, with wrk:
#   (a) nginx -> FastCGI      (`otrs-exporter serve --listen unix:`; the shipped snippet)
#   (b) nginx -> fcgiwrap -> CGI, a fresh otrs-exporter process per request
#       plus "CGI cold scrape": the binary exec'd directly with a CGI environment, no web server
#   (c) the built-in HTTP listener (`otrs-exporter serve-http`)
#   (d) Apache -> mod_fcgid   (the shipped apache/otrs-exporter-fcgid.conf)
#   (e) Apache -> mod_cgid -> CGI (the shipped apache/otrs-exporter-cgi.conf)
# Needs nginx, wrk, fcgiwrap, htpasswd, apache2 + mod_fcgid (apt-get install nginx wrk fcgiwrap
# apache2-utils apache2 libapache2-mod-fcgid); runs as root (Apache's children are www-data).
# Then (a) and (d) again paced, one scrape every 1/PACED_RATE s (default 20/s for PACED_SECS=15 s),
# as a scraper asks, instead of back-to-back; and (a) once more, reading each response's own
# collector durations, to tell the collect phase from normalize, render and transfer.
# Usage: bash bench/scrape.sh [SERIES] [WORKERS] [SECONDS_PER_RUN]   (defaults 10000 20 10)
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-10000}
WORKERS=${2:-20}
SECS=${3:-10}
CGI_RUNS=${CGI_RUNS:-300}
METRICS=/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics

for tool in nginx wrk fcgiwrap htpasswd curl python3; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "bench: $tool missing (apt-get install nginx wrk fcgiwrap apache2-utils curl python3)" >&2
    exit 1
  }
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet --bin otrs-exporter --example fill_segment
BIN=$CARGO_TARGET_DIR/release/otrs-exporter
FILL=$CARGO_TARGET_DIR/release/examples/fill_segment

T=$(mktemp -d /tmp/otrs-exporter-bench.XXXXXX)
# Apache's children run as www-data: they need to reach the binary, config and segment.
chmod 755 "$T"
install -m 755 "$BIN" "$T/otrs-exporter" && BIN=$T/otrs-exporter
install -m 755 "$FILL" "$T/fill_segment" && FILL=$T/fill_segment
install -d -o www-data -g www-data -m 2770 "$T/shm"
PIDS=()
source bench/common.sh
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "no port $1" >&2; exit 1; }

write_config "$T/shm/segment" 'group = "www-data"'
# The simulated web-server workers are live processes, so their series are never folded
# (the CGI requests below fill the worker table; claiming a slot then folds dead workers).
live_workers "$WORKERS"
chmod 644 "$T/config.toml"
# Filled as www-data, so the segment and its semaphore belong to the web server's user.
runuser -u www-data -- "$FILL" "$T/shm/segment" "$SERIES" "$WORKERS" 64 "$LIVE"

htpasswd -nbm prometheus bench > "$T/htpasswd" && chmod 644 "$T/htpasswd"
AUTH="Authorization: Basic $(printf 'prometheus:bench' | base64)"

# (a) the FastCGI responder; (b) fcgiwrap; (c) the built-in listener.
"$BIN" serve --listen "unix:$T/x.sock" 2>>"$T/exporter.log" & PIDS+=($!)
fcgiwrap -c 1 -s "unix:$T/cgi.sock" </dev/null >/dev/null 2>>"$T/fcgiwrap.log" & PIDS+=($!)  # -c 1: no forked children
HTTP_PORT=$(free_port)
"$BIN" serve-http --listen "127.0.0.1:$HTTP_PORT" --threads 2 2>>"$T/exporter.log" & PIDS+=($!)
wait_sock "$T/x.sock"; wait_sock "$T/cgi.sock"; wait_port "$HTTP_PORT"

NGINX_PORT=$(free_port)
CGI_PORT=$(free_port)
cp /etc/nginx/fastcgi_params "$T/"
cat > "$T/nginx.conf" <<CONF
user root;
worker_processes 1;
pid $T/nginx.pid;
error_log $T/error.log;
events { worker_connections 512; }
http {
    client_body_temp_path $T/ct; proxy_temp_path $T/pt; fastcgi_temp_path $T/ft;
    uwsgi_temp_path $T/ut; scgi_temp_path $T/st;
    access_log off;
    upstream otrs_exporter { server unix:$T/x.sock; keepalive 4; }
    map "" \$otrs_exporter_htpasswd { default $T/htpasswd; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /otrs/ { return 418; }
        include $PWD/nginx/otrs-exporter.conf;
    }
    server {
        listen 127.0.0.1:$CGI_PORT;
        location = $METRICS {
            auth_basic "otrs-exporter";
            auth_basic_user_file $T/htpasswd;
            include fastcgi_params;
            fastcgi_param REMOTE_USER \$remote_user;
            fastcgi_param SCRIPT_FILENAME $BIN;
            fastcgi_param OTRS_EXPORTER_CONFIG $T/config.toml;
            fastcgi_pass unix:$T/cgi.sock;
            fastcgi_buffers 32 32k;
        }
    }
}
CONF
nginx -p "$T" -c "$T/nginx.conf" -e "$T/error.log" -g 'daemon off;' & PIDS+=($!)
wait_port "$NGINX_PORT"

# (d), (e): throwaway Apache instances with the shipped snippets.
apache() { # snippet port
  local d="$T/apache-$2"
  mkdir -p "$d/htdocs" && chmod 755 "$d"
  {
    echo "ServerRoot /etc/apache2"; echo "DefaultRuntimeDir $d"; echo "PidFile $d/httpd.pid"
    echo "Mutex file:$d"; echo "ErrorLog $d/error.log"; echo "LogLevel warn"
    echo "Listen 127.0.0.1:$2"; echo "ServerName 127.0.0.1"; echo "User www-data"; echo "Group www-data"
    for m in mpm_event authn_core authn_file authz_core authz_user auth_basic alias mime env cgid fcgid; do
      echo "LoadModule ${m}_module /usr/lib/apache2/modules/mod_${m}.so"
    done
    echo "TypesConfig /dev/null"; echo "ScriptSock $d/cgisock"
    echo "FcgidIPCDir $d/fcgid"; echo "FcgidProcessTableFile $d/fcgid_shm"; echo "DocumentRoot $d/htdocs"
    echo "Define OTRS_EXPORTER_BIN $BIN"; echo "Define OTRS_EXPORTER_CONFIG_FILE $T/config.toml"
    echo "Define OTRS_EXPORTER_HTPASSWD $T/htpasswd"
    echo "Include $PWD/apache/$1"
  } > "$d/httpd.conf"
  /usr/sbin/apache2 -f "$d/httpd.conf" -DFOREGROUND </dev/null >/dev/null 2>"$d/stderr.log" & PIDS+=($!)
  wait_port "$2"
}
FCGID_PORT=$(free_port); apache otrs-exporter-fcgid.conf "$FCGID_PORT"
MODCGI_PORT=$(free_port); apache otrs-exporter-cgi.conf "$MODCGI_PORT"

# Every front end must still scrape all series at the end (checked again after the runs).
check_lines() {
  local n
  n=$(curl -sf -H "$AUTH" "$1" | grep -c '^otrs_http_requests_total{')
  [ "$n" = "$SERIES" ] || { echo "bench: $1 returned $n series, not $SERIES" >&2; exit 1; }
}
BYTES=$(curl -sf -H "$AUTH" "http://127.0.0.1:$NGINX_PORT$METRICS" | wc -c)
LINES=$(curl -sf -H "$AUTH" "http://127.0.0.1:$NGINX_PORT$METRICS" | grep -c '^otrs_http_requests_total{')
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "http://127.0.0.1:$CGI_PORT$METRICS")" = 200 ] || {
  echo "CGI via fcgiwrap failed:" >&2; curl -s -H "$AUTH" "http://127.0.0.1:$CGI_PORT$METRICS" | head -5 >&2; cat "$T/error.log" "$T/fcgiwrap.log" "$T/exporter.log" >&2; exit 1; }

# Reads wrk --latency output; prints "p50 p99 req/s requests" (latencies in ms).
wrk_figures() {
  python3 -c '
import sys, re
text = sys.stdin.read()
def ms(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
n = int(re.search(r"(\d+) requests in", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if bad: sys.exit("non-2xx responses: " + bad.group(1))
print(f"{p50:.2f} {p99:.2f} {rps:.0f} {n}")'
}

# wrk --latency, one connection (latency, not queueing), back-to-back after a 1 s warm-up.
measure() {
  local url=$1 secs=$2
  wrk -t1 -c1 -d1s -H "$AUTH" "$url" >/dev/null # warm caches
  wrk -t1 -c1 -d"${secs}s" --latency -H "$AUTH" "$url" | wrk_figures
}

# Paced: one scrape every 1/RATE s on a kept-alive connection, as a scraper does (Prometheus
# scrapes every 15 s; several scrapers and a short interval are still far below back-to-back):
# the latency of a scrape that does not queue behind the previous one's transfer, and finds
# the CPU caches cold. wrk waits 1/RATE s before each request (its Lua `delay` hook).
PACED_SECS=${PACED_SECS:-15}
PACED_RATE=${PACED_RATE:-20}
printf 'function delay()\n  return %d\nend\n' "$((1000 / PACED_RATE))" > "$T/paced.lua"
paced() {
  wrk -t1 -c1 -d"${PACED_SECS}s" --latency -s "$T/paced.lua" -H "$AUTH" "$1" | wrk_figures
}

echo "bench: $SERIES series over $WORKERS workers, scrape = $LINES request-counter lines, $BYTES bytes; ${SECS}s per run, 1 connection" >&2
read -r A50 A99 ARPS _ < <(measure "http://127.0.0.1:$NGINX_PORT$METRICS" "$SECS")
read -r B50 B99 BRPS _ < <(measure "http://127.0.0.1:$CGI_PORT$METRICS" "$SECS")
read -r C50 C99 CRPS _ < <(measure "http://127.0.0.1:$HTTP_PORT$METRICS" "$SECS")
read -r E50 E99 ERPS _ < <(measure "http://127.0.0.1:$FCGID_PORT$METRICS" "$SECS")
read -r F50 F99 FRPS _ < <(measure "http://127.0.0.1:$MODCGI_PORT$METRICS" "$SECS")

# Where a warm scrape's time goes: (a) again, each response's own collector durations (the
# collect phase, before normalize, render and send) recorded next to wrk's latency figures.
cat > "$T/phases.lua" <<'LUA'
local out = io.open(os.getenv("PHASES"), "w")
local function value(body, prefix)
  local i = string.find(body, prefix, 1, true)
  if not i then return "nan" end
  local j = string.find(body, "\n", i + #prefix, true)
  return string.sub(body, i + #prefix, j - 1)
end
response = function(status, headers, body)
  out:write(value(body, "\notrs_exporter_scrape_duration_seconds "))
  for _, c in ipairs({"segment", "web_processes", "daemon_processes"}) do
    out:write(" ", value(body, '\notrs_exporter_collector_duration_seconds{collector="' .. c .. '"} '))
  end
  out:write("\n")
  out:flush()
end
LUA
phases() {
  wrk -t1 -c1 -d"${SECS}s" --latency -s "$T/phases.lua" -H "$AUTH" "$1" | wrk_figures
  python3 - "$T/phases.txt" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for k, name in enumerate(["collect phase (all)", "segment", "web_processes", "daemon_processes"]):
    d = sorted(float(r[k]) * 1000 for r in rows)
    pick = lambda q: d[min(len(d) - 1, int(q * len(d)))]
    print(f"{name} {pick(.5):.2f} {pick(.99):.2f}")
PY
}
PHASES=$T/phases.txt phases "http://127.0.0.1:$NGINX_PORT$METRICS" > "$T/phases.out"

read -r PA50 PA99 _ PAN < <(paced "http://127.0.0.1:$NGINX_PORT$METRICS")
read -r PE50 PE99 _ PEN < <(paced "http://127.0.0.1:$FCGID_PORT$METRICS")

# CGI cold scrape: exec the binary with a CGI environment, as mod_cgi would, no web server.
# `cgi_runs QUERY COMMAND...` prints "p50 p99 runs/s" over CGI_RUNS runs.
cgi_runs() {
  local query=$1; shift
  for _ in $(seq "$CGI_RUNS"); do
    s=$EPOCHREALTIME
    QUERY_STRING=$query GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET SCRIPT_NAME=$METRICS \
      REMOTE_USER=prometheus "$@" </dev/null >/dev/null 2>>"$T/exporter.log"
    e=$EPOCHREALTIME
    echo "$s $e"
  done | python3 -c '
import sys
d = sorted((float(e) - float(s)) * 1000 for s, e in (l.split() for l in sys.stdin))
pick = lambda q: d[min(len(d) - 1, int(q * len(d)))]
print(f"{pick(0.50):.2f} {pick(0.99):.2f} {1000 * len(d) / sum(d):.0f}")'
}
read -r D50 D99 DRPS < <(cgi_runs "" "$BIN")
# The floor under it on this machine: the same process with every default collector but the
# 10k series (start, config, segment attach, the /proc scans), and an exec of /bin/true.
read -r G50 G99 GRPS < <(cgi_runs "exclude[]=segment" "$BIN")
read -r H50 H99 HRPS < <(cgi_runs "" /bin/true)

for u in "$NGINX_PORT" "$CGI_PORT" "$HTTP_PORT" "$FCGID_PORT" "$MODCGI_PORT"; do check_lines "http://127.0.0.1:$u$METRICS"; done
# Where a cold scrape's time goes: each collector's duration in one more CGI scrape.
echo "one CGI cold scrape, per collector (ms):"
GATEWAY_INTERFACE=CGI/1.1 REQUEST_METHOD=GET SCRIPT_NAME=$METRICS REMOTE_USER=prometheus \
  "$BIN" </dev/null 2>>"$T/exporter.log" \
  | sed -n 's/^otrs_exporter_collector_duration_seconds{collector="\([a-z_]*\)"} \(.*\)/\1 \2/p' \
  | awk '{printf "  %-18s %.2f\n", $1, $2 * 1000}'

ok() { python3 -c "import sys; print('yes' if float(sys.argv[1]) < float(sys.argv[2]) else 'NO')" "$1" "$2"; }
cat <<TABLE

| front end ($SERIES series, $((BYTES / 1024)) KiB) | p50 ms | p99 ms | req/s (1 conn) | target | met |
|---|---|---|---|---|---|
| (a) nginx → FastCGI (\`serve --listen unix:\`, keep-alive) | $A50 | $A99 | $ARPS | p99 < 5 ms | $(ok "$A99" 5) |
| (b) nginx → fcgiwrap → CGI (fresh process per request) | $B50 | $B99 | $BRPS | — | |
| (b') CGI cold scrape (binary exec'd directly, $CGI_RUNS runs) | $D50 | $D99 | $DRPS | < 10 ms | p50 $(ok "$D50" 10), p99 $(ok "$D99" 10) |
| (b'') the same without the segment (\`exclude[]=segment\`): this machine's floor | $G50 | $G99 | $GRPS | — | |
| (b''') \`/bin/true\`, exec'd the same way | $H50 | $H99 | $HRPS | — | |
| (c) built-in HTTP listener (\`serve-http\`) | $C50 | $C99 | $CRPS | — | |
| (d) Apache → mod_fcgid (shipped snippet) | $E50 | $E99 | $ERPS | p99 < 5 ms | $(ok "$E99" 5) |
| (e) Apache → mod_cgid → CGI (shipped snippet, fresh process per request) | $F50 | $F99 | $FRPS | — | |

Paced, one scrape every $((1000 / PACED_RATE)) ms on a kept-alive connection ($PAN scrapes each, wrk):

| front end | p50 ms | p99 ms | target | met |
|---|---|---|---|---|
| (a) nginx → FastCGI | $PA50 | $PA99 | p99 < 5 ms | $(ok "$PA99" 5) |
| (d) Apache → mod_fcgid | $PE50 | $PE99 | p99 < 5 ms | $(ok "$PE99" 5) |
TABLE
echo
echo "(a) again, with each response's own collect-phase durations (p50 / p99 ms):"
{
  read -r P50 P99 _ PN
  echo "  wrk latency, whole request      $P50 / $P99  ($PN scrapes)"
  while read -r line; do
    set -- $line
    printf '  %-31s %s / %s\n' "${*:1:$#-2}" "${@: -2:1}" "${@: -1}"
  done
} < "$T/phases.out"
echo
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load $(cut -d' ' -f1-3 /proc/loadavg)"
# nginx spools a response that outgrows fastcgi_buffers to a temp file on disk: a tail cause.
echo "nginx responses buffered to a temporary file: $(grep -c 'buffered to a temporary file' "$T/error.log" || true)"
