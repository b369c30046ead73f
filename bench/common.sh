# Shared by the bench/ scripts (sourced): the binary to time and a sandbox in its own process.

# MLC: MLC_BENCH_BIN when set (a build of another profile; say which when quoting figures),
# else the release binary, built here if missing.
bench_binary() {
  if [ -n "${MLC_BENCH_BIN:-}" ]; then
    MLC="$MLC_BENCH_BIN"
  else
    cargo build --release --quiet --bin mlc
    MLC="$PWD/target/release/mlc"
  fi
}

# Starts `mlc sandbox` on $PORT at scale $1 with a project in $2/project (the sandbox pid in
# SANDBOX_PID) and waits until it answers.
bench_sandbox() {
  local scale=$1 work=$2
  "$MLC" sandbox --port "$PORT" --scale "$scale" --project "$work/project" > "$work/sandbox.out" 2>&1 &
  SANDBOX_PID=$!
  for _ in $(seq 1 300); do
    [ -f "$work/project/mlc.toml" ] && curl -sf "http://127.0.0.1:$PORT/_sandbox/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the sandbox did not start: see $work/sandbox.out" >&2
  return 1
}

# Stops the sandbox and removes the work folder $1.
bench_stop() {
  kill "$SANDBOX_PID" 2>/dev/null || true
  wait "$SANDBOX_PID" 2>/dev/null || true
  rm -rf "$1"
}

# CPU seconds (user+system) process $1 has used so far (Linux /proc).
bench_cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}
