# Splits `perf record -g -a` samples of the four writ processes into parts,
# by the first frame that matches, in this order. How the 2026-12-03 issuance
# profile in docs/benchmarks.md was produced:
#   bin/writ bench --local 3 --scenario issue --duration 14s --warmup 2s --concurrency 64 --json &
#   sleep 6; perf record -F 499 -g -a -o /tmp/perf.issue -- sleep 8
#   perf script -i /tmp/perf.issue -F comm,pid,ip,sym > /tmp/perf.txt
#   python3 docs/bench/intel-1203/perf_categories.py /tmp/perf.txt
import collections, sys

samples, cur = [], None
for line in open(sys.argv[1]):
    if not line.strip():
        if cur:
            samples.append(cur)
        cur = None
        continue
    if not line.startswith((' ', '\t')):
        parts = line.split()
        cur = {'comm': parts[0], 'pid': parts[1].rstrip(':'), 'st': []}
    else:
        p = line.strip().split(None, 1)
        cur['st'].append(p[1] if len(p) > 1 else '?')
if cur:
    samples.append(cur)

cats = [('bench', 'bench.'), ('gc', 'gcBgMarkWorker'), ('fsm-apply', 'raftFSM).Apply'),
        ('raft-store', 'StoreLogs'), ('raft-follower', 'runFollower'), ('raft-leader', 'leaderLoop'),
        ('raft-repl', 'replicate'), ('raft-net', 'NetworkTransport'), ('raft-other', 'hashicorp/raft'),
        ('audit', 'writ/audit.'), ('mint', 'credential.(*Signer).Mint'), ('issue-handler', 'authorizeAndIssue'),
        ('forward-handler', 'nodeService).Forward'), ('forwarder', 'writ/node.(*forwarder)'),
        ('proposer', 'writ/node.(*proposer)'), ('connect-client', 'connect.(*Client'), ('http2', 'http2'),
        ('http-serve', 'net/http.(*conn).serve'), ('http-client', 'net/http.(*persistConn)'),
        ('memberlist', 'memberlist'), ('sched', 'runtime.schedule'), ('mcall', 'runtime.mcall')]
c = collections.Counter()
for s in samples:
    if s['comm'] != 'writ':
        c['other:' + s['comm']] += 1
        continue
    st = ' '.join(s['st'])
    for name, pat in cats:
        if pat in st:
            c[name] += 1
            break
    else:
        c['uncategorised'] += 1
print(len(samples), 'samples')
for k, v in c.most_common(40):
    print(f"{100 * v / len(samples):5.1f}% {k}")
