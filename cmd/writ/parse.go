package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/types/known/structpb"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// maxInputBytes bounds what the CLI reads from a file or stdin. The server
// bounds requests at 1 MiB; reading a little more gives its error, not ours,
// while a runaway pipe cannot exhaust memory.
const maxInputBytes = 4 << 20

// parseResource parses a Cedar-style entity reference: TYPE::ID. The type may
// be namespaced (Ns::Type::id splits at the last "::") and the id may be
// quoted as in Cedar (Type::"a b" or Type::"a::b").
func parseResource(s string) (typ, id string, err error) {
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("resource %q: %s; want TYPE::ID, e.g. Deployment::api-prod", s, why)
	}
	if strings.HasSuffix(s, `"`) {
		i := strings.Index(s, `::"`)
		if i < 0 {
			return bad("unbalanced quote")
		}
		typ = s[:i]
		id, err = strconv.Unquote(s[i+2:])
		if err != nil {
			return bad("the quoted id is not a valid string literal")
		}
	} else {
		i := strings.LastIndex(s, "::")
		if i < 0 {
			return bad(`no "::"`)
		}
		typ, id = s[:i], s[i+2:]
		if strings.HasPrefix(id, `"`) {
			return bad("unbalanced quote")
		}
	}
	if typ == "" {
		return bad("empty type")
	}
	if id == "" {
		return bad("empty id")
	}
	for _, seg := range strings.Split(typ, "::") {
		if !isIdent(seg) {
			return bad(fmt.Sprintf("type segment %q is not an identifier (letters, digits, _; not starting with a digit)", seg))
		}
	}
	return typ, id, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r < unicode.MaxASCII && unicode.IsLetter(r):
		case i > 0 && r >= '0' && r <= '9':
		default:
			return false
		}
	}
	return true
}

// parseKV parses one k=v pair. Keys must be non-empty and free of spaces;
// values may be empty and may contain '='.
func parseKV(s string) (key, value string, err error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("%q: want key=value", s)
	}
	if k == "" {
		return "", "", fmt.Errorf("%q: empty key", s)
	}
	if strings.ContainsFunc(k, unicode.IsSpace) {
		return "", "", fmt.Errorf("%q: key contains white space", s)
	}
	return k, v, nil
}

// parseKVs parses repeated k=v flags into a map; a repeated key is an error.
func parseKVs(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, err := parseKV(p)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("key %q given twice", k)
		}
		m[k] = v
	}
	return m, nil
}

// parseAttrs parses resource attributes: k=v gives a string; k:=JSON gives
// a typed value (k:=3, k:=true, k:='["a","b"]').
func parseAttrs(pairs []string) (*structpb.Struct, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	fields := make(map[string]*structpb.Value, len(pairs))
	for _, p := range pairs {
		eq := strings.IndexByte(p, '=')
		if eq < 0 {
			return nil, fmt.Errorf("%q: want key=value or key:=JSON", p)
		}
		k, raw := p[:eq], p[eq+1:]
		typed := strings.HasSuffix(k, ":")
		k = strings.TrimSuffix(k, ":")
		if k == "" {
			return nil, fmt.Errorf("%q: empty key", p)
		}
		if _, dup := fields[k]; dup {
			return nil, fmt.Errorf("key %q given twice", k)
		}
		if !typed {
			fields[k] = structpb.NewStringValue(raw)
			continue
		}
		v, err := decodeJSON([]byte(raw))
		if err != nil {
			return nil, fmt.Errorf("%q: value is not JSON: %v", p, err)
		}
		sv, err := structpb.NewValue(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", p, err)
		}
		fields[k] = sv
	}
	return &structpb.Struct{Fields: fields}, nil
}

// decodeJSON decodes exactly one JSON value, rejecting trailing data.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty input")
		}
		return nil, jsonErr(b, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unexpected data after the JSON value at offset %d", dec.InputOffset())
	}
	return v, nil
}

