# Shared by the bench scripts (sourced, not run): the temporary directory and processes of a
# run, and the base commit's worktree for those that compare this tree with an older commit.

# Kills the processes in PIDS and removes the directory T (set `trap cleanup EXIT`).
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}

# base_worktree COMMIT: sets BASE_REV and WT, a worktree of COMMIT under target/ (kept for the
# next run); BASE_DIR names an existing checkout of COMMIT to use instead. Run from the repo root.
base_worktree() {
  BASE_REV=$(git rev-parse --short "$1")
  WT=${BASE_DIR:-$PWD/target/instructions-base-$BASE_REV}
  if [ ! -d "$WT" ]; then git worktree add --detach "$WT" "$BASE_REV" >/dev/null; fi
}

# write_config SEGMENT [LINE]: $T/config.toml for a segment file at SEGMENT (LINE: one more
# [segment] setting) with GC held off, exported as OTRS_EXPORTER_CONFIG.
write_config() {
  cat > "$T/config.toml" <<CONF
[segment]
path = "$1"
${2:-}
worker_slots = 64
[gc]
grace_seconds = 86400
interval_seconds = 86400
CONF
  export OTRS_EXPORTER_CONFIG=$T/config.toml
}

# live_workers N: N sleeping processes (killed on exit) standing for live web-server workers,
# so their series are never folded; their PIDs, comma-separated, in LIVE.
live_workers() {
  local pids=()
  for _ in $(seq "$1"); do sleep 3600 & PIDS+=($!); pids+=($!); done
  LIVE=$(IFS=,; echo "${pids[*]}")
}

# temp_segment NAME SERIES: a fresh directory T (removed on exit, with the processes in PIDS)
# holding a config (see write_config) for a segment at $T/segment, which FILL (the
# fill_segment example) fills with SERIES series over 20 live workers.
temp_segment() {
  T=$(mktemp -d "/tmp/otrs-exporter-$1.XXXXXX")
  PIDS=()
  trap cleanup EXIT
  write_config "$T/segment"
  live_workers 20
  "$FILL" "$T/segment" "$2" 20 64 "$LIVE" >/dev/null
}
