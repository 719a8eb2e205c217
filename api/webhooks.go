package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/safehttp"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/webhooks"
)

// Webhook limits.
const (
	maxWebhookDescription   = 500
	defaultWebhookGrace     = 24 * time.Hour
	defaultSecretRotatePath = "/v1/webhooks/default-secret/rotate"
)

// webhookRoutes registers the webhook routes, all for admins of the account.
func (s *Server) webhookRoutes(admin []echo.MiddlewareFunc) {
	e := s.e
	e.POST("/v1/webhooks", s.createWebhook, admin...)
	e.GET("/v1/webhooks", s.listWebhooks, admin...)
	e.POST("/v1/webhooks/default-secret", s.revealDefaultSecret, admin...)
	e.POST(defaultSecretRotatePath, s.rotateDefaultSecret, admin...)
	e.GET("/v1/webhooks/:id", s.getWebhook, admin...)
	e.PATCH("/v1/webhooks/:id", s.updateWebhook, admin...)
	e.DELETE("/v1/webhooks/:id", s.deleteWebhook, admin...)
	e.POST("/v1/webhooks/:id/rotate-secret", s.rotateWebhookSecret, admin...)
	e.POST("/v1/webhooks/:id/test", s.testWebhook, admin...)
	e.GET("/v1/webhooks/:id/deliveries", s.listDeliveries, admin...)
	e.POST("/v1/webhooks/:id/deliveries/:delivery/redeliver", s.redeliver, admin...)
}

func (s *Server) webhookGrace() time.Duration {
	switch g := s.cfg.WebhookSecretGrace; {
	case g == 0:
		return defaultWebhookGrace
	case g < 0:
		return 0
	default:
		return g
	}
}

// webhookView is an endpoint as the API shows it: never its secrets.
type webhookView struct {
	ID                      string             `json:"id"`
	URL                     string             `json:"url"`
	Description             string             `json:"description"`
	Events                  []apiary.EventType `json:"events"`
	Enabled                 bool               `json:"enabled"`
	DisabledReason          string             `json:"disabled_reason,omitempty"`
	FailingSince            *time.Time         `json:"failing_since,omitempty"`
	PreviousSecretExpiresAt *time.Time         `json:"previous_secret_expires_at,omitempty"`
	CreatedAt               time.Time          `json:"created_at"`
	UpdatedAt               time.Time          `json:"updated_at"`
}

