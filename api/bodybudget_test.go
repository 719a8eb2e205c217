package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

// rawUpload is a POST /v1/ingest written by hand on its own connection, so
// that a test decides how much of the body has arrived.
type rawUpload struct {
	t      *testing.T
	conn   net.Conn
	r      *bufio.Reader
	writes chan []byte
	done   chan struct{}
}

// startUpload opens a connection to srv and sends the headers of an ingest
// by token declaring size bytes of JSON. Send the body with send; the
// connection closes when the test ends.
func startUpload(t *testing.T, srv *httptest.Server, token string, size int) *rawUpload {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	// A guard against a hang, not a timing assert.
	require.NoError(t, conn.SetDeadline(time.Now().Add(time.Minute)))
	u := &rawUpload{t: t, conn: conn, r: bufio.NewReader(conn), writes: make(chan []byte, 4), done: make(chan struct{})}
	go func() {
		defer close(u.done)
		for b := range u.writes {
			if _, err := conn.Write(b); err != nil {
				return // a refused body is cut off; its answer tells
			}
		}
	}()
	t.Cleanup(func() {
		close(u.writes)
		_ = conn.Close()
		<-u.done
	})
	u.send([]byte(fmt.Sprintf("POST /v1/ingest HTTP/1.1\r\nHost: apiary\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", token, size)))
	return u
}

// send writes b after what was sent before, without waiting for the
// server to read it.
func (u *rawUpload) send(b []byte) { u.writes <- b }

// answer reads the response: its status and problem detail.
func (u *rawUpload) answer() (status int, detail string, retryAfter string) {
	u.t.Helper()
	resp, err := http.ReadResponse(u.r, nil)
	require.NoError(u.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(u.t, err)
	var p problem
	_ = json.Unmarshal(raw, &p)
	return resp.StatusCode, p.Detail, resp.Header.Get("Retry-After")
}

// ingestBody is a valid JSON ingest body of exactly size bytes.
func ingestBody(size int) []byte {
	const head, tail = `{"documents":[{"id":"big","text":"`, `"}]}`
	return []byte(head + strings.Repeat("a", size-len(head)-len(tail)) + tail)
}

// waitHeld polls until the body budget holds want bytes in all and each
// account its share in shares, checking on every look that it never holds
// more than its bound.
func waitHeld(t *testing.T, b *bodyBudget, total int64, want int64, shares map[apiary.AccountID]int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.mu.Lock()
		n, held := b.n, make(map[apiary.AccountID]int64, len(b.held))
		for k, v := range b.held {
			held[k] = v
		}
		b.mu.Unlock()
		require.LessOrEqual(t, n, total, "bytes held beyond the budget")
		for k, v := range held {
			require.LessOrEqual(t, v, b.perAccount, "account %s holds beyond its share", k)
		}
		if n == want && (shares == nil || maps.Equal(held, shares)) {
			return
		}
		if time.Now().After(deadline) {
			require.FailNow(t, "the body budget never got there", "held %d bytes (want %d), per account %v (want %v)", n, want, held, shares)
		}
		runtime.Gosched()
	}
}

