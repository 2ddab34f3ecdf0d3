# xcatlib.sh: functions a postscript can use (pyxcat). POSIX sh: dash, busybox ash, bash.
#
# Usage, in a postscript:
#     . "$(dirname "$0")/xcatlib.sh"
#     xcat_log "configuring syslog"
#     xcat_fetch /install/postscripts/custom/rsyslog.conf /etc/rsyslog.d/50-xcat.conf || exit 1
#     xcat_retry 5 systemctl restart rsyslog || xcat_status failed "rsyslog does not start"
#
# Functions:
#   xcat_log [-p PRIORITY] MESSAGE...
#       "<script>: MESSAGE" on stdout and to syslog (facility local4, tag xcat.<script>, when
#       logger is there). PRIORITY: debug, info (the default), notice, warning, err.
#   xcat_error MESSAGE...
#       xcat_log -p err, written on stderr instead of stdout.
#   xcat_status STATE [MESSAGE...]
#       Tell the node agent how the script is doing: one line "STATE MESSAGE" added to the
#       file $XCAT_STATUS_FILE when the agent set it, and logged. STATE is one word
#       (letters, digits, '-', '_').
#   xcat_retry TRIES COMMAND [ARG...]      (also: retry TRIES COMMAND [ARG...])
#       Run COMMAND until it succeeds, at most TRIES times, waiting between tries 1 s, then
#       2 s, 4 s... (never more than $XCAT_RETRY_MAX_DELAY). Returns COMMAND's last status.
#   xcat_fetch SOURCE DEST [TRIES]
#       Fetch a file from the management node over HTTP into DEST (written whole or not at
#       all). SOURCE is a URL, or a path on the management node's web server
#       (/install/...), fetched from http://$MASTER_IP:$HTTPPORT (both from the postscript
#       environment). Transient failures (no connection, timeouts, HTTP 5xx, 408, 429) are
#       retried TRIES times (default 5) with the same backoff as xcat_retry; a 4xx answer
#       is final. Uses curl, else wget (GNU or busybox). Returns 0 when DEST is in place,
#       1 on failure, 2 when the server refused or has no such file (HTTP 4xx), 3 when
#       neither curl nor wget is there.
#
# Settings (environment, all optional):
#   XCAT_RETRY_DELAY      first wait between tries, seconds (1)
#   XCAT_RETRY_MAX_DELAY  longest wait between tries, seconds (30)
#   XCAT_FETCH_TIMEOUT    longest time one try of xcat_fetch may take, seconds (60)
#   XCAT_FETCH_TOOL       curl or wget: use that one
#   XCAT_SCRIPT           the name logs carry (default: the script's file name)
#
# Every function keeps its variables under an _xcat prefix: a script's own are left alone.
# xcat_retry may run xcat_fetch, but not another xcat_retry (sh has no local variables).

xcat_script_name() {
    if [ -n "${XCAT_SCRIPT:-}" ]; then
        printf '%s\n' "$XCAT_SCRIPT"
    else
        printf '%s\n' "${0##*/}"
    fi
}

_xcat_number() {  # _xcat_number VALUE DEFAULT: VALUE if it is a whole number, else DEFAULT
    case ${1:-} in
        ''|*[!0-9]*) printf '%s\n' "$2" ;;
        *) printf '%s\n' "$1" ;;
    esac
}

xcat_log() {
    _xcat_prio=info
    if [ "${1:-}" = "-p" ] && [ $# -ge 2 ]; then
        _xcat_prio=$2
        shift 2
    fi
    case $_xcat_prio in
        debug|info|notice|warning|err) ;;
        *) _xcat_prio=info ;;
    esac
    _xcat_name=$(xcat_script_name)
    if [ "$_xcat_prio" = err ]; then
        printf '%s: %s\n' "$_xcat_name" "$*" >&2
    else
        printf '%s: %s\n' "$_xcat_name" "$*"
    fi
    if command -v logger >/dev/null 2>&1; then
        logger -t "xcat.$_xcat_name" -p "local4.$_xcat_prio" -- "$*" 2>/dev/null || :
    fi
    return 0
}

