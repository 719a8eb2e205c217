package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

// PUT, GET and DELETE /v1/connections/{id}/schedule: an admin schedules a
// sync of one of the connection's sources, validated as the sync route
// validates it; an ephemeral token cannot be scheduled.
func TestConnectionSchedule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	putConnection(t, e, apiary.DefaultAccount, "con_sched", "github", records.ConnectionActive)
	putConnection(t, e, apiary.DefaultAccount, "con_stale", "github", records.ConnectionReauthRequired)
	other, otherAdmin := e.otherAccount("Hooli")
	putConnection(t, e, other, "con_hooli", "github", records.ConnectionActive)
	const path = "/v1/connections/con_sched/schedule"

	requireProblem(t, e.do(http.MethodGet, path, e.viewer), http.StatusNotFound, "no schedule")

	before := time.Now().UTC()
	rec := e.do(http.MethodPut, path, e.admin, jsonBody(map[string]any{"every": "6h", "source": map[string]any{
		"location": "octo/docs@main", "items": []string{"octo/docs:README.md"}, "webhook_url": "https://hooks.example.com/sync",
	}}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	put := decode[scheduleView](t, rec)
	require.Equal(t, "con_sched", put.ConnectionID)
	require.Equal(t, "6h0m0s", put.Every)
	require.False(t, put.NextRun.Before(before.Add(6*time.Hour)))
	require.Empty(t, put.LastJob)

	rec = e.do(http.MethodGet, path, e.admin) // webhook_url is shown to admins only
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	got := decode[map[string]any](t, rec)
	require.Equal(t, map[string]any{"location": "octo/docs@main", "items": []any{"octo/docs:README.md"},
		"webhook_url": "https://hooks.example.com/sync"}, got["source"])

	// The stored schedule names none of the customer's items in the clear.
	c, err := e.recs.Connection(ctx, apiary.DefaultAccount, "con_sched")
	require.NoError(t, err)
	require.NotNil(t, c.Schedule)
	require.NotContains(t, string(c.Schedule.Source), "octo/docs")

	// Replaced by another PUT; no source is everything the grant reaches.
	rec = e.do(http.MethodPut, path, e.admin, jsonBody(map[string]any{"every": "15m"}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, map[string]any{"items": "all"}, decode[map[string]any](t, rec)["source"])

	for _, tc := range []struct {
		name   string
		token  string
		path   string
		body   any
		status int
		detail string
	}{
		{"no interval", e.admin, path, map[string]any{}, http.StatusBadRequest, "every is required"},
		{"not a duration", e.admin, path, map[string]any{"every": "daily"}, http.StatusBadRequest, "duration like"},
		{"too often", e.admin, path, map[string]any{"every": "5m"}, http.StatusBadRequest, "every must be from 15m0s"},
		{"too seldom", e.admin, path, map[string]any{"every": "1000h"}, http.StatusBadRequest, "every must be from 15m0s"},
		{"an ephemeral token", e.admin, path, map[string]any{"every": "1h", "source": map[string]any{"access_token": "canary-schedule-token"}},
			http.StatusBadRequest, "a schedule reads with the connection's own token; send no access_token"},
		{"another connection", e.admin, path, map[string]any{"every": "1h", "source": map[string]any{"connection_id": "con_hooli"}},
			http.StatusBadRequest, "set by the route"},
		{"a bad source", e.admin, path, map[string]any{"every": "1h", "source": map[string]any{"items": 3}}, http.StatusBadRequest, `"all" or an array`},
		{"an unknown field", e.admin, path, map[string]any{"every": "1h", "when": "now"}, http.StatusBadRequest, "when"},
		{"an editor", e.editor, path, map[string]any{"every": "1h"}, http.StatusForbidden, "role admin"},
		{"another account's connection", e.admin, "/v1/connections/con_hooli/schedule", map[string]any{"every": "1h"}, http.StatusNotFound, "no such connection"},
		{"their admin on ours", otherAdmin, path, map[string]any{"every": "1h"}, http.StatusNotFound, "no such connection"},
		{"a connection needing reauth", e.admin, "/v1/connections/con_stale/schedule", map[string]any{"every": "1h"}, http.StatusConflict, "reauth_required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := e.do(http.MethodPut, tc.path, tc.token, jsonBody(tc.body))
			requireProblem(t, rec, tc.status, tc.detail)
			require.NotContains(t, rec.Body.String(), "canary-schedule-token")
		})
	}
	require.NotContains(t, e.logs.String(), "canary-schedule-token")
	requireProblem(t, e.do(http.MethodGet, path, otherAdmin), http.StatusNotFound, "no such connection")
	requireProblem(t, e.do(http.MethodDelete, path, otherAdmin), http.StatusNotFound, "no such connection")
	requireProblem(t, e.do(http.MethodDelete, path, e.editor), http.StatusForbidden, "role admin")

	rec = e.do(http.MethodDelete, path, e.admin)
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	requireProblem(t, e.do(http.MethodDelete, path, e.admin), http.StatusNotFound, "no schedule")
	requireProblem(t, e.do(http.MethodGet, path, e.viewer), http.StatusNotFound, "no schedule")

	// Disconnecting removes the schedule.
	rec = e.do(http.MethodPut, path, e.admin, jsonBody(map[string]any{"every": "1h"}))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	rec = e.do(http.MethodDelete, "/v1/connections/con_sched", e.editor)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	requireProblem(t, e.do(http.MethodGet, path, e.viewer), http.StatusNotFound, "no schedule")
}
