# cairn — see README.md. Every target works on a fresh Debian machine
# with Go installed.
GO       ?= go
BIN      := bin/cairn
VAR      ?= $(CURDIR)/var
REPO     ?= $(VAR)/repo
STATICCHECK_VERSION := v0.8.2
FUZZTIME ?= 10s
# Stamped into the binary (cairn version, cairn_build_info).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build deps test bench run lint fuzz clean package

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/cairn

# The Debian package: the binary (version stamped), the systemd units and
# example configuration of cmd/cairn/dist, man pages and bash, zsh and
# fish completions generated from the binary. Built with nfpm v2.48.0
# through its Go API by cmd/cairn/packaging (a module of its own, so nfpm
# never enters cairn's go.mod), fetched from the Go module proxy on first
# use. Written to PKG_OUT; prints its path.
PKG_OUT ?= $(CURDIR)/bin
PKG_BUILD ?= $(CURDIR)/bin/package
package:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o '$(PKG_BUILD)/cairn' ./cmd/cairn
	cd cmd/cairn/packaging && $(GO) run . --bin '$(PKG_BUILD)/cairn' --version '$(VERSION)' \
		--commits $$(git rev-list --count HEAD 2>/dev/null || echo 0) \
		--date $$(git log -1 --format=%ct 2>/dev/null || date +%s) --out '$(PKG_OUT)'

# Installs the Debian packages the tests need (.ci/packages) when missing,
# and builds SeaweedFS's weed (the S3 store of the object-storage tests)
# once into ~/.cache/cairn (.ci/build-weed: about 4 minutes the first time).
deps:
	@./.ci/install-deps
	@./.ci/build-weed

# The test command: race detector on, every package, real components.
# -timeout: the integration package runs for 10-12 minutes on two busy
# cores, past go test's default of 10.
test: deps
	$(GO) test -race -count=1 -timeout 25m ./...
	cd cmd/cairn/packaging && $(GO) test -count=1 ./...

# Go benchmarks for the chunker, sealing, packs, the index and the filter
# (MB/s), the backup pipeline and the restore writer in process, storage
# of 16 MiB packs on a directory and on SeaweedFS over S3, then
# backup and restore of a generated ~1 GiB tree with the real
# binary (MB/s and peak RSS per phase).
bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./chunker/ ./repo/blob/ ./repo/seal/ ./repo/pack/ ./repo/internal/index/ ./repo/filter/
	$(GO) test -run '^$$' -bench 'Pipeline|Restore' -benchtime 3x ./repo/backup/ ./repo/restore/ ./repo/wire/
	$(GO) test -run '^$$' -bench 'VerifyPack' -benchtime 10x ./repo/
	$(GO) test -run '^$$' -bench 'Storage' -benchtime 20x ./repo/storage/
	$(GO) test -run '^$$' -bench Prune200k -benchtime 1x ./repo/prune/
	$(GO) test -run '^$$' -bench 'BackupRestore|FUSE' -benchtime 1x ./integration/

# Memory as the repository grows: fills a repository's index with
# BLOBS (default 5 000 000) entries, then measures the peak RSS of a
# backup, an unchanged backup and mounts (integration/largeindex_bench_test.go).
# About two minutes.
BLOBS ?= 5000000
.PHONY: bench-large-index
bench-large-index:
	CAIRN_BENCH_BLOBS=$(BLOBS) $(GO) test -run '^$$' -bench LargeIndex -benchtime 1x -timeout 60m ./integration/

