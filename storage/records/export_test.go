package records

// SetDeletedBound sets how many deleted accounts s remembers in memory
// (DefaultDeletedAccounts), for tests that pass the bound.
func SetDeletedBound(s *Store, n int) {
	s.gone.mu.Lock()
	defer s.gone.mu.Unlock()
	s.gone.max = n
}
