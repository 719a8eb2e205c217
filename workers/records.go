package workers

import (
	"context"
	"time"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage/records"
)

// JobRecords is what the ingest handler reads and writes of the record
// store (records.JobStore): its job and the outcome of each document.
type JobRecords interface {
	Job(ctx context.Context, account apiary.AccountID, id apiary.JobID) (apiary.Job, error)
	UpdateJob(ctx context.Context, account apiary.AccountID, id apiary.JobID, fn func(*apiary.Job) error) (apiary.Job, error)
	RecordOutcome(ctx context.Context, account apiary.AccountID, job apiary.JobID, o apiary.DocumentOutcome) (bool, error)
	Outcomes(ctx context.Context, account apiary.AccountID, job apiary.JobID) (map[apiary.DocumentID]bool, apiary.Tally, error)
}

// SweepRecords is what the sweeper reads and writes of the record store
// (records.JobStore): the jobs that never reached the queue.
type SweepRecords interface {
	UnqueuedJobs(ctx context.Context, olderThan time.Time, limit int) ([]apiary.Job, error)
	UpdateJob(ctx context.Context, account apiary.AccountID, id apiary.JobID, fn func(*apiary.Job) error) (apiary.Job, error)
}

var (
	_ JobRecords   = (*records.JobStore)(nil)
	_ SweepRecords = (*records.JobStore)(nil)
)