xcat_error() {
    xcat_log -p err "$@"
}

xcat_status() {
    if [ $# -lt 1 ]; then
        xcat_error "usage: xcat_status STATE [MESSAGE...]"
        return 1
    fi
    case $1 in
        ''|*[!A-Za-z0-9_-]*)
            xcat_error "xcat_status: '$1' is not a state word (letters, digits, '-', '_')"
            return 1 ;;
    esac
    _xcat_state=$1
    shift
    xcat_log -p notice "status: $_xcat_state${1:+ $*}"
    if [ -n "${XCAT_STATUS_FILE:-}" ]; then
        printf '%s %s\n' "$_xcat_state" "$*" >>"$XCAT_STATUS_FILE" || return 1
    fi
    return 0
}

_xcat_delay() {  # _xcat_delay N: the seconds to wait after the Nth failed try
    _xcat_d=$(_xcat_number "${XCAT_RETRY_DELAY:-}" 1)
    _xcat_m=$(_xcat_number "${XCAT_RETRY_MAX_DELAY:-}" 30)
    _xcat_i=1
    while [ "$_xcat_i" -lt "$1" ] && [ "$_xcat_d" -lt "$_xcat_m" ]; do
        _xcat_d=$((_xcat_d * 2))
        _xcat_i=$((_xcat_i + 1))
    done
    if [ "$_xcat_d" -gt "$_xcat_m" ]; then
        _xcat_d=$_xcat_m
    fi
    printf '%s\n' "$_xcat_d"
}

xcat_retry() {
    case ${1:-} in
        ''|*[!0-9]*|0)
            xcat_error "xcat_retry: TRIES must be a whole number above 0, not '${1:-}'"
            return 2 ;;
    esac
    if [ $# -lt 2 ]; then
        xcat_error "usage: xcat_retry TRIES COMMAND [ARG...]"
        return 2
    fi
    _xcat_rtries=$1
    shift
    _xcat_rtry=1
    while :; do
        "$@" && return 0
        _xcat_rrc=$?
        if [ "$_xcat_rtry" -ge "$_xcat_rtries" ]; then
            xcat_error "$1 failed $_xcat_rtry times (last status $_xcat_rrc)"
            return "$_xcat_rrc"
        fi
        _xcat_rwait=$(_xcat_delay "$_xcat_rtry")
        xcat_log -p warning "$1 failed (status $_xcat_rrc, try $_xcat_rtry of" \
            "$_xcat_rtries), again in ${_xcat_rwait}s"
        sleep "$_xcat_rwait"
        _xcat_rtry=$((_xcat_rtry + 1))
    done
}

retry() {
    xcat_retry "$@"
}

_xcat_fetch_tool() {
    _xcat_want=${XCAT_FETCH_TOOL:-}
    if [ -n "$_xcat_want" ]; then
        command -v "$_xcat_want" >/dev/null 2>&1 && printf '%s\n' "$_xcat_want"
        return 0
    fi
    if command -v curl >/dev/null 2>&1; then
        echo curl
    elif command -v wget >/dev/null 2>&1; then
        echo wget
    fi
}

_xcat_fetch_once() {  # URL TMP ERRFILE TOOL: 0 got it, 2 final answer (4xx), 1 try again
    _xcat_timeout=$(_xcat_number "${XCAT_FETCH_TIMEOUT:-}" 60)
    _xcat_code=
    if [ "$4" = curl ]; then
        _xcat_code=$(curl -sS -L -o "$2" -w '%{http_code}' --connect-timeout 10 \
            --max-time "$_xcat_timeout" -- "$1" 2>"$3")
        _xcat_frc=$?
    else
        if wget --version 2>/dev/null | grep -q 'GNU Wget'; then
            wget -S -t 1 -T "$_xcat_timeout" -O "$2" -- "$1" 2>"$3"
        elif command -v timeout >/dev/null 2>&1; then  # busybox wget: no -T here
            timeout "$_xcat_timeout" wget -O "$2" "$1" 2>"$3"
        else
            wget -O "$2" "$1" 2>"$3"
        fi
        _xcat_frc=$?
        _xcat_code=$(sed -n 's/.*HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' "$3" | tail -n 1)
    fi
    case $_xcat_code in  # busybox wget names no status when all went well
        408|425|429) return 1 ;;
        4??) return 2 ;;
        ''|2??) [ "$_xcat_frc" -eq 0 ] && return 0 ;;
    esac
    return 1
}

