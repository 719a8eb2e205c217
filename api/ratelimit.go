package api

import (
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/apiaryhq/apiary"
)

// maxLimiters bounds the per-token limiter map.
const maxLimiters = 10_000

// limiterMap holds one token bucket per token id, at most max of them. A
// bucket that has been idle long enough to refill is the same as a new one,
// so it can be evicted without changing anyone's budget; when the map is
// full of busy buckets the least recently used goes.
type limiterMap struct {
	limit rate.Limit
	burst int
	max   int
	// idle is how long a bucket takes to refill from empty.
	idle time.Duration

	mu sync.Mutex
	m  map[apiary.TokenID]*limiterEntry
}

type limiterEntry struct {
	lim  *rate.Limiter
	last time.Time
}

func newLimiterMap(perSecond float64, burst, max int) *limiterMap {
	return &limiterMap{
		limit: rate.Limit(perSecond),
		burst: burst,
		max:   max,
		idle:  time.Duration(float64(burst) / perSecond * float64(time.Second)),
		m:     make(map[apiary.TokenID]*limiterEntry),
	}
}

// reserve takes one request from id's bucket; it returns how long to wait
// when the bucket is empty (the request is then refused and not counted).
func (l *limiterMap) reserve(id apiary.TokenID, now time.Time) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[id]
	if e == nil {
		if len(l.m) >= l.max {
			l.evict(now)
		}
		e = &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[id] = e
	}
	e.last = now
	r := e.lim.ReserveN(now, 1)
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
func (l *limiterMap) evict(now time.Time) {
	var oldest apiary.TokenID
	var oldestAt time.Time
	for id, e := range l.m {
		if now.Sub(e.last) >= l.idle {
			delete(l.m, id)
			continue
		}
		if oldestAt.IsZero() || e.last.Before(oldestAt) {
			oldest, oldestAt = id, e.last
		}
	}
	if len(l.m) >= l.max {
		delete(l.m, oldest)
	}
}

func (l *limiterMap) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// rateLimit throttles each token to its own bucket; 429 with Retry-After beyond.
func (s *Server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if wait, ok := s.limiter.reserve(principal(c).TokenID, time.Now()); !ok {
			return &apiary.Error{
				Kind:       apiary.KindRateLimited,
				Msg:        "too many requests for this token; retry after the number of seconds in Retry-After",
				RetryAfter: wait,
			}
		}
		return next(c)
	}
}
