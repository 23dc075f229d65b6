package authz

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/cedar-policy/cedar-go/types"
)

// MaxValueDepth bounds how deeply records and sets may nest in a request's
// context or resource attributes.
const MaxValueDepth = 16

// valueError is a conversion failure with the path of the offending value,
// e.g. context.delegation[2].ttl.
type valueError struct {
	path string
	msg  string
}

func (e *valueError) Error() string { return e.path + ": " + e.msg }

func (e *valueError) prefix(p string) *valueError {
	e.path = p + e.path
	return e
}

// recordFromMap converts decoded JSON (or Go values of the same shape) into a
// Cedar record; root names the record in error messages ("context").
// The rules are in toValue.
// Values of m's own keys that are in converted are taken from there
// instead (Request.Converted); nested values are always converted.
func recordFromMap(root string, m map[string]any, converted map[string]Converted, pool *sync.Pool) (types.Record, error) {
	if len(m) == 0 {
		return types.Record{}, nil
	}
	r, err := toRecord(m, 1, converted, pool)
	if err != nil {
		return types.Record{}, err.prefix(root)
	}
	return r, nil
}

// Converted is a context value converted to its Cedar form once
// (ConvertValue), for a value many requests share: Writ's context.auth of a
// lease is the same on every call made with it, and converting it (sorting
// and hashing its keys, copying the record) was a fifth of the Authorize
// handler's CPU. The zero Converted is not a value.
type Converted struct{ v types.Value }

// ConvertValue converts v by the rules of a top-level context value
// (toValue), for Request.Converted.
func ConvertValue(v any) (Converted, error) {
	cv, err := toValue(v, 1, nil)
	if err != nil {
		return Converted{}, err
	}
	return Converted{cv}, nil
}

// toRecord fills a scratch map from pool (nil: a fresh one) and hands it to
// types.NewRecord, which copies it: the scratch map goes back to the pool.
// A PolicySet owns the pool, so maps are recycled across its decisions.
// converted (nil at every level below the top) holds values already
// converted.
func toRecord(m map[string]any, depth int, converted map[string]Converted, pool *sync.Pool) (types.Record, *valueError) {
	var rm types.RecordMap
	if pool != nil {
		if v, ok := pool.Get().(types.RecordMap); ok {
			rm = v
		}
	}
	if rm == nil {
		rm = make(types.RecordMap, len(m))
	}
	defer func() {
		if pool != nil {
			clear(rm)
			pool.Put(rm)
		}
	}()
	for k, v := range m {
		if c, ok := converted[k]; ok && c.v != nil {
			rm[types.String(k)] = c.v
			continue
		}
		cv, err := toValue(v, depth, pool)
		if err != nil {
			return types.Record{}, err.prefix("." + k)
		}
		rm[types.String(k)] = cv
	}
	return types.NewRecord(rm), nil
}

// toValue converts one value:
//
//	string                     → String
//	bool                       → Boolean
//	float64, float32           → Long when integral and within int64; else an error
//	                             (JSON numbers arrive as float64: Cedar has no floats,
//	                             and silently truncating 1.5 would change a decision)
//	int*, uint*, json.Number   → Long (an error when outside int64)
//	[]any, []string            → Set
//	map[string]any,
//	map[string]string          → Record
//	types.Value                → itself (an entity reference, a decimal...)
//	nil, anything else         → an error
func toValue(v any, depth int, pool *sync.Pool) (types.Value, *valueError) {
	if depth > MaxValueDepth {
		return nil, &valueError{msg: fmt.Sprintf("nested more than %d levels deep", MaxValueDepth)}
	}
	switch v := v.(type) {
	case string:
		return types.String(v), nil
	case bool:
		return types.Boolean(v), nil
	case float64:
		return longFromFloat(v)
	case float32:
		return longFromFloat(float64(v))
	case int:
		return types.Long(v), nil
	case int8:
		return types.Long(v), nil
	case int16:
		return types.Long(v), nil
	case int32:
		return types.Long(v), nil
	case int64:
		return types.Long(v), nil
	case uint8:
		return types.Long(v), nil
	case uint16:
		return types.Long(v), nil
	case uint32:
		return types.Long(v), nil
	case uint:
		return longFromUint(uint64(v))
	case uint64:
		return longFromUint(v)
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return nil, &valueError{msg: fmt.Sprintf("%s is not an integer within the 64-bit range (Cedar has no floating-point numbers)", v)}
		}
		return types.Long(n), nil
	case []any:
		vals := make([]types.Value, len(v))
		for i, e := range v {
			cv, err := toValue(e, depth+1, pool)
			if err != nil {
				return nil, err.prefix("[" + strconv.Itoa(i) + "]")
			}
			vals[i] = cv
		}
		return types.NewSet(vals...), nil
	case []string:
		vals := make([]types.Value, len(v))
		for i, e := range v {
			vals[i] = types.String(e)
		}
		return types.NewSet(vals...), nil
	case map[string]any:
		r, err := toRecord(v, depth+1, nil, pool)
		if err != nil {
			return nil, err
		}
		return r, nil
	case map[string]string:
		rm := make(types.RecordMap, len(v))
		for k, s := range v {
			rm[types.String(k)] = types.String(s)
		}
		return types.NewRecord(rm), nil
	case nil:
		return nil, &valueError{msg: "null has no Cedar equivalent; leave the key out instead"}
	case types.Value:
		return v, nil
	}
	return nil, &valueError{msg: fmt.Sprintf("unsupported value of Go type %T", v)}
}

func longFromFloat(f float64) (types.Value, *valueError) {
	// 2^63 is exactly representable; every float below it in magnitude that is
	// integral converts without loss.
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return nil, &valueError{msg: fmt.Sprintf("%v is not an integer within the 64-bit range (Cedar has no floating-point numbers)", f)}
	}
	return types.Long(int64(f)), nil
}

func longFromUint(u uint64) (types.Value, *valueError) {
	if u > math.MaxInt64 {
		return nil, &valueError{msg: fmt.Sprintf("%d is larger than the largest Cedar Long", u)}
	}
	return types.Long(int64(u)), nil
}
