package records_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

func TestKEKs(t *testing.T) {
	t.Parallel()
	for name, newKVS := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, ctx := open(t, newKVS), context.Background()
			require.NoError(t, s.CreateKEK(ctx, "acme", "k1", []byte("wrapped-1")))
			require.NoError(t, s.CreateKEK(ctx, "acme", "k2", []byte("wrapped-2")))
			require.NoError(t, s.CreateKEK(ctx, "globex", "k1", []byte("globex-1")))
			require.Equal(t, apiary.KindConflict, apiary.KindOf(s.CreateKEK(ctx, "acme", "k1", []byte("again"))))

			got, err := s.KEK(ctx, "acme", "k1")
			require.NoError(t, err)
			require.Equal(t, []byte("wrapped-1"), got)
			_, err = s.KEK(ctx, "acme", "nope")
			require.Equal(t, apiary.KindNotFound, apiary.KindOf(err))

			require.NoError(t, s.UpdateKEK(ctx, "acme", "k2", func(w []byte) ([]byte, error) {
				require.Equal(t, []byte("wrapped-2"), w)
				return []byte("rewrapped-2"), nil
			}))
			got, err = s.KEK(ctx, "acme", "k2")
			require.NoError(t, err)
			require.Equal(t, []byte("rewrapped-2"), got)

			ids, err := s.KEKIDs(ctx, "acme")
			require.NoError(t, err)
			require.ElementsMatch(t, []string{"k1", "k2"}, ids)

			// Erasing one account's KEKs leaves another's.
			require.NoError(t, s.DeleteKEKs(ctx, "acme"))
			ids, err = s.KEKIDs(ctx, "acme")
			require.NoError(t, err)
			require.Empty(t, ids)
			_, err = s.KEK(ctx, "acme", "k1")
			require.Equal(t, apiary.KindNotFound, apiary.KindOf(err))
			got, err = s.KEK(ctx, "globex", "k1")
			require.NoError(t, err)
			require.Equal(t, []byte("globex-1"), got)
			require.NoError(t, s.DeleteKEKs(ctx, "acme"))
		})
	}
}
