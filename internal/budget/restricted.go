package budget

// TopRestricted returns up to n of the keys restricted now, highest usage
// first (then the restriction ending last), and how many are restricted in
// all. The admin page lists them apart from Top, whose n keys by usage can
// leave out a restricted key whose window has emptied.
func (l *Ledger) TopRestricted(n int, lim func(key string) Limits) ([]KeyStatus, int) {
	return l.selectTop(n, lim, true)
}
