package audit

import (
	"slices"
	"sync/atomic"
)

// Subscription receives a copy of every chained line of the streams it
// asked for, as written (so a forwarder can verify the chain too). It never
// slows the log: a subscriber that falls behind by more than its buffer
// loses lines, counted in Dropped, which the WatchAudit stream reports as a
// gap message before the next line it sends.
type Subscription struct {
	l       *Log
	streams []Stream
	c       chan []byte
	dropped atomic.Uint64
}

// Watch subscribes to streams (all when empty). Cancel the subscription
// with Close; Lines is closed when the log closes.
func (l *Log) Watch(streams []Stream, buffer int) *Subscription {
	if buffer <= 0 {
		buffer = 1024
	}
	sub := &Subscription{l: l, streams: streams, c: make(chan []byte, buffer)}
	l.subMu.Lock()
	select {
	case <-l.quit:
		close(sub.c)
	default:
		l.subs[sub] = struct{}{}
	}
	l.subMu.Unlock()
	return sub
}

// Lines delivers chained lines (each ends in a newline).
func (s *Subscription) Lines() <-chan []byte { return s.c }

// Dropped returns and resets the count of lines lost since the last call.
func (s *Subscription) Dropped() uint64 { return s.dropped.Swap(0) }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.l.subMu.Lock()
	defer s.l.subMu.Unlock()
	if _, ok := s.l.subs[s]; ok {
		delete(s.l.subs, s)
		close(s.c)
	}
}

// publish hands a written batch to the subscribers; starts are the offsets
// of each line in b.
func (l *Log) publish(stream Stream, b []byte, starts []int) {
	l.subMu.Lock()
	defer l.subMu.Unlock()
	if len(l.subs) == 0 {
		return
	}
	for sub := range l.subs {
		if len(sub.streams) > 0 && !slices.Contains(sub.streams, stream) {
			continue
		}
		for i, st := range starts {
			end := len(b)
			if i+1 < len(starts) {
				end = starts[i+1]
			}
			select {
			case sub.c <- slices.Clone(b[st:end]):
			default:
				sub.dropped.Add(1)
			}
		}
	}
}
