package appliance

import (
	"context"
	"fmt"

	"github.com/cairnbackup/cairn/scheduler"
)

// Reload rereads the configuration file and puts all of it in force at
// once, or, when anything in it is wrong, changes nothing and says why.
// Everything is checked first: the configuration itself (nodes, keys,
// permissions, limits, retention, job schedules, probes) and then the
// scheduler made from it. Only then does the running scheduler stop (a
// job running at that moment is cancelled), the configuration is
// swapped, and the new scheduler starts; Reload returns once its plan is
// in force. Connections and sessions the new configuration no longer
// grants are revoked (see revoke.go). The listen address, the socket and the metrics address are
// read at start only: a change to them is logged and waits for a restart.
func (a *Appliance) Reload() error {
	a.schedMu.Lock()
	defer a.schedMu.Unlock()
	cfg, err := LoadConfig(a.o.ConfigPath)
	if err != nil {
		return err
	}
	var s *scheduler.Scheduler
	if a.stopSched != nil {
		if s, err = a.newScheduler(cfg); err != nil {
			return fmt.Errorf("config %s: %w", a.o.ConfigPath, err)
		}
	}
	old := a.Config()
	if a.stopSched != nil {
		a.stopSchedulerLocked()
	}
	a.cfg.Store(cfg)
	a.touchCounters(cfg)
	a.revoke(cfg)
	if s != nil {
		a.runScheduler(s)
	}
	for _, c := range []struct{ key, was, is string }{{"listen", old.Listen, cfg.Listen}, {"socket", old.Socket, cfg.Socket}, {"metrics", old.Metrics, cfg.Metrics}} {
		if c.was != c.is {
			a.log.Warn("configuration changed a setting read only at start: restart the appliance to apply it", "key", c.key, "running", c.was, "configured", c.is)
		}
	}
	a.log.Info("configuration reloaded", "nodes", len(cfg.Nodes))
	return nil
}

// Ready is closed once Run serves: the operator socket and the SSH
// listener accept, and the scheduler's plan is in force.
func (a *Appliance) Ready() <-chan struct{} { return a.ready }

// Scheduler returns the running job scheduler, or nil.
func (a *Appliance) Scheduler() *scheduler.Scheduler { return a.sched.Load() }

func (a *Appliance) newScheduler(cfg *Config) (*scheduler.Scheduler, error) {
	return scheduler.New(a.jobs(cfg), History{R: a.r}, scheduler.Options{Logger: a.log, Notify: a.afterRun})
}

// startScheduler makes and starts the scheduler of cfg.
func (a *Appliance) startScheduler(cfg *Config) error {
	a.schedMu.Lock()
	defer a.schedMu.Unlock()
	s, err := a.newScheduler(cfg)
	if err != nil {
		return err
	}
	a.runScheduler(s)
	return nil
}

// runScheduler runs s until stopScheduler and returns once its plan is
// in force. schedMu is held.
func (a *Appliance) runScheduler(s *scheduler.Scheduler) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	a.sched.Store(s)
	a.stopSched, a.schedDone = cancel, done
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			a.log.Error("scheduler", "err", err)
		}
	}()
	select {
	case <-s.Started():
	case <-done:
	}
}

func (a *Appliance) stopScheduler() {
	a.schedMu.Lock()
	defer a.schedMu.Unlock()
	a.stopSchedulerLocked()
}

func (a *Appliance) stopSchedulerLocked() {
	if a.stopSched != nil {
		a.stopSched()
		<-a.schedDone
		a.stopSched = nil
		a.sched.Store(nil)
	}
}
