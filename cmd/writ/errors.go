package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// Exit codes. Scripts rely on them: keep them stable.
const (
	exitOK       = 0
	exitError    = 1 // the call failed (transport, server error)
	exitUsage    = 2 // bad command line or bad input file
	exitNegative = 3 // the call succeeded and the answer is no: denied, inactive
)

// usageError is a problem with the command line or with input the user gave
// (a flag value, a file, the environment). It exits with exitUsage.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// runError marks an error returned by a command's own RunE, as opposed to
// one raised by cobra while parsing the command line.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// negativeAnswer is returned when the call worked and the answer is "no"
// (denied, inactive). The answer has already been printed.
var errNegative = errors.New("negative answer")

// exitCode classifies an error returned by the root command's Execute.
func exitCode(err error) int {
	var ue *usageError
	var re *runError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errNegative):
		return exitNegative
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &re):
		return exitError
	default:
		// Anything cobra raised itself: unknown command or flag, wrong
		// number of arguments, missing required flag.
		return exitUsage
	}
}

// reportError prints err the way users and scripts see it on stderr:
//
//	error: <connect code>: <message> (reason: <reason>[, key=value ...])
func reportError(w io.Writer, err error) {
	if err == nil || errors.Is(err, errNegative) {
		return
	}
	fmt.Fprintln(w, "error: "+describeError(err))
	var re *runError
	if exitCode(err) == exitUsage && !errors.As(err, &re) {
		fmt.Fprintln(w, "Run 'writ --help' or 'writ <command> --help' for usage.")
	}
}

func describeError(err error) string {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return err.Error()
	}
	msg := ce.Code().String()
	if m := ce.Message(); m != "" {
		msg += ": " + m
	}
	if info := errorInfo(ce); info != nil && info.GetReason() != "" {
		extra := []string{"reason: " + info.GetReason()}
		for _, k := range slices.Sorted(maps.Keys(info.GetMetadata())) {
			extra = append(extra, k+"="+info.GetMetadata()[k])
		}
		msg += " (" + strings.Join(extra, ", ") + ")"
	}
	return msg
}

// errorInfo returns the first google.rpc.ErrorInfo detail of err, or nil.
func errorInfo(ce *connect.Error) *errdetails.ErrorInfo {
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			continue
		}
		if info, ok := v.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}
