package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/webhooks"
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Sign returns the webhook-signature header value for one message: for
// each secret, "v1," + base64(HMAC-SHA256(key, id + "." + unix seconds +
// "." + body)), joined by spaces.
func Sign(msgID string, ts time.Time, body []byte, secrets ...string) (string, error) {
	if len(secrets) == 0 {
		return "", apiary.E(apiary.KindInvalid, "webhook: sign: no secret")
	}
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		key, err := webhooks.ParseSecret(s)
		if err != nil {
			return "", err
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(msgID))
		mac.Write([]byte{'.'})
		mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
		clear(key)
	}
	return strings.Join(sigs, " "), nil
}
