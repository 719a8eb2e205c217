package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connections"
	"github.com/apiaryhq/apiary/storage/records"
)

// scheduleRequest is PUT /v1/connections/{id}/schedule: how often, and
// the source each run syncs (the body of POST /v1/connections/{id}/sync).
type scheduleRequest struct {
	Every  string                     `json:"every"`
	Source map[string]json.RawMessage `json:"source"`
}

// scheduleView is a connection's schedule as the API shows it.
type scheduleView struct {
	ConnectionID string         `json:"connection_id"`
	Every        string         `json:"every"`
	NextRun      time.Time      `json:"next_run"`
	LastRun      *time.Time     `json:"last_run,omitempty"`
	LastJob      apiary.JobID   `json:"last_job,omitempty"`
	CreatedAt    time.Time      `json:"created_at"`
	Source       map[string]any `json:"source"`
}

// viewSchedule shows the schedule; its webhook_url (whose query may hold
// a secret, like a webhook's URL) only when admin, whom the webhook
// routes are for.
func viewSchedule(id string, sc records.ConnectionSchedule, src connections.ScheduledSource, admin bool) scheduleView {
	v := scheduleView{ConnectionID: id, Every: sc.Every.String(), NextRun: sc.NextRun, LastJob: sc.LastJob, CreatedAt: sc.CreatedAt,
		Source: map[string]any{"items": "all"}}
	if !sc.LastRun.IsZero() {
		v.LastRun = &sc.LastRun
	}
	spec := src.Spec
	if !admin {
		src.WebhookURL = ""
	}
	if spec.Items != nil {
		v.Source["items"] = spec.Items
	}
	for k, val := range map[string]string{"location": spec.Location, "site": spec.Site, "webhook_url": src.WebhookURL} {
		if val != "" {
			v.Source[k] = val
		}
	}
	if spec.MaxItems > 0 {
		v.Source["max_items"] = spec.MaxItems
	}
	return v
}

// putSchedule makes the connection sync a source every interval, in place
// of any schedule it had.
func (s *Server) putSchedule(c echo.Context) error {
	id, err := connectionParam(c)
	if err != nil {
		return err
	}
	var req scheduleRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	if req.Every == "" {
		return apiary.E(apiary.KindInvalid, "every is required: how often to sync, like \"6h\" (at least %s)", connections.MinScheduleEvery)
	}
	every, err := time.ParseDuration(req.Every)
	if err != nil {
		return apiary.E(apiary.KindInvalid, "every must be a duration like \"6h\" or \"90m\"")
	}
	if req.Source == nil {
		req.Source = map[string]json.RawMessage{}
	}
	body, err := syncRequest(id, "schedule", req.Source)
	if err != nil {
		return err
	}
	ctx, account := c.Request().Context(), principal(c).Account
	spec, hook, creds, err := s.decodeSourceRequest(ctx, account, body)
	creds.Wipe() // none: syncRequest refused every credential field
	if err != nil {
		return err
	}
	src := connections.ScheduledSource{Spec: spec, WebhookURL: hook}
	sc, err := s.conns.SetSchedule(ctx, account, id, every, src)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewSchedule(id, sc, src, true))
}

func (s *Server) getSchedule(c echo.Context) error {
	id, err := connectionParam(c)
	if err != nil {
		return err
	}
	p := principal(c)
	sc, src, err := s.conns.Schedule(c.Request().Context(), p.Account, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewSchedule(id, sc, src, p.Role.Allows(apiary.RoleAdmin)))
}

func (s *Server) deleteSchedule(c echo.Context) error {
	id, err := connectionParam(c)
	if err != nil {
		return err
	}
	if err := s.conns.DeleteSchedule(c.Request().Context(), principal(c).Account, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
