package awskms_test

import (
	"context"
	"encoding/binary"
	"strconv"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/awskms"
)

// Rotation on KMS: a new key behind alias …/v<n> wraps new data keys, keys
// wrapped under the old one keep opening, Rewrap moves one, another
// process finds the new version, and every version's alias is listed for
// erasure.
func TestRotateAccountKey(t *testing.T) {
	t.Parallel()
	c, tr := client(t)
	p := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc := newAccount(t, p)
	encCtx := encrypt.Context{"document": "d"}
	old, err := p.GenerateDataKey(ctx, acc, encCtx)
	require.NoError(t, err)

	_, err = p.RotateAccountKey(ctx, apiary.AccountID(apiary.RandomID("nokey_")))
	requireKind(t, apiary.KindNotFound, err, "rotating an account without a key")

	v, err := p.RotateAccountKey(ctx, acc)
	require.NoError(t, err)
	require.Equal(t, 2, v)
	fresh, err := p.GenerateDataKey(ctx, acc, encCtx)
	require.NoError(t, err)
	require.NotEqual(t, old.Wrapped[0], fresh.Wrapped[0], "a data key names its key version")

	moved, err := p.Rewrap(ctx, acc, old.Wrapped, encCtx)
	require.NoError(t, err)
	_, err = p.Rewrap(ctx, acc, old.Wrapped, encrypt.Context{"document": "other"})
	require.Error(t, err, "a rewrap checks the context like a decrypt")

	// Another process (no cache) opens all three, and generates under v2.
	other := newProvider(t, c, awskms.Config{})
	for name, w := range map[string]encrypt.DataKey{
		"old": old, "fresh": fresh, "moved": {Plaintext: old.Plaintext, Wrapped: moved},
	} {
		got, err := other.Decrypt(ctx, acc, w.Wrapped, encCtx)
		require.NoError(t, err, name)
		require.Equal(t, w.Plaintext, got, name)
	}
	before := tr.count("Decrypt")
	_, err = other.Decrypt(ctx, acc, moved, encCtx)
	require.NoError(t, err)
	require.Equal(t, before, tr.count("Decrypt"), "served from the cache")

	// Two rotations at once each make a version of their own: another
	// process takes v3 just before this one names its new key v3, so this
	// one makes v4. (Run truly concurrently, local-kms lets two CreateAlias
	// calls of one name both succeed now and then; KMS does not.)
	var elsewhere int
	var elsewhereErr error
	tr.beforeNext("CreateAlias", func() {
		otherClient, _ := client(t)
		elsewhere, elsewhereErr = newProvider(t, otherClient, awskms.Config{}).RotateAccountKey(ctx, acc)
	})
	keysBefore, deletionsBefore := tr.count("CreateKey"), tr.count("ScheduleKeyDeletion")
	v, err = p.RotateAccountKey(ctx, acc)
	require.NoError(t, err)
	require.NoError(t, elsewhereErr)
	require.Equal(t, 3, elsewhere)
	require.Equal(t, 4, v)
	require.Equal(t, keysBefore+2, tr.count("CreateKey"), "the loser's key for v3, then its key for v4")
	require.Equal(t, deletionsBefore+1, tr.count("ScheduleKeyDeletion"), "the loser's unused key is scheduled for deletion")
	v, err = newProvider(t, c, awskms.Config{}).RotateAccountKey(ctx, acc)
	require.NoError(t, err)
	require.Equal(t, 5, v)

	aliases, err := p.VersionAliases(ctx, acc)
	require.NoError(t, err)
	base := p.Alias(acc)
	require.Equal(t, []string{base, base + "/v2", base + "/v3", base + "/v4", base + "/v5"}, aliases)
}

// Each version is a KMS key billed until the account is deleted: past
// encrypt.MaxKeyVersions a rotation is refused, and makes no key.
func TestRotateAccountKeyIsBounded(t *testing.T) {
	t.Parallel()
	c, tr := client(t)
	p := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc := newAccount(t, p)
	desc, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(p.Alias(acc))})
	require.NoError(t, err)
	// Versions 2..max as aliases of one key: what rotations would have left.
	for v := 2; v <= encrypt.MaxKeyVersions; v++ {
		_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{
			AliasName: aws.String(p.Alias(acc) + "/v" + strconv.Itoa(v)), TargetKeyId: desc.KeyMetadata.KeyId})
		require.NoError(t, err)
	}
	before := tr.count("CreateKey")
	_, err = p.RotateAccountKey(ctx, acc)
	requireKind(t, apiary.KindConflict, err, "a rotation past the bound")
	require.Equal(t, before, tr.count("CreateKey"), "no key made")
	require.NoError(t, p.EraseAccountKey(ctx, acc))
}

