package omnicore

import (
	"errors"
	"strings"
)

// Sentinel errors for the ABI's status codes (specs/abi.md §3.1). Host functions return a
// *HostError that matches one of them with errors.Is.
var (
	// ErrNotFound: the key, secret, task or id does not exist (status -1).
	ErrNotFound = errors.New("not found")
	// ErrDenied: the operator's grant does not allow this (status -2).
	ErrDenied = errors.New("denied")
	// ErrInvalid: an argument was malformed (status -3).
	ErrInvalid = errors.New("invalid argument")
	// ErrQuota: a quota or limit of the grant was hit (status -4).
	ErrQuota = errors.New("quota exceeded")
	// ErrUnavailable: the backing service failed (status -5).
	ErrUnavailable = errors.New("unavailable")
	// ErrTooLarge: a value exceeds a size limit (status -6).
	ErrTooLarge = errors.New("too large")
)

var statusErrors = [...]error{ErrNotFound, ErrDenied, ErrInvalid, ErrQuota, ErrUnavailable,
	ErrTooLarge}

var statusNames = [...]string{"NOT_FOUND", "DENIED", "INVALID", "QUOTA", "UNAVAILABLE",
	"TOO_LARGE"}

// HostError is a failed host function call.
type HostError struct {
	// Op names the host function, as "kv.get".
	Op string
	// Status is the ABI status code (negative), or 0 when the host sent only a message.
	Status int32
	// Message is the host's explanation, when it gave one (§3.3 functions do).
	Message string
	err     error
}

// Error describes the failure as "omnicore kv.get: not found".
func (e *HostError) Error() string {
	text := "omnicore " + e.Op + ": "
	if e.Message != "" {
		return text + e.Message
	}
	if e.err != nil {
		return text + e.err.Error()
	}
	return text + "status " + itoa32(e.Status)
}

// Unwrap returns the sentinel (ErrNotFound, ErrDenied, ...) matching the status.
func (e *HostError) Unwrap() error { return e.err }

func statusError(op string, status int32) error {
	e := &HostError{Op: op, Status: status}
	if i := int(-status) - 1; i >= 0 && i < len(statusErrors) {
		e.err = statusErrors[i]
	}
	return e
}

// messageError reads a §3.3 error message: "DENIED: host x is not in the grant".
func messageError(op string, message string) error {
	e := &HostError{Op: op, Message: message}
	name, _, _ := strings.Cut(message, ":")
	for i, n := range statusNames {
		if name == n {
			e.Status = int32(-i - 1)
			e.err = statusErrors[i]
		}
	}
	return e
}

func itoa32(n int32) string {
	if n < 0 {
		return "-" + itoa32(-n)
	}
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa32(n/10) + string(rune('0'+n%10))
}

var errShortBlock = errors.New("response block shorter than its header")
