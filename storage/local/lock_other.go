//go:build !unix

package local

// syncDir is a no-op where directories cannot be fsynced.
func syncDir(string) error { return nil }
