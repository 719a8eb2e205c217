package natsbus_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/events/eventstest"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.IgnoreLeaks()...) }

func newBus(t *testing.T) *natsbus.Bus {
	t.Helper()
	nc, _ := natstest.Connect(t)
	b, err := natsbus.New(t.Context(), natsbus.Config{Conn: nc})
	require.NoError(t, err)
	return b
}

func TestConformance(t *testing.T) {
	t.Parallel()
	eventstest.Run(t, func(t *testing.T) events.Bus { return newBus(t) })
}

func TestSubject(t *testing.T) {
	t.Parallel()
	job := apiary.NewJobID()
	tests := []struct {
		account apiary.AccountID
		job     apiary.JobID
		want    string // empty: rejected as invalid
	}{
		{"acc_a", job, "apiary.events.acc_a." + string(job)},
		{"acc_a", "", "apiary.events.acc_a._"},
		{"", job, ""},
		{"acc.a", job, ""},
		{"acc_a", "job.x", ""},
		{"acc_a", "*", ""},
		{"acc_a", ">", ""},
		{"acc_a", "job x", ""},
		{"*", job, ""},
		{">", job, ""},
	}
	for _, tt := range tests {
		got, err := natsbus.Subject(tt.account, tt.job)
		if tt.want == "" {
			require.Error(t, err, "%q %q", tt.account, tt.job)
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
	}
}

func TestRejectsUnsafeIDs(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	ctx := t.Context()
	err := b.Publish(ctx, apiary.Event{ID: "e1", Account: "acc_a", Job: "job.>", Type: apiary.EventJobQueued})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = b.Replay(ctx, events.Filter{Account: "acc_*"}, 10)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = b.Replay(ctx, events.Filter{Account: "acc_a", Job: "*"}, 10)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	_, err = b.Replay(ctx, events.Filter{Account: "acc_a"}, 0)
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	err = b.Follow(ctx, events.Filter{Account: ">"}, func(apiary.Event) (bool, error) { return true, nil })
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

func TestPublishDeduplicatesEventID(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	ctx := t.Context()
	ev := apiary.Event{ID: "evt_1", Type: apiary.EventJobSucceeded, Account: "acc_a", Job: apiary.NewJobID(),
		Status: apiary.JobSucceeded, Time: time.Now().UTC()}
	require.NoError(t, b.Publish(ctx, ev))
	require.NoError(t, b.Publish(ctx, ev))
	got, err := b.Replay(ctx, events.Filter{Account: "acc_a", Job: ev.Job}, 10)
	require.NoError(t, err)
	require.Len(t, got, 1, "an event published twice is stored once")
}

func TestReplayManyPages(t *testing.T) {
	t.Parallel()
	b := newBus(t)
	ctx := t.Context()
	job := apiary.NewJobID()
	const n = 600 // more than one fetch
	for i := range n {
		require.NoError(t, b.Publish(ctx, apiary.Event{ID: apiary.RandomID("evt_"), Type: apiary.EventJobProgress,
			Account: "acc_a", Job: job, Counts: apiary.Counts{DocumentsDone: i}}))
	}
	got, err := b.Replay(ctx, events.Filter{Account: "acc_a", Job: job}, 1000)
	require.NoError(t, err)
	require.Len(t, got, n)
	for i, ev := range got {
		require.Equal(t, i, ev.Counts.DocumentsDone)
	}
	got, err = b.Replay(ctx, events.Filter{Account: "acc_a", Job: job}, 300)
	require.NoError(t, err)
	require.Len(t, got, 300)
}

func TestClosedConnectionIsUnavailable(t *testing.T) {
	t.Parallel()
	nc, err := nats.Connect(natstest.Start(t))
	require.NoError(t, err)
	b, err := natsbus.New(t.Context(), natsbus.Config{Conn: nc})
	require.NoError(t, err)
	nc.Close()
	err = b.Publish(t.Context(), apiary.Event{ID: "e", Account: "acc_a", Job: apiary.NewJobID(), Type: apiary.EventJobQueued})
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err))
}

