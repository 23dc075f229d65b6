#!/bin/bash
# Every issue-3 propagation figure on this tree, one after the other.
# ./writ-new is bin/writ of 7c0dda2; ../writ-split the same with split.patch.
cd "$(dirname "$0")"
st() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
run() { # name, command...
  local name=$1; shift
  local s0=$(st); local t0=$(date -u +%H:%M:%S)
  "$@" > $name.json 2> $name.err
  local s1=$(st)
  echo "$t0-$(date -u +%H:%M:%S) $name steal=$(echo $s0 $s1 | awk '{printf "%.2f", 100*($3-$1)/($4-$2)}')% rc=$? :: $*" >> targets.log
}
run propagation ./writ-new bench --local 3 --scenario revoke-propagation --peers=etcd --runs 3 --duration 10s --warmup 2s --json
run mixed-rate1500 ./writ-new bench --local 3 --scenario revoke-propagation,mixed --rate 1500 --concurrency 256 --runs 3 --duration 10s --warmup 2s --json
run split ../writ-split bench --local 3 --scenario revoke-propagation --runs 1 --duration 20s --warmup 2s --json
grep TMP split.err >> targets.log
echo done >> targets.log
