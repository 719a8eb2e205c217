package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/storage/records"
)

// connectionRoutes registers the OAuth connection routes. Connecting
// (POST) grants Apiary access to a source: admins only. Disconnecting
// (DELETE) cuts it off: any editor may. The browser routes carry no
// bearer token: the state (and its cookie) is their credential.
func (s *Server) connectionRoutes(viewer, editor, admin []echo.MiddlewareFunc) {
	e := s.e
	e.POST("/v1/connections", s.createConnection, admin...)
	e.GET("/v1/connections", s.listConnections, viewer...)
	e.GET("/v1/connections/:id", s.getConnection, viewer...)
	e.DELETE("/v1/connections/:id", s.deleteConnection, editor...)
	e.POST("/v1/connections/:id/sync", s.syncConnection, editor...)
	e.PUT("/v1/connections/:id/schedule", s.putSchedule, admin...)
	e.GET("/v1/connections/:id/schedule", s.getSchedule, viewer...)
	e.DELETE("/v1/connections/:id/schedule", s.deleteSchedule, admin...)
	e.GET(connections.StartPath, s.startOAuth, s.browserRateLimit)
	e.GET(connections.CallbackPath+":provider", s.oauthCallback, s.browserRateLimit)
}

// browserRateLimit budgets the unauthenticated browser routes per client
// address (the connection's TCP peer: a forwarded-for header is not
// trusted), at the per-token rate.
func (s *Server) browserRateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
		if err != nil {
			host = c.Request().RemoteAddr
		}
		if wait, ok := s.browsers.reserve(host, 1, time.Now()); !ok {
			return s.refuse(c, &apiary.Error{
				Kind: apiary.KindRateLimited, RetryAfter: wait,
				Msg: "too many authorization requests from this address; retry after the number of seconds in Retry-After",
			})
		}
		return next(c)
	}
}

// connectionView is a connection as the API shows it: never a token.
type connectionView struct {
	ID            string                   `json:"id"`
	Provider      string                   `json:"provider"`
	Status        records.ConnectionStatus `json:"status"`
	CreatedAt     time.Time                `json:"created_at"`
	UpdatedAt     time.Time                `json:"updated_at"`
	LastRefreshed *time.Time               `json:"last_refreshed,omitempty"`
}

func viewConnection(c records.Connection) connectionView {
	return connectionView{ID: c.ID, Provider: c.Provider, Status: c.Status, CreatedAt: c.CreatedAt,
		UpdatedAt: c.UpdatedAt, LastRefreshed: c.LastRefreshed}
}

type createConnectionRequest struct {
	Provider string `json:"provider"`
}

func (s *Server) createConnection(c echo.Context) error {
	var req createConnectionRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.Provider == "" {
		return apiary.E(apiary.KindInvalid, "provider is required, like \"google\"")
	}
	if len(req.Provider) > 64 {
		return apiary.E(apiary.KindInvalid, "provider is not one this server knows")
	}
	conn, authorizeURL, err := s.conns.Begin(c.Request().Context(), principal(c).Account, req.Provider)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/connections/"+conn.ID)
	return c.JSON(http.StatusCreated, map[string]any{
		"connection_id": conn.ID, "authorize_url": authorizeURL, "connection": viewConnection(conn),
	})
}

func (s *Server) listConnections(c echo.Context) error {
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	conns, next, err := s.conns.Connections(c.Request().Context(), principal(c).Account, limit, c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	out := make([]connectionView, 0, len(conns))
	for _, conn := range conns {
		out = append(out, viewConnection(conn))
	}
	return c.JSON(http.StatusOK, map[string]any{"connections": out, "next_cursor": next})
}

// connectionParam returns the :id of a connection route; anything not
// shaped like a connection id is simply not found.
func connectionParam(c echo.Context) (string, error) {
	id := c.Param("id")
	if !strings.HasPrefix(id, "con_") || len(id) > 64 {
		return "", apiary.E(apiary.KindNotFound, "no such connection")
	}
	return id, nil
}

func (s *Server) getConnection(c echo.Context) error {
	id, err := connectionParam(c)
	if err != nil {
		return err
	}
	conn, err := s.conns.Connection(c.Request().Context(), principal(c).Account, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewConnection(conn))
}

func (s *Server) deleteConnection(c echo.Context) error {
	id, err := connectionParam(c)
	if err != nil {
		return err
	}
	purge, err := boolQuery(c, "purge")
	if err != nil {
		return err
	}
	ctx, account := c.Request().Context(), principal(c).Account
	rep, err := s.conns.Disconnect(ctx, account, id)
	if err != nil {
		return err
	}
	// The tokens are gone: a running job fails at its next request. Its
	// queued and running jobs are canceled now, so none waits to fail.
	canceled, err := s.cancelConnectionJobs(ctx, account, id)
	if err != nil {
		return err
	}
	out := map[string]any{"connection": viewConnection(rep.Connection), "provider_revocation": rep.Revocation,
		"jobs_canceled": canceled}
	if purge {
		n, err := s.purgeConnectionDocuments(ctx, account, id)
		if err != nil {
			return err
		}
		out["documents_deleted"] = n
	}
	if rep.ManageURL != "" && rep.Revocation != connections.Revoked {
		out["manage_url"] = rep.ManageURL
	}
	return c.JSON(http.StatusOK, out)
}

// startOAuth binds the flow's state to this browser with a cookie and sends
// it to the provider.
func (s *Server) startOAuth(c echo.Context) error {
	state := c.QueryParam("state")
	to, err := s.conns.Start(c.Request().Context(), state)
	if err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{
		Name: connections.CookieName, Value: state, Path: connections.CallbackPath,
		MaxAge: int(s.conns.FlowTTL().Seconds()), HttpOnly: true, Secure: s.conns.Secure() || c.IsTLS(),
		SameSite: http.SameSiteLaxMode,
	})
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Referrer-Policy", "no-referrer")
	return c.Redirect(http.StatusFound, to)
}