// TestStreamIsBoundedByBytes: the event stream has a byte bound besides its
// age bound, by default and as configured; past it the oldest events go.
func TestStreamIsBoundedByBytes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nc, js := natstest.Connect(t)
	_, err := natsbus.New(ctx, natsbus.Config{Conn: nc})
	require.NoError(t, err)
	info := streamInfo(t, js, "APIARY_EVENTS")
	require.Positive(t, info.Config.MaxBytes, "the default stream is bounded in bytes")
	require.Equal(t, jetstream.DiscardOld, info.Config.Discard)

	_, err = natsbus.New(ctx, natsbus.Config{Conn: nc, MaxBytes: 1024})
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "a bound too small to hold events is refused")

	const bound = 64 << 10
	b, err := natsbus.New(ctx, natsbus.Config{Conn: nc, MaxBytes: bound}) // updates the stream
	require.NoError(t, err)
	job := apiary.NewJobID()
	for i := range 1000 { // about 200 KiB of events
		require.NoError(t, b.Publish(ctx, apiary.Event{ID: apiary.RandomID("evt_"), Type: apiary.EventJobProgress,
			Account: "acc_a", Job: job, Counts: apiary.Counts{DocumentsDone: i}, Time: time.Now().UTC()}))
	}
	info = streamInfo(t, js, "APIARY_EVENTS")
	require.LessOrEqual(t, info.State.Bytes, uint64(bound))
	got, err := b.Replay(ctx, events.Filter{Account: "acc_a", Job: job}, 1000)
	require.NoError(t, err)
	require.NotEmpty(t, got)
	require.Less(t, len(got), 1000, "the oldest events were dropped")
	require.Equal(t, 999, got[len(got)-1].Counts.DocumentsDone, "the newest are kept")
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	return info
}

// TestEventsFromBeforePerAccountSeq: events stored before Seq was per
// account keep their stream sequence as Seq, and the account's new events
// are numbered above them, so an old cursor still resumes.
func TestEventsFromBeforePerAccountSeq(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	nc, js := natstest.Connect(t)
	b, err := natsbus.New(ctx, natsbus.Config{Conn: nc})
	require.NoError(t, err)
	job := apiary.NewJobID()
	subj, err := natsbus.Subject("acc_a", job)
	require.NoError(t, err)
	old, err := json.Marshal(apiary.Event{ID: "evt_old", Type: apiary.EventJobQueued, Account: "acc_a", Job: job})
	require.NoError(t, err)
	_, err = js.Publish(ctx, subj, old) // as the bus stored it before
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, apiary.Event{ID: "evt_new", Type: apiary.EventJobStarted, Account: "acc_a", Job: job}))

	got, err := b.Replay(ctx, events.Filter{Account: "acc_a"}, 10)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, uint64(1), got[0].Seq, "an old event's Seq is its stream sequence")
	require.Greater(t, got[1].Seq, got[0].Seq)
	after, err := b.Replay(ctx, events.Filter{Account: "acc_a", AfterSeq: got[0].Seq}, 10)
	require.NoError(t, err)
	require.Equal(t, got[1:], after, "an old cursor resumes")
}

// A deleted account's id reaches every process listening on the bus (two
// connections here), and nothing but the id is on the wire.
func TestDeletionsReachEveryListener(t *testing.T) {
	t.Parallel()
	url := natstest.Start(t)
	open := func() (*natsbus.Bus, *nats.Conn) {
		nc, err := nats.Connect(url)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		b, err := natsbus.New(t.Context(), natsbus.Config{Conn: nc})
		require.NoError(t, err)
		return b, nc
	}
	a, _ := open()
	b, _ := open()
	_, spy := open()
	wire := make(chan []byte, 4)
	sub, err := spy.Subscribe(natsbus.DeletedSubject, func(m *nats.Msg) { wire <- m.Data })
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	require.NoError(t, spy.Flush())

	listen := func(bus *natsbus.Bus) (<-chan apiary.AccountID, func() error) {
		got := make(chan apiary.AccountID, 4)
		stop, err := bus.OnDeleted(func(acc apiary.AccountID) { got <- acc })
		require.NoError(t, err)
		return got, stop
	}
	gotA, stopA := listen(a)
	gotB, stopB := listen(b)
	defer func() { require.NoError(t, stopA()) }()

	require.NoError(t, a.AnnounceDeleted(t.Context(), "acc_gone"))
	for _, got := range []<-chan apiary.AccountID{gotA, gotB} {
		select {
		case acc := <-got:
			require.Equal(t, apiary.AccountID("acc_gone"), acc)
		case <-time.After(30 * time.Second):
			t.Fatal("a listener was not told of the deletion")
		}
	}
	select {
	case data := <-wire:
		require.Equal(t, "acc_gone", string(data), "the signal is the account id only")
	case <-time.After(30 * time.Second):
		t.Fatal("nothing on the wire")
	}

	require.Equal(t, apiary.KindInvalid, apiary.KindOf(a.AnnounceDeleted(t.Context(), "acc.>")))
	// What is not an account id is dropped; a stopped listener hears nothing.
	require.NoError(t, spy.Publish(natsbus.DeletedSubject, []byte("not an id!")))
	require.NoError(t, stopB())
	require.NoError(t, stopB(), "stopping twice")
	require.NoError(t, a.AnnounceDeleted(t.Context(), "acc_next"))
	select {
	case acc := <-gotA:
		require.Equal(t, apiary.AccountID("acc_next"), acc)
	case <-time.After(30 * time.Second):
		t.Fatal("a listener was not told of the second deletion")
	}
	require.Empty(t, gotB)
}
