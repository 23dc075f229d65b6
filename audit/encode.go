package audit

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendEvent appends ev as a JSON object: the same fields and names as its
// struct tags (encoding/json would produce an equivalent object), written
// without reflection because encoding a record is most of the audit
// pipeline's cost. Context values of types JSON has no literal for fall
// back to encoding/json.
func appendEvent(b []byte, ev *Event) []byte {
	b = append(b, `{"time":"`...)
	b = ev.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = field(b, "node", ev.Node, false)
	b = field(b, "stream", string(ev.Stream), false)
	b = field(b, "type", string(ev.Type), false)
	b = field(b, "phase", ev.Phase, true)
	b = field(b, "method", ev.Method, true)
	b = field(b, "request_id", ev.RequestID, true)
	b = field(b, "decision_id", ev.DecisionID, true)
	b = append(b, `,"actor":{`...)
	n := len(b)
	b = field(b, "id", ev.Actor.ID, true)
	b = field(b, "kind", ev.Actor.Kind, true)
	b = field(b, "owner", ev.Actor.Owner, true)
	b = field(b, "role", ev.Actor.Role, true)
	b = append(b, `,"human":`...)
	b = strconv.AppendBool(b, ev.Actor.Human)
	if b[n] == ',' { // the first field written opens the object without a comma
		b = append(b[:n], b[n+1:]...)
	}
	b = append(b, '}')
	b = field(b, "auth_method", ev.AuthMethod, true)
	b = field(b, "action", ev.Action, true)
	b = appendResource(b, ev.Resource)
	b = field(b, "target", ev.Target, true)
	b = appendContext(b, ev.Context)
	b = appendOutcome(b, ev.Decision, ev.Reason, ev.Policies, ev.PolicySet, ev.PolicyVersion)
	b = field(b, "lease_id", ev.LeaseID, true)
	if ev.AppliedIndex != 0 {
		b = append(b, `,"applied_index":`...)
		b = strconv.AppendUint(b, ev.AppliedIndex, 10)
	}
	b = appendError(b, ev.Error)
	if len(ev.Hashes) > 0 {
		b = append(b, `,"hmac":`...)
		b = appendStringMap(b, ev.Hashes)
	}
	if g := ev.Gap; g != nil {
		b = append(b, `,"gap":{"dropped":`...)
		b = strconv.AppendUint(b, g.Dropped, 10)
		b = append(b, `,"reason":`...)
		b = appendString(b, g.Reason)
		b = append(b, '}')
	}
	if len(ev.Filtered) > 0 {
		b = append(b, `,"filtered":{`...)
		var buf [8]string
		for i, k := range sortedKeys(ev.Filtered, buf[:]) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = strconv.AppendUint(b, ev.Filtered[k], 10)
		}
		b = append(b, '}')
	}
	if len(ev.Items) > 0 {
		b = append(b, `,"items":[`...)
		for i := range ev.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendItem(b, &ev.Items[i])
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendItem appends one batch item as a JSON object, its fields in
// Item's order.
func appendItem(b []byte, it *Item) []byte {
	b = append(b, `{"i":`...)
	b = strconv.AppendInt(b, int64(it.Index), 10)
	b = field(b, "action", it.Action, true)
	b = appendResource(b, it.Resource)
	b = appendContext(b, it.Context)
	b = appendOutcome(b, it.Decision, it.Reason, it.Policies, it.PolicySet, it.PolicyVersion)
	b = appendError(b, it.Error)
	return append(b, '}')
}

func appendResource(b []byte, r *Resource) []byte {
	if r == nil {
		return b
	}
	b = append(b, `,"resource":{"type":`...)
	b = appendString(b, r.Type)
	b = append(b, `,"id":`...)
	b = appendString(b, r.ID)
	return append(b, '}')
}

func appendContext(b []byte, ctx map[string]any) []byte {
	if len(ctx) == 0 {
		return b
	}
	b = append(b, `,"context":`...)
	return appendValue(b, ctx, 0)
}

// appendOutcome appends a decision's fields: decision, reason, policies,
// policy_set and policy_version, each omitted when empty.
func appendOutcome(b []byte, decision, reason string, policies []string, set string, version uint64) []byte {
	b = field(b, "decision", decision, true)
	b = field(b, "reason", reason, true)
	if len(policies) > 0 {
		b = append(b, `,"policies":[`...)
		for i, p := range policies {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, p)
		}
		b = append(b, ']')
	}
	b = field(b, "policy_set", set, true)
	if version != 0 {
		b = append(b, `,"policy_version":`...)
		b = strconv.AppendUint(b, version, 10)
	}
	return b
}

func appendError(b []byte, e *Error) []byte {
	if e == nil {
		return b
	}
	b = append(b, `,"error":{"code":`...)
	b = appendString(b, e.Code)
	b = field(b, "reason", e.Reason, true)
	return append(b, '}')
}

func field(b []byte, name, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

// sortedKeys returns m's keys sorted, in buf when they fit: the context
// maps of decision records have a handful of keys, and a fresh slice per
// map was two allocations per record on the spooler goroutine.
func sortedKeys[V any](m map[string]V, buf []string) []string {
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func appendStringMap(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	var buf [8]string
	for i, k := range sortedKeys(m, buf[:]) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, m[k])
	}
	return append(b, '}')
}

// maxDepth bounds nesting of context values (a cycle cannot loop forever).
const maxDepth = 32

func appendValue(b []byte, v any, depth int) []byte {
	if depth > maxDepth {
		return append(b, `"(nested too deep)"`...)
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return appendString(b, strconv.FormatFloat(x, 'g', -1, 64))
		}
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case map[string]any:
		b = append(b, '{')
		var buf [8]string
		for i, k := range sortedKeys(x, buf[:]) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendValue(b, x[k], depth+1)
		}
		return append(b, '}')
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e, depth+1)
		}
		return append(b, ']')
	case map[string]string:
		return appendStringMap(b, x)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return appendString(b, "(unencodable: "+err.Error()+")")
	}
	return append(b, j...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (as encoding/json).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
