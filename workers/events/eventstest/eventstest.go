// Package eventstest is the conformance suite of the events port. Every
// adapter of events.Bus runs it against a real server:
//
//	func TestConformance(t *testing.T) {
//		eventstest.Run(t, func(t *testing.T) events.Bus { return newAdapter(t) })
//	}
//
// newBus must return an empty bus, not shared with any other call. A bus
// that implements events.Consumer also runs the Consume cases (durable
// names, acks, redelivery on error, resuming after a restart); others skip
// them.
package eventstest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/events"
)

// waitTimeout bounds every wait of the suite for something to arrive.
const waitTimeout = 20 * time.Second

// Run runs the conformance suite against fresh buses from newBus.
func Run(t *testing.T, newBus func(t *testing.T) events.Bus) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, b events.Bus)
	}{
		{"ReplayInOrder", testReplayInOrder},
		{"ReplayLimit", testReplayLimit},
		{"ReplayAfterSeq", testReplayAfterSeq},
		{"ReplayJobFilter", testReplayJobFilter},
		{"ReplayEmpty", testReplayEmpty},
		{"AccountIsolation", testAccountIsolation},
		{"SeqIsPerAccount", testSeqIsPerAccount},
		{"SeqUnderConcurrentPublishers", testSeqUnderConcurrentPublishers},
		{"FollowStoredThenLive", testFollowStoredThenLive},
		{"FollowAfterSeq", testFollowAfterSeq},
		{"FollowStopsOnContext", testFollowStopsOnContext},
		{"FollowReturnsFnError", testFollowReturnsFnError},
		// Buses that implement events.Consumer (others skip these).
		{"ConsumeAllAccountsInOrder", testConsumeAllAccountsInOrder},
		{"ConsumeRedeliversOnError", testConsumeRedeliversOnError},
		{"ConsumeResumesAfterRestart", testConsumeResumesAfterRestart},
		{"ConsumeStopsOnContext", testConsumeStopsOnContext},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newBus(t))
		})
	}
}

var evTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// event returns a distinct event of job in account.
func event(account apiary.AccountID, job apiary.JobID, typ apiary.EventType, done int) apiary.Event {
	return apiary.Event{
		ID:      apiary.RandomID("evt_"),
		Type:    typ,
		Account: account,
		Job:     job,
		Status:  apiary.JobRunning,
		Counts:  apiary.Counts{DocumentsTotal: 10, DocumentsDone: done},
		Time:    evTime.Add(time.Duration(done) * time.Second),
	}
}

// publishJob publishes n events of one job and returns them.
func publishJob(t *testing.T, b events.Bus, account apiary.AccountID, job apiary.JobID, n int) []apiary.Event {
	t.Helper()
	var evs []apiary.Event
	for i := range n {
		typ := apiary.EventJobProgress
		if i == 0 {
			typ = apiary.EventJobQueued
		}
		ev := event(account, job, typ, i)
		require.NoError(t, b.Publish(t.Context(), ev))
		evs = append(evs, ev)
	}
	return evs
}

// withoutSeq strips the bus-assigned Seq for comparison with what was published.
func withoutSeq(evs []apiary.Event) []apiary.Event {
	out := make([]apiary.Event, len(evs))
	for i, ev := range evs {
		ev.Seq = 0
		out[i] = ev
	}
	return out
}

func requireIncreasingSeq(t *testing.T, evs []apiary.Event) {
	t.Helper()
	var last uint64
	for i, ev := range evs {
		require.Greater(t, ev.Seq, last, "event %d: Seq must increase", i)
		last = ev.Seq
	}
}

func requireSameEvents(t *testing.T, want, got []apiary.Event) {
	t.Helper()
	if diff := cmp.Diff(want, withoutSeq(got)); diff != "" {
		require.FailNow(t, "events differ (-want +got)", diff)
	}
	requireIncreasingSeq(t, got)
}

// requireDenseSeq checks that evs are numbered one by one: an account's
// cursor leaves no gap where other accounts' events went.
func requireDenseSeq(t *testing.T, evs []apiary.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		require.Equal(t, evs[i-1].Seq+1, evs[i].Seq, "event %d: an account's events are numbered one by one", i)
	}
}

