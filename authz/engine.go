package authz

import (
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"

	"github.com/writ-dev/writ/fsm/fsmpb"
)

// Engine caches compiled policy sets, one version per name: the newest it
// was asked for. It is safe for concurrent use; Get on a hit takes no lock
// (an atomic load of an immutable map), and writers copy the map.
//
// A (name, version) pair must always denote the same text; the replicated
// state guarantees it by bumping the version on every change. As a cheap
// guard, a cached set is only reused when the text length also matches.
type Engine struct {
	sets  atomic.Pointer[map[string]*cacheEntry]
	mu    sync.Mutex // serializes writers of sets
	group singleflight.Group
	// principals is shared by every set the engine compiles: an identity's
	// principal records do not depend on the policies.
	principals principalCache
}

// cacheEntry is one compiled version, or the error compiling it gave:
// a set that does not compile is not recompiled on every request.
type cacheEntry struct {
	version uint64
	size    int
	ps      *PolicySet
	err     error
}

// NewEngine returns an empty Engine.
func NewEngine() *Engine {
	e := &Engine{}
	e.sets.Store(&map[string]*cacheEntry{})
	return e
}

func (e *Engine) load() map[string]*cacheEntry {
	if m := e.sets.Load(); m != nil {
		return *m
	}
	return nil
}

// Get returns ps compiled, from the cache or by compiling it. Concurrent
// misses for the same version compile once. Compiling a newer version
// replaces the older one of the same name; asking for a version older than
// the cached one compiles it without caching it (a reader on a lagging
// view must not evict the current set). Errors wrap ErrCompile and are
// cached like results.
func (e *Engine) Get(ps *fsmpb.PolicySet) (*PolicySet, error) {
	if ps == nil {
		return nil, fmt.Errorf("%w: no policy set", ErrCompile)
	}
	name, version, text := ps.GetName(), ps.GetVersion(), ps.GetCedar()
	if c, ok := e.load()[name]; ok && c.version == version && c.size == len(text) {
		return c.ps, c.err
	}
	key := strconv.FormatUint(version, 10) + "/" + name
	v, _, _ := e.group.Do(key, func() (any, error) {
		if c, ok := e.load()[name]; ok && c.version == version && c.size == len(text) {
			return c, nil
		}
		c := &cacheEntry{version: version, size: len(text)}
		c.ps, c.err = Compile(name, version, []byte(text))
		if c.ps != nil {
			c.ps.principals = &e.principals
		}
		e.install(name, c)
		return c, nil
	})
	c := v.(*cacheEntry)
	return c.ps, c.err
}

func (e *Engine) install(name string, c *cacheEntry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.load()
	if cur, ok := old[name]; ok && cur.version > c.version {
		return
	}
	next := make(map[string]*cacheEntry, len(old)+1)
	maps.Copy(next, old)
	next[name] = c
	e.sets.Store(&next)
}

// Forget drops every cached version of name (after the set is deleted).
// A Get of that name already in flight may cache it again.
func (e *Engine) Forget(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.load()
	if _, ok := old[name]; !ok {
		return
	}
	next := maps.Clone(old)
	delete(next, name)
	e.sets.Store(&next)
}
