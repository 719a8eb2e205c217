package apiary

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error so that the edges can act on it without knowing
// where it came from: api maps a Kind to an HTTP status, workers map it to
// ack, retry or dead-letter.
type Kind uint8

const (
	KindOther           Kind = iota // unclassified: an internal fault, retried by workers, 500 at the API
	KindInvalid                     // the input is wrong and will stay wrong: 400/422, never retried
	KindNotFound                    // no such thing in the caller's account: 404
	KindConflict                    // a precondition or idempotency clash: 409
	KindUnauthenticated             // no or bad credentials: 401
	KindForbidden                   // credentials are fine, the role is not: 403
	KindTooLarge                    // a body or document over a limit: 413
	KindRateLimited                 // too many requests: 429 (with RetryAfter)
	KindUnavailable                 // a dependency is down or throttling: 503, retried by workers
	KindPermanent                   // a job or document failed for good: not retried
)

var kindNames = [...]string{"other", "invalid", "not found", "conflict", "unauthenticated", "forbidden", "too large", "rate limited", "unavailable", "permanent"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Sentinel errors, one per Kind, for errors.Is.
var (
	ErrInvalid         = &Error{Kind: KindInvalid, Msg: "invalid input"}
	ErrNotFound        = &Error{Kind: KindNotFound, Msg: "not found"}
	ErrConflict        = &Error{Kind: KindConflict, Msg: "conflict"}
	ErrUnauthenticated = &Error{Kind: KindUnauthenticated, Msg: "authentication required"}
	ErrForbidden       = &Error{Kind: KindForbidden, Msg: "forbidden"}
	ErrTooLarge        = &Error{Kind: KindTooLarge, Msg: "too large"}
	ErrRateLimited     = &Error{Kind: KindRateLimited, Msg: "rate limited"}
	ErrUnavailable     = &Error{Kind: KindUnavailable, Msg: "unavailable"}
	ErrPermanent       = &Error{Kind: KindPermanent, Msg: "permanent failure"}
)

// Error is a classified error. Msg is safe to show to the caller: it never
// holds a token, a key or document text. Err, when set, is the cause.
type Error struct {
	Kind Kind
	Msg  string
	Err  error
	// RetryAfter, when positive, tells a client (429/503) or a worker
	// (Nack delay) how long to wait before trying again.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	switch {
	case e.Err == nil:
		return e.Msg
	case e.Msg == "":
		return e.Err.Error()
	default:
		return e.Msg + ": " + e.Err.Error()
	}
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's Kind, so that
// errors.Is(err, ErrNotFound) holds for every not-found error.
func (e *Error) Is(target error) bool {
	s := sentinel(e.Kind)
	return s != nil && target == error(s)
}

func sentinel(k Kind) *Error {
	switch k {
	case KindInvalid:
		return ErrInvalid
	case KindNotFound:
		return ErrNotFound
	case KindConflict:
		return ErrConflict
	case KindUnauthenticated:
		return ErrUnauthenticated
	case KindForbidden:
		return ErrForbidden
	case KindTooLarge:
		return ErrTooLarge
	case KindRateLimited:
		return ErrRateLimited
	case KindUnavailable:
		return ErrUnavailable
	case KindPermanent:
		return ErrPermanent
	}
	return nil
}

// E builds a classified error with a caller-safe message.
func E(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies err under kind with a caller-safe message. A nil err gives nil.
func Wrap(err error, kind Kind, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: err}
}

// Permanent marks err as not worth retrying. A nil err gives nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: KindPermanent, Err: err}
}

// RetryAfter marks err as transient with a hint of when to try again.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: KindUnavailable, Err: err, RetryAfter: d}
}

// KindOf returns the Kind of the outermost classified error in err's chain,
// KindOther when there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}

// RetryDelay returns the first positive RetryAfter hint in err's chain.
func RetryDelay(err error) (time.Duration, bool) {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return 0, false
		}
		if e.RetryAfter > 0 {
			return e.RetryAfter, true
		}
		err = e.Err
	}
	return 0, false
}

// IsPermanent reports whether a worker should give up on err rather than retry:
// permanent and invalid-input errors are never retried.
func IsPermanent(err error) bool {
	switch KindOf(err) {
	case KindPermanent, KindInvalid, KindTooLarge, KindForbidden, KindNotFound:
		return true
	}
	return false
}

// Message returns what may be shown to a caller about err: the message of the
// outermost classified error in its chain that has one, "" when none has.
// The causes below it (SDK errors, addresses, ARNs) stay out.
func Message(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Msg != "" {
			return e.Msg
		}
		err = e.Err
	}
	return ""
}
