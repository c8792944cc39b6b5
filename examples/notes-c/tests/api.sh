#!/usr/bin/env bash
# api.sh — black-box test of the notes example against a running instance at $APP_URL, with curl.
# Checks GET /healthz, that a note POSTed to /notes is listed by GET /notes, that an empty note is
# refused and that an unknown path is 404; prints one line per test case and,
# with --junit FILE, writes the results as JUnit XML (the file's folder is created).
# Exit status: 0 all passed, 1 a test failed, 2 usage error (no APP_URL, bad arguments, no curl).
set -uo pipefail

usage() {
    echo "usage: APP_URL=http://127.0.0.1:8080 $0 [--junit FILE]" >&2
    exit 2
}

junit=""
while [ $# -gt 0 ]; do
    case "$1" in
    --junit)
        if [ $# -lt 2 ] || [ -z "$2" ]; then usage; fi
        junit=$2
        shift 2
        ;;
    --junit=?*)
        junit=${1#--junit=}
        shift
        ;;
    -h | --help) usage ;;
    *)
        echo "api.sh: unknown argument '$1'" >&2
        usage
        ;;
    esac
done
if [ -z "${APP_URL:-}" ]; then
    echo "api.sh: APP_URL is not set" >&2
    usage
fi
command -v curl >/dev/null || {
    echo "api.sh: curl is not installed" >&2
    exit 2
}
base=${APP_URL%/}

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT

# Results, one entry per test case.
names=()
times=()
failures=() # empty when the case passed

# fetch PATH [curl options...]: sets status, ctype and body (curl's own error in body when the
# request failed)
fetch() {
    local out path=$1
    shift
    if out=$(curl -sS --max-time 10 -o "$tmp/body" -w '%{http_code} %{content_type}' "$@" \
        "$base$path" 2>"$tmp/err"); then
        status=${out%% *}
        ctype=${out#* }
        body=$(head -c 2000 "$tmp/body")
    else
        status=000
        ctype=""
        body=$(cat "$tmp/err")
    fi
}

test_healthz() {
    fetch /healthz
    [ "$status" = 200 ] || {
        echo "GET /healthz: expected 200, got $status: $body"
        return
    }
    [ "$body" = ok ] || echo "GET /healthz: expected body 'ok', got '$body'"
}

test_add_and_list() {
    local note="note $$ $RANDOM \"quoted\""
    fetch /notes -X POST -H 'Content-Type: text/plain' --data-binary "$note"
    [ "$status" = 201 ] || {
        echo "POST /notes: expected 201, got $status: $body"
        return
    }
    [[ $body =~ ^\{\"id\":\ [0-9]+\}$ ]] || {
        echo "POST /notes: unexpected body '$body'"
        return
    }
    local id=${body//[^0-9]/}
    fetch /notes
    [ "$status" = 200 ] || {
        echo "GET /notes: expected 200, got $status: $body"
        return
    }
    case "$ctype" in
    application/json*) ;;
    *)
        echo "GET /notes: expected Content-Type application/json, got '$ctype'"
        return
        ;;
    esac
    # the newest first: ours, its quotes escaped
    local want="{\"id\": $id, \"text\": \"${note//\"/\\\"}\", \"created_at\": \""
    [[ $body == "[$want"* ]] || echo "GET /notes: expected it to begin with '[$want', got '$body'"
}

test_empty_note_refused() {
    fetch /notes -X POST -H 'Content-Length: 0'
    [ "$status" = 400 ] || echo "POST /notes with no body: expected 400, got $status: $body"
}

test_not_found() {
    fetch /no-such-page
    [ "$status" = 404 ] || echo "GET /no-such-page: expected 404, got $status: $body"
}

run() {
    local name=$1 start end msg
    start=${EPOCHREALTIME/[.,]/}
    msg=$("test_$name")
    end=${EPOCHREALTIME/[.,]/}
    names+=("$name")
    times+=("$(printf '%d.%06d' $(((end - start) / 1000000)) $(((end - start) % 1000000)))")
    failures+=("$msg")
    if [ -z "$msg" ]; then
        echo "ok   $name"
    else
        echo "FAIL $name: $msg"
    fi
}

utf8_clean() {
    if command -v iconv >/dev/null; then
        iconv -c -f UTF-8 -t UTF-8 2>/dev/null
    else
        LC_ALL=C tr -d '\200-\377'
    fi
}

xml_escape() {
    local s=$1
    # replacements quoted: bash 5.2 expands an unquoted & to the match
    s=${s//&/"&amp;"}
    s=${s//</"&lt;"}
    s=${s//>/"&gt;"}
    s=${s//\"/"&quot;"}
    # XML 1.0 forbids most control characters (keep tab and newline) and the file says UTF-8:
    # drop invalid sequences, such as a multibyte character cut by the 2000-byte body limit
    printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037' | utf8_clean
}

write_junit() {
    local file=$1 nr_failed=0 total=0 i
    for i in "${!names[@]}"; do
        [ -n "${failures[$i]}" ] && nr_failed=$((nr_failed + 1))
        total=$(awk -v a="$total" -v b="${times[$i]}" 'BEGIN { printf "%.6f", a + b }')
    done
    mkdir -p "$(dirname "$file")" || return 1
    {
        echo '<?xml version="1.0" encoding="UTF-8"?>'
        printf '<testsuites tests="%d" failures="%d" time="%s">\n' "${#names[@]}" "$nr_failed" "$total"
        printf '  <testsuite name="notes-c.api" tests="%d" failures="%d" errors="0" skipped="0" time="%s">\n' \
            "${#names[@]}" "$nr_failed" "$total"
        for i in "${!names[@]}"; do
            printf '    <testcase classname="notes-c.api" name="%s" time="%s"' "${names[$i]}" "${times[$i]}"
            if [ -z "${failures[$i]}" ]; then
                echo '/>'
            else
                local text=${failures[$i]}
                local first=${text%%$'\n'*}
                echo '>'
                printf '      <failure message="%s">%s</failure>\n' "$(xml_escape "${first:0:200}")" \
                    "$(xml_escape "$text")"
                echo '    </testcase>'
            fi
        done
        echo '  </testsuite>'
        echo '</testsuites>'
    } >"$file.tmp" && mv "$file.tmp" "$file"
}

run healthz
run add_and_list
run empty_note_refused
run not_found

failed=0
for f in "${failures[@]}"; do
    [ -n "$f" ] && failed=$((failed + 1))
done
if [ -n "$junit" ]; then
    write_junit "$junit" || {
        echo "api.sh: cannot write '$junit'" >&2
        exit 2
    }
fi
echo "api.sh: ${#names[@]} tests, $failed failed ($base)"
[ "$failed" -eq 0 ]