// testSeqIsPerAccount: Seq (the cursor of Replay and Follow) counts the
// account's own events only, so it reveals nothing of other accounts'
// activity, and resuming after one works for the account and for a job.
func testSeqIsPerAccount(t *testing.T, b events.Bus) {
	ctx := t.Context()
	jobA, jobA2, jobB := apiary.NewJobID(), apiary.NewJobID(), apiary.NewJobID()
	for i := range 4 {
		require.NoError(t, b.Publish(ctx, event("acc_a", jobA, apiary.EventJobProgress, i)))
		for j := range 3 { // a busier neighbour
			require.NoError(t, b.Publish(ctx, event("acc_b", jobB, apiary.EventJobProgress, 3*i+j)))
		}
		require.NoError(t, b.Publish(ctx, event("acc_a", jobA2, apiary.EventJobProgress, i)))
	}
	a, err := b.Replay(ctx, events.Filter{Account: "acc_a"}, 100)
	require.NoError(t, err)
	require.Len(t, a, 8)
	requireDenseSeq(t, a)
	other, err := b.Replay(ctx, events.Filter{Account: "acc_b"}, 100)
	require.NoError(t, err)
	require.Len(t, other, 12)
	requireDenseSeq(t, other)

	for cut := range a {
		got, err := b.Replay(ctx, events.Filter{Account: "acc_a", AfterSeq: a[cut].Seq}, 100)
		require.NoError(t, err)
		require.Equal(t, a[cut+1:], append([]apiary.Event{}, got...), "after event %d", cut)
	}
	got, err := b.Replay(ctx, events.Filter{Account: "acc_a", Job: jobA2, AfterSeq: a[2].Seq}, 100)
	require.NoError(t, err)
	var want []apiary.Event
	for _, ev := range a[3:] {
		if ev.Job == jobA2 {
			want = append(want, ev)
		}
	}
	require.Equal(t, want, got, "a job's events after an account cursor")
}

