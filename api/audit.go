package api

import (
	"context"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/storage/records"
)

// The audit log: every admin action and every authentication failure, one
// structured record each (actor, account, action, target, result, status,
// request id), never a secret. One middleware writes them, driven by
// auditDecisions, which names every route: a route without a decision
// fails TestEveryRouteHasAnAuditDecision.

// auditDecision says whether a route's requests are recorded, and as what.
type auditDecision struct {
	action string // "" when not audited
	reason string // why not, for the reader of the table
}

// audited records every request of a route, whatever its outcome, as action.
func audited(action string) auditDecision { return auditDecision{action: action} }

// notAudited records a route's requests only when their authentication or
// authorization fails; reason says why the rest is not audited.
func notAudited(reason string) auditDecision { return auditDecision{reason: reason} }

type routeKey struct{ method, path string }

const (
	readOnly = "reads change nothing"
	public   = "public, no caller"
)

// auditDecisions names every route. Some routes are added by branches
// merged separately (schedules, key rotation, account deletion); their
// decisions are here already.
var auditDecisions = map[routeKey]auditDecision{
	{http.MethodGet, "/healthz"}:             notAudited(public),
	{http.MethodGet, "/readyz"}:              notAudited(public),
	{http.MethodGet, "/v1/openapi.yaml"}:     notAudited(public),
	{http.MethodPost, "/v1/ingest"}:          notAudited("content, not administration: the job record and its events tell it"),
	{http.MethodGet, "/v1/jobs"}:             notAudited(readOnly),
	{http.MethodGet, "/v1/jobs/:id"}:         notAudited(readOnly),
	{http.MethodPost, "/v1/jobs/:id/cancel"}: audited("job.cancel"),
	{http.MethodGet, "/v1/jobs/:id/events"}:  notAudited(readOnly),
	{http.MethodGet, "/v1/jobs/:id/errors"}:  notAudited(readOnly),
	{http.MethodGet, "/v1/events"}:           notAudited(readOnly),
	{http.MethodPost, "/v1/query"}:           notAudited(readOnly),
	{http.MethodGet, "/v1/documents"}:        notAudited(readOnly),
	{http.MethodGet, "/v1/documents/:id"}:    notAudited(readOnly),
	{http.MethodDelete, "/v1/documents/:id"}: audited("document.delete"),

	{http.MethodPost, "/v1/accounts"}:            audited("account.create"),
	{http.MethodGet, "/v1/account"}:              notAudited(readOnly),
	{http.MethodDelete, "/v1/accounts/:id"}:      audited("account.delete"),
	{http.MethodDelete, "/v1/account"}:           audited("account.delete"),
	{http.MethodPost, "/v1/account/keys/rotate"}: audited("account.keys.rotate"),
	{http.MethodGet, "/v1/audit"}:                notAudited(readOnly),

	{http.MethodPost, "/v1/tokens"}:            audited("token.create"),
	{http.MethodGet, "/v1/tokens"}:             notAudited(readOnly + "; no secret is shown"),
	{http.MethodDelete, "/v1/tokens/:id"}:      audited("token.delete"),
	{http.MethodPost, "/v1/tokens/:id/rotate"}: audited("token.rotate"),

	{http.MethodPost, "/v1/webhooks"}:                                    audited("webhook.create"),
	{http.MethodGet, "/v1/webhooks"}:                                     notAudited(readOnly),
	{http.MethodPost, "/v1/webhooks/default-secret"}:                     audited("webhook.default_secret.reveal"),
	{http.MethodPost, defaultSecretRotatePath}:                           audited("webhook.default_secret.rotate"),
	{http.MethodGet, "/v1/webhooks/:id"}:                                 notAudited(readOnly),
	{http.MethodPatch, "/v1/webhooks/:id"}:                               audited("webhook.update"),
	{http.MethodDelete, "/v1/webhooks/:id"}:                              audited("webhook.delete"),
	{http.MethodPost, "/v1/webhooks/:id/rotate-secret"}:                  audited("webhook.secret.rotate"),
	{http.MethodPost, "/v1/webhooks/:id/test"}:                           audited("webhook.test"),
	{http.MethodGet, "/v1/webhooks/:id/deliveries"}:                      notAudited(readOnly),
	{http.MethodPost, "/v1/webhooks/:id/deliveries/:delivery/redeliver"}: audited("webhook.redeliver"),

	{http.MethodPost, "/v1/connections"}:                     audited("connection.create"),
	{http.MethodGet, "/v1/connections"}:                      notAudited(readOnly),
	{http.MethodGet, "/v1/connections/:id"}:                  notAudited(readOnly),
	{http.MethodDelete, "/v1/connections/:id"}:               audited("connection.delete"),
	{http.MethodPost, "/v1/connections/:id/sync"}:            audited("connection.sync"),
	{http.MethodPut, "/v1/connections/:id/schedule"}:         audited("connection.schedule.set"),
	{http.MethodGet, "/v1/connections/:id/schedule"}:         notAudited(readOnly),
	{http.MethodDelete, "/v1/connections/:id/schedule"}:      audited("connection.schedule.delete"),
	{http.MethodGet, connections.StartPath}:                  notAudited("a browser step of POST /v1/connections, without a token"),
	{http.MethodGet, connections.CallbackPath + ":provider"}: notAudited("a browser step of POST /v1/connections, without a token; the connection.* events record its outcome"),
}

