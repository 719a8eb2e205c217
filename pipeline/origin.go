package pipeline

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"github.com/apiaryhq/apiary"
)

// Fingerprint is a keyed fingerprint function of one account: equal inputs
// give equal fingerprints, and nobody without the account's key can tell
// what they are or test a guess (apiary.Origin).
type Fingerprint = func(parts ...string) string

// Fingerprinter returns account's fingerprint function, keyed by a key
// derived from its lexical key (never stored).
func (p *Pipeline) Fingerprinter(ctx context.Context, account apiary.AccountID) (Fingerprint, error) {
	lk, err := p.lex.Key(ctx, account)
	if err != nil {
		return nil, fmt.Errorf("pipeline: fingerprint: %w", err)
	}
	key, err := lk.Derive("origin fingerprint")
	if err != nil {
		return nil, err
	}
	return func(parts ...string) string {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(account))
		for _, part := range parts {
			// Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
			fmt.Fprintf(m, "\x00%d:%s", len(part), part)
		}
		return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
	}, nil
}

// SourceDocuments returns the documents of account whose origin is source
// (a fingerprint), with the fingerprint of the version each was read at.
// It pages through the account's records; what it returns is the ids and
// fingerprints only.
func (p *Pipeline) SourceDocuments(ctx context.Context, account apiary.AccountID, source string) (map[apiary.DocumentID]string, error) {
	if source == "" {
		return nil, apiary.E(apiary.KindInvalid, "pipeline: source documents: no source")
	}
	out := map[apiary.DocumentID]string{}
	cursor := ""
	for {
		recs, next, err := p.docs.Documents(ctx, account, 500, cursor)
		if err != nil {
			return nil, fmt.Errorf("pipeline: source documents: %w", err)
		}
		for _, r := range recs {
			if r.Origin.Source == source {
				out[r.ID] = r.Origin.Version
			}
		}
		if next == "" {
			return out, nil
		}
		cursor = next
	}
}
