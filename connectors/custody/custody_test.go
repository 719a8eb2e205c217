package custody_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors/custody"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const canary = "canary-ephemeral-token-5b1d"

// records is an in-memory job record store: the Leases custody reads.
type records struct {
	mu   sync.Mutex
	jobs map[apiary.JobID]apiary.Job
}

func (r *records) Job(_ context.Context, account apiary.AccountID, id apiary.JobID) (apiary.Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j, ok := r.jobs[id]
	if !ok || j.Account != account {
		return apiary.Job{}, apiary.ErrNotFound
	}
	return j, nil
}

func (r *records) put(j apiary.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jobs == nil {
		r.jobs = map[apiary.JobID]apiary.Job{}
	}
	r.jobs[j.ID] = j
}

// running records a job of account held by holder, leased to a run, and
// returns it as that run sees it.
func (r *records) running(account apiary.AccountID, holder string) apiary.Job {
	j := apiary.Job{ID: apiary.NewJobID(), Account: account, Status: apiary.JobQueued, Holder: holder}
	j.Start(apiary.RandomID("run_"), time.Now(), time.Minute, 1)
	r.put(j)
	return j
}

func token(s string) apiary.Credentials { return apiary.Credentials{Token: apiary.NewSecret(s)} }

func newCustody(t *testing.T, cfg custody.Config) (*custody.Custody, *records) {
	t.Helper()
	recs := &records{}
	cfg.Leases = recs
	c, err := custody.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c, recs
}

// In one process (serve) the run holding the job's lease takes the token
// from the same custody; it gets a copy of its own.
func TestWithdrawInProcess(t *testing.T) {
	t.Parallel()
	c, recs := newCustody(t, custody.Config{})
	job := recs.running("acc_a", c.Holder())
	creds := apiary.Credentials{
		AccessKeyID: apiary.NewSecret("AKIA"), SecretAccessKey: apiary.NewSecret(canary),
		SessionToken: apiary.NewSecret("session"), Expiry: time.Now().Add(time.Hour).Round(0),
	}
	require.NoError(t, c.Deposit(job.Account, job.ID, creds))

	got, err := c.Withdraw(t.Context(), job)
	require.NoError(t, err)
	require.Equal(t, canary, string(got.SecretAccessKey.Reveal()))
	require.Equal(t, "AKIA", string(got.AccessKeyID.Reveal()))
	require.Equal(t, "session", string(got.SessionToken.Reveal()))
	got.Wipe()
	again, err := c.Withdraw(t.Context(), job)
	require.NoError(t, err)
	require.Equal(t, canary, string(again.SecretAccessKey.Reveal()), "wiping the worker's copy leaves custody's")
}

func TestWithdrawRefusals(t *testing.T) {
	t.Parallel()
	c, recs := newCustody(t, custody.Config{})
	job := recs.running("acc_a", c.Holder())
	require.NoError(t, c.Deposit(job.Account, job.ID, token(canary)))

	t.Run("a run that does not hold the lease", func(t *testing.T) {
		forged := job
		forged.Owner = "run_other"
		_, err := c.Withdraw(t.Context(), forged)
		require.ErrorIs(t, err, custody.ErrNotLeaseOwner)
		require.False(t, apiary.IsPermanent(err), "the job goes on with the run that holds it")
	})
	t.Run("another account", func(t *testing.T) {
		other := job
		other.Account = "acc_b"
		_, err := c.Withdraw(t.Context(), other)
		require.ErrorIs(t, err, custody.ErrTokenGone)
	})
	t.Run("a job without a holder", func(t *testing.T) {
		_, err := c.Withdraw(t.Context(), apiary.Job{ID: "job_x", Account: "acc_a"})
		require.ErrorIs(t, err, custody.ErrNoCredentials)
	})
	t.Run("a holder this process is not, with no transport", func(t *testing.T) {
		elsewhere := job
		elsewhere.Holder = "hld_elsewhere"
		_, err := c.Withdraw(t.Context(), elsewhere)
		require.ErrorIs(t, err, custody.ErrHolderGone)
		require.True(t, apiary.IsPermanent(err))
		require.Equal(t, apiary.ReasonHolderGone, apiary.Message(err))
	})
	t.Run("a lease that ran out", func(t *testing.T) {
		expired := recs.running("acc_a", c.Holder())
		past := time.Now().Add(-time.Second)
		stale := expired
		stale.LeaseUntil = &past
		recs.put(stale)
		require.NoError(t, c.Deposit(expired.Account, expired.ID, token(canary)))
		_, err := c.Withdraw(t.Context(), expired)
		require.ErrorIs(t, err, custody.ErrNotLeaseOwner)
	})
}

