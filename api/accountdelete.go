package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/encrypt"
	"github.com/apiaryhq/apiary/storage/records"
)

// Deleting an account is crypto-shredding: its key is erased, so that any
// of its ciphertext that survives (a backup taken before, a block a store
// has not compacted yet) no longer opens, and every process is told to
// drop the account's keys from memory; then its vectors and records are
// deleted (and erased where the stores can).

// deleteAccountByID is DELETE /v1/accounts/{id}: an operator deletes any
// account but one holding an operator token.
func (s *Server) deleteAccountByID(c echo.Context) error {
	id := apiary.AccountID(c.Param("id"))
	if err := id.Validate(); err != nil {
		return apiary.E(apiary.KindNotFound, "no such account")
	}
	if err := s.shredAccount(c.Request().Context(), id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

type deleteAccountRequest struct {
	Confirm apiary.AccountID `json:"confirm"`
}

// deleteOwnAccount is DELETE /v1/account: an admin deletes their own
// account, naming it in "confirm".
func (s *Server) deleteOwnAccount(c echo.Context) error {
	var req deleteAccountRequest
	if err := readJSON(c, &req); err != nil {
		return err
	}
	account := principal(c).Account
	if req.Confirm != account {
		return apiary.E(apiary.KindInvalid, "confirm must be this account's id, %s: deleting an account erases its key and every document, token, webhook and connection, and cannot be undone", account)
	}
	if err := s.shredAccount(c.Request().Context(), account); err != nil {
		return err
	}
	// The account's own audit log has no reader left: the operator's keeps
	// the deletion, naming the account.
	setAuditTarget(c, string(account))
	c.Set(ctxKeyAuditAccount, apiary.DefaultAccount)
	return c.NoContent(http.StatusNoContent)
}

// shredAccount deletes account's tokens, cancels its unfinished jobs, disconnects its
// connections (revoking their tokens at the provider), erases its key,
// tells every process to forget it (Deps.Deletions), and deletes its
// vectors and records. Each step is idempotent: a deletion a
// failure cut short is finished by asking again.
func (s *Server) shredAccount(ctx context.Context, account apiary.AccountID) error {
	eraser, ok := s.deps.Keys.(encrypt.Eraser)
	if !ok {
		return apiary.E(apiary.KindInvalid, "this server's key provider cannot erase keys, so an account cannot be deleted here")
	}
	// Read with no sealed field opened: a deletion cut short after the
	// key's erasure is finished by asking again. Its record goes last, so
	// tokens left without it are a deletion to finish too.
	left, operator, err := s.deps.Records.AccountLeft(ctx, account)
	if err != nil {
		return fmt.Errorf("api: delete account %s: %w", account, err)
	}
	if !left {
		return apiary.E(apiary.KindNotFound, "no such account")
	}
	if operator {
		return apiary.E(apiary.KindConflict, "account %s holds an operator token; revoke it first (an operator token is needed to create and delete accounts)", account)
	}
	// Its tokens first: nothing authenticates as the account while the
	// rest goes. A request already past authentication may still write
	// until the account is marked deleted in the record store (by the
	// announcement below, in every process, and by DeleteAccountRecords,
	// durably): from then on its writes are refused with NotFound, and one
	// that raced the mark is taken back. A deletion cut short from here on
	// is finished by an operator asking again.
	if err := s.deps.Records.DeleteAccountTokens(ctx, account); err != nil {
		return fmt.Errorf("api: delete account %s: tokens: %w", account, err)
	}
	if _, err := s.cancelConnectionJobs(ctx, account, ""); err != nil {
		return fmt.Errorf("api: delete account %s: cancel jobs: %w", account, err)
	}
	if err := s.disconnectAll(ctx, account); err != nil {
		return fmt.Errorf("api: delete account %s: disconnect: %w", account, err)
	}
	if err := eraser.EraseAccountKey(ctx, account); err != nil {
		return fmt.Errorf("api: delete account %s: erase key: %w", account, err)
	}
	// Every process, this one too, drops the account's keys it keeps in
	// memory: nothing more is sealed under them, nor opened with them.
	if err := s.deps.Deletions.AnnounceDeleted(ctx, account); err != nil {
		return fmt.Errorf("api: delete account %s: announce: %w", account, err)
	}
	if err := s.deps.Search.DeleteAccount(ctx, account); err != nil {
		return fmt.Errorf("api: delete account %s: vectors: %w", account, err)
	}
	if err := s.deps.Records.DeleteAccountRecords(ctx, account); err != nil {
		return fmt.Errorf("api: delete account %s: records: %w", account, err)
	}
	s.log.Info("account deleted: key erased, vectors and records deleted", "account", account)
	return nil
}

// disconnectAll disconnects every connection of account that is not
// revoked already (their records go with the account's).
func (s *Server) disconnectAll(ctx context.Context, account apiary.AccountID) error {
	cursor := ""
	for {
		conns, next, err := s.conns.Connections(ctx, account, 100, cursor)
		if err != nil {
			return err
		}
		for _, c := range conns {
			if c.Status == records.ConnectionRevoked {
				continue
			}
			if _, err := s.conns.Disconnect(ctx, account, c.ID); err != nil && !errors.Is(err, apiary.ErrNotFound) {
				return err
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}
