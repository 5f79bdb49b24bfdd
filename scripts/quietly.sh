# Sourced by the scripts that install things: a tool's own output goes to a log file, and its
# last lines are shown only when it fails.

# Runs "$@" with its output appended to the file $1. When the command fails, prints the log's
# last lines on stderr and returns the command's status.
quietly() {
    local log="$1"
    shift
    local status=0
    "$@" >>"$log" 2>&1 </dev/null || status=$?
    if [ "$status" -ne 0 ]; then
        printf 'failed (exit %d); the last lines of %s:\n' "$status" "$log" >&2
        tail -n 25 "$log" | sed 's/^/    /' >&2
    fi
    return "$status"
}
