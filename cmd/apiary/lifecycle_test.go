package main

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/internal/testutil"
)

// TestLifecycleStopsInReverse: components stop in reverse order of
// starting, each soft stop before its run is cancelled, and each run has
// returned before the next component stops.
func TestLifecycleStopsInReverse(t *testing.T) {
	t.Parallel()
	var got []string
	logs := &testutil.Buffer{}
	lc := newLifecycle(slog.New(slog.NewTextHandler(logs, nil)))
	part := func(name string) component {
		return component{
			name: name,
			run: func(ctx context.Context) error {
				<-ctx.Done()
				got = append(got, name+" ended") // ordered: stopAll waits for it
				return nil
			},
			stop: func(context.Context) error {
				got = append(got, name+" stopping")
				return errors.New("left work behind")
			},
		}
	}
	lc.start(t.Context(), closer("engine", func() error { got = append(got, "engine closed"); return nil }))
	lc.start(t.Context(), part("workers"))
	lc.start(t.Context(), part("http"))
	lc.stopAll()
	want := []string{"http stopping", "http ended", "workers stopping", "workers ended", "engine closed"}
	require.Empty(t, cmp.Diff(want, got))
	require.Contains(t, logs.String(), "component=http")
	require.Contains(t, logs.String(), "left work behind")
	lc.stopAll() // a second stop has nothing left to stop
	require.Len(t, got, len(want))
}

// TestLifecycleReportsAFailedRun: a run that ends with an error before it
// is stopped is reported, naming its component.
func TestLifecycleReportsAFailedRun(t *testing.T) {
	t.Parallel()
	lc := newLifecycle(slog.New(slog.DiscardHandler))
	lc.start(t.Context(), component{name: "webhook dispatcher", run: func(context.Context) error { return errors.New("consumer gone") }})
	defer lc.stopAll()
	err := within(t, lc.failed, "the failure report")
	require.EqualError(t, err, "webhook dispatcher: consumer gone")
}
