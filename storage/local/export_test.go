package local

// AppendTerms is appendTerms, for tests that look for terms in the clear.
var AppendTerms = appendTerms