// The token is wiped, its bytes zeroed, when its job ends: Ended in this
// process, or a withdrawal that finds the record final.
func TestWipedWhenTheJobEnds(t *testing.T) {
	t.Parallel()
	c, recs := newCustody(t, custody.Config{})
	job := recs.running("acc_a", c.Holder())
	b := []byte(canary)
	require.NoError(t, c.Deposit(job.Account, job.ID, apiary.Credentials{Token: apiary.SecretFromBytes(b)}))
	require.Equal(t, 1, c.Held())

	job.Fail("done", time.Now())
	recs.put(job)
	c.Ended(t.Context(), job)
	require.Equal(t, make([]byte, len(canary)), b, "the bytes are zeroed")
	require.Equal(t, 0, c.Held())
	_, err := c.Withdraw(t.Context(), recs.running("acc_a", c.Holder()))
	require.ErrorIs(t, err, custody.ErrTokenGone)

	// A withdrawal for a job that ended elsewhere wipes too.
	job2 := recs.running("acc_a", c.Holder())
	b2 := []byte(canary)
	require.NoError(t, c.Deposit(job2.Account, job2.ID, apiary.Credentials{Token: apiary.SecretFromBytes(b2)}))
	ended := job2
	ended.Fail("canceled", time.Now())
	recs.put(ended)
	_, err = c.Withdraw(t.Context(), job2)
	require.ErrorIs(t, err, custody.ErrTokenGone)
	require.True(t, apiary.IsPermanent(err))
	require.Equal(t, make([]byte, len(canary)), b2)
}

// The lifetime is min(the token's own expiry, MaxLifetime): past it the
// token is wiped and a withdrawal says it is gone.
func TestExpiry(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		expiry  time.Duration // from now; 0: unknown
		wantFor time.Duration
	}{
		{"the token's own expiry", 10 * time.Minute, 10 * time.Minute},
		{"at most an hour", 3 * time.Hour, time.Hour},
		{"unknown expiry: an hour", 0, time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				recs := &records{}
				c, err := custody.New(custody.Config{Leases: recs})
				require.NoError(t, err)
				defer c.Close()
				b := []byte(canary)
				creds := apiary.Credentials{Token: apiary.SecretFromBytes(b)}
				if tc.expiry > 0 {
					creds.Expiry = time.Now().Add(tc.expiry)
				}
				job := recs.running("acc_a", c.Holder())
				require.NoError(t, c.Deposit(job.Account, job.ID, creds))

				time.Sleep(tc.wantFor - time.Second) // fake time: the bubble's clock
				synctest.Wait()
				require.Equal(t, 1, c.Held(), "held until its lifetime ends")
				time.Sleep(2 * time.Second)
				synctest.Wait()
				require.Equal(t, 0, c.Held())
				require.Equal(t, make([]byte, len(canary)), b, "wiped")
				// The run's lease is long gone too in fake time; renew it.
				job.Renew(job.Owner, time.Now(), time.Minute)
				recs.put(job)
				_, err = c.Withdraw(t.Context(), job)
				require.ErrorIs(t, err, custody.ErrTokenGone)
			})
		})
	}
}

func TestDepositRefusals(t *testing.T) {
	t.Parallel()
	c, recs := newCustody(t, custody.Config{MaxPerAccount: 2, MaxTotal: 3})
	for range 2 {
		j := recs.running("acc_a", c.Holder())
		require.NoError(t, c.Deposit(j.Account, j.ID, token(canary)))
	}
	b := []byte(canary)
	err := c.Deposit("acc_a", apiary.NewJobID(), apiary.Credentials{Token: apiary.SecretFromBytes(b)})
	require.ErrorIs(t, err, apiary.ErrRateLimited)
	require.Contains(t, apiary.Message(err), "this account already has 2 jobs with an ephemeral token")
	require.Equal(t, make([]byte, len(canary)), b, "a refused token is wiped too")

	require.NoError(t, c.Deposit("acc_b", apiary.NewJobID(), token(canary)))
	err = c.Deposit("acc_c", apiary.NewJobID(), token(canary))
	require.ErrorIs(t, err, apiary.ErrUnavailable)
	require.Equal(t, "this API process holds as many ephemeral tokens as it may; retry later", apiary.Message(err))

	err = c.Deposit("acc_c", apiary.NewJobID(), apiary.Credentials{})
	require.ErrorIs(t, err, apiary.ErrInvalid)
	err = c.Deposit("acc_c", apiary.NewJobID(), apiary.Credentials{Token: apiary.NewSecret("x"), Expiry: time.Now().Add(-time.Minute)})
	require.ErrorIs(t, err, apiary.ErrInvalid)
	require.Equal(t, "the token has already expired; send a fresh one", apiary.Message(err))

	c.Release("acc_b", "job_none") // nothing held: nothing happens
	require.Equal(t, 3, c.Held())
}