// oauthCallback completes the flow at the provider's redirect.
func (s *Server) oauthCallback(c echo.Context) error {
	var cookie string
	if ck, err := c.Cookie(connections.CookieName); err == nil {
		cookie = ck.Value
	}
	// The cookie is for one flow: it goes whatever the outcome.
	c.SetCookie(&http.Cookie{Name: connections.CookieName, Value: "", Path: connections.CallbackPath, MaxAge: -1,
		HttpOnly: true, Secure: s.conns.Secure() || c.IsTLS(), SameSite: http.SameSiteLaxMode})
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Referrer-Policy", "no-referrer")
	q := c.QueryParams()
	conn, err := s.conns.Complete(c.Request().Context(), c.Param("provider"), connections.Callback{
		Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss"), Error: q.Get("error"),
	}, cookie)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"connection_id": conn.ID, "provider": conn.Provider, "status": conn.Status})
}

// boolQuery reads an optional boolean query parameter.
func boolQuery(c echo.Context, name string) (bool, error) {
	switch v := c.QueryParam(name); v {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	default:
		return false, apiary.E(apiary.KindInvalid, "%s must be true or false", name)
	}
}

// connectionJobs yields account's jobs that read with connection id (every
// job of the account when id is "") and
// have not ended, status by status.
func (s *Server) connectionJobs(ctx context.Context, account apiary.AccountID, id string, visit func(apiary.Job) error) error {
	for _, status := range []apiary.JobStatus{apiary.JobQueued, apiary.JobRunning} {
		cursor := ""
		for {
			page, next, err := s.deps.Records.Jobs(ctx, account, records.JobFilter{Status: status, Limit: 500, Cursor: cursor})
			if err != nil {
				return err
			}
			for _, j := range page {
				if id == "" || j.Connection == id { // "": every job (account deletion)
					if err := visit(j); err != nil {
						return err
					}
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	return nil
}

// cancelConnectionJobs cancels account's unfinished jobs that read with
// connection id and returns how many it canceled.
func (s *Server) cancelConnectionJobs(ctx context.Context, account apiary.AccountID, id string) (int, error) {
	n := 0
	err := s.connectionJobs(ctx, account, id, func(j apiary.Job) error {
		_, err := s.jobs.Cancel(ctx, account, j.ID)
		switch {
		case err == nil:
			n++
		case errors.Is(err, apiary.ErrConflict): // it ended meanwhile
		case errors.Is(err, apiary.ErrNotFound): // deleted meanwhile, or its account is (records refuse its writes)
		default:
			return err
		}
		return nil
	})
	return n, err
}

// purgeConnectionDocuments deletes account's documents that a job reading
// with connection id wrote, and returns how many.
func (s *Server) purgeConnectionDocuments(ctx context.Context, account apiary.AccountID, id string) (int, error) {
	fromConn := map[apiary.JobID]bool{}
	n, cursor := 0, ""
	for {
		docs, next, err := s.deps.Records.Documents(ctx, account, 500, cursor)
		if err != nil {
			return n, err
		}
		for _, d := range docs {
			ours, seen := fromConn[d.Job]
			if !seen {
				j, err := s.deps.Records.Job(ctx, account, d.Job)
				if err != nil && !errors.Is(err, apiary.ErrNotFound) {
					return n, err
				}
				ours = err == nil && j.Connection == id
				fromConn[d.Job] = ours
			}
			if !ours {
				continue
			}
			if err := s.removeDocument(ctx, account, d.ID); err != nil {
				return n, err
			}
			n++
		}
		if next == "" {
			return n, nil
		}
		cursor = next
	}
}

// syncConnection submits a sync of one of the connection's sources: the
// body is the source's fields (location, items, site, max_items, and
// webhook_url), all optional; the job fetches what changed since its
// documents were ingested and deletes those gone from the source.
func (s *Server) syncConnection(c echo.Context) error {
	id, err := connectionParam(c)
	if err != nil {
		return err
	}
	key, err := idempotencyKey(c)
	if err != nil {
		return err
	}
	mt, _, err := mediaType(c)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	src := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(body)) > 0 {
		if !isJSON(mt) {
			return unsupportedMediaType("send the body as JSON with the header \"Content-Type: application/json\", or none")
		}
		if err := decodeJSON(body, &src); err != nil {
			return err
		}
	}
	out, err := syncRequest(id, "sync", src)
	if err != nil {
		return err
	}
	return s.submitBody(c, key, echo.MIMEApplicationJSON, nil, out)
}

// syncRequest turns the source fields of a sync (or a schedule's runs,
// what says which) through connection id into the body of the source
// request it amounts to.
func syncRequest(id, what string, src map[string]json.RawMessage) ([]byte, error) {
	for _, f := range []string{"connection_id", "sync", "provider"} {
		if _, ok := src[f]; ok {
			return nil, apiary.E(apiary.KindInvalid, "%s is set by the route; send only the source's location, items, site, max_items and webhook_url", f)
		}
	}
	for _, f := range credentialFields {
		if _, ok := src[f]; ok {
			return nil, apiary.E(apiary.KindInvalid, "a %s reads with the connection's own token; send no %s", what, f)
		}
	}
	req := map[string]any{}
	if hook, ok := src["webhook_url"]; ok {
		req["webhook_url"] = hook
		delete(src, "webhook_url")
	}
	src["connection_id"], _ = json.Marshal(id)
	src["sync"] = json.RawMessage("true")
	req["source"] = src
	return json.Marshal(req)
}
