package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/workers/jobs"
)

// Server is the HTTP API. Safe for concurrent use.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	e        *echo.Echo
	limiter  *limiterMap[apiary.TokenID]
	accounts *limiterMap[apiary.AccountID] // cost-weighted budgets
	browsers *limiterMap[string]           // the OAuth browser routes, per client address
	searches *accountGate                  // searches running per account
	bodies   *bodyBudget                   // request body bytes held
	streams  streamSet                     // open event streams; its zero value is ready
	jobs     *jobs.Service
	conns    *connections.Service

	anonAudit *rate.Limiter // audit entries of unknown callers' authentication failures
	touched   touches       // tokens' last use recorded by this process

	refusedAudit *limiterMap[apiary.TokenID] // audit entries of each expired token's failures
}

// New builds the API over deps.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.setDefaults()
	if err := errors.Join(cfg.Validate(), deps.validate()); err != nil {
		return nil, apiary.Wrap(err, apiary.KindInvalid, "api: config")
	}
	s := &Server{
		cfg:      cfg,
		deps:     deps,
		log:      cfg.Logger,
		limiter:  newLimiterMap[apiary.TokenID](cfg.RateLimit, cfg.RateBurst, maxLimiters),
		accounts: newLimiterMap[apiary.AccountID](cfg.AccountRateLimit, cfg.AccountRateBurst, maxLimiters),
		browsers: newLimiterMap[string](cfg.RateLimit, cfg.RateBurst, maxLimiters),
		searches: newAccountGate(cfg.MaxSearchesPerAccount),
		bodies:   newBodyBudget(cfg.MaxBodyBytesInFlight, cfg.BodyLimit, cfg.BodyWait),
	}
	s.anonAudit = newAnonymousAuditLimiter()
	s.refusedAudit = newRefusedAuditLimiter()
	jcfg := jobs.Config{Logger: cfg.Logger}
	if deps.Custody != nil {
		jcfg.Ended = deps.Custody.Ended // a job canceled here lets go of its token
	}
	s.jobs = jobs.New(jcfg, deps.Records, deps.Queue, deps.Events, deps.Stager)
	s.conns = deps.Connections
	if s.conns == nil { // no provider configured: every provider is refused with a clear 400
		conns, err := connections.New(connections.Config{Logger: cfg.Logger}, deps.Records, deps.Keys, deps.Events)
		if err != nil {
			return nil, err
		}
		s.conns = conns
	}
	e := echo.New()
	e.Use(s.rateLimitPolicyHeader) // first: every answer names the quotas
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.errorHandler
	// recoverMiddleware inside the logs: a panic is logged and audited as
	// the 500 it answers, like any other error.
	e.Use(s.requestIDMiddleware, securityHeaders, s.accessLog, s.auditLog, s.recoverMiddleware, s.bodyLimit)
	s.e = e
	s.routes()
	return s, nil
}

// Handler returns the API as an http.Handler.
func (s *Server) Handler() http.Handler { return s.e }

// Echo returns the underlying echo instance (for tests: ServeHTTP, Routes).
func (s *Server) Echo() *echo.Echo { return s.e }

