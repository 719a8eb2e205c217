package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiaryhq/apiary"
)

// recordingEmbedder returns, for each text "n", the vector [n]; it records
// every call's texts and, when gate is set, blocks each call until gate
// gives it a value. fail makes a call containing that text fail.
type recordingEmbedder struct {
	mu      sync.Mutex
	calls   [][]string
	gate    chan struct{}
	entered chan struct{} // receives once per call, when set
	fail    string
}

func (e *recordingEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	e.mu.Lock()
	e.calls = append(e.calls, slices.Clone(texts))
	e.mu.Unlock()
	if e.entered != nil {
		e.entered <- struct{}{}
	}
	if e.gate != nil {
		<-e.gate
	}
	if e.fail != "" && slices.Contains(texts, e.fail) {
		return nil, errors.New("model refused")
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		n, err := strconv.Atoi(strings.TrimPrefix(t, "t"))
		if err != nil {
			return nil, err
		}
		out[i] = []float32{float32(n)}
	}
	return out, nil
}
func (e *recordingEmbedder) Dim() int      { return 1 }
func (e *recordingEmbedder) Model() string { return "recording" }
func (e *recordingEmbedder) sizes() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	var s []int
	for _, c := range e.calls {
		s = append(s, len(c))
	}
	return s
}

func texts(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "t" + strconv.Itoa(from+i)
	}
	return out
}

func checkVecs(t *testing.T, in []string, vecs [][]float32) {
	t.Helper()
	if len(vecs) != len(in) {
		t.Fatalf("%d vectors for %d texts", len(vecs), len(in))
	}
	for i, s := range in {
		if want := strings.TrimPrefix(s, "t"); fmt.Sprint(vecs[i][0]) != want {
			t.Fatalf("vector %d = %v, want [%s]: vectors came back out of order", i, vecs[i], want)
		}
	}
}

// Short documents embedded at once are coalesced into full batches.
func TestBatcherFillsBatchesFromManyDocuments(t *testing.T) {
	emb := &recordingEmbedder{}
	b := newBatcher(emb, 32, 1, time.Hour) // only full batches go before the hour is up
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := texts(i, 1)
			vecs, err := b.embed(context.Background(), apiary.AccountID("acct_a"), in)
			if err != nil {
				t.Error(err)
				return
			}
			checkVecs(t, in, vecs)
		}()
	}
	wg.Wait()
	if got := emb.sizes(); !slices.Equal(got, []int{32, 32}) {
		t.Fatalf("embedder calls of %v texts, want two full batches [32 32]", got)
	}
}

// A batch that does not fill goes once its oldest request has waited.
func TestBatcherTakesAPartialBatchAfterTheWait(t *testing.T) {
	emb := &recordingEmbedder{}
	b := newBatcher(emb, 32, 2, time.Millisecond)
	in := texts(0, 3)
	vecs, err := b.embed(context.Background(), apiary.AccountID("acct_a"), in)
	if err != nil {
		t.Fatal(err)
	}
	checkVecs(t, in, vecs)
	if got := emb.sizes(); !slices.Equal(got, []int{3}) {
		t.Fatalf("embedder calls of %v texts, want one of 3", got)
	}
}

// A request larger than a batch is split, and its vectors come back in order.
func TestBatcherSplitsALargeRequest(t *testing.T) {
	emb := &recordingEmbedder{}
	b := newBatcher(emb, 32, 2, time.Millisecond)
	in := texts(0, 70)
	vecs, err := b.embed(context.Background(), apiary.AccountID("acct_a"), in)
	if err != nil {
		t.Fatal(err)
	}
	checkVecs(t, in, vecs)
	got := emb.sizes()
	slices.Sort(got)
	if !slices.Equal(got, []int{6, 32, 32}) {
		t.Fatalf("embedder calls of %v texts, want 32, 32 and 6", got)
	}
}

