package jobs

import (
	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/connectors"
)

// SourceSubmission is the submission of a job that ingests (or, with
// spec.Sync, syncs) spec's source for account: its one staged document is
// the spec, the total is known once the source is listed. The ingest and
// sync routes and the scheduler all submit sources through it.
func SourceSubmission(account apiary.AccountID, spec connectors.Spec, webhookURL string) Submission {
	return Submission{
		Account:    account,
		Kind:       apiary.JobKindSource,
		Source:     spec.Provider,
		Connection: spec.Connection,
		Documents:  []apiary.Document{spec.Document()},
		Unlisted:   true,
		WebhookURL: webhookURL,
	}
}
