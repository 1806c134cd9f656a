package appliance

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cairnbackup/cairn/repo"
	"github.com/cairnbackup/cairn/repo/blob"
	"github.com/cairnbackup/cairn/repo/drill"
	"github.com/cairnbackup/cairn/repo/snapshot"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveMetrics serves /metrics and the status page (page.go) on addr
// until stop is called.
func (a *Appliance) serveMetrics(addr string) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{a: a}, notifyCollector{a})
	reg.MustRegister(a.counters.collectors()...)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b := a.o.Build
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "cairn_build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
	}, func() float64 { return 1 }))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, Timeout: PageTimeout})
	srv := &http.Server{Handler: a.metricsHandler(ln, metrics), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: PageTimeout + 15*time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	go srv.Serve(ln)
	a.log.Info("metrics", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// collector computes the metrics from the appliance's state at each
// scrape. The blob totals (for the dedup and compression ratios) scan the
// index and are cached for ten minutes.
type collector struct {
	a *Appliance

	mu        sync.Mutex
	totalsAt  time.Time
	plaintext float64 // bytes of all blobs before compression
	stored    float64 // bytes of all blobs as stored
	dataBytes float64 // plaintext of data blobs
}

var (
	labels  = []string{"node", "plan", "paths"} // one source: status.Group
	descs   = map[string]*prometheus.Desc{}
	metrics = []struct {
		name, help string
		labels     []string
	}{
		{"cairn_snapshot_last_timestamp_seconds", "Time of the newest snapshot.", labels},
		{"cairn_snapshot_last_size_bytes", "Size of the files in the newest snapshot.", labels},
		{"cairn_snapshot_last_duration_seconds", "How long the newest snapshot's backup took.", labels},
		{"cairn_snapshots", "Snapshots kept.", labels},
		{"cairn_backup_missing", "1 if the newest snapshot is older than expected, or there is none (a configured node or an expected node/plan that never backed up).", labels},
		{"cairn_drill_last_success", "1 if the newest drill passed, 0 if it failed.", labels},
		{"cairn_drill_last_timestamp_seconds", "When the newest drill finished.", labels},
		{"cairn_drill_last_restore_seconds", "Measured recovery time of the newest drill.", labels},
		{"cairn_verify_coverage_ratio", "Share of stored bytes verified within the cycle.", nil},
		{"cairn_verify_oldest_timestamp_seconds", "Oldest verification of any pack.", nil},
		{"cairn_verify_never_packs", "Packs never verified.", nil},
		{"cairn_repository_stored_bytes", "Bytes of all packs.", nil},
		{"cairn_repository_packs", "Packs.", nil},
		{"cairn_repository_compression_ratio", "Plaintext of all blobs / their stored size.", nil},
		{"cairn_repository_dedup_ratio", "Files in all snapshots / unique data.", nil},
		{"cairn_job_last_success", "1 if the job's last run was ok, 0 if it failed or needs attention.", []string{"job"}},
		{"cairn_job_last_run_timestamp_seconds", "Start of the job's last run.", []string{"job"}},
		{"cairn_sessions", "Node sessions and operator commands in flight.", nil},
		{"cairn_replica_lag_bytes", "Bytes the repository holds that the replica lacks: what its last replication left behind and the packs stored since.", []string{"replica"}},
		{"cairn_replica_lag_seconds", "Time since the newest replication that got through listed the repository (the replica holds what the repository held then).", []string{"replica"}},
		{"cairn_replica_last_success_timestamp_seconds", "When the newest replication that got through ended.", []string{"replica"}},
		{"cairn_replica_last_run_success", "1 if the replica's last replication copied everything, 0 if it failed or left something behind.", []string{"replica"}},
		{"cairn_replica_overdue", "1 if no replication got through within two intervals of the replica's schedule (or ever).", []string{"replica"}},
		{"cairn_replica_stored_bytes", "Bytes of the packs on the replica, at its last replication.", []string{"replica"}},
		{"cairn_replica_last_verified_timestamp_seconds", "Start of the replica's last verification.", []string{"replica"}},
		{"cairn_replica_last_drill_timestamp_seconds", "When the replica's newest drill finished.", []string{"replica"}},
		{"cairn_replica_last_drill_success", "1 if the replica's newest drill passed, 0 if it failed.", []string{"replica"}},
	}
)

func init() {
	for _, m := range metrics {
		descs[m.name] = prometheus.NewDesc(m.name, m.help, m.labels, nil)
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := c.a.Config()
	st, err := c.a.Status(ctx, cfg)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descs["cairn_snapshots"], err)
		return
	}
	g := func(name string, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(descs[name], prometheus.GaugeValue, v, lv...)
	}
	var logical float64
	for _, grp := range st.Groups {
		n, p := grp.Node, grp.Plan
		paths := strings.Join(grp.Paths, " ")
		g("cairn_snapshot_last_timestamp_seconds", float64(grp.Last.Time.Unix()), n, p, paths)
		g("cairn_snapshot_last_size_bytes", float64(grp.Last.Bytes), n, p, paths)
		g("cairn_snapshot_last_duration_seconds", grp.Last.Duration.Seconds(), n, p, paths)
		g("cairn_snapshots", float64(grp.Snapshots), n, p, paths)
		g("cairn_backup_missing", b2f(grp.Missing), n, p, paths)
		if grp.Drill != nil {
			g("cairn_drill_last_success", b2f(grp.Drill.Result == drill.ResultOK), n, p, paths)
			g("cairn_drill_last_timestamp_seconds", float64(grp.Drill.Time.Unix()), n, p, paths)
			g("cairn_drill_last_restore_seconds", grp.Drill.RestoreSeconds, n, p, paths)
		}
	}
	for _, n := range st.Never {
		g("cairn_snapshots", 0, n.Node, n.Plan, "")
		g("cairn_backup_missing", 1, n.Node, n.Plan, "")
	}
	list, err := c.a.r.Snapshots(ctx, snapshotAll)
	if err == nil {
		for _, e := range list {
			logical += float64(e.Summary.Bytes)
		}
	}
	g("cairn_verify_coverage_ratio", st.VerifiedFraction)
	if !st.OldestVerified.IsZero() {
		g("cairn_verify_oldest_timestamp_seconds", float64(st.OldestVerified.Unix()))
	}
	g("cairn_verify_never_packs", float64(st.NeverVerified))
	g("cairn_repository_stored_bytes", float64(st.StoredBytes))
	g("cairn_repository_packs", float64(st.Packs))
	if plain, stored, data, err := c.totals(); err == nil {
		if stored > 0 {
			g("cairn_repository_compression_ratio", plain/stored)
		}
		if data > 0 {
			g("cairn_repository_dedup_ratio", logical/data)
		}
	}
	for _, j := range st.Jobs {
		if j.LastStart.IsZero() {
			continue
		}
		g("cairn_job_last_success", b2f(j.Status == "ok"), j.Name)
		g("cairn_job_last_run_timestamp_seconds", float64(j.LastStart.Unix()), j.Name)
	}
	g("cairn_sessions", float64(c.a.active()))
	for _, r := range st.Replicas {
		g("cairn_replica_lag_bytes", float64(r.LagBytes), r.Name)
		g("cairn_replica_overdue", b2f(r.Overdue), r.Name)
		if !r.Replicated.IsZero() {
			g("cairn_replica_lag_seconds", r.Lag.Seconds(), r.Name)
			g("cairn_replica_last_success_timestamp_seconds", float64(r.Ended.Unix()), r.Name)
			g("cairn_replica_stored_bytes", float64(r.StoredBytes), r.Name)
		}
		if !r.LastRun.IsZero() {
			g("cairn_replica_last_run_success", b2f(r.LastStatus == "ok"), r.Name)
		}
		if !r.LastVerified.IsZero() {
			g("cairn_replica_last_verified_timestamp_seconds", float64(r.LastVerified.Unix()), r.Name)
		}
		if !r.LastDrilled.IsZero() {
			g("cairn_replica_last_drill_timestamp_seconds", float64(r.LastDrilled.Unix()), r.Name)
			g("cairn_replica_last_drill_success", b2f(r.DrillStatus == drill.ResultOK), r.Name)
		}
	}
}

func (c *collector) totals() (plain, stored, data float64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.totalsAt) < 10*time.Minute && !c.totalsAt.IsZero() {
		return c.plaintext, c.stored, c.dataBytes, nil
	}
	var p, s, d float64
	err = c.a.r.IndexedBlobs(func(h blob.Handle, loc repo.Location) error {
		p += float64(loc.RawLength)
		s += float64(loc.Length)
		if h.Type == blob.Data {
			d += float64(loc.RawLength)
		}
		return nil
	})
	if err != nil {
		return 0, 0, 0, err
	}
	c.plaintext, c.stored, c.dataBytes, c.totalsAt = p, s, d, time.Now()
	return p, s, d, nil
}

var snapshotAll = snapshot.Filter{}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
