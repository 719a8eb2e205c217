package connectors_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"7", 7 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{"99999999999", connectors.MaxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), connectors.MaxRetryAfter},
	} {
		h := http.Header{}
		if tt.v != "" {
			h.Set("Retry-After", tt.v)
		}
		require.Equal(t, tt.want, connectors.ParseRetryAfter(h, now), tt.v)
	}
}

func TestLimitBody(t *testing.T) {
	t.Parallel()
	b, err := io.ReadAll(connectors.LimitBody(io.NopCloser(strings.NewReader("12345")), 5, "x"))
	require.NoError(t, err, "exactly the cap is fine")
	require.Equal(t, "12345", string(b))

	src := strings.NewReader(strings.Repeat("a", 1000))
	b, err = io.ReadAll(connectors.LimitBody(io.NopCloser(src), 10, "x"))
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err))
	require.LessOrEqual(t, len(b), 10, "no byte past the cap is handed out")
	require.GreaterOrEqual(t, src.Len(), 1000-11, "the source is not read to its end")
}

func TestRetryAfterAndGone(t *testing.T) {
	t.Parallel()
	err := connectors.RetryAfter(3*time.Second, "slow")
	require.Equal(t, apiary.KindRateLimited, apiary.KindOf(err))
	d, ok := apiary.RetryDelay(err)
	require.True(t, ok)
	require.Equal(t, 3*time.Second, d)
	d, _ = apiary.RetryDelay(connectors.RetryAfter(0, "slow"))
	require.Equal(t, connectors.DefaultRetryAfter, d)

	gone := connectors.Gone("the page is gone")
	require.ErrorIs(t, gone, connectors.ErrGone)
	require.ErrorIs(t, gone, apiary.ErrNotFound)
	require.True(t, apiary.IsPermanent(gone))
	require.Equal(t, "the page is gone", apiary.Message(gone))
}