# The main job: the appliance on ./var. Creates the repository, a demo
# node key and a configuration naming the demo node and serving metrics
# on loopback (once each), checks DIR.yaml (cairn config check), prints
# the push command to try from another terminal with the addresses
# DIR.yaml gives, then serves until ^C.
DEMO_KEY := $(VAR)/demo_key
run: build
	@mkdir -p $(VAR)
	@if [ ! -f $(REPO)/config ]; then $(BIN) --repo $(REPO) init; fi
	@if [ ! -f $(DEMO_KEY) ]; then $(BIN) keygen $(DEMO_KEY) >/dev/null; fi
	@if ! grep -q '^  demo:' $(REPO).yaml 2>/dev/null; then \
		printf 'listen: 127.0.0.1:2222\nmetrics: 127.0.0.1:9100\nnodes:\n  demo:\n    keys: ["%s"]\n    permissions: [push, read]\n' \
			"$$(cat $(DEMO_KEY).pub)" > $(REPO).yaml; fi
	@$(BIN) config check $(REPO).yaml >/dev/null
	@json=$$($(BIN) config check --json $(REPO).yaml); \
	listen=$$(echo "$$json" | sed -n 's/^  "listen": "\(.*\)",$$/\1/p'); \
	metrics=$$(echo "$$json" | sed -n 's/^  "metrics": "\(.*\)",$$/\1/p'); \
	loopback() { case $$1 in :*) echo 127.0.0.1$$1;; 0.0.0.0:*) echo 127.0.0.1:$${1#0.0.0.0:};; *) echo $$1;; esac; }; \
	echo; \
	echo "The appliance serves $(REPO) on $$listen. From another terminal, push this source tree:"; \
	echo; \
	echo "  $(BIN) push ssh://demo@$$(loopback $$listen) $(CURDIR)/docs -i $(DEMO_KEY) --host-key $$($(BIN) keygen --show $(REPO).host_key)"; \
	echo "  $(BIN) --repo $(REPO) snapshots"; \
	if [ -n "$$metrics" ]; then echo "  curl -s http://$$(loopback $$metrics)/metrics | grep ^cairn_"; fi; \
	echo
	$(BIN) --repo $(REPO) serve

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd cmd/cairn/packaging && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
		done; \
	done

clean:
	rm -rf bin

# A repository in an object store beside one in a directory: first
# backup, unchanged re-backup, restore and check --read-data of the
# generated ~1.1 GiB tree (datagen.Bench) with the real binary, into a
# directory and into SeaweedFS on loopback, then restic's s3 backend
# against the same server (integration/s3bench_test.go): MB/s and peak
# RSS per phase (the fastest of three), and the object store's share of
# the directory's throughput. Builds weed (make deps) and restic
# RESTIC_VERSION once into the cache. About five minutes once both are
# built (4m08s-4m20s on 2026-12-07); needs about 15 GB in $TMPDIR.
CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/cairn
RESTIC_VERSION := v0.19.1
RESTIC := $(CACHE_DIR)/restic-$(RESTIC_VERSION)/restic
.PHONY: bench-s3
bench-s3: deps $(RESTIC)
	CAIRN_RESTIC=$(RESTIC) $(GO) test -run '^$$' -bench ObjectStore -benchtime 1x -timeout 60m ./integration/

$(RESTIC):
	GOBIN=$(dir $@) $(GO) install github.com/restic/restic/cmd/restic@$(RESTIC_VERSION)

# Replication of the peers dataset's repository (datagen.Homelab, the
# tree of bench-peers) to SeaweedFS on loopback beside the store's own
# upload rate for the same packs, then an incremental replication after a
# day's mutation: MB/s, the share of the store's rate (target at least
# 70 %), bytes sent against bytes added, and replicate's peak RSS
# (integration/replicas_bench_test.go). About 75 s once weed is built.
.PHONY: bench-replicas
bench-replicas: deps
	$(GO) test -run '^$$' -bench Replication -benchtime 1x -timeout 60m ./integration/

# kopia, built once into the cache from the tools module
# integration/tools/kopia (its go.mod pins the version).
KOPIA_VERSION := $(shell awk '$$1 == "require" && $$2 == "github.com/kopia/kopia" { print $$3 }' integration/tools/kopia/go.mod)
KOPIA := $(CACHE_DIR)/kopia-$(KOPIA_VERSION)/kopia
$(KOPIA):
	mkdir -p $(dir $@)
	GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" $(GO) -C integration/tools/kopia build -trimpath -o $@.tmp github.com/kopia/kopia
	mv $@.tmp $@

# Compares cairn with restic 0.14 and borg 1.2 (Debian), restic
# RESTIC_VERSION and kopia KOPIA_VERSION (built once into the cache) on
# the same generated ~2 GiB tree (integration/peers/README.md): every
# phase under /usr/bin/time -v with the page cache dropped (as root);
# installs restic, borgbackup and time when missing. Prints a Markdown
# table; results in /tmp/cairn-peers. PEERS_FLAGS=--quick for a smoke
# run on a small tree.
.PHONY: bench-peers
bench-peers: $(RESTIC) $(KOPIA)
	$(GO) run ./integration/peers --restic19 $(RESTIC) --kopia $(KOPIA) $(PEERS_FLAGS)

# The torture suite (integration/torture, -torture): SIGKILLs at hundreds
# of points of backup, push, forget, prune, repair index and drill; a
# full disk; bit rot in every kind of file; hostile nodes and hostile
# input; 8 nodes pushing under drills and prunes. Then every fuzz target
# for TORTURE_FUZZTIME. Prints the results table (fault, runs, detected,
# data lost), also kept in TORTURE_REPORT; TORTURE_SEED=N replays a run.
# About 15 minutes on 2 cores (14m06s on 2026-11-26). (make test runs a bounded subset.)
TORTURE_FUZZTIME ?= 20s
TORTURE_REPORT ?= /tmp/cairn-torture.md
.PHONY: torture
torture: deps
	@status=0; \
	$(GO) test -count=1 -timeout 30m ./integration/torture/ -torture -torture.report $(TORTURE_REPORT) $(if $(TORTURE_SEED),-torture.seed $(TORTURE_SEED)) || status=1; \
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(TORTURE_FUZZTIME) || status=1; \
	echo; cat $(TORTURE_REPORT); exit $$status
