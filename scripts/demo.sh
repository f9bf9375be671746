#!/usr/bin/env bash
# Builds chorus and runs a whole demo on this host, nothing to configure:
# `chorusd --dev` (a daemon with its own directory on loopback and a group
# `demo`), a listener, and a sender; prints what the listener was delivered.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins -q
bin=target/release
run=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$run"' EXIT
XDG_RUNTIME_DIR="$run" "$bin/chorusd" --dev > "$run/chorusd.out" 2> "$run/chorusd.log" &
# chorusd --dev prints "socket: PATH" once it serves.
for _ in $(seq 1 100); do
    grep -q '^socket: ' "$run/chorusd.out" 2>/dev/null && break
    sleep 0.1
done
sock=$(sed -n 's/^socket: //p' "$run/chorusd.out")
[ -n "$sock" ] || { echo "chorusd --dev did not start:"; cat "$run/chorusd.log"; exit 1; }
export CHORUS_SOCKET="$sock"
echo "chorusd --dev is serving on $sock"
"$bin/chorusctl" listen demo --count 3 --name listener > "$run/listen.out" &
listener=$!
# Wait until the listener is in the group before sending.
for _ in $(seq 1 100); do
    grep -q '^view ' "$run/listen.out" 2>/dev/null && break
    sleep 0.1
done
echo "\$ chorusctl send demo hello group world"
"$bin/chorusctl" send demo hello group world --name sender
wait "$listener"
echo "\$ chorusctl listen demo --count 3   (what it printed)"
cat "$run/listen.out"
