package admit

import (
	"time"

	"github.com/headroom-dev/headroom/internal/budget"
	"github.com/headroom-dev/headroom/internal/guard/config"
)

// policy resolves a ledger key to its limits: a per-key override, else the
// default budget. Tiers are resolved at compile time, so a request costs one
// map lookup.
type policy struct {
	def     budget.Limits
	byKey   map[string]budget.Limits
	tierOf  map[string]string
	labelOf map[string]string // overrides' labels, for the admin page
}

func compilePolicy(c *config.Config, fp *Fingerprinter) *policy {
	def := resolve(budget.Limits{}, c.Budget)
	if c.Shadow {
		def.Shadow = true
	}
	tiers := map[string]budget.Limits{}
	for _, t := range c.Tiers {
		l := resolve(def, t.Limits)
		l.Shadow = l.Shadow || c.Shadow
		tiers[t.Name] = l
	}
	p := &policy{def: def, byKey: map[string]budget.Limits{}, tierOf: map[string]string{}, labelOf: map[string]string{}}
	for _, o := range c.Overrides {
		base := def
		if o.Tier != "" {
			base = tiers[o.Tier]
		}
		l := resolve(base, o.Limits)
		l.Shadow = l.Shadow || c.Shadow
		var key string
		switch {
		case o.Key != "":
			key = fp.Fingerprint(o.Key)
		case o.Fingerprint != "":
			key = o.Fingerprint
		default:
			key = AddrPrefix + o.Client
		}
		p.byKey[key] = l
		if o.Tier != "" {
			p.tierOf[key] = o.Tier
		}
		if o.Label != "" {
			p.labelOf[key] = o.Label
		}
	}
	return p
}

// resolve applies the fields l sets over base.
func resolve(base budget.Limits, l config.Limits) budget.Limits {
	if l.WorkerTime != nil {
		base.Budget = l.WorkerTime.D()
	}
	if l.Window != nil {
		base.Window = l.Window.D()
	}
	if l.RestrictFor != nil {
		base.RestrictFor = l.RestrictFor.D()
	}
	if l.MaxInFlight != nil {
		base.MaxInFlight = *l.MaxInFlight
	}
	if l.Shadow != nil {
		base.Shadow = *l.Shadow
	}
	if base.Window == 0 {
		base.Window = time.Minute
	}
	return base
}

func (p *policy) limits(key string) budget.Limits {
	if l, ok := p.byKey[key]; ok {
		return l
	}
	return p.def
}

func (p *policy) tier(key string) string {
	if t, ok := p.tierOf[key]; ok {
		return t
	}
	if _, ok := p.byKey[key]; ok {
		return "override"
	}
	return "default"
}

func (p *policy) label(key string) string { return p.labelOf[key] }