// Audit results.
const (
	auditSuccess = "success"
	auditDenied  = "denied"  // authentication or authorization refused
	auditFailure = "failure" // refused for another reason, or failed
)

// maxAuditTarget bounds the target kept (a path parameter: any string).
const maxAuditTarget = 128

const ctxKeyAuditTarget = "apiary.audit_target"

// setAuditTarget names what a request acts on when the path does not (the
// id a create made).
func setAuditTarget(c echo.Context, target string) { c.Set(ctxKeyAuditTarget, target) }

// ctxKeyAuditAccount is the account whose log files a request's entry when
// it is not the caller's: the deletion of the caller's own account goes to
// the operator's log, the one left with a reader.
const ctxKeyAuditAccount = "apiary.audit_account"

// newAnonymousAuditLimiter bounds the audit entries of authentication
// failures by unknown callers: anyone can make those, and they must not
// fill the operator's log (a burst, then one a minute: some 1,500 a day at
// most, where ten a second made 864,000).
func newAnonymousAuditLimiter() *rate.Limiter {
	return rate.NewLimiter(rate.Every(time.Minute), anonAuditBurst)
}

const anonAuditBurst = 100

// An expired (or rotated-away) token's failures are filed under its
// account before any rate limit, so each such token has a budget of audit
// entries: a burst, then one every refusedAuditEvery.
const (
	refusedAuditBurst = 20
	refusedAuditEvery = time.Minute
)

func newRefusedAuditLimiter() *limiterMap[apiary.TokenID] {
	return newLimiterMap[apiary.TokenID](float64(time.Second)/float64(refusedAuditEvery), refusedAuditBurst, maxLimiters)
}

// auditLog is the one middleware of the audit log: after the handler, it
// records audited routes' requests and every authentication or
// authorization failure. A
// failure to record is logged; the request's answer stands.
func (s *Server) auditLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := next(c); err != nil {
			c.Error(err) // answer now, so that the status below is the real one
		}
		status := c.Response().Status
		d := auditDecisions[routeKey{c.Request().Method, c.Path()}]
		refused, _ := c.Get(ctxKeyRoleRefused).(bool)
		if d.action == "" && status != http.StatusUnauthorized && !refused {
			return nil
		}
		e := records.AuditEntry{Action: d.action, Status: status, RequestID: requestID(c), Result: auditResult(status)}
		switch {
		case e.Action != "":
		case refused:
			e.Action = "authorize"
		default:
			e.Action = "authenticate"
		}
		p, ok := c.Get(ctxKeyPrincipal).(Principal)
		if !ok {
			if p, ok = c.Get(ctxKeyRefused).(Principal); ok {
				if _, allowed := s.refusedAudit.reserve(p.TokenID, 1, s.cfg.Now()); !allowed {
					return nil
				}
			}
		}
		if ok {
			e.Account, e.Actor, e.ActorPrefix, e.Operator = p.Account, p.TokenID, p.Prefix, p.Operator
		} else {
			// No token to tell the account by: the operator's account
			// keeps these, within a budget.
			if !s.anonAudit.AllowN(s.cfg.Now(), 1) {
				return nil
			}
			e.Account = apiary.DefaultAccount
		}
		if a, ok := c.Get(ctxKeyAuditAccount).(apiary.AccountID); ok {
			e.Account = a
		}
		e.Target = auditTarget(c)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), 5*time.Second)
		defer cancel()
		if _, err := s.deps.Records.AppendAudit(ctx, e); err != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "writing an audit entry failed",
				slog.String("request_id", e.RequestID), slog.String("action", e.Action), slog.Any("err", err))
		}
		return nil
	}
}

func auditResult(status int) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return auditDenied
	case status >= 400:
		return auditFailure
	}
	return auditSuccess
}

// auditTarget is what the request acts on: the id a handler named, else
// the path's ids, else the last part of the Location of what it created.
func auditTarget(c echo.Context) string {
	t, _ := c.Get(ctxKeyAuditTarget).(string)
	if loc := c.Response().Header().Get(echo.HeaderLocation); t == "" && len(c.ParamNames()) == 0 && loc != "" {
		t = path.Base(loc)
	}
	if t == "" {
		var ids []string
		for _, name := range c.ParamNames() {
			if v := c.Param(name); v != "" {
				ids = append(ids, v)
			}
		}
		t = strings.Join(ids, "/")
	}
	if len(t) > maxAuditTarget {
		t = t[:maxAuditTarget]
	}
	return strings.ToValidUTF8(t, "")
}

type auditList struct {
	Entries    []records.AuditEntry `json:"entries"`
	NextCursor string               `json:"next_cursor"`
}

// listAudit answers one page of the caller's account's audit log, newest
// first.
func (s *Server) listAudit(c echo.Context) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	es, next, err := s.deps.Records.AuditLog(c.Request().Context(), principal(c).Account, limit, c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, auditList{Entries: es, NextCursor: next})
}
