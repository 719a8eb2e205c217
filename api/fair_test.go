package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
)

// An account's tokens share one budget, and a search that fetches and opens
// many chunks costs more of it than a job lookup.
func TestAccountBudgetWeighsCost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) { c.AccountRateLimit = 0.001; c.AccountRateBurst = 13 })
	_, otherAdmin := e.otherAccount("other") // 1 of 13: the operator's token is in the default account
	heavy := jsonBody(map[string]any{"query": "honey", "top_k": 100, "mode": "dense"})
	require.Equal(t, http.StatusOK, e.do(http.MethodPost, "/v1/query", e.viewer, heavy).Code, "12 of 13")
	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/v1/jobs", e.editor).Code, "13 of 13")

	rec := e.do(http.MethodGet, "/v1/jobs", e.admin)
	requireProblem(t, rec, http.StatusTooManyRequests, "this account")
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.NotEqual(t, "0", rec.Header().Get("Retry-After"))

	require.Equal(t, http.StatusOK, e.do(http.MethodGet, "/v1/jobs", otherAdmin).Code, "another account has its own budget")
}

func TestQueryCost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		q    pipeline.Query
		want int
	}{
		{pipeline.Query{TopK: 1, Mode: pipeline.ModeDense}, 1},
		{pipeline.Query{TopK: 10, Mode: pipeline.ModeLexical}, 2},
		{pipeline.Query{TopK: 100, Mode: pipeline.ModeDense}, 11},
		{pipeline.Query{TopK: 100, Mode: pipeline.ModeDense, Metadata: map[string]string{"a": "b"}}, 110},
		{pipeline.Query{TopK: 10}, 3}, // hybrid, the default: two searches
		{pipeline.Query{TopK: 10, Mode: pipeline.ModeHybrid, Metadata: map[string]string{"a": "b"}}, 30},
	} {
		require.Equal(t, tc.want, queryCost(tc.q), "%+v", tc.q)
	}
}

// gatedSearch holds the default account's first search until release is
// closed.
type gatedSearch struct {
	Searcher
	held    atomic.Bool
	started chan struct{}
	release chan struct{}
}

func (g *gatedSearch) Search(ctx context.Context, account apiary.AccountID, q pipeline.Query) ([]pipeline.Result, error) {
	if account == apiary.DefaultAccount && g.held.CompareAndSwap(false, true) {
		close(g.started)
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Searcher.Search(ctx, account, q)
}

// An account may run MaxSearchesPerAccount searches at once; one more is
// refused at once, not queued, while other accounts search on.
func TestSearchesPerAccountCap(t *testing.T) {
	t.Parallel()
	gate := &gatedSearch{started: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, func(c *Config, d *Deps) {
		c.MaxSearchesPerAccount = 1
		gate.Searcher = d.Search
		d.Search = gate
	})
	_, otherAdmin := e.otherAccount("other")
	q := func() request { return jsonBody(map[string]any{"query": "honey"}) }

	first := make(chan int, 1)
	go func() {
		req := httptest.NewRequest(http.MethodPost, "/v1/query", q().body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.viewer)
		rec := httptest.NewRecorder()
		e.srv.Echo().ServeHTTP(rec, req)
		first <- rec.Code
	}()
	<-gate.started

	rec := e.do(http.MethodPost, "/v1/query", e.editor, q())
	requireProblem(t, rec, http.StatusTooManyRequests, "searches running")
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	require.Equal(t, http.StatusOK, e.do(http.MethodPost, "/v1/query", otherAdmin, q()).Code)

	close(gate.release)
	require.Equal(t, http.StatusOK, <-first)
	require.Equal(t, http.StatusOK, e.do(http.MethodPost, "/v1/query", e.editor, q()).Code, "the slot is free again")
}

func TestTokenAndWebhookCaps(t *testing.T) {
	t.Parallel()
	// The environment holds four tokens: the operator's and one per role.
	e := newEnv(t, allowPrivateWebhooks, func(c *Config, _ *Deps) { c.MaxTokensPerAccount = 5; c.MaxWebhooksPerAccount = 1 })
	tok := jsonBody(map[string]any{"name": "ci", "role": "viewer"})
	require.Equal(t, http.StatusCreated, e.do(http.MethodPost, "/v1/tokens", e.admin, tok).Code)
	tok = jsonBody(map[string]any{"name": "ci2", "role": "viewer"})
	requireProblem(t, e.do(http.MethodPost, "/v1/tokens", e.admin, tok), http.StatusConflict, "the account has 5 tokens, the most it may have")

	hook := func() request { return jsonBody(map[string]any{"url": "http://127.0.0.1:9/hook"}) }
	require.Equal(t, http.StatusCreated, e.do(http.MethodPost, "/v1/webhooks", e.admin, hook()).Code)
	requireProblem(t, e.do(http.MethodPost, "/v1/webhooks", e.admin, hook()), http.StatusConflict, "the account has 1 webhooks, the most it may have")
}

func TestFairnessConfig(t *testing.T) {
	t.Parallel()
	var c Config
	c.setDefaults()
	require.NoError(t, c.Validate())
	require.EqualValues(t, DefaultAccountRateLimit, c.AccountRateLimit)
	require.Equal(t, DefaultAccountRateBurst, c.AccountRateBurst)
	require.Equal(t, DefaultMaxSearchesPerAccount, c.MaxSearchesPerAccount)
	require.Equal(t, DefaultMaxTokensPerAccount, c.MaxTokensPerAccount)
	require.Equal(t, DefaultMaxWebhooksPerAccount, c.MaxWebhooksPerAccount)
	require.EqualValues(t, 3*c.BodyLimit, c.MaxBodyBytesInFlight)
	require.Equal(t, DefaultBodyWait, c.BodyWait)
	require.Equal(t, DefaultRefusalDelay, c.RefusalDelay)

	bad := Config{AccountRateLimit: -1, AccountRateBurst: -1, MaxSearchesPerAccount: -1, MaxTokensPerAccount: -1,
		MaxWebhooksPerAccount: -1, BodyWait: -1, BodyLimit: 10, MaxBodyBytesInFlight: 5}
	bad.setDefaults()
	err := bad.Validate()
	for _, f := range []string{"AccountRateLimit", "AccountRateBurst", "MaxSearchesPerAccount", "MaxTokensPerAccount",
		"MaxWebhooksPerAccount", "BodyWait", "MaxBodyBytesInFlight"} {
		require.ErrorContains(t, err, f)
	}
}

// The RateLimit field of a search's answer says what is left of the
// account's budget after the search's whole cost, not only its base cost
// (a client pacing itself by it overran the budget).
func TestSearchRateLimitHeaderCountsItsCost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config, _ *Deps) { c.AccountRateLimit = 0.001; c.AccountRateBurst = 20 })
	accountLeft := func(rec *httptest.ResponseRecorder) int {
		t.Helper()
		m := regexp.MustCompile(`"account";r=(\d+);`).FindStringSubmatch(rec.Header().Get("RateLimit"))
		require.NotNil(t, m, rec.Header().Get("RateLimit"))
		n, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		return n
	}
	heavy := jsonBody(map[string]any{"query": "honey", "top_k": 100, "mode": "dense"}) // costs 11
	rec := e.do(http.MethodPost, "/v1/query", e.viewer, heavy)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	afterSearch := accountLeft(rec)
	rec = e.do(http.MethodGet, "/v1/jobs", e.viewer) // costs 1
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, afterSearch-1, accountLeft(rec))
	require.Equal(t, 20-11-1, accountLeft(rec))
}