// Request bodies are counted as they arrive, and the bytes held stay within
// MaxBodyBytesInFlight and each account's share of it: a body that has sent
// more than there is room for waits BodyWait for its next step, then gets
// 429 when its account's share is full, 503 with Retry-After when the whole
// budget is; the bodies holding the budget go through once their bytes
// come, and then everything is given back.
func TestBodyBytesInFlightBound(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	e := newEnv(t, func(c *Config, _ *Deps) {
		c.BodyLimit = limit
		c.MaxBodyBytesInFlight = 3 * limit // one account's share: 2 × limit
		c.BodyWait = 50 * time.Millisecond
	})
	srv := httptest.NewServer(e.srv.Handler())
	t.Cleanup(srv.Close)
	b := e.srv.bodies
	accountB, tokenB := e.otherAccount("b")
	_, tokenC := e.otherAccount("c")
	body := ingestBody(limit)
	const sent = 3 * limit / 4 // past the half: the body holds all its size

	// Three bodies, two of the default account and one of B, send three
	// quarters each and stall: the budget is full, and so is the default
	// account's share.
	var holders []*rawUpload
	want := map[apiary.AccountID]int64{}
	for i, tok := range []string{e.editor, e.editor, tokenB} {
		u := startUpload(t, srv, tok, limit)
		u.send(body[:sent])
		holders = append(holders, u)
		account := apiary.DefaultAccount
		if tok == tokenB {
			account = accountB
		}
		want[account] += limit
		waitHeld(t, b, 3*limit, int64(i+1)*limit, want)
	}

	// Whole bodies that find no room: the default account's share is
	// full (429), then the whole budget is (503).
	for _, c := range []struct {
		token  string
		status int
		detail string
	}{
		{e.editor, http.StatusTooManyRequests, "this account is sending as many request bodies"},
		{tokenC, http.StatusServiceUnavailable, "as many request bodies as it may at once"},
		{tokenB, http.StatusServiceUnavailable, "as many request bodies as it may at once"},
	} {
		small := ingestBody(128 << 10)
		u := startUpload(t, srv, c.token, len(small))
		u.send(small)
		status, detail, retry := u.answer()
		require.Equal(t, c.status, status, detail)
		require.Contains(t, detail, c.detail)
		require.Equal(t, "1", retry)
		waitHeld(t, b, 3*limit, 3*limit, want)
	}

	// The stalled bodies arrive and go through, and give all back.
	for _, u := range holders {
		u.send(body[sent:])
		status, detail, _ := u.answer()
		require.Equal(t, http.StatusAccepted, status, detail)
	}
	waitHeld(t, b, 3*limit, 0, map[apiary.AccountID]int64{})
}

// A body gives back all it took when its handler returns, whether it went
// through or failed while being read or after; a request without a body
// takes nothing.
func TestBodyBudgetIsGivenBackAfterEveryAnswer(t *testing.T) {
	t.Parallel()
	const limit = 4 << 20
	e := newEnv(t, func(c *Config, _ *Deps) { c.BodyLimit = limit })
	b := e.srv.bodies
	for _, c := range []struct {
		name    string
		body    string
		length  int64 // -1: unknown (chunked)
		status  int
		problem string
	}{
		{"accepted", string(ingestBody(3 << 20)), 3 << 20, http.StatusAccepted, ""},
		{"accepted, unknown length", string(ingestBody(3 << 20)), -1, http.StatusAccepted, ""},
		{"malformed", `{"documents":[` + strings.Repeat(" ", 2<<20), 2<<20 + 14, http.StatusBadRequest, "malformed JSON"},
		{"over the limit, unknown length", strings.Repeat("a", limit+1), -1, http.StatusRequestEntityTooLarge, "larger than the limit"},
		{"over the limit, declared", "{}", limit + 1, http.StatusRequestEntityTooLarge, "larger than the limit"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/v1/ingest", strings.NewReader(c.body))
		req.ContentLength = c.length
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.editor)
		rec := httptest.NewRecorder()
		e.srv.Echo().ServeHTTP(rec, req)
		e.checkResponse(rec)
		if c.problem != "" {
			requireProblem(t, rec, c.status, c.problem)
		}
		require.Equal(t, c.status, rec.Code, "%s: %s", c.name, rec.Body.String())
		waitHeld(t, b, 3*limit, 0, map[apiary.AccountID]int64{})
	}
	rec := e.do(http.MethodGet, "/v1/jobs", e.viewer)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())

	// A client that goes away in the middle of its body.
	srv := httptest.NewServer(e.srv.Handler())
	t.Cleanup(srv.Close)
	u := startUpload(t, srv, e.editor, limit)
	u.send(ingestBody(limit)[:bodyFirstStep+1])
	waitHeld(t, b, 3*limit, 2*bodyFirstStep, nil)
	require.NoError(t, u.conn.Close())
	waitHeld(t, b, 3*limit, 0, map[apiary.AccountID]int64{})
}
