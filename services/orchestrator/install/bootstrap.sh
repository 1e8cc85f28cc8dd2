# --- static body of the worker bootstrap (services/orchestrator/install/bootstrap.sh) ---------------
# script.py prepends the values (all shell-quoted, all readonly) and never edits this text, so
# nothing from a spec can become code. Modes:
#   launch  (foreground, over SSH, short): take the install lock, decide (no-op, supersede, install),
#           record generation + phase "installing", start "run" detached holding the lock, exit.
#   run     (detached, own session): stop the previous agent, install, start the agent, wait for its
#           /healthz, record the exit code. The lock is held until it exits.
# Files: see README.md next to this file.

readonly STATE_DIR="$BASE_DIR/state" LOG_DIR="$BASE_DIR/logs" ETC_DIR="$BASE_DIR/etc"
readonly LOCK_FILE="$STATE_DIR/lock" INSTALL_LOG="$LOG_DIR/install.log" AGENT_LOG="$LOG_DIR/agent.log"
readonly ENV_FILE="$ETC_DIR/agent.env" CREDS_FILE="$ETC_DIR/nats.creds"
readonly EX_USAGE=64 EX_UNAVAILABLE=69 EX_SOFTWARE=70 EX_TEMPFAIL=75 EX_AGENT_TIMEOUT=124
readonly LOCK_WAIT_S=5 SUPERSEDE_WAIT_S=60 ORPHAN_GRACE_S=10

