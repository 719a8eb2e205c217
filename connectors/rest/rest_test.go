package rest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
	"github.com/apiaryhq/apiary/connectors/rest"
	"github.com/apiaryhq/apiary/internal/safehttp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// vendor is an httptest server that records what each request carried and
// answers with its handler (200 {"ok":true} when nil).
type vendor struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []*http.Request // clones, bodies read into bodies
	bodies   []string
	handler  http.HandlerFunc
}

func newVendor(t *testing.T, h http.HandlerFunc) *vendor {
	v := &vendor{handler: h}
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		v.mu.Lock()
		v.requests = append(v.requests, r.Clone(context.Background()))
		v.bodies = append(v.bodies, string(b))
		h := v.handler
		v.mu.Unlock()
		if h == nil {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ok":true}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *vendor) got() []*http.Request {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]*http.Request(nil), v.requests...)
}

// tokens is a TokenSource that counts its calls, hands out a new token
// each time ("tok-1", "tok-2"…) and fails with fail once it is set.
type tokens struct {
	calls atomic.Int64
	mu    sync.Mutex
	fail  error
}

func (s *tokens) Token(context.Context) (apiary.Secret, error) {
	n := s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return apiary.Secret{}, s.fail
	}
	return apiary.NewSecret(fmt.Sprintf("tok-%d", n)), nil
}

func newClient(t *testing.T, cfg rest.Config) *rest.Client {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "vendor"
	}
	c, err := rest.New(cfg)
	require.NoError(t, err)
	return c
}

func TestNewRefusesABadBaseURL(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"", "api.example.com", "ftp://api.example.com", "https://", "http://[::1"} {
		_, err := rest.New(rest.Config{Name: "vendor", BaseURL: base})
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%q: %v", base, err)
	}
}

func TestRequestShape(t *testing.T) {
	t.Parallel()
	v := newVendor(t, nil)
	c := newClient(t, rest.Config{
		BaseURL: v.srv.URL + "/v1/", AllowPrivate: true, Token: &tokens{},
		Header: http.Header{"Notion-Version": {"2022-06-28"}},
	})
	var out struct{ OK bool }
	err := c.JSON(context.Background(), rest.Request{
		Method: http.MethodPost, Path: "/search", Query: url.Values{"page_size": {"10"}},
		Body: map[string]string{"query": "q"}, Header: http.Header{"X-Extra": {"1"}}, What: "search",
	}, &out)
	require.NoError(t, err)
	require.True(t, out.OK)
	r := v.got()[0]
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, "/v1/search", r.URL.Path, "the path joins the base URL's")
	require.Equal(t, "10", r.URL.Query().Get("page_size"))
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	require.Equal(t, "2022-06-28", r.Header.Get("Notion-Version"))
	require.Equal(t, "1", r.Header.Get("X-Extra"))
	require.Equal(t, "Bearer tok-1", r.Header.Get("Authorization"))
	require.JSONEq(t, `{"query":"q"}`, v.bodies[0])
}

// TestTokenPerRequest: the token is asked of the source for every request,
// never kept; once the source fails, the next request fails with its error
// and nothing is sent.
func TestTokenPerRequest(t *testing.T) {
	t.Parallel()
	v := newVendor(t, nil)
	src := &tokens{}
	c := newClient(t, rest.Config{BaseURL: v.srv.URL, AllowPrivate: true, Token: src})
	for range 3 {
		require.NoError(t, c.JSON(context.Background(), rest.Request{Path: "/items", What: "list items"}, nil))
	}
	require.EqualValues(t, 3, src.calls.Load(), "one token asked per request")
	var auth []string
	for _, r := range v.got() {
		auth = append(auth, r.Header.Get("Authorization"))
	}
	require.Equal(t, []string{"Bearer tok-1", "Bearer tok-2", "Bearer tok-3"}, auth, "each request carries the token of its own ask")

	revoked := apiary.E(apiary.KindUnauthenticated, "the connection was disconnected")
	src.mu.Lock()
	src.fail = revoked
	src.mu.Unlock()
	err := c.JSON(context.Background(), rest.Request{Path: "/items", What: "list items"}, nil)
	require.ErrorIs(t, err, revoked)
	require.Equal(t, apiary.KindUnauthenticated, apiary.KindOf(err))
	require.Len(t, v.got(), 3, "a request without its token is not sent")
}

