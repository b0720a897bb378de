#!/bin/sh
# The README's example under the launcher: 3 ranks, each must print the sums.
set -eu
launch=$1 hello=$2
out=$("$launch" -n 3 --timeout 30 -- "$hello")
for r in 0 1 2; do
    echo "$out" | grep -qx "\[$r\] rank $r: 3 6 9 3" || { echo "missing line for rank $r in:"; echo "$out"; exit 1; }
done
echo "ok"
