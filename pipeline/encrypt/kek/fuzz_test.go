package kek_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/kek"
)

// FuzzDecrypt hands the KEK decorator (over a keyring with two key
// versions) hostile wrapped keys: truncated, a huge or zero id length, a
// wrong marker or version, another account's KEK id, bytes flipped. Each is
// refused as Permanent (never a panic, never NotFound or an outage), and
// only an unaltered wrapped key opens, to its own data key.
func FuzzDecrypt(f *testing.F) {
	ctx := context.Background()
	kr := newKeyring(f)
	store := newRecords(f)
	p, err := kek.New(kr, store, kek.Config{})
	require.NoError(f, err)
	acc, other := apiary.AccountID("acme"), apiary.AccountID("umbrella")
	for _, a := range []apiary.AccountID{acc, other} {
		require.NoError(f, p.CreateAccountKey(ctx, a))
	}
	viaKEK, err := p.GenerateDataKey(ctx, acc, docCtx("d"))
	require.NoError(f, err)
	direct, err := kr.GenerateDataKey(ctx, acc, docCtx("d")) // version 1, 0x01
	require.NoError(f, err)
	_, err = kr.(encrypt.Rotator).RotateAccountKey(ctx, acc)
	require.NoError(f, err)
	direct2, err := kr.GenerateDataKey(ctx, acc, docCtx("d")) // 0x02 | uvarint(2)
	require.NoError(f, err)
	otherKEK, err := p.GenerateDataKey(ctx, other, docCtx("d"))
	require.NoError(f, err)
	valid := map[string][]byte{
		string(viaKEK.Wrapped):  viaKEK.Plaintext,
		string(direct.Wrapped):  direct.Plaintext,
		string(direct2.Wrapped): direct2.Plaintext,
	}
	for w := range valid {
		f.Add([]byte(w))
	}
	f.Add(otherKEK.Wrapped)
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{0, 1})
	f.Add([]byte{0, 2, 4, 'k', 'e', 'k', '_'})
	f.Add(binary.AppendUvarint([]byte{0, 1}, 1<<63))
	f.Add(binary.AppendUvarint([]byte{0, 1}, 65))
	f.Add(binary.AppendUvarint([]byte{2}, 1<<62))
	f.Add([]byte{2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add(viaKEK.Wrapped[:len(viaKEK.Wrapped)/2])
	// The same keys with a length or version in a longer (non-minimal)
	// varint: another byte string, so refused like any other alteration.
	idLen := viaKEK.Wrapped[2]
	f.Add(append([]byte{0, 1, idLen | 0x80, 0}, viaKEK.Wrapped[3:]...))
	f.Add(append([]byte{2, 0x82, 0}, direct2.Wrapped[2:]...))
	f.Fuzz(func(t *testing.T, wrapped []byte) {
		dk, err := p.Decrypt(ctx, acc, wrapped, docCtx("d"))
		if want, ok := valid[string(wrapped)]; ok {
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, dk))
			return
		}
		require.Error(t, err, "an altered wrapped key opened")
		require.Equal(t, apiary.KindPermanent, apiary.KindOf(err), "%v", err)
	})
}
