#!/usr/bin/env bash
# Run the test suite several times in a row while CPU-burning processes compete for the cores, and
# report pass/fail and duration per run. Proves the tests hold on a busy machine (CI shares 2 cores):
# a test with a timing margin of milliseconds fails here long before it fails in CI.
#
#   scripts/loaded-suite.sh [-n RUNS] [-b BURNERS] [-l BURN_LIMIT_S] [-- COMMAND...]
#
# Defaults: 3 runs, 2 burners, the README's test command (`make test`). The burners are bounded
# (each ends by itself after BURN_LIMIT_S seconds, default 4 h) and are killed when this script
# exits for any reason (end, failure, Ctrl-C, SIGTERM). Logs: var/loaded-suite/run-N.log.
# Exit code: 0 if every run passed, 1 otherwise, 2 on a usage error.
set -uo pipefail
cd "$(dirname "$0")/.."

runs=3
burners=2
burn_limit=14400
while getopts "n:b:l:h" opt; do
  case "$opt" in
    n) runs=$OPTARG ;;
    b) burners=$OPTARG ;;
    l) burn_limit=$OPTARG ;;
    h) sed -n '2,12p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
command=("$@")
[ ${#command[@]} -eq 0 ] && command=(make test)
for value in "$runs" "$burners" "$burn_limit"; do
  case "$value" in ''|*[!0-9]*) echo "loaded-suite: -n, -b and -l take whole numbers" >&2; exit 2 ;; esac
done

burner_pids=()
command_pid=
stop_command() {
  if [ -n "$command_pid" ]; then
    kill -TERM -- "-$command_pid" 2>/dev/null || true  # the test run's whole process group
    sleep 5
    kill -KILL -- "-$command_pid" 2>/dev/null || true
    wait "$command_pid" 2>/dev/null || true
    command_pid=
  fi
}
stop_burners() {
  local pid
  for pid in "${burner_pids[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true  # its process group
  done
  for pid in "${burner_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  burner_pids=()
}
trap 'stop_command; stop_burners' EXIT
trap 'echo "loaded-suite: interrupted" >&2; exit 130' INT TERM HUP

start_burner() {
  # setsid: the burner leads its own process group, so one kill ends the loop and its timeout
  setsid timeout --signal=KILL "$burn_limit" sh -c 'while :; do :; done' &
  burner_pids+=("$!")
}

burners_alive() {
  local pid alive=0
  for pid in "${burner_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && alive=$((alive + 1))
  done
  echo "$alive"
}

log_dir=var/loaded-suite
mkdir -p "$log_dir"
for _ in $(seq 1 "$burners"); do start_burner; done
echo "loaded-suite: $burners CPU burners (pids ${burner_pids[*]:-none}) on $(nproc) cores; $runs runs of: ${command[*]}"

passed=0
results=()
for run in $(seq 1 "$runs"); do
  log="$log_dir/run-$run.log"
  started=$(date +%s.%N)
  # in the background in its own process group, so that a signal to this script is handled at once
  setsid "${command[@]}" >"$log" 2>&1 </dev/null &
  command_pid=$!
  wait "$command_pid"
  rc=$?
  command_pid=
  took=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  alive=$(burners_alive)
  closing=$(grep -E '(passed|failed|error)' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    verdict=PASS
    passed=$((passed + 1))
  else
    verdict="FAIL (exit $rc)"
  fi
  line="run $run/$runs: $verdict in ${took}s, burners alive at the end: $alive/$burners; ${closing:-no closing line} ($log)"
  results+=("$line")
  echo "$line"
done

stop_burners
echo "loaded-suite summary:"
printf '  %s\n' "${results[@]}"
echo "loaded-suite: $passed of $runs runs passed"
[ "$passed" -eq "$runs" ]
