package kek_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/pipeline/encrypt/kek"
)

// BenchmarkDataKey is the cost of one document's data key, wrapped directly
// by the account key or by a key-encryption key, over the keyring and over
// AWS KMS (local-kms; skipped without it). provider-calls/op is how many
// calls reached the account key provider per data key.
func BenchmarkDataKey(b *testing.B) {
	for _, base := range []struct {
		name string
		open func(testing.TB) encrypt.KeyProvider
	}{{"keyring", newKeyring}, {"awskms", newKMS}} {
		for _, mode := range []string{"direct", "kek"} {
			b.Run(base.name+"/"+mode, func(b *testing.B) {
				counted := kek.Count(base.open(b))
				var kp encrypt.KeyProvider = counted
				if mode == "kek" {
					kp = decorate(b, counted, newRecords(b), kek.Config{})
				}
				ctx := b.Context()
				acc := apiary.AccountID(apiary.RandomID("bench_"))
				require.NoError(b, kp.CreateAccountKey(ctx, acc))
				encCtx := encrypt.Context{"document": "doc"}
				for b.Loop() {
					dk, err := kp.GenerateDataKey(ctx, acc, encCtx)
					if err != nil {
						b.Fatal(err)
					}
					encrypt.Wipe(dk.Plaintext)
				}
				b.ReportMetric(float64(counted.Calls())/float64(b.N), "provider-calls/op")
			})
		}
	}
}
