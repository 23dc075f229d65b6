import json,sys
for fn in sys.argv[1:]:
    for line in open(fn):
        if not line.startswith('{'): continue
        d=json.loads(line)
        L=d.get('propagation') or d.get('latency') or {}
        print(fn, d.get('scenario'), 'ops/s=%s'%d.get('ops_per_s'), {k:round(v,2) for k,v in L.items() if k.endswith('_ms')}, 'count', L.get('count'))
        for r in d.get('runs',[]):
            print('   run', {k:v for k,v in r.items() if k.endswith('_ms') or k=='ops_per_s'})
        if d.get('ratios'): print('   ratios', d['ratios'])
        if d.get('parts'):
            for p in d['parts']: print('   part', p.get('name'), p.get('p50_ms'), p.get('p99_ms'), p.get('count'))
