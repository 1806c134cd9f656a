package appliance

// InFlight is the number of node sessions and operator commands running.
func (a *Appliance) InFlight() int { return a.active() }
