package records

import (
	"context"
	"time"

	"github.com/apiaryhq/apiary"
)

// vectorProtectionID is the id of an account's one vector protection
// record, kept beside its lexical key (the protection secret derives from
// it, and both go when the account's records do).
const vectorProtectionID = "vector-protection"

type vectorProtection struct {
	Protected bool      `json:"protected"`
	Since     time.Time `json:"since"`
}

// VectorProtection returns whether account's vectors are stored protected
// (package storage/vecguard), or NotFound when that was never decided.
func (s *AccountStore) VectorProtection(ctx context.Context, account apiary.AccountID) (bool, error) {
	p, _, err := get[vectorProtection](ctx, s.lexKeys, scopedKey(account, vectorProtectionID), "vector protection")
	return p.Protected, err
}

// CreateVectorProtection records whether account's vectors are protected
// unless that is recorded (Conflict): of two racing writers, the first wins.
func (s *AccountStore) CreateVectorProtection(ctx context.Context, account apiary.AccountID, protected bool) error {
	if err := account.Validate(); err != nil {
		return err
	}
	return create(ctx, s.lexKeys, scopedKey(account, vectorProtectionID), "vector protection",
		vectorProtection{Protected: protected, Since: time.Now().UTC()})
}
