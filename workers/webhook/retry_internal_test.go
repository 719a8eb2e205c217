package webhook

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":     0,
		"0":    0,
		"-5":   0,
		"120":  2 * time.Minute,
		"soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		require.Equal(t, want, parseRetryAfter(v, now), "%q", v)
	}
}

func TestNextDelayFollowsScheduleWithJitter(t *testing.T) {
	t.Parallel()
	d, err := New(Config{}, nil, nil, nil)
	require.Error(t, err, "records, keys and bus are required")
	require.Nil(t, d)

	cfg := Config{}
	cfg.setDefaults()
	require.NoError(t, cfg.Validate())
	disp := &Dispatcher{cfg: cfg}
	for tries, base := range DefaultSchedule {
		got, ok := disp.nextDelay(tries, 0)
		require.True(t, ok)
		require.GreaterOrEqual(t, got, time.Duration(float64(base)*0.8))
		require.LessOrEqual(t, got, time.Duration(float64(base)*1.2))
	}
	_, ok := disp.nextDelay(len(DefaultSchedule), 0)
	require.False(t, ok, "the schedule is spent after its last attempt")
	got, _ := disp.nextDelay(1, time.Hour)
	require.Equal(t, time.Hour, got, "Retry-After wins over a shorter scheduled delay")
	got, _ = disp.nextDelay(1, 48*time.Hour)
	require.Equal(t, cfg.MaxRetryAfter, got, "Retry-After is capped")

	bad := Config{Schedule: []time.Duration{}, Jitter: 2, Timeout: time.Minute, Lease: time.Second}
	bad.setDefaults()
	require.Error(t, bad.Validate())
}