// testSeqUnderConcurrentPublishers: publishers racing in one account never
// take the same number, and leave none out.
func testSeqUnderConcurrentPublishers(t *testing.T, b events.Bus) {
	ctx := t.Context()
	const publishers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, publishers*each)
	for p := range publishers {
		job := apiary.NewJobID()
		wg.Go(func() {
			for i := range each {
				errs <- b.Publish(ctx, event("acc_a", job, apiary.EventJobProgress, p*each+i))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got, err := b.Replay(ctx, events.Filter{Account: "acc_a"}, 100)
	require.NoError(t, err)
	require.Len(t, got, publishers*each)
	requireDenseSeq(t, got)
}

func testReplayInOrder(t *testing.T, b events.Bus) {
	job := apiary.NewJobID()
	want := publishJob(t, b, "acc_a", job, 5)
	got, err := b.Replay(t.Context(), events.Filter{Account: "acc_a", Job: job}, 100)
	require.NoError(t, err)
	requireSameEvents(t, want, got)
}

func testReplayLimit(t *testing.T, b events.Bus) {
	job := apiary.NewJobID()
	want := publishJob(t, b, "acc_a", job, 5)
	got, err := b.Replay(t.Context(), events.Filter{Account: "acc_a", Job: job}, 3)
	require.NoError(t, err)
	requireSameEvents(t, want[:3], got)
}

func testReplayAfterSeq(t *testing.T, b events.Bus) {
	job := apiary.NewJobID()
	want := publishJob(t, b, "acc_a", job, 5)
	f := events.Filter{Account: "acc_a", Job: job}
	all, err := b.Replay(t.Context(), f, 100)
	require.NoError(t, err)
	require.Len(t, all, 5)

	f.AfterSeq = all[1].Seq
	got, err := b.Replay(t.Context(), f, 100)
	require.NoError(t, err)
	requireSameEvents(t, want[2:], got)
	require.Equal(t, all[2:], got, "Seq is stable across replays")

	f.AfterSeq = all[4].Seq
	got, err = b.Replay(t.Context(), f, 100)
	require.NoError(t, err)
	require.Empty(t, got)
}

func testReplayJobFilter(t *testing.T, b events.Bus) {
	j1, j2 := apiary.NewJobID(), apiary.NewJobID()
	// Interleave two jobs of one account.
	var w1, w2, all []apiary.Event
	for i := range 3 {
		e1 := event("acc_a", j1, apiary.EventJobProgress, i)
		e2 := event("acc_a", j2, apiary.EventJobProgress, i)
		require.NoError(t, b.Publish(t.Context(), e1))
		require.NoError(t, b.Publish(t.Context(), e2))
		w1, w2, all = append(w1, e1), append(w2, e2), append(all, e1, e2)
	}
	got, err := b.Replay(t.Context(), events.Filter{Account: "acc_a", Job: j1}, 100)
	require.NoError(t, err)
	requireSameEvents(t, w1, got)
	got, err = b.Replay(t.Context(), events.Filter{Account: "acc_a", Job: j2}, 100)
	require.NoError(t, err)
	requireSameEvents(t, w2, got)
	got, err = b.Replay(t.Context(), events.Filter{Account: "acc_a"}, 100)
	require.NoError(t, err)
	requireSameEvents(t, all, got)
}

func testReplayEmpty(t *testing.T, b events.Bus) {
	got, err := b.Replay(t.Context(), events.Filter{Account: "acc_nobody", Job: apiary.NewJobID()}, 100)
	require.NoError(t, err)
	require.Empty(t, got)
	got, err = b.Replay(t.Context(), events.Filter{Account: "acc_nobody"}, 100)
	require.NoError(t, err)
	require.Empty(t, got)
}

func testAccountIsolation(t *testing.T, b events.Bus) {
	job := apiary.NewJobID()
	// The same job id in two accounts must not mix, nor must a prefix of an
	// account id see the longer one.
	wantA := publishJob(t, b, "acc_a", job, 3)
	wantB := publishJob(t, b, "acc_b", job, 2)
	publishJob(t, b, "acc_bb", job, 2)

	for _, f := range []events.Filter{{Account: "acc_b"}, {Account: "acc_b", Job: job}} {
		got, err := b.Replay(t.Context(), f, 100)
		require.NoError(t, err)
		requireSameEvents(t, wantB, got)
	}
	got, err := b.Replay(t.Context(), events.Filter{Account: "acc_a", Job: job}, 100)
	require.NoError(t, err)
	requireSameEvents(t, wantA, got)

	// Follow of account B sees B's stored events, then B's live one; A's live
	// event published in between never arrives.
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	liveB := event("acc_b", job, apiary.EventJobSucceeded, 9)
	var seen []apiary.Event
	err = b.Follow(ctx, events.Filter{Account: "acc_b"}, func(ev apiary.Event) (bool, error) {
		seen = append(seen, ev)
		if len(seen) == len(wantB) {
			if err := b.Publish(ctx, event("acc_a", job, apiary.EventJobSucceeded, 9)); err != nil {
				return false, err
			}
			if err := b.Publish(ctx, liveB); err != nil {
				return false, err
			}
		}
		return ev.ID != liveB.ID, nil
	})
	require.NoError(t, err)
	requireSameEvents(t, append(wantB, liveB), seen)
}

// follow runs b.Follow in a goroutine, sending each event to the returned
// channel; stop makes fn return false at the next event. done receives
// Follow's result.
func follow(t *testing.T, ctx context.Context, b events.Bus, f events.Filter) (evs <-chan apiary.Event, stop func(), done <-chan error) {
	t.Helper()
	ch := make(chan apiary.Event, 100)
	stopCh := make(chan struct{})
	doneCh := make(chan error, 1)
	go func() {
		doneCh <- b.Follow(ctx, f, func(ev apiary.Event) (bool, error) {
			select {
			case <-stopCh:
				return false, nil
			default:
			}
			ch <- ev
			return true, nil
		})
	}()
	return ch, func() { close(stopCh) }, doneCh
}

func receive(t *testing.T, evs <-chan apiary.Event, n int) []apiary.Event {
	t.Helper()
	var got []apiary.Event
	timeout := time.After(waitTimeout)
	for len(got) < n {
		select {
		case ev := <-evs:
			got = append(got, ev)
		case <-timeout:
			require.FailNow(t, "Follow delivered too few events", "got %d of %d", len(got), n)
		}
	}
	return got
}

func waitDone(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitTimeout):
		require.FailNow(t, "Follow did not return")
		return nil
	}
}

func testFollowStoredThenLive(t *testing.T, b events.Bus) {
	job := apiary.NewJobID()
	stored := publishJob(t, b, "acc_a", job, 2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	evs, stop, done := follow(t, ctx, b, events.Filter{Account: "acc_a", Job: job})

	got := receive(t, evs, 2)
	requireSameEvents(t, stored, got)

	live := event("acc_a", job, apiary.EventJobSucceeded, 2)
	require.NoError(t, b.Publish(t.Context(), live))
	got = append(got, receive(t, evs, 1)...)
	requireSameEvents(t, append(stored, live), got)

	// fn returning false ends Follow without an error.
	stop()
	require.NoError(t, b.Publish(t.Context(), event("acc_a", job, apiary.EventJobProgress, 3)))
	require.NoError(t, waitDone(t, done))
	require.Empty(t, evs)
}

func testFollowAfterSeq(t *testing.T, b events.Bus) {
	job := apiary.NewJobID()
	stored := publishJob(t, b, "acc_a", job, 3)
	all, err := b.Replay(t.Context(), events.Filter{Account: "acc_a", Job: job}, 100)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	evs, _, done := follow(t, ctx, b, events.Filter{Account: "acc_a", Job: job, AfterSeq: all[0].Seq})
	requireSameEvents(t, stored[1:], receive(t, evs, 2))
	cancel()
	err = waitDone(t, done)
	if err != nil {
		require.ErrorIs(t, err, context.Canceled)
	}
}

func testFollowStopsOnContext(t *testing.T, b events.Bus) {
	// Nothing stored: Follow waits for live events until its context ends.
	ctx, cancel := context.WithCancel(t.Context())
	evs, _, done := follow(t, ctx, b, events.Filter{Account: "acc_a"})
	cancel()
	err := waitDone(t, done)
	if err != nil {
		require.ErrorIs(t, err, context.Canceled)
	}
	require.Empty(t, evs)
}

func testFollowReturnsFnError(t *testing.T, b events.Bus) {
	job := apiary.NewJobID()
	publishJob(t, b, "acc_a", job, 2)
	boom := errors.New("eventstest: boom")
	calls := 0
	err := b.Follow(t.Context(), events.Filter{Account: "acc_a", Job: job}, func(apiary.Event) (bool, error) {
		calls++
		return true, boom
	})
	require.ErrorIs(t, err, boom)
	require.Equal(t, 1, calls, "Follow stops at fn's first error")
}

func consumer(t *testing.T, b events.Bus) events.Consumer {
	t.Helper()
	c, ok := b.(events.Consumer)
	if !ok {
		t.Skip("the bus does not implement events.Consumer")
	}
	return c
}

// consume runs c.Consume in a goroutine, sending each event fn accepts to
// the returned channel. fn's verdict on an event is decide's (nil: accept).
// stop cancels Consume and returns its result.
func consume(t *testing.T, c events.Consumer, durable string, decide func(apiary.Event) error) (evs <-chan apiary.Event, stop func() error) {
	t.Helper()
	ch := make(chan apiary.Event, 100)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(ctx, durable, func(ctx context.Context, ev apiary.Event) error {
			if decide != nil {
				if err := decide(ev); err != nil {
					return err
				}
			}
			ch <- ev
			return nil
		})
	}()
	var once bool
	var result error
	stop = func() error {
		if once {
			return result
		}
		once = true
		cancel()
		result = waitDone(t, done)
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return ch, stop
}

func testConsumeAllAccountsInOrder(t *testing.T, b events.Bus) {
	c := consumer(t, b)
	// Stored before the consumer exists, then live: all of them, every account.
	want := publishJob(t, b, "acc_a", apiary.NewJobID(), 2)
	want = append(want, publishJob(t, b, "acc_b", apiary.NewJobID(), 2)...)
	evs, stop := consume(t, c, "conformance", nil)
	got := receive(t, evs, 4)
	live := event("acc_c", apiary.NewJobID(), apiary.EventJobSucceeded, 1)
	require.NoError(t, b.Publish(t.Context(), live))
	got = append(got, receive(t, evs, 1)...)
	requireSameEvents(t, append(want, live), got)
	require.NoError(t, stop())
	require.Empty(t, evs)
}

func testConsumeRedeliversOnError(t *testing.T, b events.Bus) {
	c := consumer(t, b)
	job := apiary.NewJobID()
	want := publishJob(t, b, "acc_a", job, 2)
	refused := 0
	evs, stop := consume(t, c, "flaky", func(ev apiary.Event) error {
		if ev.ID == want[0].ID && refused < 2 {
			refused++
			return errors.New("eventstest: not now")
		}
		return nil
	})
	got := receive(t, evs, 2)
	require.NoError(t, stop())
	require.Equal(t, 2, refused, "a refused event is handed again")
	ids := []string{got[0].ID, got[1].ID}
	require.ElementsMatch(t, []string{want[0].ID, want[1].ID}, ids, "each event is accepted once")
}

func testConsumeResumesAfterRestart(t *testing.T, b events.Bus) {
	c := consumer(t, b)
	first := publishJob(t, b, "acc_a", apiary.NewJobID(), 2)
	evs, stop := consume(t, c, "restart", nil)
	requireSameEvents(t, first, receive(t, evs, 2))
	require.NoError(t, stop())

	// Published while nobody consumes: handed to the next Consume of the
	// same name, and the acknowledged ones are not handed again.
	missed := publishJob(t, b, "acc_b", apiary.NewJobID(), 2)
	evs, stop = consume(t, c, "restart", nil)
	requireSameEvents(t, missed, receive(t, evs, 2))
	require.NoError(t, stop())
	require.Empty(t, evs)

	// Another durable name has its own position.
	evs, stop = consume(t, c, "other", nil)
	requireSameEvents(t, append(first, missed...), receive(t, evs, 4))
	require.NoError(t, stop())
}

func testConsumeStopsOnContext(t *testing.T, b events.Bus) {
	c := consumer(t, b)
	evs, stop := consume(t, c, "idle", nil)
	require.NoError(t, stop(), "Consume returns nil when its context ends")
	require.Empty(t, evs)
	err := c.Consume(t.Context(), "bad.name", func(context.Context, apiary.Event) error { return nil })
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}
