package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// Line format. A record is one JSON object on one line:
//
//	{"seq":N,"prev":"<hex>",<event fields>,"hash":"<hex>"}
//
// hash = SHA-256 of every byte of the line before `,"hash":`. prev is the
// hash of the stream's previous record ("" for the first record ever), seq
// counts from 1. Verifying needs no re-encoding: a verifier hashes the bytes
// it reads, so any edit changes the hash, a removal or reordering breaks seq
// and prev, and truncating the tail is caught by the checkpoints in Raft.

const hashSuffixLen = len(`,"hash":""}`) + sha256.Size*2

// encodeLine appends the chained line for body (the event's JSON object)
// to dst and returns it with the new hash.
func encodeLine(dst []byte, seq uint64, prev string, body []byte) ([]byte, string) {
	start := len(dst)
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"prev":"`...)
	dst = append(dst, prev...)
	dst = append(dst, '"')
	if len(body) > 2 { // body is {...}: splice its fields in
		dst = append(dst, ',')
		dst = append(dst, body[1:len(body)-1]...)
	}
	sum := sha256.Sum256(dst[start:])
	h := hex.EncodeToString(sum[:])
	dst = append(dst, `,"hash":"`...)
	dst = append(dst, h...)
	dst = append(dst, `"}`...)
	dst = append(dst, '\n')
	return dst, h
}

// Record is a chained record as read back.
type Record struct {
	Seq    uint64 `json:"seq"`
	Prev   string `json:"prev"`
	Hash   string `json:"hash"`
	Node   string `json:"node"`
	Stream Stream `json:"stream"`
	Type   Type   `json:"type"`
}

// parseLine checks one line's own hash and decodes its chain fields.
func parseLine(line []byte) (Record, error) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < hashSuffixLen || !bytes.HasSuffix(line, []byte(`"}`)) {
		return Record{}, fmt.Errorf("%w: no hash", ErrMalformed)
	}
	cut := len(line) - hashSuffixLen
	if !bytes.HasPrefix(line[cut:], []byte(`,"hash":"`)) {
		return Record{}, fmt.Errorf("%w: no hash at the end of the line", ErrMalformed)
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	sum := sha256.Sum256(line[:cut])
	if got := hex.EncodeToString(sum[:]); got != r.Hash || string(line[cut+len(`,"hash":"`):len(line)-2]) != r.Hash {
		return r, fmt.Errorf("%w: record seq %d was edited (its hash does not match its content)", ErrTampered, r.Seq)
	}
	return r, nil
}

// Checkpoint is a chain head the cluster committed: the node's stream had
// reached Seq with hash Hash when Raft applied it at Index.
type Checkpoint struct {
	Node   string
	Stream Stream
	Seq    uint64
	Hash   string
	Index  uint64
}

// ChainReport summarises one (node, stream) chain found by Verify.
type ChainReport struct {
	Node      string
	Stream    Stream
	First     uint64 // first seq seen
	Last      uint64 // last seq seen
	LastHash  string
	Anchor    string // prev of the first record seen ("" when the chain starts here)
	Records   int
	Gaps      uint64 // records the log itself says were dropped (gap records)
	Filtered  uint64 // records filters dropped on purpose
	Checked   int    // checkpoints that fell inside [First, Last] and matched
	Restarted int    // new chains started mid-file (only with AllowRestarts)
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Checkpoints committed in Raft for the chains in the input. A
	// checkpoint inside the records read must match; one past the last
	// record read means the input was truncated (unless NotNewest).
	Checkpoints []Checkpoint
	// NotNewest: the input is an older part of the chain (rotated files),
	// so checkpoints beyond its end prove nothing.
	NotNewest bool
	// AllowRestarts accepts a chain starting again at seq 1 mid-input (a
	// stdout sink restarts its chain with the process).
	AllowRestarts bool
}

// Verify reads chained records (one or more files concatenated in order)
// and returns one report per chain, or an error wrapping ErrTampered or
// ErrMalformed naming the first line that breaks the chain.
func Verify(r io.Reader, opts VerifyOptions) ([]ChainReport, error) {
	type key struct {
		node   string
		stream Stream
	}
	chains := map[key]*ChainReport{}
	var order []key
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rec, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		k := key{rec.Node, rec.Stream}
		c := chains[k]
		if c == nil {
			c = &ChainReport{Node: rec.Node, Stream: rec.Stream, First: rec.Seq, Anchor: rec.Prev}
			chains[k] = c
			order = append(order, k)
		} else {
			switch {
			case rec.Seq == 1 && rec.Prev == "" && opts.AllowRestarts:
				c.Restarted++
			case rec.Seq != c.Last+1:
				return nil, fmt.Errorf("line %d: %w: %s/%s seq %d follows seq %d: records were removed, inserted or reordered", lineNo, ErrTampered, rec.Node, rec.Stream, rec.Seq, c.Last)
			case rec.Prev != c.LastHash:
				return nil, fmt.Errorf("line %d: %w: %s/%s seq %d does not link to seq %d: records were replaced or reordered", lineNo, ErrTampered, rec.Node, rec.Stream, rec.Seq, c.Last)
			}
		}
		c.Last, c.LastHash = rec.Seq, rec.Hash
		c.Records++
		if rec.Type == TypeGap || rec.Type == TypeFiltered {
			var extra struct {
				Gap      *Gap              `json:"gap"`
				Filtered map[string]uint64 `json:"filtered"`
			}
			if err := json.Unmarshal(line, &extra); err == nil {
				if extra.Gap != nil {
					c.Gaps += extra.Gap.Dropped
				}
				for _, n := range extra.Filtered {
					c.Filtered += n
				}
			}
		}
		for _, cp := range opts.Checkpoints {
			if cp.Node == rec.Node && cp.Stream == rec.Stream && cp.Seq == rec.Seq {
				if cp.Hash != rec.Hash {
					return nil, fmt.Errorf("line %d: %w: %s/%s seq %d has hash %s but the cluster committed %s at index %d", lineNo, ErrTampered, rec.Node, rec.Stream, rec.Seq, short(rec.Hash), short(cp.Hash), cp.Index)
				}
				c.Checked++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w: %v", lineNo+1, ErrMalformed, err)
	}
	out := make([]ChainReport, 0, len(order))
	for _, k := range order {
		c := chains[k]
		if !opts.NotNewest {
			for _, cp := range opts.Checkpoints {
				if cp.Node == c.Node && cp.Stream == c.Stream && cp.Seq > c.Last {
					return nil, fmt.Errorf("%w: %s/%s ends at seq %d but the cluster committed seq %d at index %d: records were removed from the end", ErrTampered, c.Node, c.Stream, c.Last, cp.Seq, cp.Index)
				}
			}
		}
		out = append(out, *c)
	}
	return out, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