func viewWebhook(w records.Webhook) webhookView {
	v := webhookView{ID: w.ID, URL: w.URL, Description: w.Description, Events: w.Events, Enabled: w.Enabled,
		DisabledReason: w.DisabledReason, FailingSince: w.FailingSince, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
	if v.Events == nil {
		v.Events = []apiary.EventType{}
	}
	if w.PreviousLive(time.Now()) {
		v.PreviousSecretExpiresAt = w.PreviousExpiresAt
	}
	return v
}

// secretView carries a secret shown this once.
type secretView struct {
	Secret                  string     `json:"secret"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
}

type createdWebhook struct {
	webhookView
	Secret string `json:"secret"`
}

type createWebhookRequest struct {
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	Description string   `json:"description"`
}

type updateWebhookRequest struct {
	URL         *string   `json:"url"`
	Events      *[]string `json:"events"`
	Enabled     *bool     `json:"enabled"`
	Description *string   `json:"description"`
}

// checkWebhookURL applies the SSRF guard to a URL a caller gives us.
func (s *Server) checkWebhookURL(field, u string) error {
	if strings.TrimSpace(u) == "" {
		return apiary.E(apiary.KindInvalid, "%s is required, like https://example.com/hooks/apiary", field)
	}
	if err := safehttp.CheckURL(u, s.cfg.AllowPrivateWebhooks); err != nil {
		return apiary.E(apiary.KindInvalid, "%s: %s", field, apiary.Message(err))
	}
	return nil
}

func checkDescription(d string) error {
	if d == "" {
		return nil
	}
	return checkName("description", d, maxWebhookDescription)
}

func (s *Server) createWebhook(c echo.Context) error {
	var req createWebhookRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if err := s.checkWebhookURL("url", req.URL); err != nil {
		return err
	}
	evs, err := webhooks.ParseEvents(req.Events)
	if err != nil {
		return err
	}
	if err := checkDescription(req.Description); err != nil {
		return err
	}
	p, ctx := principal(c), c.Request().Context()
	existing, err := s.deps.Records.Webhooks(ctx, p.Account)
	if err != nil {
		return err
	}
	if len(existing) >= s.cfg.MaxWebhooksPerAccount {
		return apiary.E(apiary.KindConflict, "the account has %d webhooks, the most it may have; delete one first", len(existing))
	}
	id := apiary.RandomID("wh_")
	secret, sealed, err := webhooks.NewSecrets(ctx, s.deps.Keys, p.Account, id)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	w := records.Webhook{ID: id, Account: p.Account, URL: req.URL, Description: req.Description, Events: evs,
		Enabled: true, Secrets: sealed, CreatedAt: now, UpdatedAt: now}
	if err := s.deps.Records.CreateWebhook(ctx, w); err != nil {
		return fmt.Errorf("api: create webhook: %w", err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/webhooks/"+id)
	return c.JSON(http.StatusCreated, createdWebhook{webhookView: viewWebhook(w), Secret: secret})
}

func (s *Server) listWebhooks(c echo.Context) error {
	hooks, err := s.deps.Records.Webhooks(c.Request().Context(), principal(c).Account)
	if err != nil {
		return err
	}
	out := make([]webhookView, 0, len(hooks))
	for _, w := range hooks {
		out = append(out, viewWebhook(w))
	}
	return c.JSON(http.StatusOK, map[string]any{"webhooks": out})
}

// webhookParam returns the :id of a webhook route; anything not shaped
// like a webhook id is simply not found.
func webhookParam(c echo.Context) (string, error) {
	id := c.Param("id")
	if !strings.HasPrefix(id, "wh_") || len(id) > 64 {
		return "", apiary.E(apiary.KindNotFound, "no such webhook")
	}
	return id, nil
}

// loadWebhook returns the caller's webhook named by :id.
func (s *Server) loadWebhook(c echo.Context) (records.Webhook, error) {
	id, err := webhookParam(c)
	if err != nil {
		return records.Webhook{}, err
	}
	return s.deps.Records.Webhook(c.Request().Context(), principal(c).Account, id)
}

func (s *Server) getWebhook(c echo.Context) error {
	w, err := s.loadWebhook(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewWebhook(w))
}

func (s *Server) updateWebhook(c echo.Context) error {
	id, err := webhookParam(c)
	if err != nil {
		return err
	}
	var req updateWebhookRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.URL == nil && req.Events == nil && req.Enabled == nil && req.Description == nil {
		return apiary.E(apiary.KindInvalid, "send at least one of url, events, enabled, description")
	}
	if req.URL != nil {
		if err := s.checkWebhookURL("url", *req.URL); err != nil {
			return err
		}
	}
	var evs []apiary.EventType
	if req.Events != nil {
		if evs, err = webhooks.ParseEvents(*req.Events); err != nil {
			return err
		}
	}
	if req.Description != nil {
		if err := checkDescription(*req.Description); err != nil {
			return err
		}
	}
	w, err := s.deps.Records.UpdateWebhook(c.Request().Context(), principal(c).Account, id, func(w *records.Webhook) error {
		if req.URL != nil {
			w.URL = *req.URL
		}
		if req.Events != nil {
			w.Events = evs
		}
		if req.Description != nil {
			w.Description = *req.Description
		}
		if req.Enabled != nil {
			if *req.Enabled && !w.Enabled {
				w.DisabledReason, w.FailingSince = "", nil
			}
			w.Enabled = *req.Enabled
		}
		w.UpdatedAt = time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewWebhook(w))
}

func (s *Server) deleteWebhook(c echo.Context) error {
	id, err := webhookParam(c)
	if err != nil {
		return err
	}
	if err := s.deps.Records.DeleteWebhook(c.Request().Context(), principal(c).Account, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) rotateWebhookSecret(c echo.Context) error {
	id, err := webhookParam(c)
	if err != nil {
		return err
	}
	p, ctx := principal(c), c.Request().Context()
	var out secretView
	_, err = s.deps.Records.UpdateWebhook(ctx, p.Account, id, func(w *records.Webhook) error {
		now := time.Now().UTC()
		secret, next, err := webhooks.Rotate(ctx, s.deps.Keys, p.Account, w.ID, w.Secrets, s.webhookGrace(), now)
		if err != nil {
			return err
		}
		w.Secrets, w.UpdatedAt = next, now
		out = secretView{Secret: secret, PreviousSecretExpiresAt: next.PreviousExpiresAt}
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) testWebhook(c echo.Context) error {
	w, err := s.loadWebhook(c)
	if err != nil {
		return err
	}
	if !w.Enabled {
		return apiary.E(apiary.KindConflict, "the webhook is disabled; enable it with PATCH {\"enabled\": true} first")
	}
	d, err := webhooks.SendTest(c.Request().Context(), s.deps.Records, w)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, viewDelivery(d))
}

// deliveryView is a delivery as the API shows it; its body is not repeated.
type deliveryView struct {
	ID            string                 `json:"id"`
	WebhookID     string                 `json:"webhook_id"`
	EventID       string                 `json:"event_id"`
	EventType     apiary.EventType       `json:"event_type"`
	JobID         apiary.JobID           `json:"job_id,omitempty"`
	Status        records.DeliveryStatus `json:"status"`
	Attempts      []records.Attempt      `json:"attempts"`
	NextAttemptAt *time.Time             `json:"next_attempt_at,omitempty"`
	Error         string                 `json:"error,omitempty"`
	CreatedAt     time.Time              `json:"created_at"`
	UpdatedAt     time.Time              `json:"updated_at"`
}

func viewDelivery(d records.Delivery) deliveryView {
	v := deliveryView{ID: d.ID, WebhookID: d.Endpoint, EventID: d.EventID, EventType: d.EventType, JobID: d.Job,
		Status: d.Status, Attempts: d.Attempts, NextAttemptAt: d.NextAttemptAt, Error: d.Error,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	if v.Attempts == nil {
		v.Attempts = []records.Attempt{}
	}
	return v
}

func (s *Server) listDeliveries(c echo.Context) error {
	w, err := s.loadWebhook(c)
	if err != nil {
		return err
	}
	limit, err := pageLimit(c)
	if err != nil {
		return err
	}
	ds, next, err := s.deps.Records.Deliveries(c.Request().Context(), w.Account, w.ID, limit, c.QueryParam("cursor"))
	if err != nil {
		return err
	}
	out := make([]deliveryView, 0, len(ds))
	for _, d := range ds {
		out = append(out, viewDelivery(d))
	}
	return c.JSON(http.StatusOK, map[string]any{"deliveries": out, "next_cursor": next})
}

func (s *Server) redeliver(c echo.Context) error {
	w, err := s.loadWebhook(c)
	if err != nil {
		return err
	}
	if !w.Enabled {
		return apiary.E(apiary.KindConflict, "the webhook is disabled; enable it with PATCH {\"enabled\": true} first")
	}
	id := c.Param("delivery")
	if !strings.HasPrefix(id, "dlv_") || len(id) > 64 {
		return apiary.E(apiary.KindNotFound, "no such delivery")
	}
	d, err := webhooks.Redeliver(c.Request().Context(), s.deps.Records, w.Account, w.ID, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, viewDelivery(d))
}

// revealDefaultSecret shows the account's default secret (which signs the
// deliveries to a job's own webhook_url) once: 201 the first time, 409 after.
func (s *Server) revealDefaultSecret(c echo.Context) error {
	p, ctx := principal(c), c.Request().Context()
	d, secret, created, err := webhooks.EnsureDefaultSecret(ctx, s.deps.Records, s.deps.Keys, p.Account, true)
	if err != nil {
		return err
	}
	if created {
		return c.JSON(http.StatusCreated, secretView{Secret: secret})
	}
	errShown := apiary.E(apiary.KindConflict,
		"the default webhook secret was already shown once; rotate it with POST %s to get a new one (the old one keeps signing for %s)",
		defaultSecretRotatePath, s.webhookGrace())
	if d.Revealed {
		return errShown
	}
	// Made by the dispatcher on first use and never shown: show it now, once.
	d, err = s.deps.Records.UpdateDefaultSecret(ctx, p.Account, func(d *records.DefaultSecret) error {
		if d.Revealed {
			return errShown
		}
		d.Revealed, d.UpdatedAt = true, time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	secret, err = webhooks.OpenSecret(ctx, s.deps.Keys, p.Account, webhooks.DefaultSecretID, d.Sealed)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, secretView{Secret: secret, PreviousSecretExpiresAt: liveExpiry(d.Secrets)})
}

// rotateDefaultSecret replaces the default secret; the old one keeps
// signing for the grace period.
func (s *Server) rotateDefaultSecret(c echo.Context) error {
	p, ctx := principal(c), c.Request().Context()
	_, secret, created, err := webhooks.EnsureDefaultSecret(ctx, s.deps.Records, s.deps.Keys, p.Account, true)
	if err != nil {
		return err
	}
	if created {
		return c.JSON(http.StatusCreated, secretView{Secret: secret})
	}
	var out secretView
	_, err = s.deps.Records.UpdateDefaultSecret(ctx, p.Account, func(d *records.DefaultSecret) error {
		now := time.Now().UTC()
		secret, next, err := webhooks.Rotate(ctx, s.deps.Keys, p.Account, webhooks.DefaultSecretID, d.Secrets, s.webhookGrace(), now)
		if err != nil {
			return err
		}
		d.Secrets, d.Revealed, d.UpdatedAt = next, true, now
		out = secretView{Secret: secret, PreviousSecretExpiresAt: next.PreviousExpiresAt}
		return nil
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, out)
}

func liveExpiry(s records.Secrets) *time.Time {
	if s.PreviousLive(time.Now()) {
		return s.PreviousExpiresAt
	}
	return nil
}

// ingestWebhookURL reads the optional webhook_url of a JSON ingest body
// (already decoded strictly by decodeIngestJSON) and checks it.
func (s *Server) ingestWebhookURL(body []byte) (string, error) {
	var req struct {
		WebhookURL *string `json:"webhook_url"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.WebhookURL == nil {
		return "", nil
	}
	if err := s.checkWebhookURL("webhook_url", *req.WebhookURL); err != nil {
		return "", err
	}
	return *req.WebhookURL, nil
}