say() { printf '%s inventiv-install[gen %s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$GENERATION" "$*"; }
fail() { say "$2"; exit "$1"; }

# Readers (the status command) must never see half a file: write aside, then rename.
write_state() { printf '%s\n' "$2" > "$STATE_DIR/.$1.tmp" && mv -f -- "$STATE_DIR/.$1.tmp" "$STATE_DIR/$1"; }
set_phase() { write_state phase "$1"; say "phase: $1"; }
read_state() {
  local value=
  if [[ -f $STATE_DIR/$1 ]]; then IFS= read -r value < "$STATE_DIR/$1" || true; fi
  printf '%s' "$value"
}
write_secret() {  # path content: 0600 from the start (umask 077), renamed into place
  printf '%s' "$2" > "$1.tmp" && chmod 600 -- "$1.tmp" && mv -f -- "$1.tmp" "$1"
}

alive() {  # pid: running and not a zombie
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# A worker process of this install carries INVENTIV_WORKER_HOME=<base dir> in its environment (the
# agent gets it from the env file, the engine inherits it): a recycled pid never matches.
is_marked() {
  local entry
  { while IFS= read -r -d '' entry; do
      [[ $entry == "$MARKER" ]] && return 0
    done < "/proc/$1/environ"; } 2>/dev/null
  return 1
}
marked_pids() {
  local dir pid found=()
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    if is_marked "$pid"; then found+=("$pid"); fi
  done
  printf '%s' "${found[*]:-}"
}

wait_gone() {  # timeout_s pid...: 0 once none is alive
  local deadline=$((SECONDS + $1)) pid any
  shift
  while :; do
    any=
    for pid in "$@"; do alive "$pid" && any=1; done
    [[ -z $any ]] && return 0
    (( SECONDS >= deadline )) && return 1
    sleep 0.2
  done
}

require_tools() {
  local tool
  for tool in flock setsid mktemp tail; do
    command -v "$tool" >/dev/null 2>&1 || fail "$EX_UNAVAILABLE" "required tool '$tool' is not installed"
  done
}

# --- launch ------------------------------------------------------------------------------------------

is_runner() {  # pid: a detached "run" of a bootstrap script of this base dir (not a recycled pid)
  local cmdline
  cmdline=$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$STATE_DIR/bootstrap."*" run "* ]]
}

supersede_runner() {
  local pid
  pid=$(read_state runner.pid)
  if [[ $pid =~ ^[0-9]+$ ]] && is_runner "$pid"; then
    say "superseding the install of generation $(read_state generation) (runner pid $pid)" >> "$INSTALL_LOG"
    kill -TERM -- "-$pid" 2>/dev/null || true  # its whole group (pip included); the agent has its own session
  fi
}

launch() {
  local script=$1 current current_exit
  require_tools
  mkdir -p -- "$STATE_DIR" "$LOG_DIR" "$ETC_DIR"
  chmod 700 -- "$BASE_DIR" "$STATE_DIR" "$LOG_DIR" "$ETC_DIR"
  exec 9>>"$LOCK_FILE"
  # A status probe holds the lock (shared) for a moment: wait a little before concluding a run holds it.
  if ! flock -w "$LOCK_WAIT_S" 9; then
    current=$(read_state generation)
    if [[ $current =~ ^[0-9]+$ ]] && (( GENERATION <= current )); then
      rm -f -- "$script"
      echo "noop: generation $current is being installed"
      exit 0
    fi
    supersede_runner
    if ! flock -w "$SUPERSEDE_WAIT_S" 9; then
      rm -f -- "$script"
      echo "the install lock is still held after ${SUPERSEDE_WAIT_S}s" >&2
      exit "$EX_TEMPFAIL"
    fi
  fi
  current=$(read_state generation)
  current_exit=$(read_state exit_code)
  if [[ $current =~ ^[0-9]+$ ]]; then
    if (( GENERATION < current )); then
      rm -f -- "$script"
      echo "noop: generation $current is newer"
      exit 0
    fi
    if (( GENERATION == current )) && [[ $current_exit == 0 ]]; then
      rm -f -- "$script"
      echo "noop: generation $current is installed"
      exit 0
    fi
  fi
  # Order matters for a concurrent status probe: drop the old exit code before naming the new generation.
  rm -f -- "$STATE_DIR/exit_code"
  write_state phase installing
  write_state generation "$GENERATION"
  say "install requested" >> "$INSTALL_LOG"
  # Detached in its own session, so neither the SSH connection nor this shell ending stops it; it
  # inherits fd 9 and with it the lock, which is released only when it exits.
  setsid bash "$script" run < /dev/null >> "$INSTALL_LOG" 2>&1 &
  write_state runner.pid "$!"
  echo "started: generation $GENERATION (runner pid $!)"
}

# --- run ---------------------------------------------------------------------------------------------

STARTED_AGENT_PID=
AGENT_HEALTHY=0

finish() {
  local rc=$1
  trap - EXIT TERM HUP INT
  if (( rc != 0 )) && [[ -n $STARTED_AGENT_PID && $AGENT_HEALTHY != 1 ]]; then
    # A half-started worker is worse than none; the next run's stop_previous_agent reaps it if needed.
    kill -TERM "$STARTED_AGENT_PID" 2>/dev/null || true
  fi
  write_state exit_code "$rc" || true
  say "finished with exit code $rc"
  exit "$rc"
}

stop_previous_agent() {
  local pid orphans
  pid=$(read_state agent.pid)
  if [[ $pid =~ ^[0-9]+$ ]] && is_marked "$pid"; then
    say "stopping the previous agent (pid $pid): SIGTERM, it drains first"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$AGENT_STOP_TIMEOUT_S" "$pid"; then
      say "the previous agent is still running after ${AGENT_STOP_TIMEOUT_S}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone 5 "$pid" || true
    fi
  fi
  rm -f -- "$STATE_DIR/agent.pid"
  # Whatever else carries the marker is an orphan (an engine whose agent was killed): nothing to drain.
  orphans=$(marked_pids)
  if [[ -n $orphans ]]; then
    say "stopping leftover worker processes: $orphans"
    # shellcheck disable=SC2086
    kill -TERM $orphans 2>/dev/null || true
    # shellcheck disable=SC2086
    if ! wait_gone "$ORPHAN_GRACE_S" $orphans; then
      # shellcheck disable=SC2086
      kill -KILL $orphans 2>/dev/null || true
    fi
  fi
}

make_venv() {
  local venv=$1
  if "$PYTHON" -m venv -- "$venv"; then return 0; fi
  # Ubuntu images ship python3 without ensurepip; the venv module needs the python3-venv package.
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "python venv unavailable: installing python3-venv with apt-get"
    rm -rf -- "$venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
    "$PYTHON" -m venv -- "$venv" && return 0
  fi
  fail "$EX_UNAVAILABLE" "cannot create a virtual environment with $PYTHON"
}

install_agent() {
  if [[ -n $PREINSTALLED_AGENT ]]; then
    [[ -f $PREINSTALLED_AGENT && -x $PREINSTALLED_AGENT ]] \
      || fail "$EX_UNAVAILABLE" "preinstalled agent $PREINSTALLED_AGENT is not an executable file"
    say "using the preinstalled agent $PREINSTALLED_AGENT"
    return 0
  fi
  command -v "$PYTHON" >/dev/null 2>&1 || fail "$EX_UNAVAILABLE" "$PYTHON is not installed"
  rm -rf -- "$VENV_DIR"  # a fresh venv per generation: a reinstall never inherits a broken one
  say "creating $VENV_DIR"
  make_venv "$VENV_DIR"
  say "pip install $AGENT_REQUIREMENT"
  "$VENV_DIR/bin/python" -m pip install --disable-pip-version-check --no-input "$AGENT_REQUIREMENT"
  [[ -x $AGENT_BIN ]] || fail "$EX_UNAVAILABLE" "$AGENT_REQUIREMENT did not install an inventiv-agent executable"
}

start_agent() {
  : >> "$AGENT_LOG"
  say "starting $AGENT_BIN (engine $ENGINE, model $MODEL_NAME, log $AGENT_LOG)"
  # Its own session: it outlives this script and the SSH connection. A clean environment plus the env
  # file (0600); fd 9, the install lock, is closed so the agent never holds it. setsid does not fork
  # here (this shell is the group leader, not the child), so $! is the agent's pid.
  # shellcheck disable=SC2016  # $1/$2 are for the inner shell
  setsid env -i HOME="${HOME:-/root}" LANG=C.UTF-8 "$BASH" -c 'set -a; . "$1"; set +a; exec "$2"' \
    inventiv-agent "$ENV_FILE" "$AGENT_BIN" < /dev/null >> "$AGENT_LOG" 2>&1 9>&- &
  STARTED_AGENT_PID=$!
  write_state agent.pid "$STARTED_AGENT_PID"
}

http_ok() {  # host port path: a 200 within a few seconds
  local host=$1 line=
  { exec 8<>"/dev/tcp/$host/$2"; } 2>/dev/null || return 1
  [[ $host == *:* ]] && host="[$host]"
  printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$3" "$host" "$2" >&8 2>/dev/null || true
  IFS= read -r -t 5 line <&8 || true
  exec 8>&-
  [[ $line == "HTTP/1."[01]" 200"* ]]
}

wait_for_agent() {
  local deadline=$((SECONDS + AGENT_START_TIMEOUT_S)) rc=0
  while (( SECONDS < deadline )); do
    if ! alive "$STARTED_AGENT_PID"; then
      wait "$STARTED_AGENT_PID" || rc=$?
      say "the agent exited while starting (exit code $rc); the end of $AGENT_LOG:"
      tail -n 40 -- "$AGENT_LOG" || true
      exit "$EX_SOFTWARE"
    fi
    if http_ok "$BIND_HOST" "$AGENT_PORT" /healthz; then
      AGENT_HEALTHY=1
      say "the agent answers /healthz (pid $STARTED_AGENT_PID); readiness comes by heartbeat"
      return 0
    fi
    sleep 0.25
  done
  say "the agent did not answer /healthz within ${AGENT_START_TIMEOUT_S}s; the end of $AGENT_LOG:"
  tail -n 40 -- "$AGENT_LOG" || true
  exit "$EX_AGENT_TIMEOUT"
}

prune_old_venvs() {
  local venv
  for venv in "$BASE_DIR"/venv-*; do
    [[ -d $venv && $venv != "$VENV_DIR" ]] || continue
    say "removing $venv (an older generation)"
    rm -rf -- "$venv"
  done
}

run() {
  local script=$1
  trap 'finish $?' EXIT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  trap 'exit 130' INT
  # The script holds the NATS credentials; bash keeps reading it through its open descriptor.
  rm -f -- "$script"
  say "installing: instance $INSTANCE_ID, engine $ENGINE, model $MODEL_NAME"
  say "phase: installing"
  stop_previous_agent
  install_agent
  write_secret "$ENV_FILE" "$AGENT_ENV"
  if [[ -n $NATS_CREDS ]]; then write_secret "$CREDS_FILE" "$NATS_CREDS"; else rm -f -- "$CREDS_FILE"; fi
  set_phase engine_starting
  start_agent
  wait_for_agent
  set_phase agent_started
  if [[ -z $PREINSTALLED_AGENT ]]; then prune_old_venvs; fi
}

case "${1:-}" in
  launch) launch "$0" ;;
  run) run "$0" ;;
  *) echo "usage: bash <script> launch|run" >&2; exit "$EX_USAGE" ;;
esac
