package natscustody_test

import (
	"bytes"
	"context"
	"crypto/hpke"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/custody"
	"github.com/apiaryhq/apiary/connectors/custody/natscustody"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
	"github.com/apiaryhq/apiary/internal/testutil"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	"github.com/apiaryhq/apiary/workers/jobs"
	"github.com/apiaryhq/apiary/workers/queue/jetstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.IgnoreLeaks()...) }

const canary = "canary-ephemeral-token-7c3a91"

// noStage keeps no documents: these jobs' documents come from their source.
type noStage struct{}

func (noStage) Stage(context.Context, apiary.AccountID, apiary.JobID, []apiary.Document) error {
	return nil
}
func (noStage) Drop(context.Context, apiary.AccountID, apiary.JobID) error { return nil }

// split is the split deployment on one embedded nats-server: an API
// process holding tokens (api) and a worker process (worker), each with
// its own connection, custody and job service over the shared records.
type split struct {
	url      string
	recs     *records.Store
	api      *custody.Custody
	apiConn  *nats.Conn
	apiJobs  *jobs.Service
	worker   *custody.Custody
	workJobs *jobs.Service
	logs     *testutil.Buffer
	logger   *slog.Logger
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

func newSplit(t *testing.T) *split {
	t.Helper()
	ctx := t.Context()
	s := &split{url: natstest.Start(t), logs: &testutil.Buffer{}}
	s.logger = slog.New(slog.NewJSONHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nc := connect(t, s.url)
	js, err := natsjs.New(nc)
	require.NoError(t, err)
	s.recs, err = records.Open(ctx, natskv.NewKVStore(js, natskv.Config{}))
	require.NoError(t, err)
	q, err := jetstream.New(ctx, jetstream.Config{Conn: nc})
	require.NoError(t, err)
	bus, err := natsbus.New(ctx, natsbus.Config{Conn: nc})
	require.NoError(t, err)

	s.apiConn = connect(t, s.url)
	s.api = newCustody(t, s.apiConn, s.recs, s.logger)
	s.apiJobs = jobs.New(jobs.Config{Lease: time.Minute, Logger: s.logger, Ended: s.api.Ended}, s.recs, q, bus, noStage{})
	s.worker = newCustody(t, connect(t, s.url), s.recs, s.logger)
	s.workJobs = jobs.New(jobs.Config{Lease: time.Minute, Logger: s.logger, Ended: s.worker.Ended}, s.recs, q, bus, noStage{})
	return s
}

func newCustody(t *testing.T, nc *nats.Conn, recs *records.Store, log *slog.Logger) *custody.Custody {
	t.Helper()
	tr, err := natscustody.New(natscustody.Config{Conn: nc})
	require.NoError(t, err)
	c, err := custody.New(custody.Config{Leases: recs, Transport: tr, Logger: log})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// submit is the API accepting an ingest request with creds: the job is
// recorded naming the API as holder, and creds are deposited there.
func (s *split) submit(t *testing.T, creds apiary.Credentials) apiary.Job {
	t.Helper()
	job, _, err := s.apiJobs.Submit(t.Context(), jobs.Submission{
		Account: "acc_a", Source: "s3", Holder: s.api.Holder(),
		Documents: []apiary.Document{{ID: "d", Text: "x"}},
		Deposit:   func(j apiary.Job) error { return s.api.Deposit(j.Account, j.ID, creds) },
	})
	require.NoError(t, err)
	return job
}

// start is the worker taking the job: its run holds the lease.
func (s *split) start(t *testing.T, job apiary.Job) *jobs.Run {
	t.Helper()
	run, _, err := s.workJobs.Start(t.Context(), job.Account, job.ID, 1)
	require.NoError(t, err)
	require.NotNil(t, run)
	t.Cleanup(run.Release)
	return run
}

func TestWorkerWithTheLeaseGetsTheToken(t *testing.T) {
	t.Parallel()
	s := newSplit(t)
	exp := time.Now().Add(30 * time.Minute).Round(0)
	job := s.submit(t, apiary.Credentials{
		AccessKeyID: apiary.NewSecret("AKIAEXAMPLE"), SecretAccessKey: apiary.NewSecret(canary),
		SessionToken: apiary.NewSecret("session-1"), Expiry: exp,
	})
	run := s.start(t, job)
	require.Equal(t, s.api.Holder(), run.Job().Holder)

	got, err := s.worker.Withdraw(t.Context(), run.Job())
	require.NoError(t, err)
	defer got.Wipe()
	require.Equal(t, canary, string(got.SecretAccessKey.Reveal()))
	require.Equal(t, "AKIAEXAMPLE", string(got.AccessKeyID.Reveal()))
	require.Equal(t, "session-1", string(got.SessionToken.Reveal()))
	require.True(t, got.Token.Empty())
	require.True(t, exp.Equal(got.Expiry))
}

func TestWorkerWithoutTheLeaseIsRefused(t *testing.T) {
	t.Parallel()
	s := newSplit(t)
	job := s.submit(t, apiary.Credentials{Token: apiary.NewSecret(canary)})

	t.Run("nobody holds the lease yet", func(t *testing.T) {
		_, err := s.worker.Withdraw(t.Context(), job)
		require.ErrorIs(t, err, custody.ErrNotLeaseOwner)
	})
	run := s.start(t, job)
	t.Run("another run than the lease's", func(t *testing.T) {
		forged := run.Job()
		forged.Owner = apiary.RandomID("run_")
		_, err := s.worker.Withdraw(t.Context(), forged)
		require.ErrorIs(t, err, custody.ErrNotLeaseOwner)
	})
	t.Run("a run that let the lease go", func(t *testing.T) {
		stale := run.Job()
		run.Release()
		_, err := s.worker.Withdraw(t.Context(), stale)
		require.ErrorIs(t, err, custody.ErrNotLeaseOwner)
	})
}

// inbox captures every reply on the bus, as anyone with access to it could.
func capture(t *testing.T, url, subject string) func() []*nats.Msg {
	t.Helper()
	nc := connect(t, url)
	var mu sync.Mutex
	var got []*nats.Msg
	_, err := nc.Subscribe(subject, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
	})
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	return func() []*nats.Msg {
		require.NoError(t, nc.Flush())
		mu.Lock()
		defer mu.Unlock()
		return append([]*nats.Msg(nil), got...)
	}
}

// A reply captured off the bus is sealed: another key cannot open it, and
// the key that could was the run's, for that one withdrawal.
func TestCapturedReplyCannotBeOpenedByAnotherKey(t *testing.T) {
	t.Parallel()
	s := newSplit(t)
	replies := capture(t, s.url, "_INBOX.>")
	job := s.submit(t, apiary.Credentials{Token: apiary.NewSecret(canary)})
	run := s.start(t, job)
	got, err := s.worker.Withdraw(t.Context(), run.Job())
	require.NoError(t, err)
	require.Equal(t, canary, string(got.Token.Reveal()))

	var sealed []byte
	require.Eventually(t, func() bool {
		for _, m := range replies() {
			var rep struct{ Sealed []byte }
			if json.Unmarshal(m.Data, &rep) == nil && len(rep.Sealed) > 0 {
				sealed = rep.Sealed
				return true
			}
		}
		return false
	}, 30*time.Second, 10*time.Millisecond, "the reply was captured")
	require.NotContains(t, string(sealed), canary)

	other, err := hpke.MLKEM768X25519().GenerateKey()
	require.NoError(t, err)
	for _, info := range [][]byte{nil, []byte("apiary custody v1")} {
		for _, aead := range []hpke.AEAD{hpke.AES256GCM(), hpke.AES128GCM(), hpke.ChaCha20Poly1305()} {
			_, err := hpke.Open(other, hpke.HKDFSHA256(), aead, info, sealed)
			require.Error(t, err)
		}
	}
}

// The holder gone (its process stopped): the worker gets ErrHolderGone at
// once, permanent, with the resubmit reason, which the pool gives up on
// without a retry (apiary.IsPermanent is its test).
func TestHolderGone(t *testing.T) {
	t.Parallel()
	t.Run("stopped", func(t *testing.T) {
		t.Parallel()
		s := newSplit(t)
		job := s.submit(t, apiary.Credentials{Token: apiary.NewSecret(canary)})
		run := s.start(t, job)
		require.NoError(t, s.api.Close()) // the API process stops
		s.apiConn.Close()

		_, err := s.worker.Withdraw(t.Context(), run.Job())
		requireHolderGone(t, err)

		// As the pool does: the handler returns (its run lets go of the
		// lease), then the delivery is given up on at once.
		run.Release()
		s.workJobs.GiveUp(t.Context(), job.Account, job.ID, 1, err)
		ended, err := s.recs.Job(t.Context(), job.Account, job.ID)
		require.NoError(t, err)
		require.Equal(t, apiary.JobFailed, ended.Status)
		require.Contains(t, ended.Error, apiary.ReasonHolderGone)
	})
	t.Run("killed", func(t *testing.T) {
		// Its connection drops without a goodbye: until the server has
		// seen it go, a request may time out (retried: the holder may be
		// slow); once it has, the answer is that it is gone.
		t.Parallel()
		s := newSplit(t)
		job := s.submit(t, apiary.Credentials{Token: apiary.NewSecret(canary)})
		run := s.start(t, job)
		s.apiConn.Close()
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			_, err = s.worker.Withdraw(ctx, run.Job())
			cancel()
			if errors.Is(err, custody.ErrHolderGone) {
				break
			}
			require.ErrorIs(t, err, apiary.ErrUnavailable, "before the server sees the holder go")
		}
		requireHolderGone(t, err)
	})
}

func requireHolderGone(t *testing.T, err error) {
	t.Helper()
	require.ErrorIs(t, err, custody.ErrHolderGone)
	require.True(t, apiary.IsPermanent(err), "never retried")
	require.Equal(t, apiary.ReasonHolderGone, apiary.Message(err))
	require.NotErrorIs(t, err, custody.ErrTokenGone)
	require.NotErrorIs(t, err, custody.ErrNotLeaseOwner)
}

// A job that ends on the worker has its token wiped on the API: the
// worker's job service tells its custody, which notices the holder, which
// checks the record and wipes.
func TestEndOnTheWorkerWipesOnTheHolder(t *testing.T) {
	t.Parallel()
	s := newSplit(t)
	b := []byte(canary)
	job := s.submit(t, apiary.Credentials{Token: apiary.SecretFromBytes(b)})
	run := s.start(t, job)
	require.Equal(t, 1, s.api.Held())
	require.NoError(t, run.Finish(t.Context()))
	require.Eventually(t, func() bool { return s.api.Held() == 0 }, 30*time.Second, 10*time.Millisecond)
	require.Equal(t, make([]byte, len(canary)), b)
}

// A release notice for a job that has not ended is ignored: a notice is no
// way to wipe another job's token.
func TestReleaseNoticeOfARunningJobIsIgnored(t *testing.T) {
	t.Parallel()
	s := newSplit(t)
	job := s.submit(t, apiary.Credentials{Token: apiary.NewSecret(canary)})
	run := s.start(t, job)
	lying := run.Job()
	lying.Status = apiary.JobCanceled
	s.worker.Ended(t.Context(), lying)
	// A withdrawal after the notice is served after it (one subscription,
	// in order): the token is still there.
	got, err := s.worker.Withdraw(t.Context(), run.Job())
	require.NoError(t, err)
	require.Equal(t, canary, string(got.Token.Reveal()))
}

// The leak test: a canary token deposited, withdrawn across NATS, its job
// run to the end, with debug logs captured and every message on the bus
// captured: the canary is in none of them (the bus carries ciphertext
// only), nor in any file under the test's data dirs.
func TestCanaryLeaksNowhere(t *testing.T) {
	t.Parallel()
	s := newSplit(t)
	all := capture(t, s.url, ">")
	job := s.submit(t, apiary.Credentials{Token: apiary.NewSecret(canary), SecretAccessKey: apiary.NewSecret(canary)})
	run := s.start(t, job)
	got, err := s.worker.Withdraw(t.Context(), run.Job())
	require.NoError(t, err)
	require.Equal(t, canary, string(got.Token.Reveal()))
	s.logger.Debug("withdrew", "creds", got, "token", got.Token, "job", run.Job())
	got.Wipe()
	require.NoError(t, run.Finish(t.Context()))
	require.Eventually(t, func() bool { return s.api.Held() == 0 }, 30*time.Second, 10*time.Millisecond)
	// And a refused and a failed withdrawal log what they log.
	_, err = s.worker.Withdraw(t.Context(), run.Job())
	require.Error(t, err)
	s.logger.Debug("refused", "err", err)

	forms := [][]byte{[]byte(canary), []byte(base64.StdEncoding.EncodeToString([]byte(canary)))}
	leaks := func(b []byte) bool {
		for _, f := range forms {
			if bytes.Contains(b, f) {
				return true
			}
		}
		return false
	}
	require.NotEmpty(t, s.logs.String())
	require.False(t, leaks([]byte(s.logs.String())), "the canary is in the logs")

	msgs := all()
	var sealed int
	for _, m := range msgs {
		require.False(t, leaks(m.Data), "the canary is on the bus, subject %s", m.Subject)
		for k, vs := range m.Header {
			for _, v := range vs {
				require.False(t, leaks([]byte(k+v)), "the canary is in a header on %s", m.Subject)
			}
		}
		var rep struct{ Sealed []byte }
		if json.Unmarshal(m.Data, &rep) == nil && len(rep.Sealed) > 0 {
			sealed++
			require.False(t, leaks(rep.Sealed))
		}
	}
	require.Equal(t, 1, sealed, "the one withdrawal crossed the bus, sealed")

	// Every data dir of this test (the nats-server's store among them) is
	// under the test's temporary root.
	root := filepath.Dir(t.TempDir())
	files := 0
	require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		require.False(t, leaks(b), "the canary is in %s", path)
		return nil
	}))
	require.NotZero(t, files, "the store's files were searched")
}
