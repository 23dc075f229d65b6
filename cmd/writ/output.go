package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// outputFormat is the -o flag: text for people, json for scripts, or
// field=PATH to print one value (e.g. -o field=lease.id) without jq.
type outputFormat struct {
	kind string // "text", "json" or "field"
	path []string
}

func parseOutput(s string) (outputFormat, error) {
	switch s {
	case "", "text":
		return outputFormat{kind: "text"}, nil
	case "json":
		return outputFormat{kind: "json"}, nil
	}
	if p, ok := strings.CutPrefix(s, "field="); ok {
		if p == "" || strings.Contains(p, "..") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") {
			return outputFormat{}, fmt.Errorf("output %q: want field=PATH, e.g. field=lease.id", s)
		}
		return outputFormat{kind: "field", path: strings.Split(p, ".")}, nil
	}
	return outputFormat{}, fmt.Errorf("output %q: want text, json or field=PATH", s)
}

// printer writes responses in the chosen format.
type printer struct {
	w      io.Writer
	format outputFormat
	now    func() time.Time
}

// jsonOpts emits every field, so scripts see "allowed": false rather than
// a missing key.
var jsonOpts = protojson.MarshalOptions{EmitUnpopulated: true}

// emit prints msg as JSON, one field of it, or through text.
func (p *printer) emit(msg proto.Message, text func(t *textOut)) error {
	switch p.format.kind {
	case "json":
		b, err := jsonOpts.Marshal(msg)
		if err != nil {
			return fmt.Errorf("encode response: %w", err)
		}
		// protojson's spacing is deliberately unstable; re-indent so the
		// output is the same from one run to the next.
		var buf bytes.Buffer
		if err := json.Indent(&buf, b, "", "  "); err != nil {
			return fmt.Errorf("encode response: %w", err)
		}
		buf.WriteByte('\n')
		_, err = p.w.Write(buf.Bytes())
		return err
	case "field":
		s, err := fieldValue(msg.ProtoReflect(), p.format.path)
		if err != nil {
			return &usageError{err: fmt.Errorf("-o field=%s: %w", strings.Join(p.format.path, "."), err)}
		}
		_, err = fmt.Fprintln(p.w, s)
		return err
	}
	t := &textOut{now: p.now}
	t.tw = tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	text(t)
	return t.tw.Flush()
}

// fieldValue walks path (JSON or proto field names, list indexes, map keys)
// from m and renders the value it reaches.
func fieldValue(m protoreflect.Message, path []string) (string, error) {
	// cur is the value reached; fd the field it came from (nil for the root);
	// elem is true when cur is one element of the list field fd.
	cur := protoreflect.ValueOfMessage(m)
	var fd protoreflect.FieldDescriptor
	elem := false
	for i, seg := range path {
		where := strings.Join(path[:i+1], ".")
		switch {
		case fd != nil && fd.IsList() && !elem:
			n, err := strconv.Atoi(seg)
			l := cur.List()
			if err != nil || n < 0 || n >= l.Len() {
				return "", fmt.Errorf("%s: no element %q (the list has %d)", where, seg, l.Len())
			}
			cur, elem = l.Get(n), true
		case fd != nil && fd.IsMap():
			if fd.MapKey().Kind() != protoreflect.StringKind {
				return "", fmt.Errorf("%s: only string-keyed maps can be walked", where)
			}
			mk := protoreflect.ValueOfString(seg).MapKey()
			if !cur.Map().Has(mk) {
				return "", fmt.Errorf("%s: no key %q", where, seg)
			}
			cur, fd, elem = cur.Map().Get(mk), fd.MapValue(), false
		default:
			if fd != nil && fd.Kind() != protoreflect.MessageKind {
				return "", fmt.Errorf("%s: %s is not a message", where, strings.Join(path[:i], "."))
			}
			msg := cur.Message()
			fields := msg.Descriptor().Fields()
			f := fields.ByJSONName(seg)
			if f == nil {
				f = fields.ByName(protoreflect.Name(seg))
			}
			if f == nil {
				return "", fmt.Errorf("%s: no field %q in %s", where, seg, msg.Descriptor().FullName())
			}
			cur, fd, elem = msg.Get(f), f, false
		}
	}
	if fd == nil {
		return "", fmt.Errorf("empty path")
	}
	return renderValue(cur, fd, elem)
}

// renderValue renders v, the value of fd (one element of it when elem):
// scalars plainly, timestamps in RFC 3339, collections one item a line,
// other messages as compact JSON.
func renderValue(v protoreflect.Value, fd protoreflect.FieldDescriptor, elem bool) (string, error) {
	switch {
	case fd.IsMap():
		var lines []string
		var err error
		v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
			var s string
			s, err = renderValue(mv, fd.MapValue(), false)
			lines = append(lines, k.String()+"="+s)
			return err == nil
		})
		slices.Sort(lines)
		return strings.Join(lines, "\n"), err
	case fd.IsList() && !elem:
		l := v.List()
		lines := make([]string, 0, l.Len())
		for i := range l.Len() {
			s, err := renderValue(l.Get(i), fd, true)
			if err != nil {
				return "", err
			}
			lines = append(lines, s)
		}
		return strings.Join(lines, "\n"), nil
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		switch m := v.Message().Interface().(type) {
		case *timestamppb.Timestamp:
			if m.GetSeconds() == 0 && m.GetNanos() == 0 {
				return "", nil
			}
			return m.AsTime().UTC().Format(time.RFC3339Nano), nil
		case *durationpb.Duration:
			return m.AsDuration().String(), nil
		default:
			b, err := protojson.Marshal(m)
			return string(b), err
		}
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name()), nil
		}
		return strconv.Itoa(int(v.Enum())), nil
	case protoreflect.BytesKind:
		return string(v.Bytes()), nil
	}
	return v.String(), nil
}

// textOut builds human-readable output: aligned key/value lines and tables.
type textOut struct {
	tw  *tabwriter.Writer
	now func() time.Time
}

// kv prints "key  value", aligned with neighbouring kv lines.
func (t *textOut) kv(key string, value any) {
	fmt.Fprintf(t.tw, "%s\t%v\n", key, value)
}

// kvIf prints a kv line only when value is not empty.
func (t *textOut) kvIf(key, value string) {
	if value != "" {
		t.kv(key, value)
	}
}

// line prints text as is (it ends the current alignment block).
func (t *textOut) line(s string) {
	_ = t.tw.Flush()
	fmt.Fprintln(t.tw, s)
	_ = t.tw.Flush()
}

// table prints a header and rows, columns aligned.
func (t *textOut) table(header []string, rows [][]string) {
	_ = t.tw.Flush()
	fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	for _, r := range rows {
		for i := range r {
			if r[i] == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(t.tw, strings.Join(r, "\t"))
	}
	_ = t.tw.Flush()
}

// time renders a timestamp in UTC with how far it is from now.
func (t *textOut) time(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return "-"
	}
	at := ts.AsTime()
	s := at.UTC().Format(time.RFC3339)
	if t.now == nil {
		return s
	}
	d := at.Sub(t.now()).Round(time.Second)
	switch {
	case d > 0:
		return s + " (in " + d.String() + ")"
	case d < 0:
		return s + " (" + (-d).String() + " ago)"
	}
	return s + " (now)"
}

// shortTime renders a timestamp for a table cell.
func shortTime(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// seconds renders a *_seconds field.
func seconds(n int64) string {
	if n == 0 {
		return "-"
	}
	return (time.Duration(n) * time.Second).String()
}

// pairs renders a string map as sorted k=v pairs.
func pairs(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	out := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return strings.Join(out, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }
