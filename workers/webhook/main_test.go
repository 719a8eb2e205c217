package webhook_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.IgnoreLeaks()...) }