// blockFirstCall starts a request whose call blocks in the embedder and
// returns once it is there; release lets every call go.
func blockFirstCall(t *testing.T, b *batcher, emb *recordingEmbedder, account apiary.AccountID, in []string) (wait func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := b.embed(context.Background(), account, in)
		done <- err
	}()
	<-emb.entered
	return func() error { return <-done }
}

// One account's backlog does not keep another account's chunks out of the
// batches: they go in the next call.
func TestBatcherServesAccountsInTurn(t *testing.T) {
	emb := &recordingEmbedder{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	b := newBatcher(emb, 4, 1, time.Millisecond)
	noisy, quiet := apiary.AccountID("acct_noisy"), apiary.AccountID("acct_quiet")
	first := blockFirstCall(t, b, emb, noisy, texts(0, 4))

	var wg sync.WaitGroup
	for i := range 10 { // a backlog of 40 texts
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.embed(context.Background(), noisy, texts(100+10*i, 4)); err != nil {
				t.Error(err)
			}
		}()
	}
	waitPending(t, b, 40)
	quietDone := make(chan error, 1)
	go func() {
		in := []string{"t9999"}
		vecs, err := b.embed(context.Background(), quiet, in)
		if err == nil {
			checkVecs(t, in, vecs)
		}
		quietDone <- err
	}()
	waitPending(t, b, 41)
	go func() {
		for range emb.entered {
			emb.gate <- struct{}{}
		}
	}()
	emb.gate <- struct{}{}
	if err := first(); err != nil {
		t.Fatal(err)
	}
	if err := <-quietDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(emb.entered)
	emb.mu.Lock()
	defer emb.mu.Unlock()
	for i, c := range emb.calls {
		if slices.Contains(c, "t9999") {
			if i > 1 {
				t.Fatalf("the quiet account's chunk went in call %d, behind the noisy account's backlog: %v", i, emb.calls)
			}
			return
		}
	}
	t.Fatal("the quiet account's chunk was never embedded")
}

func waitPending(t *testing.T, b *batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.mu.Lock()
		p := b.pending
		b.mu.Unlock()
		if p == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d texts queued, want %d", p, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A request given up while it is queued leaves the queue: its texts are
// never embedded, and the caller gets its context's cause.
func TestBatcherDropsACanceledRequest(t *testing.T) {
	emb := &recordingEmbedder{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	b := newBatcher(emb, 4, 1, time.Millisecond)
	first := blockFirstCall(t, b, emb, "acct_a", texts(0, 4))

	ctx, cancel := context.WithCancelCause(context.Background())
	canceled := make(chan error, 1)
	go func() {
		_, err := b.embed(ctx, "acct_b", texts(50, 2))
		canceled <- err
	}()
	waitPending(t, b, 2)
	stop := errors.New("the job was canceled")
	cancel(stop)
	if err := <-canceled; !errors.Is(err, stop) {
		t.Fatalf("canceled request: %v, want its cause", err)
	}
	waitPending(t, b, 0)
	emb.gate <- struct{}{}
	if err := first(); err != nil {
		t.Fatal(err)
	}
	for _, c := range emb.calls {
		if slices.Contains(c, "t50") {
			t.Fatalf("a canceled request's text was embedded: %v", emb.calls)
		}
	}
}

// An embedder error fails the requests of that batch only.
func TestBatcherFailsOnlyTheBatchThatFailed(t *testing.T) {
	emb := &recordingEmbedder{fail: "t7"}
	b := newBatcher(emb, 2, 1, time.Millisecond)
	_, err := b.embed(context.Background(), "acct_a", texts(6, 4)) // batches [t6 t7] [t8 t9]
	if err == nil || !strings.Contains(err.Error(), "model refused") {
		t.Fatalf("request with a failing batch: %v, want the embedder's error", err)
	}
	in := texts(20, 3)
	vecs, err := b.embed(context.Background(), "acct_a", in)
	if err != nil {
		t.Fatalf("a later request: %v", err)
	}
	checkVecs(t, in, vecs)
}