func TestNoTokenSendsNoAuthorization(t *testing.T) {
	t.Parallel()
	v := newVendor(t, nil)
	src := &tokens{}
	c := newClient(t, rest.Config{BaseURL: v.srv.URL, AllowPrivate: true, Token: src})
	resp, err := c.Do(context.Background(), rest.Request{Path: "/download", What: "download", NoToken: true})
	require.NoError(t, err)
	rest.Drain(resp)
	require.Empty(t, v.got()[0].Header.Values("Authorization"))
	require.Zero(t, src.calls.Load(), "no token is asked for a request that sends none")

	// No TokenSource at all: no header either.
	bare := newClient(t, rest.Config{BaseURL: v.srv.URL, AllowPrivate: true})
	require.NoError(t, bare.JSON(context.Background(), rest.Request{Path: "/x", What: "x"}, nil))
	require.Empty(t, v.got()[1].Header.Values("Authorization"))
}

// TestOtherOriginLink: a vendor's absolute next-page link is followed with
// the token only on the base URL's origin.
func TestOtherOriginLink(t *testing.T) {
	t.Parallel()
	api := newVendor(t, nil)
	evil := newVendor(t, nil)
	src := &tokens{}
	c := newClient(t, rest.Config{BaseURL: api.srv.URL + "/v1", AllowPrivate: true, Token: src})

	require.NoError(t, c.JSON(context.Background(), rest.Request{Path: api.srv.URL + "/v1/items?cursor=abc", What: "list items"}, nil))
	require.Equal(t, "abc", api.got()[0].URL.Query().Get("cursor"), "a same-origin link is followed as given")
	require.Equal(t, "Bearer tok-1", api.got()[0].Header.Get("Authorization"))

	evilURL, err := url.Parse(evil.srv.URL)
	require.NoError(t, err)
	for _, link := range []string{
		evil.srv.URL + "/v1/items?cursor=abc",                            // another port
		strings.Replace(api.srv.URL, "http://", "https://", 1) + "/v1/x", // another scheme
		"http://localhost:" + evilURL.Port() + "/v1/x",                   // another host name
	} {
		err := c.JSON(context.Background(), rest.Request{Path: link, What: "list items"}, nil)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%s: %v", link, err)
		require.NotContains(t, err.Error(), "cursor=abc")
	}
	require.Empty(t, evil.got(), "another origin receives nothing, least of all the token")
	require.EqualValues(t, 1, src.calls.Load(), "no token is asked for a refused link")

	// A pre-authenticated download URL elsewhere is fetched without the token.
	resp, err := c.Do(context.Background(), rest.Request{Path: evil.srv.URL + "/blob?sig=x", What: "download", NoToken: true})
	require.NoError(t, err)
	rest.Drain(resp)
	require.Len(t, evil.got(), 1)
	require.Empty(t, evil.got()[0].Header.Values("Authorization"))
}

// TestErrorBodyIsNotQuoted: whatever a non-2xx answer's body says (it may
// echo the request, its token, a document), the error does not quote it.
func TestErrorBodyIsNotQuoted(t *testing.T) {
	t.Parallel()
	const canary = "body-canary-7f3a"
	for _, tt := range []struct {
		status int
		kind   apiary.Kind
	}{
		{http.StatusBadRequest, apiary.KindInvalid},
		{http.StatusUnauthorized, apiary.KindUnauthenticated},
		{http.StatusForbidden, apiary.KindForbidden},
		{http.StatusNotFound, apiary.KindNotFound},
		{http.StatusTooManyRequests, apiary.KindRateLimited},
		{http.StatusInternalServerError, apiary.KindUnavailable},
	} {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			t.Parallel()
			v := newVendor(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, `{"error":"%s","you_sent":%q}`, canary, r.Header.Get("Authorization"))
			})
			c := newClient(t, rest.Config{BaseURL: v.srv.URL, AllowPrivate: true,
				Token: rest.Static(apiary.NewSecret("token-canary-91c2"))})
			err := c.JSON(context.Background(), rest.Request{Path: "/items", Query: url.Values{"q": {"query-canary"}}, What: "list items"}, nil)
			require.Equal(t, tt.kind, apiary.KindOf(err), "%v", err)
			for _, secret := range []string{canary, "token-canary-91c2", "query-canary"} {
				require.NotContains(t, err.Error(), secret)
				require.NotContains(t, fmt.Sprintf("%+v", err), secret)
			}
			require.Contains(t, err.Error(), "vendor: list items", "the error names the request")
		})
	}
}