// A wrapped key whose version was altered (to one the account never had,
// or moved between versions it has) is refused like any altered wrapped
// key: Permanent, not NotFound ("no account key", which the API would
// show as a missing resource and a worker treat as an erased account).
func TestAlteredKeyVersionRefused(t *testing.T) {
	t.Parallel()
	c, _ := client(t)
	p := newProvider(t, c, awskms.Config{})
	ctx := t.Context()
	acc := newAccount(t, p)
	encCtx := encrypt.Context{"document": "d"}
	v1, err := p.GenerateDataKey(ctx, acc, encCtx)
	require.NoError(t, err)
	_, err = p.RotateAccountKey(ctx, acc)
	require.NoError(t, err)
	v2, err := p.GenerateDataKey(ctx, acc, encCtx)
	require.NoError(t, err)
	require.Equal(t, []byte{2, 2}, v2.Wrapped[:2])

	reframe := func(head []byte, body []byte) []byte { return append(append([]byte(nil), head...), body...) }
	for name, bad := range map[string][]byte{
		"v1 claimed as v7":   reframe(binary.AppendUvarint([]byte{2}, 7), v1.Wrapped[1:]),
		"v1 claimed as v2":   reframe([]byte{2, 2}, v1.Wrapped[1:]),
		"v2 claimed as v1":   reframe([]byte{1}, v2.Wrapped[2:]),
		"v2 claimed as v999": reframe(binary.AppendUvarint([]byte{2}, 999), v2.Wrapped[2:]),
	} {
		got, err := newProvider(t, c, awskms.Config{}).Decrypt(ctx, acc, bad, encCtx)
		requireKind(t, apiary.KindPermanent, err, name)
		require.Nil(t, got, name)
	}
	require.NoError(t, p.EraseAccountKey(ctx, acc))
}

// An erasure racing a rotation (another process rotating while the account
// is deleted) leaves no version alias behind: a version made by the
// rotation after the erasure listed the versions would otherwise outlive
// the account, unfindable by a later erasure (versions are looked for from
// version 1 up, which is gone).
func TestEraseRacingRotation(t *testing.T) {
	t.Parallel()
	c, _ := client(t)
	ctx := t.Context()
	for range 50 {
		eraser, rotator := newProvider(t, c, awskms.Config{}), newProvider(t, c, awskms.Config{})
		acc := newAccount(t, eraser)
		_, err := eraser.RotateAccountKey(ctx, acc)
		require.NoError(t, err)
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = rotator.RotateAccountKey(ctx, acc) }) // may fail: the key is going
		wg.Go(func() { require.NoError(t, eraser.EraseAccountKey(ctx, acc)) })
		wg.Wait()
		for v := 2; v <= 4; v++ {
			_, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(eraser.Alias(acc) + "/v" + strconv.Itoa(v))})
			require.Error(t, err, "version %d of %s left after the account's erasure", v, acc)
		}
	}
}

// A process trusts the newest version it knows for a minute when it wraps
// a data key directly, but CurrentVersion looks in KMS every time: it sees
// a rotation made by another process at once, and data keys made after it
// use the new version (what the KEK layer relies on to make no KEK under
// an outdated version).
func TestCurrentVersionSeesRotationElsewhere(t *testing.T) {
	t.Parallel()
	c, _ := client(t)
	ctx := t.Context()
	p, other := newProvider(t, c, awskms.Config{}), newProvider(t, c, awskms.Config{})
	acc := newAccount(t, p)
	t.Cleanup(func() { _ = p.EraseAccountKey(context.Background(), acc) })
	dk, err := p.GenerateDataKey(ctx, acc, encrypt.Context{"document": "d"}) // p knows version 1
	require.NoError(t, err)
	v, ok := p.WrappedVersion(dk.Wrapped)
	require.True(t, ok)
	require.Equal(t, 1, v)

	_, err = other.RotateAccountKey(ctx, acc)
	require.NoError(t, err)
	stale, err := p.GenerateDataKey(ctx, acc, encrypt.Context{"document": "d"})
	require.NoError(t, err)
	v, _ = p.WrappedVersion(stale.Wrapped)
	require.Equal(t, 1, v, "a data key wrapped directly trusts the known version for a while")

	cur, err := p.CurrentVersion(ctx, acc)
	require.NoError(t, err)
	require.Equal(t, 2, cur)
	fresh, err := p.GenerateDataKey(ctx, acc, encrypt.Context{"document": "d"})
	require.NoError(t, err)
	v, _ = p.WrappedVersion(fresh.Wrapped)
	require.Equal(t, 2, v, "after CurrentVersion, the version it found")
}
