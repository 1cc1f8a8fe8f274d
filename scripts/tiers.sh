#!/bin/sh
# Runs a county and two township servers relaying to it, on one machine:
#   county     532523     on 127.0.0.1:7450, data in $DATA/county
#   township 1 532523100  on 127.0.0.1:7451, data in $DATA/township1
#   township 2 532523101  on 127.0.0.1:7452, data in $DATA/township2
# On first run it enrols each township with the county (fieldsync admin
# device add --relay, then fieldsyncd enroll-upstream); later runs reuse the
# data directories. Ctrl-C stops all three.
set -eu
BIN=${BIN:-./bin}
DATA=${DATA:-data/tiers}
COUNTY=127.0.0.1:7450

pids=""
cleanup() {
	[ -n "$pids" ] && kill $pids 2>/dev/null
	wait 2>/dev/null
}
trap cleanup EXIT INT TERM

mkdir -p "$DATA"
"$BIN/fieldsyncd" serve --data "$DATA/county" --listen $COUNTY --area 532523 2>>"$DATA/county.log" &
pids="$pids $!"
for _ in $(seq 50); do
	[ -s "$DATA/county/admin.token" ] && "$BIN/fieldsync" admin status --server $COUNTY --token-file "$DATA/county/admin.token" >/dev/null 2>&1 && break
	sleep 0.2
done

n=1
for area in 532523100 532523101; do
	dir="$DATA/township$n"
	port=$((7450 + n))
	if [ ! -s "$dir/upstream.token" ]; then
		code=$("$BIN/fieldsync" admin device add --server $COUNTY --token-file "$DATA/county/admin.token" \
			--relay --area $area --name "township $area" | awk '/enrolment code/ {print $3}')
		"$BIN/fieldsyncd" enroll-upstream --data "$dir" --area $area --upstream $COUNTY \
			--code "$code" --token-file "$dir/upstream.token"
	fi
	"$BIN/fieldsyncd" serve --data "$dir" --listen 127.0.0.1:$port --area $area \
		--upstream $COUNTY --upstream-token-file "$dir/upstream.token" 2>>"$DATA/township$n.log" &
	pids="$pids $!"
	n=$((n + 1))
done
echo "county on $COUNTY, townships on 127.0.0.1:7451 and 127.0.0.1:7452; logs in $DATA/*.log; Ctrl-C stops them"
wait
