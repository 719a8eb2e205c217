package api

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline"
)

// maxLimiters bounds each limiter map (tokens, accounts).
const maxLimiters = 10_000

// limiterMap holds one token bucket per key, at most max of them. A bucket
// that has been idle long enough to refill is the same as a new one, so it
// can be evicted without changing anyone's budget; when the map is full of
// busy buckets the least recently used goes.
type limiterMap[K comparable] struct {
	limit rate.Limit
	burst int
	max   int
	// idle is how long a bucket takes to refill from empty.
	idle time.Duration

	mu sync.Mutex
	m  map[K]*limiterEntry
}

type limiterEntry struct {
	lim  *rate.Limiter
	last time.Time
}

func newLimiterMap[K comparable](perSecond float64, burst, max int) *limiterMap[K] {
	return &limiterMap[K]{
		limit: rate.Limit(perSecond),
		burst: burst,
		max:   max,
		idle:  time.Duration(float64(burst) / perSecond * float64(time.Second)),
		m:     make(map[K]*limiterEntry),
	}
}

// reserve takes n (at most the burst) from key's bucket; it returns how
// long to wait when the bucket holds less (the request is then refused and
// nothing is taken).
func (l *limiterMap[K]) reserve(key K, n int, now time.Time) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[key]
	if e == nil {
		if len(l.m) >= l.max {
			l.evict(now)
		}
		e = &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = e
	}
	e.last = now
	r := e.lim.ReserveN(now, min(n, l.burst))
	if !r.OK() {
		return time.Second, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// evict drops every idle bucket, or the least recently used one if none is.
func (l *limiterMap[K]) evict(now time.Time) {
	var oldest K
	var oldestAt time.Time
	for key, e := range l.m {
		if now.Sub(e.last) >= l.idle {
			delete(l.m, key)
			continue
		}
		if oldestAt.IsZero() || e.last.Before(oldestAt) {
			oldest, oldestAt = key, e.last
		}
	}
	if len(l.m) >= l.max {
		delete(l.m, oldest)
	}
}

// state reports key's bucket as the RateLimit header field tells it: the
// whole requests left now and the seconds until the bucket is full again. A
// key without a bucket has a full one.
func (l *limiterMap[K]) state(key K, now time.Time) (remaining, reset int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	left := float64(l.burst)
	if e := l.m[key]; e != nil {
		left = max(e.lim.TokensAt(now), 0)
	}
	return int(left), int(math.Ceil((float64(l.burst) - left) / float64(l.limit)))
}

// window is the policy's window in seconds: how long an empty bucket takes
// to fill, at least 1.
func (l *limiterMap[K]) window() int {
	return max(int(math.Ceil(float64(l.burst)/float64(l.limit))), 1)
}

// The two quota policies of draft-ietf-httpapi-ratelimit-headers: the
// token's requests and the account's cost units.
const (
	policyToken   = "token"
	policyAccount = "account"
)

// rateLimitPolicy is the RateLimit-Policy field value: each policy's quota
// (q) over its window in seconds (w). The account's quota is counted in cost
// units (qu is not "requests"): a request costs 1 and more by body size and
// search.
func (s *Server) rateLimitPolicy() string {
	return fmt.Sprintf("%q;q=%d;w=%d, %q;q=%d;w=%d", policyToken, s.limiter.burst, s.limiter.window(),
		policyAccount, s.accounts.burst, s.accounts.window())
}

// rateLimitPolicyHeader puts RateLimit-Policy on every answer; the routes
// that take a token add RateLimit (rateLimit).
func (s *Server) rateLimitPolicyHeader(next echo.HandlerFunc) echo.HandlerFunc {
	policy := s.rateLimitPolicy()
	return func(c echo.Context) error {
		c.Response().Header().Set("RateLimit-Policy", policy)
		return next(c)
	}
}

// setRateLimit writes the RateLimit field: what is left of each policy (r)
// and the seconds until it is whole again (t).
func (s *Server) setRateLimit(c echo.Context, now time.Time) {
	p := principal(c)
	tr, tt := s.limiter.state(p.TokenID, now)
	ar, at := s.accounts.state(p.Account, now)
	c.Response().Header().Set("RateLimit", fmt.Sprintf("%q;r=%d;t=%d, %q;r=%d;t=%d", policyToken, tr, tt, policyAccount, ar, at))
}

func (l *limiterMap[K]) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// rateLimit throttles each token to its own bucket (one per request) and
// each account to its own budget, charged by cost: a request costs 1 plus
// 1 per MiB of body, and a search more (see chargeAccount). Beyond either,
// 429 with Retry-After.
func (s *Server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		now := time.Now()
		if wait, ok := s.limiter.reserve(principal(c).TokenID, 1, now); !ok {
			s.setRateLimit(c, now)
			return s.refuse(c, &apiary.Error{
				Kind:       apiary.KindRateLimited,
				Msg:        "too many requests for this token; retry after the number of seconds in Retry-After",
				RetryAfter: wait,
			})
		}
		err := s.chargeAccount(c, 1+int(max(c.Request().ContentLength, 0)>>20))
		s.setRateLimit(c, now) // before the answer is written
		if err != nil {
			return err
		}
		return next(c)
	}
}

// chargeAccount takes cost from the caller's account budget, shared by all
// of the account's tokens.
func (s *Server) chargeAccount(c echo.Context, cost int) error {
	if cost <= 0 {
		return nil
	}
	if wait, ok := s.accounts.reserve(principal(c).Account, cost, time.Now()); !ok {
		return s.refuse(c, &apiary.Error{
			Kind:       apiary.KindRateLimited,
			Msg:        "too many requests for this account (its tokens share one budget; searches with a large top_k or a metadata filter cost more); retry after the number of seconds in Retry-After",
			RetryAfter: wait,
		})
	}
	return nil
}

// refuse answers err (a 429) after RefusalDelay, or its Retry-After when
// shorter: a client that ignores Retry-After and retries at once makes a
// few requests a second, not thousands, and leaves the CPU to others.
func (s *Server) refuse(c echo.Context, err *apiary.Error) error {
	if d := min(err.RetryAfter, s.cfg.RefusalDelay); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.Request().Context().Done():
		}
	}
	return err
}

// queryCost is what a search costs of its account's budget: it grows with
// the hits it fetches and opens, top_k, by one for a hybrid search (it
// searches twice, densely and lexically), tenfold with a metadata filter
// (metadata is sealed, so the search over-fetches and filters after
// opening).
func queryCost(q pipeline.Query) int {
	cost := 1 + q.TopK/10
	if q.Mode == "" || q.Mode == pipeline.ModeHybrid {
		cost++
	}
	if len(q.Metadata) > 0 {
		cost *= 10
	}
	return cost
}

// accountGate bounds the operations one account runs at once. Safe for
// concurrent use; its zero value is not ready, use newAccountGate.
type accountGate struct {
	max int
	mu  sync.Mutex
	n   map[apiary.AccountID]int
}

func newAccountGate(max int) *accountGate {
	return &accountGate{max: max, n: make(map[apiary.AccountID]int)}
}

// enter takes a slot of account, or reports false when all are taken.
func (g *accountGate) enter(account apiary.AccountID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n[account] >= g.max {
		return false
	}
	g.n[account]++
	return true
}

func (g *accountGate) leave(account apiary.AccountID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n[account]--; g.n[account] <= 0 {
		delete(g.n, account)
	}
}
