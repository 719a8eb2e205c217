package apiary_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	base := apiary.E(apiary.KindNotFound, "no job %q", "job_x")
	wrapped := fmt.Errorf("records: get: %w", base)
	require.ErrorIs(t, wrapped, apiary.ErrNotFound)
	require.NotErrorIs(t, wrapped, apiary.ErrConflict)
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(wrapped))
	require.Equal(t, apiary.KindOther, apiary.KindOf(errors.New("plain")))
	require.Equal(t, `no job "job_x"`, base.Error())

	cause := errors.New("dial tcp: refused")
	w := apiary.Wrap(cause, apiary.KindUnavailable, "vector store unavailable")
	require.Equal(t, "vector store unavailable: dial tcp: refused", w.Error())
	require.ErrorIs(t, w, cause)
	require.Nil(t, apiary.Wrap(nil, apiary.KindInvalid, "x"))

	require.True(t, apiary.IsPermanent(apiary.Permanent(cause)))
	require.True(t, apiary.IsPermanent(apiary.E(apiary.KindInvalid, "bad")))
	require.False(t, apiary.IsPermanent(w))
	require.False(t, apiary.IsPermanent(cause))
	require.Nil(t, apiary.Permanent(nil))

	r := fmt.Errorf("kms: %w", apiary.RetryAfter(cause, 3*time.Second))
	d, ok := apiary.RetryDelay(r)
	require.True(t, ok)
	require.Equal(t, 3*time.Second, d)
	_, ok = apiary.RetryDelay(w)
	require.False(t, ok)
	require.Equal(t, "not found", apiary.KindNotFound.String())
}

func TestChunkIDFor(t *testing.T) {
	t.Parallel()
	id := apiary.ChunkIDFor("acme", "doc", 7, 3)
	require.Len(t, string(id), 32)
	require.Equal(t, id, apiary.ChunkIDFor("acme", "doc", 7, 3), "stable")
	seen := map[apiary.ChunkID]bool{id: true}
	for _, other := range []apiary.ChunkID{
		apiary.ChunkIDFor("acme2", "doc", 7, 3),
		apiary.ChunkIDFor("acme", "doc2", 7, 3),
		apiary.ChunkIDFor("acme", "doc", 8, 3),
		apiary.ChunkIDFor("acme", "doc", 7, 4),
		apiary.ChunkIDFor("acm", "edoc", 7, 3), // no ambiguity at the seams
	} {
		require.False(t, seen[other], "collision")
		seen[other] = true
	}
}

func TestIDs(t *testing.T) {
	t.Parallel()
	a, b := apiary.NewJobID(), apiary.NewJobID()
	require.NotEqual(t, a, b)
	require.NoError(t, a.Validate())
	require.ErrorIs(t, apiary.JobID("job_../etc").Validate(), apiary.ErrNotFound)
	require.NoError(t, apiary.NewAccountID().Validate())
	require.NoError(t, apiary.DefaultAccount.Validate())
	for _, bad := range []apiary.AccountID{"", "Acme", "a.b", apiary.AccountID(strings.Repeat("a", 65))} {
		require.ErrorIs(t, bad.Validate(), apiary.ErrInvalid, "%q", bad)
	}
	for _, bad := range []apiary.DocumentID{"", " x", "a\x00b", "\xff", apiary.DocumentID(strings.Repeat("d", 257))} {
		require.ErrorIs(t, bad.Validate(), apiary.ErrInvalid, "%q", bad)
	}
	require.NoError(t, apiary.DocumentID("reports/2024 Q3 ü.md").Validate())
}

func TestRolesAndStatuses(t *testing.T) {
	t.Parallel()
	require.True(t, apiary.RoleAdmin.Allows(apiary.RoleEditor))
	require.True(t, apiary.RoleEditor.Allows(apiary.RoleViewer))
	require.False(t, apiary.RoleViewer.Allows(apiary.RoleEditor))
	require.False(t, apiary.Role("root").Allows(apiary.RoleViewer))
	for _, s := range []apiary.JobStatus{apiary.JobSucceeded, apiary.JobFailed, apiary.JobCanceled} {
		require.True(t, s.Final())
	}
	require.False(t, apiary.JobRunning.Final())
	require.False(t, apiary.JobStatus("done").Valid())
}

func TestNewJobEvent(t *testing.T) {
	t.Parallel()
	j := apiary.Job{ID: apiary.NewJobID(), Account: "acme", Status: apiary.JobSucceeded}
	a, b := apiary.NewJobEvent(j, apiary.EventJobSucceeded), apiary.NewJobEvent(j, apiary.EventJobSucceeded)
	require.Equal(t, a.ID, b.ID, "a final event has one id, so it is stored once")
	require.Equal(t, apiary.FinalEventID(j.ID), a.ID)
	p, q := apiary.NewJobEvent(j, apiary.EventJobProgress), apiary.NewJobEvent(j, apiary.EventJobProgress)
	require.NotEqual(t, p.ID, q.ID)
}

func TestMessage(t *testing.T) {
	t.Parallel()
	sdk := errors.New("operation error KMS: Decrypt, User: arn:aws:iam::1234:role/x is not authorized")
	kms := apiary.Wrap(sdk, apiary.KindForbidden, "awskms: decrypt: key disabled or access denied")
	require.Equal(t, "awskms: decrypt: key disabled or access denied", apiary.Message(fmt.Errorf("pipeline: %w", apiary.Permanent(kms))))
	require.NotContains(t, apiary.Message(kms), "arn:")
	require.Empty(t, apiary.Message(sdk))
	require.Empty(t, apiary.Message(nil))
}

func TestIDsIncreaseWithinAMillisecond(t *testing.T) {
	t.Parallel()
	prev := apiary.NewJobID()
	for range 10_000 {
		next := apiary.NewJobID()
		require.Less(t, string(prev), string(next))
		prev = next
	}
}
