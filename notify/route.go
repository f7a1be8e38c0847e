package notify

import "time"

// route is a RouteConfig ready to match, with its defaults taken.
type route struct {
	index          int
	tenants        map[string]bool // nil: every tenant
	minRank        int
	receivers      []*receiver
	groupBy        []string
	groupWait      time.Duration
	groupInterval  time.Duration
	repeatInterval time.Duration
	sendResolved   bool
	cont           bool
	// grouped is true when a receiver is not an Alertmanager: the route
	// then keeps groups. Alertmanager receivers take every alert as it
	// comes.
	grouped bool
}

func newRoute(index int, rc RouteConfig, byName map[string]*receiver) *route {
	rc = rc.withDefaults()
	r := &route{
		index:          index,
		minRank:        Severity(rc.MinSeverity).rank(),
		groupBy:        rc.GroupBy,
		groupWait:      rc.GroupWait,
		groupInterval:  rc.GroupInterval,
		repeatInterval: rc.RepeatInterval,
		sendResolved:   rc.SendResolved.Or(true),
		cont:           rc.Continue,
	}
	if len(rc.Tenants) > 0 {
		r.tenants = make(map[string]bool, len(rc.Tenants))
		for _, t := range rc.Tenants {
			r.tenants[t] = true
		}
	}
	for _, name := range rc.Receivers {
		recv := byName[name]
		r.receivers = append(r.receivers, recv)
		if recv.kind != KindAlertmanager {
			r.grouped = true
		}
	}
	return r
}

func (r *route) matches(a *Alert) bool {
	if r.tenants != nil && !r.tenants[a.Tenant] {
		return false
	}
	return a.Severity.rank() >= r.minRank
}

// match returns the routes a takes: in order, the first that matches and,
// while a matched route has continue, the next ones that match.
func match(routes []*route, a *Alert) []*route {
	var out []*route
	for _, r := range routes {
		if !r.matches(a) {
			continue
		}
		out = append(out, r)
		if !r.cont {
			break
		}
	}
	return out
}
