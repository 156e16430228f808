#!/usr/bin/env bash
# DB collector benchmark: 1M tickets / 5M articles (plus mail, daemon and session rows) on
# PostgreSQL and MariaDB; prints, per collector, the cold refresh time, the cached scrape time
# and the seed's naive queries (GROUP BY joins and per-queue/per-state COUNT(*)) with ratios.
# Not part of CI. Needs the local servers of scripts/setup.sh. Usage: bench/db.sh [TICKETS]
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-1000000}
A=$((T * 5))
DB=otrsexp_bench
F=sql/fixtures
PG="psql -h 127.0.0.1 -U postgres -q -v ON_ERROR_STOP=1"
MY="mysql -h 127.0.0.1 -uroot"

# Columns shared by both: ticket i in queue 1+i%7 (4 initial + 3 extra), state 1+(i*7)%9,
# 10% with a passed escalation; article j on ticket 1+j%T.
TICKET_COLS="id, tn, title, queue_id, ticket_lock_id, user_id, responsible_user_id, ticket_priority_id, ticket_state_id, timeout, until_time, escalation_time, escalation_update_time, escalation_response_time, escalation_solution_time, archive_flag, create_time, create_by, change_time, change_by"
ARTICLE_COLS="id, ticket_id, article_sender_type_id, communication_channel_id, is_visible_for_customer, search_index_needs_rebuild, create_time, create_by, change_time, change_by"
QUEUES="INSERT INTO queue (id, name, group_id, system_address_id, salutation_id, signature_id, follow_up_id, follow_up_lock, valid_id, create_time, create_by, change_time, change_by) VALUES (5,'Support',1,1,1,1,1,0,1,'2026-01-01',1,'2026-01-01',1),(6,'Support::L2',1,1,1,1,1,0,1,'2026-01-01',1,'2026-01-01',1),(7,'Sales',1,1,1,1,1,0,1,'2026-01-01',1,'2026-01-01',1);"

echo "== PostgreSQL: $T tickets, $A articles" >&2
t0=$(date +%s)
$PG -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
cat $F/schema.postgresql.sql $F/initial.sql $F/otrs6.sql | $PG $DB
$PG $DB <<SQL
$QUEUES
INSERT INTO ticket ($TICKET_COLS)
SELECT g, 'T' || g, 'Ticket ' || g, 1 + g % 7, 1 + (g % 3 = 0)::int, 1, 1, 1 + g % 5, 1 + (g * 7) % 9, 0, 0,
  CASE WHEN g % 10 = 0 THEN extract(epoch from now())::int - 3600 ELSE 0 END, 0,
  CASE WHEN g % 10 = 0 THEN extract(epoch from now())::int - 3600 ELSE 0 END, 0, 0,
  now() - (g % 8000000) * interval '1 second', 1, now(), 1
FROM generate_series(1, $T) g;
INSERT INTO article ($ARTICLE_COLS)
SELECT g, 1 + g % $T, 1 + g % 3, 1 + g % 3, 1, 0, now(), 1, now(), 1 FROM generate_series(1, $A) g;
INSERT INTO communication_log (id, transport, direction, status, start_time)
SELECT g, 'Email', CASE WHEN g % 3 = 0 THEN 'Outgoing' ELSE 'Incoming' END, 'Successful', now() - interval '1 day' FROM generate_series(1, $((T / 10))) g;
INSERT INTO communication_log_object (id, communication_id, object_type, status, start_time)
SELECT g, 1 + g / 2, CASE WHEN g % 2 = 0 THEN 'Connection' ELSE 'Message' END, 'Successful', now() - interval '1 day' FROM generate_series(1, $((T / 5))) g;
INSERT INTO sessions (session_id, data_key, data_value, serialized)
SELECT 's' || (g / 6), (ARRAY['UserType','UserLogin','UserLastRequest','UserSessionStart','UserFirstname','UserLastname'])[1 + g % 6],
  CASE g % 6 WHEN 0 THEN 'User' WHEN 1 THEN 'agent' || (g % 300) WHEN 2 THEN extract(epoch from now())::bigint::text ELSE 'x' END, 0
FROM generate_series(0, 6 * 3000 - 1) g;
ANALYZE;
SQL
echo "   loaded in $(( $(date +%s) - t0 )) s" >&2

echo "== MariaDB: $T tickets, $A articles" >&2
t0=$(date +%s)
$MY -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
cat $F/schema.mysql.sql $F/initial.sql $F/otrs6.sql | $MY $DB
$MY $DB <<SQL
$QUEUES
INSERT INTO ticket ($TICKET_COLS)
SELECT seq, CONCAT('T', seq), CONCAT('Ticket ', seq), 1 + seq % 7, 1 + (seq % 3 = 0), 1, 1, 1 + seq % 5, 1 + (seq * 7) % 9, 0, 0,
  IF(seq % 10 = 0, UNIX_TIMESTAMP() - 3600, 0), 0, IF(seq % 10 = 0, UNIX_TIMESTAMP() - 3600, 0), 0, 0,
  NOW() - INTERVAL (seq % 8000000) SECOND, 1, NOW(), 1
FROM seq_1_to_$T;
INSERT INTO article ($ARTICLE_COLS)
SELECT seq, 1 + seq % $T, 1 + seq % 3, 1 + seq % 3, 1, 0, NOW(), 1, NOW(), 1 FROM seq_1_to_$A;
INSERT INTO communication_log (id, transport, direction, status, start_time)
SELECT seq, 'Email', IF(seq % 3 = 0, 'Outgoing', 'Incoming'), 'Successful', NOW() - INTERVAL 1 DAY FROM seq_1_to_$((T / 10));
INSERT INTO communication_log_object (id, communication_id, object_type, status, start_time)
SELECT seq, 1 + seq DIV 2, IF(seq % 2 = 0, 'Connection', 'Message'), 'Successful', NOW() - INTERVAL 1 DAY FROM seq_1_to_$((T / 5));
INSERT INTO sessions (session_id, data_key, data_value, serialized)
SELECT CONCAT('s', seq DIV 6), ELT(1 + seq % 6, 'UserType','UserLogin','UserLastRequest','UserSessionStart','UserFirstname','UserLastname'),
  CASE seq % 6 WHEN 0 THEN 'User' WHEN 1 THEN CONCAT('agent', seq % 300) WHEN 2 THEN UNIX_TIMESTAMP() ELSE 'x' END, 0
FROM seq_0_to_$((6 * 3000 - 1));
ANALYZE TABLE ticket, article, communication_log, communication_log_object, sessions;
SQL
echo "   loaded in $(( $(date +%s) - t0 )) s" >&2

cargo build --release --example db_bench -q
for d in postgresql mysql; do
  "${CARGO_TARGET_DIR:-target}/release/examples/db_bench" "$d" "$DB"
  echo
done
[ -n "${KEEP:-}" ] || $PG -c "DROP DATABASE IF EXISTS $DB"
[ -n "${KEEP:-}" ] || $MY -e "DROP DATABASE IF EXISTS $DB"
