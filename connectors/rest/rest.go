// Package rest is the plumbing the REST connectors (Drive, Graph, Notion,
// Confluence, GitHub) share, so that each vendor's folder holds only what is
// the vendor's: its endpoints, its JSON, its pagination and its Classify.
//
// A Client sends every request with a bearer token asked of its TokenSource
// for that request (never kept past it: a disconnected connection stops a
// running job at its next request), through the SSRF guard when its base
// URL is configurable, decodes JSON answers under a size cap, and streams
// content under the connector's cap. Errors name the request ("list
// files"), never a URL's query, a token or a body.
package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/internal/safehttp"
)

// TokenSource gives a connector the bearer token of each request: an
// ephemeral token held for its job, or an OAuth connection's current
// access token (refreshed when near expiry; unauthenticated once the
// connection is disconnected). A connector asks for it per request and
// keeps nothing.
type TokenSource interface {
	Token(ctx context.Context) (apiary.Secret, error)
}

// TokenFunc adapts a function to TokenSource.
type TokenFunc func(ctx context.Context) (apiary.Secret, error)

// Token calls f.
func (f TokenFunc) Token(ctx context.Context) (apiary.Secret, error) { return f(ctx) }

// Static is the TokenSource of one fixed token (an ephemeral token).
func Static(tok apiary.Secret) TokenSource {
	return TokenFunc(func(context.Context) (apiary.Secret, error) {
		if tok.Empty() {
			return apiary.Secret{}, apiary.E(apiary.KindUnauthenticated, "no access token")
		}
		return tok, nil
	})
}

// MaxJSON is the default bound of a JSON answer (a listing page).
const MaxJSON = 16 << 20

// Classifier reads a vendor's non-2xx answer: resp (whose body is already
// read, at most 64 KiB, into body) for the request named what. It handles
// the vendor's quirks and falls back to connectors.ClassifyStatus.
type Classifier func(resp *http.Response, body []byte, what string) error

// Config configures a Client.
type Config struct {
	// Name prefixes errors ("gdrive").
	Name string
	// BaseURL is the vendor's API root; request paths are joined to it.
	BaseURL string
	// Token authenticates every request; nil sends none.
	Token TokenSource
	// Header is sent with every request (Notion-Version, Accept).
	Header http.Header
	// Classify reads non-2xx answers; nil is connectors.ClassifyStatus.
	Classify Classifier
	// HTTP is the client; nil is one through the SSRF guard (AllowPrivate
	// for tests and self-hosted vendors) that follows no redirect.
	HTTP *http.Client
	// AllowPrivate lets the default client reach private and loopback
	// addresses (fakes in tests, GitHub Enterprise on a private network).
	AllowPrivate bool
	// Timeout bounds one request, body included. Default 2 minutes.
	Timeout time.Duration
	// MaxJSON bounds a JSON answer: a longer one fails with KindTooLarge.
	// Default MaxJSON.
	MaxJSON int64
}

// Client sends a vendor's REST requests.
type Client struct {
	cfg  Config
	base *url.URL
}

// New returns a client; a base URL that does not parse is invalid.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(strings.TrimSuffix(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, apiary.E(apiary.KindInvalid, "%s: the API base URL must be an absolute http(s) URL", cfg.Name)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.MaxJSON <= 0 {
		cfg.MaxJSON = MaxJSON
	}
	if cfg.HTTP == nil {
		cfg.HTTP = safehttp.NewClient(safehttp.Config{AllowPrivate: cfg.AllowPrivate, Timeout: cfg.Timeout})
	}
	if cfg.Classify == nil {
		cfg.Classify = func(resp *http.Response, _ []byte, what string) error {
			return connectors.ClassifyStatus(resp, what)
		}
	}
	return &Client{cfg: cfg, base: base}, nil
}

// isAbsolute tells an absolute URL (a vendor's link) from a path.
func isAbsolute(path string) bool {
	return strings.HasPrefix(path, "https://") || strings.HasPrefix(path, "http://")
}

