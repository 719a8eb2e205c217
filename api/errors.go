package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
)

// problem is an RFC 9457 problem details body.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`

	retryAfter time.Duration
	cause      error // logged, never sent
}

const problemContentType = "application/problem+json"

// defaultUnavailableRetry is the Retry-After of a 503 without a better hint.
const defaultUnavailableRetry = 5 * time.Second

// statusError is an error with an HTTP status that no apiary kind names
// (415 Unsupported Media Type).
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

func unsupportedMediaType(format string, args ...any) error {
	return &statusError{status: http.StatusUnsupportedMediaType, msg: fmt.Sprintf(format, args...)}
}

// kindStatus maps the error kinds a caller can act on to HTTP statuses.
// KindInvalid is always 400: the detail says what to fix.
var kindStatus = map[apiary.Kind]int{
	apiary.KindInvalid:         http.StatusBadRequest,
	apiary.KindNotFound:        http.StatusNotFound,
	apiary.KindConflict:        http.StatusConflict,
	apiary.KindUnauthenticated: http.StatusUnauthorized,
	apiary.KindForbidden:       http.StatusForbidden,
	apiary.KindTooLarge:        http.StatusRequestEntityTooLarge,
	apiary.KindRateLimited:     http.StatusTooManyRequests,
	apiary.KindUnavailable:     http.StatusServiceUnavailable,
}

// problemFor is the one place where an error becomes an HTTP status and a
// caller-safe message.
func problemFor(err error, c echo.Context) problem {
	var (
		se  *statusError
		he  *echo.HTTPError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &se):
		return newProblem(se.status, se.msg)
	case errors.As(err, &mbe):
		return newProblem(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("the request body is larger than the limit of %d bytes; send fewer or smaller documents per request", mbe.Limit))
	case errors.Is(err, context.DeadlineExceeded):
		p := newProblem(http.StatusServiceUnavailable, "the request took too long; retry later")
		p.cause, p.retryAfter = err, defaultUnavailableRetry
		return p
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer and it is no fault.
		return newProblem(http.StatusServiceUnavailable, "the request was canceled")
	case errors.As(err, &he):
		return echoProblem(he, c, err)
	}
	status, ok := kindStatus[apiary.KindOf(err)]
	if !ok { // KindOther, KindPermanent: our fault, not the caller's
		p := newProblem(http.StatusInternalServerError, "internal error; quote the request id when reporting it")
		p.cause = err
		return p
	}
	p := newProblem(status, apiary.Message(err))
	switch status {
	case http.StatusTooManyRequests:
		p.retryAfter = time.Second
	case http.StatusServiceUnavailable:
		p.retryAfter = defaultUnavailableRetry
		p.cause = err
	}
	if d, ok := apiary.RetryDelay(err); ok {
		p.retryAfter = d
	}
	return p
}

// echoProblem turns echo's own errors into actionable messages.
func echoProblem(he *echo.HTTPError, c echo.Context, err error) problem {
	req := c.Request()
	switch he.Code {
	case http.StatusNotFound:
		return newProblem(http.StatusNotFound,
			fmt.Sprintf("no route %s %s; the routes are listed in /v1/openapi.yaml", req.Method, req.URL.Path))
	case http.StatusMethodNotAllowed:
		allow := c.Response().Header().Get(echo.HeaderAllow)
		return newProblem(http.StatusMethodNotAllowed,
			fmt.Sprintf("%s is not allowed on %s; allowed: %s", req.Method, req.URL.Path, allow))
	case http.StatusRequestEntityTooLarge:
		return newProblem(http.StatusRequestEntityTooLarge, "the request body is too large; send fewer or smaller documents per request")
	case http.StatusUnsupportedMediaType:
		return newProblem(http.StatusUnsupportedMediaType, "unsupported Content-Type; send application/json")
	}
	if he.Code >= 400 && he.Code < 500 {
		msg, _ := he.Message.(string)
		if msg == "" {
			msg = http.StatusText(he.Code)
		}
		return newProblem(he.Code, msg)
	}
	p := newProblem(http.StatusInternalServerError, "internal error; quote the request id when reporting it")
	p.cause = err
	return p
}

func newProblem(status int, detail string) problem {
	title := http.StatusText(status)
	if detail == "" {
		detail = title
	}
	return problem{
		Type:   "urn:apiary:problem:" + strings.ReplaceAll(strings.ToLower(title), " ", "-"),
		Title:  title,
		Status: status,
		Detail: detail,
	}
}

// errorHandler is the echo.HTTPErrorHandler: every error answer goes through it.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		s.log.LogAttrs(c.Request().Context(), slog.LevelWarn, "error after response started",
			slog.String("request_id", requestID(c)), slog.String("error", err.Error()))
		return
	}
	p := problemFor(err, c)
	p.RequestID = requestID(c)
	if p.cause != nil {
		// Causes come from our own code and adapters, which never put a
		// token, key or document text in an error.
		s.log.LogAttrs(c.Request().Context(), slog.LevelError, "request failed",
			slog.String("request_id", p.RequestID),
			slog.String("method", c.Request().Method),
			slog.String("route", c.Path()),
			slog.Int("status", p.Status),
			slog.String("error", p.cause.Error()))
	}
	h := c.Response().Header()
	if p.Status == http.StatusUnauthorized {
		if p.Detail == errMissingToken.Msg {
			h.Set("WWW-Authenticate", `Bearer realm="apiary"`)
		} else {
			h.Set("WWW-Authenticate", `Bearer realm="apiary", error="invalid_token"`)
		}
	}
	if p.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(p.retryAfter.Seconds()))))
	}
	body, merr := json.Marshal(p)
	if merr != nil {
		body = []byte(`{"title":"Internal Server Error","status":500}`)
	}
	h.Set(echo.HeaderContentType, problemContentType)
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(p.Status)
		return
	}
	_ = c.Blob(p.Status, problemContentType, body)
}