// routes registers every route. Middleware is given per route (never with
// Group.Use, which would add catch-all routes): authenticate, throttle,
// check the role, then count the body against the body budget as it is
// read (so that neither an unknown caller nor a refused one holds any of
// it).
func (s *Server) routes() {
	e := s.e
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/v1/openapi.yaml", s.openapi)

	viewer := []echo.MiddlewareFunc{s.authenticate, s.rateLimit, requireRole(apiary.RoleViewer), s.admitBody}
	editor := []echo.MiddlewareFunc{s.authenticate, s.rateLimit, requireRole(apiary.RoleEditor), s.admitBody}
	admin := []echo.MiddlewareFunc{s.authenticate, s.rateLimit, requireRole(apiary.RoleAdmin), s.admitBody}
	operator := []echo.MiddlewareFunc{s.authenticate, s.rateLimit, requireOperator, s.admitBody}

	e.POST("/v1/ingest", s.ingest, editor...)
	e.GET("/v1/jobs", s.listJobs, viewer...)
	e.GET("/v1/jobs/:id", s.getJob, viewer...)
	e.POST("/v1/jobs/:id/cancel", s.cancelJob, editor...)
	e.GET("/v1/jobs/:id/events", s.jobEvents, viewer...)
	e.GET("/v1/jobs/:id/errors", s.listJobErrors, viewer...)
	e.GET("/v1/events", s.listEvents, viewer...)
	e.POST("/v1/query", s.query, viewer...)
	e.GET("/v1/documents", s.listDocuments, viewer...)
	e.GET("/v1/documents/:id", s.getDocument, viewer...)
	e.DELETE("/v1/documents/:id", s.deleteDocument, editor...)
	e.POST("/v1/accounts", s.createAccount, operator...)
	e.DELETE("/v1/accounts/:id", s.deleteAccountByID, operator...)
	e.GET("/v1/account", s.getAccount, viewer...)
	e.DELETE("/v1/account", s.deleteOwnAccount, admin...)
	e.POST("/v1/account/keys/rotate", s.rotateAccountKey, admin...)
	e.POST("/v1/tokens", s.createToken, admin...)
	e.GET("/v1/tokens", s.listTokens, admin...)
	e.DELETE("/v1/tokens/:id", s.deleteToken, admin...)
	e.POST("/v1/tokens/:id/rotate", s.rotateToken, admin...)
	e.GET("/v1/audit", s.listAudit, admin...)
	s.webhookRoutes(admin)
	s.connectionRoutes(viewer, editor, admin)
}

const ctxKeyRequestID = "apiary.request_id"

// requestIDMiddleware gives every request a fresh id (a client-sent
// X-Request-Id is not trusted: it would reach the logs verbatim).
func (s *Server) requestIDMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := apiary.RandomID("req_")
		c.Set(ctxKeyRequestID, id)
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

func requestID(c echo.Context) string {
	id, _ := c.Get(ctxKeyRequestID).(string)
	return id
}

// recoverMiddleware turns a panic into a 500 and logs its stack (never sent).
func (s *Server) recoverMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if r == http.ErrAbortHandler {
				panic(r)
			}
			s.log.LogAttrs(c.Request().Context(), slog.LevelError, "handler panicked",
				slog.String("request_id", requestID(c)),
				slog.String("route", c.Path()),
				slog.String("stack", string(debug.Stack())))
			err = fmt.Errorf("api: panic in %s: %v", c.Path(), r)
		}()
		return next(c)
	}
}

// securityHeaders sets the headers every API answer should carry.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if c.IsTLS() {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		return next(c)
	}
}

// accessLog writes one line per request: method, route pattern (not the raw
// path), status, duration, request id and the caller's account and token id.
// Never headers, query strings or bodies.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // answer now, so that the status below is the real one
		}
		attrs := []slog.Attr{
			slog.String("request_id", requestID(c)),
			slog.String("method", c.Request().Method),
			slog.String("route", c.Path()),
			slog.Int("status", c.Response().Status),
			slog.Duration("duration", time.Since(start)),
		}
		if p, ok := c.Get(ctxKeyPrincipal).(Principal); ok {
			attrs = append(attrs, slog.String("account", string(p.Account)), slog.String("token_id", string(p.TokenID)))
		}
		s.log.LogAttrs(c.Request().Context(), slog.LevelInfo, "request", attrs...)
		return nil
	}
}

// bodyLimit caps every request body at cfg.BodyLimit while it is read.
func (s *Server) bodyLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength > s.cfg.BodyLimit {
			return &http.MaxBytesError{Limit: s.cfg.BodyLimit}
		}
		req.Body = http.MaxBytesReader(c.Response().Writer, req.Body, s.cfg.BodyLimit)
		return next(c)
	}
}

func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	if s.deps.Ready != nil {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
		defer cancel()
		if err := s.deps.Ready(ctx); err != nil {
			return &apiary.Error{Kind: apiary.KindUnavailable, Msg: "not ready", Err: err, RetryAfter: defaultUnavailableRetry}
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