_xcat_fetch_reason() {  # why a try failed, in one line
    if [ -n "$_xcat_code" ] && [ "$_xcat_code" != 000 ]; then
        printf 'HTTP %s\n' "$_xcat_code"
    else
        _xcat_why=$(grep -v '^ *$' "$1" 2>/dev/null | tail -n 1)
        printf '%s\n' "${_xcat_why:-status $_xcat_frc}"
    fi
}

xcat_fetch() {
    if [ $# -lt 2 ] || [ $# -gt 3 ]; then
        xcat_error "usage: xcat_fetch SOURCE DEST [TRIES]"
        return 1
    fi
    _xcat_src=$1
    _xcat_dest=$2
    _xcat_ftries=$(_xcat_number "${3:-}" 5)
    [ "$_xcat_ftries" -ge 1 ] || _xcat_ftries=1
    case $_xcat_src in
        http://*|https://*) _xcat_url=$_xcat_src ;;
        *)
            _xcat_host=${MASTER_IP:-${MASTER:-}}
            if [ -z "$_xcat_host" ]; then
                xcat_error "xcat_fetch $_xcat_src: MASTER_IP is not set (run me as a postscript)"
                return 1
            fi
            case $_xcat_host in *:*) _xcat_host="[$_xcat_host]" ;; esac
            _xcat_url="http://$_xcat_host:${HTTPPORT:-80}/${_xcat_src#/}" ;;
    esac
    _xcat_tool=$(_xcat_fetch_tool)
    if [ -z "$_xcat_tool" ]; then
        xcat_error "xcat_fetch $_xcat_url: neither curl nor wget is installed"
        return 3
    fi
    _xcat_tmp="$_xcat_dest.part.$$"
    _xcat_err="$_xcat_dest.err.$$"
    _xcat_ftry=1
    while :; do
        if ! : >"$_xcat_tmp" 2>/dev/null; then
            xcat_error "xcat_fetch: cannot write $_xcat_tmp"
            return 1
        fi
        _xcat_fetch_once "$_xcat_url" "$_xcat_tmp" "$_xcat_err" "$_xcat_tool"
        _xcat_got=$?
        if [ "$_xcat_got" -eq 0 ] && mv -f "$_xcat_tmp" "$_xcat_dest"; then
            rm -f "$_xcat_err"
            xcat_log "fetched $_xcat_url"
            return 0
        fi
        _xcat_why=$(_xcat_fetch_reason "$_xcat_err")
        rm -f "$_xcat_tmp" "$_xcat_err"
        if [ "$_xcat_got" -eq 2 ]; then
            xcat_error "cannot fetch $_xcat_url: $_xcat_why"
            return 2
        fi
        if [ "$_xcat_ftry" -ge "$_xcat_ftries" ]; then
            xcat_error "cannot fetch $_xcat_url after $_xcat_ftry tries: $_xcat_why"
            return 1
        fi
        _xcat_fwait=$(_xcat_delay "$_xcat_ftry")
        xcat_log -p warning "fetching $_xcat_url failed ($_xcat_why, try $_xcat_ftry of" \
            "$_xcat_ftries), again in ${_xcat_fwait}s"
        sleep "$_xcat_fwait"
        _xcat_ftry=$((_xcat_ftry + 1))
    done
}