// jsonErr adds a line:column position to encoding/json's syntax errors.
func jsonErr(b []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := position(b, se.Offset-1) // Offset is just past the bad byte
		return fmt.Errorf("line %d, column %d: %v", line, col, se)
	}
	return err
}

func position(b []byte, off int64) (line, col int) {
	off = max(0, min(off, int64(len(b))))
	line, col = 1, 1
	for _, c := range b[:off] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

// contextSource reads the --context value: inline JSON, @file, or @- for
// stdin. The result must be a JSON object.
func parseContext(arg string, stdin io.Reader) (*structpb.Struct, error) {
	if arg == "" {
		return nil, nil
	}
	data := []byte(arg)
	what := "context"
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		var err error
		data, err = readInput(name, stdin)
		if err != nil {
			return nil, fmt.Errorf("context: %w", err)
		}
		what = "context from " + displayName(name)
	}
	v, err := decodeJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not valid JSON: %v", what, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: want a JSON object like {\"ticket\":\"CHG-1234\"}, got %s", what, jsonKind(v))
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	return s, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return fmt.Sprintf("%T", v)
}

func displayName(name string) string {
	if name == "-" {
		return "stdin"
	}
	return name
}

// readInput reads a file, or stdin for "-", up to maxInputBytes.
func readInput(name string, stdin io.Reader) ([]byte, error) {
	if name == "" {
		return nil, errors.New("empty file name")
	}
	var r io.Reader
	if name == "-" {
		if stdin == nil {
			return nil, errors.New("no stdin")
		}
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", displayName(name), err)
	}
	if len(data) > maxInputBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", displayName(name), maxInputBytes)
	}
	return data, nil
}

// readSecretArg resolves a credential or secret given as an argument, as
// "-" (first line of stdin), or from an environment variable.
func readSecretArg(what, val string, stdin io.Reader, getenv func(string) string, env string) (string, error) {
	if val == "" && env != "" {
		val = getenv(env)
		if val == "" {
			return "", fmt.Errorf("%s is required (argument, flag, or %s)", what, env)
		}
	}
	if val == "-" {
		data, err := readInput("-", stdin)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		val = string(data)
	}
	val = strings.TrimSpace(val)
	if val == "" {
		return "", fmt.Errorf("%s is empty", what)
	}
	if strings.ContainsFunc(val, unicode.IsSpace) {
		return "", fmt.Errorf("%s contains white space; pass exactly one value", what)
	}
	return val, nil
}

// parseSeconds parses a duration for a *_seconds field: Go syntax (90s,
// 15m, 1h30m) or a bare number of seconds. It must be whole seconds and not
// negative.
func parseSeconds(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("duration %q is negative", s)
		}
		return n, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want e.g. 90s, 15m, 1h30m or a number of seconds", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("duration %q is not a whole number of seconds", s)
	}
	return int64(d / time.Second), nil
}

// parseConsistency parses --consistency.
func parseConsistency(s string) (writv1.Consistency, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "default":
		return writv1.Consistency_CONSISTENCY_UNSPECIFIED, nil
	case "stale":
		return writv1.Consistency_CONSISTENCY_STALE, nil
	case "linearizable", "linearisable":
		return writv1.Consistency_CONSISTENCY_LINEARIZABLE, nil
	}
	return 0, fmt.Errorf("consistency %q: want stale or linearizable", s)
}

// parseCIDR accepts a prefix (10.0.0.0/8) or a single address (10.1.2.3,
// sent as /32 or /128) and returns its canonical form.
func parseCIDR(s string) (string, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Masked() != p {
			return "", fmt.Errorf("cidr %q has host bits set; did you mean %s?", s, p.Masked())
		}
		return p.String(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()).String(), nil
	}
	return "", fmt.Errorf("cidr %q: want an address or prefix like 10.0.0.0/8", s)
}
