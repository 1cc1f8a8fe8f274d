#!/usr/bin/env bash
# make lint's dead-code check. It runs deadcode (golang.org/x/tools/cmd/deadcode,
# pinned in the Makefile) over the commands, fieldsync and fieldsyncd, without
# their tests, and fails
#   - on any function of this module the commands cannot reach, unless
#     .deadcode-allow lists it (exported SDK API that apps call), and
#   - on any .deadcode-allow entry deadcode no longer reports, so that the list
#     cannot rot, and on an entry without a `# reason` or under survey/,
#     server/ or store/, which must be reached or deleted.
#
# Environment: DEADCODE, the deadcode binary (default bin/deadcode, which
# `make lint` installs); DEADCODE_VERSION, when set, the version it must be.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

deadcode=${DEADCODE:-bin/deadcode}
allow=.deadcode-allow

if [ ! -x "$deadcode" ]; then
	echo "deadcode: $deadcode not found: run 'make lint', which installs the pinned version into ./bin" >&2
	exit 1
fi
if [ -n "${DEADCODE_VERSION:-}" ]; then
	have=$(go version -m "$deadcode" | awk '$1 == "mod" { print $3 }')
	if [ "$have" != "$DEADCODE_VERSION" ]; then
		echo "deadcode: $deadcode is ${have:-of unknown version}, the Makefile pins $DEADCODE_VERSION: remove it and run 'make lint' again" >&2
		exit 1
	fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The allowlist's entries, sorted; a malformed entry fails here.
awk -v file="$allow" '
	/^[[:space:]]*(#|$)/ { next }
	{
		entry = $0
		sub(/[[:space:]]*#.*/, "", entry)
		gsub(/^[[:space:]]+|[[:space:]]+$/, "", entry)
		reason = ""
		if (i = index($0, "#")) {
			reason = substr($0, i + 1)
			gsub(/^[[:space:]]+|[[:space:]]+$/, "", reason)
		}
		if (entry ~ /[[:space:]]/) {
			printf "%s:%d: one function a line: %s\n", file, NR, entry > "/dev/stderr"; bad = 1; next
		}
		if (reason == "") {
			printf "%s:%d: %s: say why after a #\n", file, NR, entry > "/dev/stderr"; bad = 1; next
		}
		if (entry ~ /^(survey|server|store)[\/.]/) {
			printf "%s:%d: %s: survey/, server/ and store/ may not be allowlisted: call it from the commands or delete it\n", file, NR, entry > "/dev/stderr"; bad = 1; next
		}
		if (seen[entry]++) {
			printf "%s:%d: %s is listed twice\n", file, NR, entry > "/dev/stderr"; bad = 1; next
		}
		print entry
	}
	END { exit bad }
' "$allow" | sort >"$tmp/allowed"

# What deadcode reports, as "package.Function<TAB>file:line:col", the package
# path inside the module. Generated code (the protobuf stubs) is left out by
# deadcode itself.
module=$(go list -m)
if ! "$deadcode" -f '{{range .Funcs}}{{$.Path}}.{{.Name}}{{"\t"}}{{.Position}}{{"\n"}}{{end}}' ./cmd/... >"$tmp/raw"; then
	echo "deadcode: could not analyse ./cmd/... (does 'go vet ./...' pass?)" >&2
	exit 1
fi
awk -v prefix="$module/" '{ if (index($0, prefix) == 1) $0 = substr($0, length(prefix) + 1); print }' "$tmp/raw" |
	sort >"$tmp/found"
cut -f1 "$tmp/found" | sort -u >"$tmp/names"

status=0
awk -F'\t' 'NR == FNR { ok[$1] = 1; next } !($1 in ok) { print $2 ": unreachable func: " $1 }' \
	"$tmp/allowed" "$tmp/found" | sort -t: -k1,1 -k2,2n -k3,3n >"$tmp/dead"
if [ -s "$tmp/dead" ]; then
	echo "deadcode: $(wc -l <"$tmp/dead") function(s) that fieldsync and fieldsyncd never call:"
	cat "$tmp/dead"
	echo "deadcode: call them from the commands or delete them; only exported API that apps use may go in $allow, with a # reason"
	status=1
fi
comm -13 "$tmp/names" "$tmp/allowed" >"$tmp/stale"
if [ -s "$tmp/stale" ]; then
	echo "deadcode: $allow lists function(s) that deadcode no longer reports (reached now, renamed or gone):"
	sed 's/^/  /' "$tmp/stale"
	echo "deadcode: remove them from $allow"
	status=1
fi
if [ "$status" -eq 0 ]; then
	echo "deadcode: every function is reachable from the commands but the $(wc -l <"$tmp/allowed") in $allow"
fi
exit "$status"
