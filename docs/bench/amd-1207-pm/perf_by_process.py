# Splits `perf script -F comm,pid,ip,sym` samples of the writ processes by process and part
# (first matching frame), as shares of all samples. Usage: python3 perf_by_process.py /tmp/perf.txt
import collections, sys
samples, cur = [], None
for line in open(sys.argv[1]):
    if not line.strip():
        if cur: samples.append(cur)
        cur=None; continue
    if not line.startswith((' ','\t')):
        parts=line.split(); cur={'comm':parts[0],'pid':parts[1].rstrip(':'),'st':[]}
    else:
        p=line.strip().split(None,1); cur['st'].append(p[1] if len(p)>1 else '?')
if cur: samples.append(cur)
N=len(samples)
cats = [('gc', 'gcBgMarkWorker'), ('fsm-apply', 'raftFSM).Apply'),
        ('raft-store', 'StoreLogs'), ('raft-follower', 'runFollower'), ('raft-leader', 'leaderLoop'),
        ('raft-repl', 'replicate'), ('raft-net', 'NetworkTransport'), ('raft-other', 'hashicorp/raft'),
        ('audit', 'writ/audit.'), ('mint', 'credential.(*Signer).Mint'), ('issue-handler', 'authorizeAndIssue'),
        ('forward-handler', 'nodeService).Forward'), ('waitapplied','WaitApplied'), ('forwarder', 'writ/node.(*forwarder)'),
        ('proposer', 'writ/node.(*proposer)'), ('connect-client', 'connect.(*Client'), ('http2', 'http2'),
        ('http-serve', 'net/http.(*conn).serve'), ('http-client', 'net/http.(*persistConn)'),
        ('memberlist', 'memberlist'), ('sched', 'runtime.schedule'), ('mcall', 'runtime.mcall'), ('syscall-other','syscall')]
by=collections.defaultdict(collections.Counter)
for s in samples:
    if s['comm']!='writ': continue
    st=' '.join(s['st'])
    for name,pat in cats:
        if pat in st: by[s['pid']][name]+=1; break
    else: by[s['pid']]['uncat']+=1
pids=sorted(by, key=lambda p:-sum(by[p].values()))
names=[c[0] for c in cats]+['uncat']
print('%-16s'%'cat'+''.join('%9s'%p for p in pids))
for n in names:
    print('%-16s'%n+''.join('%8.1f%%'%(100*by[p][n]/N) for p in pids))
print('%-16s'%'total'+''.join('%8.1f%%'%(100*sum(by[p].values())/N) for p in pids))
