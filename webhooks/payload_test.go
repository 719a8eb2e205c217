package webhooks_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/webhooks"
)

func TestParseEventsAndSubscribed(t *testing.T) {
	t.Parallel()
	all, err := webhooks.ParseEvents(nil)
	require.NoError(t, err)
	require.Empty(t, all)
	for _, typ := range webhooks.JobEvents {
		require.True(t, webhooks.Subscribed(all, typ), "no events means every job event: %s", typ)
	}
	require.False(t, webhooks.Subscribed(all, apiary.EventWebhookTest), "webhooks.test goes only where it is sent")

	some, err := webhooks.ParseEvents([]string{"job.succeeded", "job.failed"})
	require.NoError(t, err)
	require.True(t, webhooks.Subscribed(some, apiary.EventJobFailed))
	require.False(t, webhooks.Subscribed(some, apiary.EventJobProgress))

	for _, bad := range [][]string{{"job.nope"}, {"webhooks.test"}, {"job.failed", "job.failed"}, {""}} {
		_, err := webhooks.ParseEvents(bad)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%q", bad)
	}
}

func TestPayloadCarriesNoText(t *testing.T) {
	t.Parallel()
	job := apiary.Job{ID: apiary.NewJobID(), Account: "acme", Status: apiary.JobFailed,
		Counts: apiary.Counts{DocumentsTotal: 1, DocumentsFailed: 1}}
	ev := apiary.NewJobEvent(job, apiary.EventJobFailed)
	b, err := webhooks.Payload(ev)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	require.Equal(t, "job.failed", got["type"])
	require.Equal(t, ev.ID, got["id"])
	created, err := time.Parse(time.RFC3339Nano, got["created_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, ev.Time, created, time.Millisecond)
	data := got["data"].(map[string]any)
	require.ElementsMatch(t, []string{"job_id", "status", "counts", "errors"}, keys(data))
	require.Equal(t, []any{}, data["errors"], "errors is an array, never null")
	require.NotContains(t, string(b), "acme", "no account id either")
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