func TestClassifierReadsTheBody(t *testing.T) {
	t.Parallel()
	v := newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"code":"rate_limited"}`)
	})
	c := newClient(t, rest.Config{BaseURL: v.srv.URL, AllowPrivate: true,
		Classify: func(resp *http.Response, body []byte, what string) error {
			var e struct{ Code string }
			rest.ErrorBody(body, &e)
			if e.Code == "rate_limited" {
				return connectors.RetryAfter(0, "%s: slow down", what)
			}
			return connectors.ClassifyStatus(resp, what)
		}})
	err := c.JSON(context.Background(), rest.Request{Path: "/x", What: "x"}, nil)
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err), "the vendor's quirk, read from its error body: %v", err)
}

func TestMaxJSON(t *testing.T) {
	t.Parallel()
	const max = 1 << 10
	// answer is a JSON object of exactly n bytes.
	answer := func(n int) string { return `{"a":"` + strings.Repeat("x", n-len(`{"a":""}`)) + `"}` }
	var body atomic.Value
	v := newVendor(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body.Load().(string)) })
	c := newClient(t, rest.Config{BaseURL: v.srv.URL, AllowPrivate: true, MaxJSON: max})

	var out struct{ A string }
	body.Store(answer(max))
	require.NoError(t, c.JSON(context.Background(), rest.Request{Path: "/x", What: "x"}, &out), "an answer of MaxJSON bytes")
	require.Len(t, out.A, max-len(`{"a":""}`))

	for _, n := range []int{max + 1, 64 * max} {
		body.Store(answer(n))
		err := c.JSON(context.Background(), rest.Request{Path: "/x", What: "x"}, &out)
		require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "an answer of %d bytes: %v", n, err)
	}

	// The default is MaxJSON.
	big := newClient(t, rest.Config{BaseURL: v.srv.URL, AllowPrivate: true})
	body.Store(answer(64 * max))
	require.NoError(t, big.JSON(context.Background(), rest.Request{Path: "/x", What: "x"}, &out))
}

func TestBadJSONIsNotQuoted(t *testing.T) {
	t.Parallel()
	var body atomic.Value
	v := newVendor(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body.Load().(string)) })
	c := newClient(t, rest.Config{BaseURL: v.srv.URL, AllowPrivate: true})
	for _, b := range []string{`{"n": 314159265}`, `{"n": "31415", `, `31415926x`} {
		body.Store(b)
		var out struct{ N int8 } // the decoder's own error quotes an overflowing number
		err := c.JSON(context.Background(), rest.Request{Path: "/x", What: "x"}, &out)
		require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%s: %v", b, err)
		require.NotContains(t, err.Error(), "31415", "the answer is not quoted")
	}
}

// readCounter is a body that counts the bytes read from it.
type readCounter struct {
	r      io.Reader
	n      int64
	closed bool
}

func (b *readCounter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *readCounter) Close() error { b.closed = true; return nil }

func TestContentCap(t *testing.T) {
	t.Parallel()
	const max = 100
	big := strings.Repeat("z", 10*max)

	// A Content-Length over the cap: refused before any byte is read.
	body := &readCounter{r: strings.NewReader(big)}
	_, err := rest.Content(&http.Response{StatusCode: 200, ContentLength: int64(len(big)), Body: body, Header: http.Header{}}, max, "vendor: download", "v1")
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
	require.Zero(t, body.n, "nothing is read")
	require.True(t, body.closed)

	// No Content-Length: the body stops at the cap.
	body = &readCounter{r: strings.NewReader(big)}
	c, err := rest.Content(&http.Response{StatusCode: 200, ContentLength: -1, Body: body,
		Header: http.Header{"Content-Type": {"text/plain"}}}, max, "vendor: download", "v1")
	require.NoError(t, err)
	require.Equal(t, "text/plain", c.ContentType)
	require.Equal(t, "v1", c.Version)
	got, err := io.ReadAll(c.Body)
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
	require.LessOrEqual(t, len(got), max, "at most the cap is yielded")
	require.LessOrEqual(t, body.n, int64(max+1), "at most one byte past the cap is read")
	require.NoError(t, c.Body.Close())
	require.True(t, body.closed)

	// Within the cap: all of it.
	c, err = rest.Content(&http.Response{StatusCode: 200, ContentLength: max, Body: io.NopCloser(strings.NewReader(big[:max])), Header: http.Header{}}, max, "vendor: download", "")
	require.NoError(t, err)
	got, err = io.ReadAll(c.Body)
	require.NoError(t, err)
	require.Len(t, got, max)
}

func TestTransportErrorHidesTheQuery(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	base := closed.URL
	closed.Close() // nothing listens there now
	c := newClient(t, rest.Config{BaseURL: base, AllowPrivate: true})
	for _, r := range []rest.Request{
		{Path: "/items", Query: url.Values{"secret": {"canary"}}, What: "list items"},
		{Path: base + "/items?secret=canary", What: "list items"},
	} {
		err := c.JSON(context.Background(), r, nil)
		require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
		require.False(t, apiary.IsPermanent(err), "an unreachable vendor is retried")
		require.NotContains(t, err.Error(), "canary")
		require.NotContains(t, err.Error(), "secret=")
	}

	// A cancelled context says so.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.JSON(ctx, rest.Request{Path: "/items", Query: url.Values{"secret": {"canary"}}, What: "list items"}, nil)
	require.ErrorIs(t, err, context.Canceled)
	require.NotContains(t, err.Error(), "canary")
}

func TestSSRFGuard(t *testing.T) {
	t.Parallel()
	v := newVendor(t, nil)
	src := &tokens{}
	guarded := newClient(t, rest.Config{BaseURL: v.srv.URL, Token: src})
	err := guarded.JSON(context.Background(), rest.Request{Path: "/x", What: "x"}, nil)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a loopback vendor without AllowPrivate: %v", err)
	require.True(t, errors.Is(err, safehttp.ErrForbiddenAddress), "%v", err)
	require.Empty(t, v.got(), "the guard refuses before connecting")

	// A pre-authenticated link to the metadata service, even with AllowPrivate.
	private := newClient(t, rest.Config{BaseURL: v.srv.URL, AllowPrivate: true})
	_, err = private.Do(context.Background(), rest.Request{Path: "http://169.254.169.254/latest/meta-data/", What: "download", NoToken: true})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)

	require.NoError(t, private.JSON(context.Background(), rest.Request{Path: "/x", What: "x"}, nil), "AllowPrivate reaches a loopback fake")
}

func TestNoRedirectIsFollowed(t *testing.T) {
	t.Parallel()
	elsewhere := newVendor(t, nil)
	v := newVendor(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.srv.URL+"/blob", http.StatusFound)
	})
	c := newClient(t, rest.Config{BaseURL: v.srv.URL, AllowPrivate: true, Token: &tokens{}})
	resp, err := c.Do(context.Background(), rest.Request{Path: "/download", What: "download"})
	require.NoError(t, err)
	rest.Drain(resp)
	require.Equal(t, http.StatusFound, resp.StatusCode, "the redirect is the caller's to follow")
	require.Empty(t, elsewhere.got(), "the token is not carried to the redirect's target")

	// JSON expects a 2xx.
	err = c.JSON(context.Background(), rest.Request{Path: "/list", What: "list"}, nil)
	require.Error(t, err)
	require.Empty(t, elsewhere.got())
}

func TestURL(t *testing.T) {
	t.Parallel()
	c := newClient(t, rest.Config{BaseURL: "https://api.example.com/v1/"})
	require.Equal(t, "https://api.example.com/v1/files?pageSize=5", c.URL("files", url.Values{"pageSize": {"5"}}))
	require.Equal(t, "https://api.example.com/v1/files", c.URL("/files", nil))
	require.Equal(t, "https://api.example.com/v1/files?a=1&b=2", c.URL("https://api.example.com/v1/files?a=1", url.Values{"b": {"2"}}))
	require.True(t, c.SameOrigin("https://api.example.com/other"))
	require.False(t, c.SameOrigin("https://api.example.com.evil.test/v1"))
	require.False(t, c.SameOrigin("http://api.example.com/v1"))

	// A link that does not parse is never joined to the base as a path.
	require.Equal(t, "https://api.example.com:bad/x", c.URL("https://api.example.com:bad/x", nil))
	_, err := c.Do(context.Background(), rest.Request{Path: "https://api.example.com:bad/x", What: "x", NoToken: true})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
}
