package sqs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestVisibilityBounds(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		received time.Time
		want     int32
	}{
		{"just received", now, 43200},
		{"an hour ago", now.Add(-time.Hour), 39600},
		{"half a second ago", now.Add(-500 * time.Millisecond), 43199},
		{"12h ago", now.Add(-MaxVisibility), 0},
		{"a day ago", now.Add(-24 * time.Hour), 0},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, visibilityLeft(tt.received, now), tt.name)
	}

	for d, want := range map[time.Duration]int32{
		-time.Second:            0,
		0:                       0,
		time.Millisecond:        1,
		time.Second:             1,
		1500 * time.Millisecond: 2,
		3 * time.Second:         3,
		48 * time.Hour:          43200,
	} {
		require.Equal(t, want, ceilSeconds(d), "ceilSeconds(%s)", d)
	}
}
