package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
)

func TestRotateAccountKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	before, err := e.keys.GenerateDataKey(ctx, apiary.DefaultAccount, encrypt.Context{"document": "d"})
	require.NoError(t, err)

	for _, tok := range []string{e.editor, e.viewer} {
		rec := e.do(http.MethodPost, "/v1/account/keys/rotate", tok)
		require.Equal(t, http.StatusForbidden, rec.Code, rec.Body.String())
	}
	for want := 2; want <= 3; want++ {
		rec := e.do(http.MethodPost, "/v1/account/keys/rotate", e.admin)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var out rotatedKey
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
		require.Equal(t, rotatedKey{Account: apiary.DefaultAccount, Version: want}, out)
	}
	// Another account is untouched: its first rotation is its version 2.
	_, other := e.otherAccount("globex")
	rec := e.do(http.MethodPost, "/v1/account/keys/rotate", other)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.JSONEq(t, `2`, string(mustField(t, rec.Body.Bytes(), "version")))

	// What the old version wrapped still opens.
	got, err := e.keys.Decrypt(ctx, apiary.DefaultAccount, before.Wrapped, encrypt.Context{"document": "d"})
	require.NoError(t, err)
	require.Equal(t, before.Plaintext, got)
}

func TestRotateAccountKeyWithoutVersions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *Config, d *Deps) { d.Keys = unversioned{d.Keys} })
	rec := e.do(http.MethodPost, "/v1/account/keys/rotate", e.admin)
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "no versions to rotate")
}

// unversioned hides a key provider's versions.
type unversioned struct{ encrypt.KeyProvider }

func mustField(t *testing.T, body []byte, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &m))
	return m[name]
}

// Each rotation keeps a key (a file, or a KMS key billed monthly) until the
// account is deleted: an admin rotating in a loop must not grow them
// without bound.
func TestRotateAccountKeyIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for want := 2; want <= encrypt.MaxKeyVersions; want++ {
		rec := e.do(http.MethodPost, "/v1/account/keys/rotate", e.admin)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.JSONEq(t, strconv.Itoa(want), string(mustField(t, rec.Body.Bytes(), "version")))
	}
	requireProblem(t, e.do(http.MethodPost, "/v1/account/keys/rotate", e.admin), 409, "the most an account may have")
}
