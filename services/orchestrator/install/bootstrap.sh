# --- static body of the worker bootstrap (services/orchestrator/install/bootstrap.sh) ---------------
# script.py prepends the values (all shell-quoted, all readonly) and never edits this text, so
# nothing from a spec can become code. Modes:
#   launch  (foreground, over SSH, short): take the install lock, decide (no-op, supersede, install),
#           record generation + phase "installing", start "run" detached holding the lock, exit.
#   run     (detached, own session): stop the previous agent, install, start the agent (as RUN_AS when
#           running as root), wait for its /healthz, record the exit code. The lock is held until it exits.
# Files: see README.md next to this file.

readonly STATE_DIR="$BASE_DIR/state" LOG_DIR="$BASE_DIR/logs" ETC_DIR="$BASE_DIR/etc"
readonly AGENT_LOG_DIR="$LOG_DIR/agent" AGENT_HOME="$BASE_DIR/home"
readonly LOCK_FILE="$STATE_DIR/lock" INSTALL_LOG="$LOG_DIR/install.log"
readonly AGENT_EVENTS_LOG="$AGENT_LOG_DIR/agent.log" AGENT_STDERR_LOG="$AGENT_LOG_DIR/stderr.log"
readonly ENV_FILE="$ETC_DIR/agent.env" CREDS_FILE="$ETC_DIR/nats.creds"
readonly EX_USAGE=64 EX_UNAVAILABLE=69 EX_SOFTWARE=70 EX_TEMPFAIL=75 EX_CONFIG=78 EX_AGENT_TIMEOUT=124
readonly LOCK_WAIT_S=5 SUPERSEDE_WAIT_S=60 ORPHAN_GRACE_S=10
readonly INSTALL_LOG_MAX_BYTES=1048576  # then install.log becomes install.log.1 at the next install

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
write_secret() {  # path content: 0600 from the start (umask 077), the agent's user's, renamed into place
  printf '%s' "$2" > "$1.tmp"
  chmod 600 -- "$1.tmp"
  if [[ -n $AGENT_UID ]]; then chown -- "$AGENT_UID:$AGENT_GID" "$1.tmp"; fi
  mv -f -- "$1.tmp" "$1"
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

switches_user() { [[ -n $RUN_AS && $EUID == 0 && $RUN_AS != root ]]; }

require_tools() {
  local tool
  for tool in flock setsid mktemp tail; do
    command -v "$tool" >/dev/null 2>&1 || fail "$EX_UNAVAILABLE" "required tool '$tool' is not installed"
  done
  if switches_user; then
    command -v setpriv >/dev/null 2>&1 || command -v runuser >/dev/null 2>&1 \
      || fail "$EX_UNAVAILABLE" "neither setpriv nor runuser is installed: cannot run the agent as $RUN_AS"
    id -u -- "$RUN_AS" >/dev/null 2>&1 || command -v useradd >/dev/null 2>&1 \
      || fail "$EX_UNAVAILABLE" "the user $RUN_AS does not exist and useradd is not installed"
  fi
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
  # state/ is root's alone. The others may let the agent's group through (the run sets that up): never
  # take that away here, a no-op launch runs beside a live agent.
  chmod 700 -- "$STATE_DIR"
  chmod g-w,o-rwx -- "$BASE_DIR" "$LOG_DIR" "$ETC_DIR"
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
  if (( $(stat -c %s -- "$INSTALL_LOG" 2>/dev/null || echo 0) > INSTALL_LOG_MAX_BYTES )); then
    mv -f -- "$INSTALL_LOG" "$INSTALL_LOG.1"
  fi
  say "install requested" >> "$INSTALL_LOG"
  # Detached in its own session, so neither the SSH connection nor this shell ending stops it; it
  # inherits fd 9 and with it the lock, which is released only when it exits.
  setsid bash "$script" run < /dev/null >> "$INSTALL_LOG" 2>&1 &
  write_state runner.pid "$!"
  echo "started: generation $GENERATION (runner pid $!)"
}

# --- run ---------------------------------------------------------------------------------------------

STARTED_AGENT_PID=  # what start_agent launched (with runuser: runuser, the agent's parent)
AGENT_HEALTHY=0
AGENT_UID='' AGENT_GID=''  # set when the agent runs as RUN_AS: the user the secrets and its directories belong to
AS_AGENT=(env)  # the prefix that runs a command as the agent's user ("env": as ourselves)

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

# --- the agent's user ------------------------------------------------------------------------------
# As root with RUN_AS set, the agent (and the engine it starts) runs as that unprivileged system user.
# state/, the lock and etc/ stay root's; the user owns only what the agent writes (logs/agent/, home/ with
# its caches) and its two secret files (0600, in root's etc/: it can read them, never replace them).

prepare_agent_user() {
  local shell group group_opt=(--user-group)
  if [[ -z $RUN_AS ]]; then say "the agent runs as $(id -un), the SSH user (no run_as)"; return 0; fi
  if (( EUID != 0 )); then say "not running as root: the agent runs as $(id -un), not $RUN_AS"; return 0; fi
  if [[ $RUN_AS == root ]]; then say "the agent runs as root (run_as root)"; return 0; fi
  if ! id -u -- "$RUN_AS" >/dev/null 2>&1; then
    shell=/usr/sbin/nologin
    [[ -x $shell ]] || shell=/sbin/nologin
    [[ -x $shell ]] || shell=/bin/false
    if getent group "$RUN_AS" >/dev/null 2>&1; then group_opt=(--gid "$RUN_AS"); fi
    say "creating the system user $RUN_AS (no login shell, no password)"
    # Another install may be creating it at the same moment: what counts is that it exists afterwards.
    useradd --system "${group_opt[@]}" --home-dir "$AGENT_HOME" --no-create-home --shell "$shell" -- "$RUN_AS" \
      || id -u -- "$RUN_AS" >/dev/null 2>&1 || fail "$EX_CONFIG" "cannot create the user $RUN_AS"
  fi
  AGENT_UID=$(id -u -- "$RUN_AS")
  AGENT_GID=$(id -g -- "$RUN_AS")
  [[ $AGENT_UID != 0 ]] || fail "$EX_CONFIG" "the user $RUN_AS has uid 0: it would not drop any privilege"
  # The GPU device nodes: /dev/dri/* belong to video or render (/dev/nvidia* are usually open to all).
  for group in video render; do
    getent group "$group" >/dev/null 2>&1 || continue
    [[ " $(id -nG -- "$RUN_AS") " == *" $group "* ]] && continue
    usermod -a -G "$group" -- "$RUN_AS" || say "warning: could not add $RUN_AS to the group $group"
  done
  if command -v setpriv >/dev/null 2>&1; then
    # setpriv exec()s: the agent keeps its pid. No new privileges: no setuid program can raise them again.
    AS_AGENT=(setpriv "--reuid=$AGENT_UID" "--regid=$AGENT_GID" --init-groups --no-new-privs --)
  else
    # runuser stays as the agent's parent (and would SIGKILL it 2 s after a SIGTERM): the agent is
    # signalled directly, by the pid its launcher reports (start_agent).
    AS_AGENT=(runuser -u "$RUN_AS" --)
  fi
  say "the agent runs as $RUN_AS (uid $AGENT_UID, gid $AGENT_GID), switched by ${AS_AGENT[0]}"
}

own_tree() {  # dir uid gid
  # Walked only when the top belongs to someone else (a new owner): a tree the agent's user has been
  # writing to is not walked by root at every install.
  if [[ $(stat -c %u -- "$1") == "$2" ]]; then chown -- "$2:$3" "$1"; else chown -R -- "$2:$3" "$1"; fi
}

prepare_dirs() {
  mkdir -p -- "$AGENT_LOG_DIR"
  if [[ -n $AGENT_UID ]]; then
    # The agent's group may pass through root's directories (reading needs its own files' modes too).
    chown -- "0:$AGENT_GID" "$BASE_DIR" "$LOG_DIR" "$ETC_DIR"
    chmod 750 -- "$BASE_DIR" "$LOG_DIR" "$ETC_DIR"
    mkdir -p -- "$AGENT_HOME"
    own_tree "$AGENT_LOG_DIR" "$AGENT_UID" "$AGENT_GID"
    own_tree "$AGENT_HOME" "$AGENT_UID" "$AGENT_GID"
    chmod 700 -- "$AGENT_LOG_DIR" "$AGENT_HOME"
  else
    chmod 700 -- "$BASE_DIR" "$LOG_DIR" "$ETC_DIR" "$AGENT_LOG_DIR"
    if (( EUID == 0 )); then own_tree "$AGENT_LOG_DIR" 0 0; fi  # back from an unprivileged install
  fi
}

check_agent_access() {  # as the agent's user: what it must read, run and write (a clear line, not a crash)
  local path interpreter=
  [[ -n $AGENT_UID ]] || return 0
  for path in "$ENV_FILE" ${NATS_CREDS:+"$CREDS_FILE"}; do
    "${AS_AGENT[@]}" test -r "$path" || fail "$EX_CONFIG" "$RUN_AS cannot read $path"
  done
  # shellcheck disable=SC2153  # AGENT_BIN comes from the header
  { IFS= read -r interpreter < "$AGENT_BIN"; } 2>/dev/null || true
  interpreter=${interpreter#\#!}
  interpreter=${interpreter#"${interpreter%%[! ]*}"}
  for path in "$AGENT_BIN" ${interpreter:+"${interpreter%% *}"}; do
    [[ $path == /* ]] || continue
    "${AS_AGENT[@]}" test -x "$path" \
      || fail "$EX_CONFIG" "$RUN_AS cannot run $path: it and every directory above it must be readable and searchable by that user"
  done
  for path in "$AGENT_LOG_DIR" "$AGENT_HOME"; do
    { "${AS_AGENT[@]}" test -w "$path" && "${AS_AGENT[@]}" test -x "$path"; } \
      || fail "$EX_CONFIG" "$RUN_AS cannot write $path: every directory above it must be searchable by that user"
  done
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
  umask 022  # code, not secrets: readable by the agent's user, writable by root alone
  make_venv "$VENV_DIR"
  say "pip install $AGENT_REQUIREMENT"
  "$VENV_DIR/bin/python" -m pip install --disable-pip-version-check --no-input "$AGENT_REQUIREMENT"
  umask 077
  [[ -x $AGENT_BIN ]] || fail "$EX_UNAVAILABLE" "$AGENT_REQUIREMENT did not install an inventiv-agent executable"
}

# The agent's launcher, run by bash as the agent's user ($1 env file, $2 agent, $3 stderr log): report its
# own pid on fd 3 (the agent's once it execs; with runuser it is not $!), keep the previous run's stderr as
# .1 (a crash loop's output survives one restart), capture stderr (opened as that user, never by root in
# its directory), load the env file, become the agent.
# shellcheck disable=SC2016  # expanded by that shell
readonly AGENT_LAUNCHER='printf "%s\n" "$$" >&3; exec 3>&-
if [[ -e $3 ]]; then mv -f -- "$3" "$3.1"; fi
exec >> "$3" 2>&1
set -a; . "$1"; set +a
exec "$2"'

start_agent() {
  local report="$STATE_DIR/.agent.pid.report" pid='' home=${HOME:-/root} deadline=$((SECONDS + 10))
  if [[ -n $AGENT_UID ]]; then home=$AGENT_HOME; fi  # caches (Hugging Face, vLLM, torch) land under the base dir
  say "starting $AGENT_BIN (engine $ENGINE, model $MODEL_NAME, logs in $AGENT_LOG_DIR)"
  rm -f -- "$report"
  # Its own session: it outlives this script and the SSH connection. A clean environment plus the env
  # file; fd 9, the install lock, is closed so the agent never holds it. setsid does not fork here (this
  # shell is the group leader, not the child). What setpriv/runuser print themselves lands in install.log.
  setsid "${AS_AGENT[@]}" env -i "HOME=$home" LANG=C.UTF-8 "$BASH" -c "$AGENT_LAUNCHER" inventiv-agent \
    "$ENV_FILE" "$AGENT_BIN" "$AGENT_STDERR_LOG" < /dev/null 3> "$report" 9>&- &
  STARTED_AGENT_PID=$!
  until { IFS= read -r pid < "$report"; } 2>/dev/null && [[ $pid =~ ^[0-9]+$ ]]; do
    pid=
    if ! alive "$STARTED_AGENT_PID" || (( SECONDS >= deadline )); then break; fi  # wait_for_agent reports it
    sleep 0.05
  done
  rm -f -- "$report"
  write_state agent.pid "${pid:-$STARTED_AGENT_PID}"
}

show_agent_logs() {  # read as the agent's user: root never follows a link planted in its directory
  say "the end of $AGENT_EVENTS_LOG:"
  "${AS_AGENT[@]}" tail -n 10 -- "$AGENT_EVENTS_LOG" 2>&1 | cut -c 1-300 || true
  say "the end of $AGENT_STDERR_LOG:"
  "${AS_AGENT[@]}" tail -n 40 -- "$AGENT_STDERR_LOG" 2>&1 || true
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
      say "the agent exited while starting (exit code $rc)"
      show_agent_logs
      exit "$EX_SOFTWARE"
    fi
    if http_ok "$BIND_HOST" "$AGENT_PORT" /healthz; then
      AGENT_HEALTHY=1
      say "the agent answers /healthz (pid $STARTED_AGENT_PID); readiness comes by heartbeat"
      return 0
    fi
    sleep 0.25
  done
  say "the agent did not answer /healthz within ${AGENT_START_TIMEOUT_S}s"
  show_agent_logs
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
  prepare_agent_user
  install_agent
  prepare_dirs
  write_secret "$ENV_FILE" "$AGENT_ENV"
  if [[ -n $NATS_CREDS ]]; then write_secret "$CREDS_FILE" "$NATS_CREDS"; else rm -f -- "$CREDS_FILE"; fi
  check_agent_access
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
