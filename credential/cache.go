package credential

import (
	"crypto/sha256"
	"sync"
)

// tokenCache is a bounded map from token hash to verified entry: a fixed
// number of shards (to spread lock traffic over cores), each holding two
// generations. Inserts go to the current generation; when it is full it
// becomes the previous one and the old previous generation is dropped
// whole. A hit in the previous generation moves the entry forward. That
// approximates LRU (recently used tokens survive a rotation, idle ones are
// dropped within two) with O(1) work, no per-entry list pointers and no
// background sweeper.
type tokenCache struct {
	shards []tokenShard
	mask   uint32
	half   int // entries per generation per shard
}

type tokenShard struct {
	mu   sync.RWMutex
	cur  map[[sha256.Size]byte]*entry
	prev map[[sha256.Size]byte]*entry
	_    [40]byte // keep neighbouring shards' locks off one cache line
}

// newTokenCache holds at most max(size, 2) entries.
func newTokenCache(size int) *tokenCache {
	n := 1
	for n < 64 && size/(2*n*2) >= 64 {
		n *= 2
	}
	c := &tokenCache{shards: make([]tokenShard, n), mask: uint32(n - 1), half: max(1, size/(2*n))}
	for i := range c.shards {
		c.shards[i].cur = make(map[[sha256.Size]byte]*entry)
	}
	return c
}

func (c *tokenCache) shard(k [sha256.Size]byte) *tokenShard {
	return &c.shards[uint32(k[0])&c.mask]
}

func (c *tokenCache) get(k [sha256.Size]byte) *entry {
	s := c.shard(k)
	s.mu.RLock()
	e := s.cur[k]
	s.mu.RUnlock()
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e = s.cur[k]; e != nil {
		return e
	}
	if e = s.prev[k]; e != nil {
		delete(s.prev, k)
		s.insert(k, e, c.half)
	}
	return e
}

func (c *tokenCache) put(k [sha256.Size]byte, e *entry) {
	s := c.shard(k)
	s.mu.Lock()
	s.insert(k, e, c.half)
	s.mu.Unlock()
}

func (c *tokenCache) remove(k [sha256.Size]byte) {
	s := c.shard(k)
	s.mu.Lock()
	delete(s.cur, k)
	delete(s.prev, k)
	s.mu.Unlock()
}

// insert adds k to the current generation, rotating first when it is full.
// The caller holds s.mu.
func (s *tokenShard) insert(k [sha256.Size]byte, e *entry, half int) {
	if _, ok := s.cur[k]; !ok && len(s.cur) >= half {
		s.prev = s.cur
		s.cur = make(map[[sha256.Size]byte]*entry, half)
	}
	s.cur[k] = e
}

// len counts cached entries (tests).
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.cur) + len(s.prev)
		s.mu.RUnlock()
	}
	return n
}
