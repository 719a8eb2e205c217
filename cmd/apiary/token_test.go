package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/api"
)

// `apiary token --operator` mints a working operator token in the data
// dir: the documented way back for an operator whose token was lost or
// deleted. It refuses while apiary serve holds the data dir.
func TestTokenOperatorMintsAWorkingToken(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	tokenCmd := func() (string, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, []string{"token", "--operator", "--data-dir", dataDir, "--log-level", "error"}, &out, &errOut)
		return strings.TrimSpace(out.String()), err
	}

	_, err := tokenCmd()
	require.ErrorContains(t, err, "run apiary serve once first")

	first, err := api.NewToken()
	require.NoError(t, err)
	s := startServer(t, dataDir, first)
	_, err = tokenCmd()
	require.ErrorContains(t, err, "in use by another apiary process")
	s.stop()

	minted, err := tokenCmd()
	require.NoError(t, err)
	require.NoError(t, api.CheckTokenFormat(minted))
	require.NotEqual(t, first, minted)

	s = startServer(t, dataDir, first)
	require.Equal(t, http.StatusCreated, s.call(minted, http.MethodPost, "/v1/accounts", map[string]string{"name": "by the new operator"}, nil))
	var toks struct {
		Tokens []struct {
			Name     string `json:"name"`
			Operator bool   `json:"operator"`
		} `json:"tokens"`
	}
	require.Equal(t, http.StatusOK, s.call(minted, http.MethodGet, "/v1/tokens", nil, &toks))
	var operators int
	for _, tk := range toks.Tokens {
		if tk.Operator {
			operators++
		}
	}
	require.Equal(t, 2, operators, "the first operator token and the minted one")
	require.NotContains(t, s.stderr.String(), minted, "the minted token is printed once, never logged")
}