// URL is the absolute URL of path (absolute URLs pass through, so that a
// vendor's next-page link is followed as given) with query. An absolute
// URL that does not parse is returned as it is (a request to it fails),
// never joined to the base URL as a path.
func (c *Client) URL(path string, query url.Values) string {
	var u *url.URL
	if isAbsolute(path) {
		var err error
		if u, err = url.Parse(path); err != nil {
			return path
		}
	} else {
		cp := *c.base
		u = &cp
		u.Path = strings.TrimSuffix(c.base.Path, "/") + "/" + strings.TrimPrefix(path, "/")
		u.RawPath = ""
	}
	if len(query) > 0 {
		q := u.Query()
		for k, v := range query {
			q[k] = v
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// SameOrigin reports whether raw has the base URL's scheme and host: a
// next-page link the vendor returned is followed (with the token) only then.
func (c *Client) SameOrigin(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == c.base.Scheme && u.Host == c.base.Host
}

// Request is one call.
type Request struct {
	Method string // default GET
	Path   string // joined to the base URL, or absolute (same origin only)
	Query  url.Values
	Body   any // JSON-encoded when not nil
	Header http.Header
	// What names the request in errors ("list files").
	What string
	// NoToken sends no Authorization header (a pre-authenticated download
	// URL).
	NoToken bool
}

// Do sends r and returns the response of a 2xx or 304 status, its body
// unread; any other status is the Classifier's error, with the body read
// (64 KiB at most) and closed. Redirects are returned as responses only
// when the client follows none and the status is 3xx: callers that expect
// one (Graph's downloads) check resp.StatusCode.
func (c *Client) Do(ctx context.Context, r Request) (*http.Response, error) {
	what := c.cfg.Name + ": " + r.What
	if isAbsolute(r.Path) && !r.NoToken && !c.SameOrigin(r.Path) {
		return nil, apiary.E(apiary.KindInvalid, "%s: the vendor linked to another origin", what)
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.Body != nil {
		b, err := json.Marshal(r.Body)
		if err != nil {
			return nil, fmt.Errorf("%s: encode the request: %w", what, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL(r.Path, r.Query), body)
	if err != nil {
		return nil, apiary.E(apiary.KindInvalid, "%s: the request URL does not parse", what)
	}
	for k, v := range c.cfg.Header {
		req.Header[k] = v
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if r.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.Token != nil && !r.NoToken {
		tok, err := c.cfg.Token.Token(ctx)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+string(tok.Reveal()))
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		// The transport's error names the URL, whose query may be
		// private: keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, safehttp.ErrForbiddenAddress) {
			return nil, apiary.Wrap(err, apiary.KindInvalid, "%s: the address is refused", what)
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%s: %w", what, cerr)
		}
		return nil, apiary.Wrap(err, apiary.KindUnavailable, "%s: the service did not answer", what)
	}
	if s := resp.StatusCode; s >= 200 && s < 400 {
		return resp, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return nil, c.cfg.Classify(resp, b, what)
}

// JSON sends r and decodes a 2xx answer into out (nil: discarded), at most
// Config.MaxJSON bytes: a longer answer fails with KindTooLarge.
func (c *Client) JSON(ctx context.Context, r Request, out any) error {
	resp, err := c.Do(ctx, r)
	if err != nil {
		return err
	}
	defer Drain(resp)
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return apiary.E(apiary.KindUnavailable, "%s: %s: unexpected status %d", c.cfg.Name, r.What, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	what := c.cfg.Name + ": " + r.What
	dec := json.NewDecoder(connectors.LimitBody(resp.Body, c.cfg.MaxJSON, what+": the answer"))
	if err := dec.Decode(out); err != nil {
		if apiary.KindOf(err) == apiary.KindTooLarge {
			return err
		}
		return apiary.E(apiary.KindUnavailable, "%s: the answer is not the JSON expected (%s)", what, jsonProblem(err))
	}
	return nil
}

// jsonProblem describes a decoding error without quoting the answer, which
// the decoder's own text does (an UnmarshalTypeError names a number's
// value, a SyntaxError a character).
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("invalid JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q is not of type %s", typ.Field, typ.Type)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the answer ends early"
	default:
		return "undecodable"
	}
}

// Content turns a 2xx download response into connectors.Content under the
// cap of max bytes: a Content-Length over it fails before any byte is
// read; the body errors TooLarge as soon as it passes it.
func Content(resp *http.Response, max int64, what, version string) (*connectors.Content, error) {
	if resp.ContentLength > max {
		resp.Body.Close() // unread: the transport drops the connection
		return nil, connectors.TooLarge(what, max)
	}
	ct := resp.Header.Get("Content-Type")
	return &connectors.Content{Body: connectors.LimitBody(resp.Body, max, what), ContentType: ct, Version: version}, nil
}

// Drain reads a little of resp's body and closes it, so that the
// connection is reused.
func Drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	_ = resp.Body.Close()
}

// ErrorBody decodes a JSON error body into v, ignoring failures: Classify
// reads vendors' error codes with it.
func ErrorBody(body []byte, v any) { _ = json.Unmarshal(body, v) }
