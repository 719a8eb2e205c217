package apiary_test

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

const canary = "canary-token-9f8e7d6c"

// A Secret shows Redacted through every formatter, log handler and
// encoding, alone, by pointer, and inside a struct.
func TestSecretRedactsItselfEverywhere(t *testing.T) {
	t.Parallel()
	s := apiary.NewSecret(canary)
	type holder struct {
		Name   string
		Secret apiary.Secret
	}
	h := holder{Name: "n", Secret: s}
	creds := apiary.Credentials{Token: s, SecretAccessKey: s, Expiry: time.Unix(0, 0)}

	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s", "%T"} {
		for _, v := range []any{s, &s, h, &h, creds, &creds, []apiary.Secret{s}, map[string]apiary.Secret{"k": s}} {
			outs = append(outs, fmt.Sprintf(verb, v))
		}
	}
	outs = append(outs, s.String(), s.GoString(), fmt.Sprint(s), fmt.Sprintln(s, h))

	for _, enc := range []func() ([]byte, error){
		func() ([]byte, error) { return json.Marshal(s) },
		func() ([]byte, error) { return json.Marshal(h) },
		func() ([]byte, error) { return json.Marshal(creds) },
		func() ([]byte, error) { return encoding.TextMarshaler(s).MarshalText() },
	} {
		b, err := enc()
		require.NoError(t, err)
		outs = append(outs, string(b))
	}
	js, err := json.Marshal(s)
	require.NoError(t, err)
	require.JSONEq(t, `"[redacted]"`, string(js))

	var logs bytes.Buffer
	for _, handler := range []slog.Handler{
		slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}),
	} {
		l := slog.New(handler)
		l.Debug("secret", "s", s, "p", &s, "h", h, "c", creds)
		l.Info("group", slog.Group("g", slog.Any("s", s)), slog.Any("any", s))
	}
	outs = append(outs, logs.String())
	require.Contains(t, logs.String(), apiary.Redacted)

	for _, out := range outs {
		require.NotContains(t, out, canary)
		require.NotContains(t, out, fmt.Sprintf("%x", canary))
		require.NotContains(t, strings.ToLower(out), fmt.Sprintf("%x", canary))
	}
	require.Equal(t, canary, string(s.Reveal()), "Reveal gives the value")
}

func TestSecretWipeZeroesEveryCopy(t *testing.T) {
	t.Parallel()
	b := []byte(canary)
	s := apiary.SecretFromBytes(b)
	c := apiary.Credentials{Token: s}
	require.False(t, c.Empty())
	c.Wipe()
	require.Equal(t, make([]byte, len(canary)), b, "the bytes under the secret are zeroed")
	require.Equal(t, make([]byte, len(canary)), s.Reveal())
	require.True(t, apiary.Secret{}.Empty())
	require.True(t, apiary.Credentials{}.Empty())
}
