#!/bin/bash
# Alternated A/B of idle revocation propagation (docs/bench/announce-1207/).
# old: the tree before announced revocations (a2bbcfc); nowait: this tree with
# --revocation-holder-wait=-1ns; default: this tree as shipped (1 ms wait).
cd "$(dirname "$0")"
OLD=${OLD:-./writ-old} NEW=${NEW:-./writ-new}
for i in 1 2 3; do
  for v in old nowait default; do
    bin=$NEW; extra=()
    [ $v = old ] && bin=$OLD
    [ $v = nowait ] && extra=(--server-arg=--revocation-holder-wait=-1ns)
    s0=$(awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    $bin bench --local 3 --scenario revoke-propagation --runs 1 --duration 25s --warmup 2s --json "${extra[@]}" > $v-$i.json 2> $v-$i.err
    s1=$(awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
    st=$(echo $s0 $s1 | awk '{printf "%.2f", 100*($3-$1)/($4-$2)}')
    echo "$(date -u +%H:%M:%S) $v $i steal=$st% $(python3 -c "
import json
for l in open('$v-$i.json'):
    if l.startswith('{'):
        d=json.loads(l); L=d['propagation'] if d.get('propagation') else d['latency']
        print('n=%d p50=%.2f p90=%.2f p99=%.2f max=%.2f'%(L.get('count',0),L['p50_ms'],L['p90_ms'],L['p99_ms'],L['max_ms']))
")" | tee -a measure.log
  done
done
