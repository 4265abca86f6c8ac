# ---------------------------------------------------------------------------
# tools: the test control plane (etcd, kube-apiserver) and the real clients
# (kubectl, helm), built from the Go modules pinned in tools/go.mod into
# tools/bin/. See tools/README.md.
#
#   make tools                          build what is missing or older than the pin
#   make promtool                       promtool, pinned in tools/promtool/go.mod (make test needs it)
#   GO_BUILD_FLAGS=-p=1 make tools      extra `go build` flags (here: one package at a time)
#   GO_BUILD_FLAGS=-v make tools        list every package as it compiles
#   make tools-check                    go.mod's staging replaces match the pinned kubernetes;
#                                       go mod verify of both modules
#   make tools-clean                    remove tools/bin/
#
# A binary is rebuilt only when its go.mod or go.sum is newer than it;
# Go's build cache makes a rebuild after a pin move recompile only what changed.
# ---------------------------------------------------------------------------

TOOLS_DIR := tools
TOOLS_BIN := $(TOOLS_DIR)/bin
TOOLS_PIN := $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum
TOOLS_BINARIES := $(addprefix $(TOOLS_BIN)/,etcd kube-apiserver kubectl helm)

# promtool (the chart's PrometheusRule is checked and unit-tested with it) has
# a go.mod of its own, so that Prometheus's dependency graph never moves the
# Kubernetes pins above.
PROMTOOL_DIR := $(TOOLS_DIR)/promtool
PROMTOOL_PIN := $(PROMTOOL_DIR)/go.mod $(PROMTOOL_DIR)/go.sum
PROMTOOL := $(TOOLS_BIN)/promtool

GO ?= go
GO_BUILD_FLAGS ?=

# Evaluated only when a tools recipe runs (recursive `=`), so other targets
# of this Makefile never call go.
tools_mod = $(shell cd $(TOOLS_DIR) && $(GO) list -m -f '$(2)' $(1))
TOOLS_K8S_VERSION = $(call tools_mod,k8s.io/kubernetes,{{.Version}})
TOOLS_K8S_DATE = $(call tools_mod,k8s.io/kubernetes,{{.Time.UTC.Format "2006-01-02T15:04:05Z"}})
TOOLS_HELM_VERSION = $(call tools_mod,helm.sh/helm/v3,{{.Version}})
TOOLS_CLIENT_GO_VERSION = $(call tools_mod,k8s.io/client-go,{{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}})

# What k8s's hack/lib/version.sh sets, for both version packages, so that
# `kube-apiserver --version` and `kubectl version --client` print the release.
# gitCommit is not known from the module proxy: set empty rather than the
# source's "$Format:%H$" placeholder.
tools_k8s_major = $(word 1,$(subst ., ,$(patsubst v%,%,$(TOOLS_K8S_VERSION))))
tools_k8s_minor = $(word 2,$(subst ., ,$(patsubst v%,%,$(TOOLS_K8S_VERSION))))
tools_k8s_ldflags = $(foreach pkg,k8s.io/client-go/pkg/version k8s.io/component-base/version, \
	-X $(pkg).gitVersion=$(TOOLS_K8S_VERSION) \
	-X $(pkg).gitMajor=$(tools_k8s_major) \
	-X $(pkg).gitMinor=$(tools_k8s_minor) \
	-X $(pkg).gitCommit= \
	-X $(pkg).gitTreeState=clean \
	-X $(pkg).buildDate=$(TOOLS_K8S_DATE))

# What helm's own Makefile sets: its version, and the Kubernetes version its
# chart capabilities and lint rules default to (client-go v0.X.Y => 1.X).
tools_helm_k8s_minor = $(word 2,$(subst ., ,$(patsubst v%,%,$(TOOLS_CLIENT_GO_VERSION))))
tools_helm_ldflags = \
	-X helm.sh/helm/v3/internal/version.version=$(TOOLS_HELM_VERSION) \
	-X helm.sh/helm/v3/internal/version.gitTreeState=clean \
	$(foreach pkg,helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil, \
		-X $(pkg).k8sVersionMajor=1 -X $(pkg).k8sVersionMinor=$(tools_helm_k8s_minor))

TOOLS_PROMETHEUS_VERSION = $(shell cd $(PROMTOOL_DIR) && $(GO) list -m -f '{{.Version}}' github.com/prometheus/prometheus)
TOOLS_PROMETHEUS_DATE = $(shell cd $(PROMTOOL_DIR) && $(GO) list -m -f '{{.Time.UTC.Format "20060102-15:04:05"}}' github.com/prometheus/prometheus)
tools_prometheus_release = $(shell echo '$(TOOLS_PROMETHEUS_VERSION)' | sed -E 's/^v0\.([0-9]+)([0-9]{2})\.(.*)$$/\1.\2.\3/; s/\.0([0-9])\./.\1./')
tools_promtool_ldflags = \
	-X github.com/prometheus/common/version.Version=$(tools_prometheus_release) \
	-X github.com/prometheus/common/version.Revision= \
	-X github.com/prometheus/common/version.Branch=HEAD \
	-X github.com/prometheus/common/version.BuildUser=httpsdelivery-tools \
	-X github.com/prometheus/common/version.BuildDate=$(TOOLS_PROMETHEUS_DATE)

# $(1): output binary, $(2): main package, $(3): extra -X ldflags,
# $(4): the module folder whose go.mod pins it (default: $(TOOLS_DIR)).
# Built into a temporary name first, so an interrupted build never leaves a
# binary that looks up to date.
define tools_go_build
	@echo ">> building $(notdir $(1)) from $(2) (GO_BUILD_FLAGS='$(GO_BUILD_FLAGS)')"
	@mkdir -p $(dir $(1))
	@start=$$(date +%s); \
	cd $(or $(4),$(TOOLS_DIR)) && CGO_ENABLED=0 $(GO) build -trimpath $(GO_BUILD_FLAGS) \
		-ldflags '-s -w $(strip $(3))' -o $(abspath $(1)).tmp $(2) && \
	mv $(abspath $(1)).tmp $(abspath $(1)) && \
	echo ">> built $(1) in $$(( $$(date +%s) - start ))s"
endef

.PHONY: tools tools-check tools-clean promtool

tools: $(TOOLS_BINARIES)
	@echo ">> tools up to date in $(TOOLS_BIN)/: $(notdir $(TOOLS_BINARIES))"

# Only the tests need it (tests/alerts.rs), not the demo: `make test` depends on it.
promtool: $(PROMTOOL)
	@echo ">> promtool up to date in $(TOOLS_BIN)/"

# etcd's release binary is the main package at the root of its server module.
# Its version is a constant of go.etcd.io/etcd/api/v3; the commit is not known
# here, and GitNotFound is what etcd's own build.sh sets then.
$(TOOLS_BIN)/etcd: $(TOOLS_PIN)
	$(call tools_go_build,$@,go.etcd.io/etcd/server/v3,-X go.etcd.io/etcd/api/v3/version.GitSHA=GitNotFound)

$(TOOLS_BIN)/kube-apiserver: $(TOOLS_PIN)
	$(call tools_go_build,$@,k8s.io/kubernetes/cmd/kube-apiserver,$(tools_k8s_ldflags))

$(TOOLS_BIN)/kubectl: $(TOOLS_PIN)
	$(call tools_go_build,$@,k8s.io/kubernetes/cmd/kubectl,$(tools_k8s_ldflags))

$(TOOLS_BIN)/helm: $(TOOLS_PIN)
	$(call tools_go_build,$@,helm.sh/helm/v3/cmd/helm,$(tools_helm_ldflags))

# What Prometheus's .promu.yml sets, so that `promtool --version` prints the
# release (module v0.X.Y is Prometheus 3.X.Y). Revision is not known from the
# module proxy: left empty.
$(PROMTOOL): $(PROMTOOL_PIN)
	$(call tools_go_build,$@,github.com/prometheus/prometheus/cmd/promtool,$(tools_promtool_ldflags),$(PROMTOOL_DIR))

tools-check:
	$(TOOLS_DIR)/gen-replaces.sh --check
	cd $(TOOLS_DIR) && $(GO) mod verify
	cd $(PROMTOOL_DIR) && $(GO) mod verify

tools-clean:
	rm -rf $(TOOLS_BIN)

# ---------------------------------------------------------------------------
# The Gateway API CRDs the route-audit tests install (tests/routes.rs): the standard channel's
# HTTPRoute CRD (it needs no other) from sigs.k8s.io/gateway-api, pinned in
# tools/gateway-api/go.mod (apart from tools/go.mod, whose k8s.io pins it must not move).
# Nothing is built: the module is downloaded through the Go module proxy and the CRD copied
# into tools/crds/gateway-api/ (gitignored).
#
#   make gateway-api-crds   download the pinned module when missing, copy its CRD
# ---------------------------------------------------------------------------

GATEWAY_API_DIR := $(TOOLS_DIR)/gateway-api
GATEWAY_API_PIN := $(GATEWAY_API_DIR)/go.mod $(GATEWAY_API_DIR)/go.sum
GATEWAY_API_CRDS := $(TOOLS_DIR)/crds/gateway-api
GATEWAY_API_FILES := gateway.networking.k8s.io_httproutes.yaml

.PHONY: gateway-api-crds

gateway-api-crds: $(addprefix $(GATEWAY_API_CRDS)/,$(GATEWAY_API_FILES))

# go.sum pins the module's hash: `go mod download` refuses a module that does not match it.
$(GATEWAY_API_CRDS)/%.yaml: $(GATEWAY_API_PIN)
	@mkdir -p $(GATEWAY_API_CRDS)
	@dir=$$(cd $(GATEWAY_API_DIR) && $(GO) mod download sigs.k8s.io/gateway-api && \
		$(GO) list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api) && test -n "$$dir" && \
	cp $$dir/config/crd/standard/$*.yaml $@.tmp && chmod u+w $@.tmp && mv $@.tmp $@ && \
	echo ">> copied $* from $$dir into $(GATEWAY_API_CRDS)/"

# ---------------------------------------------------------------------------
# The Rust crate
#
#   make test-fast  fmt check, clippy, then `cargo test --workspace`: no tools, no buildah, no
#                   Go or static build. The tests that need the control plane, buildah or the
#                   demo are `#[ignore]`d, and reported as ignored here.
#   make test       the whole suite, what .ci/run calls: test-deps, the tools, promtool and the
#                   Gateway API CRDs if needed, fmt, clippy, the binaries, the static binary and
#                   its SBOM (`make sbom`, which
#                   builds cargo-cyclonedx once), then every test including the ignored ones
#   make test-deps  the system package the suite needs: installs buildah from Debian's
#                   packages (apt-get, as root) when it is missing, and says so
#   make crds       regenerate crds/ from the Rust types (a test fails when they drift)
#   make bench      the shared-work benchmark (see README)
#   make bench-scale N=10000   the operator at scale on the real control plane (see README)
# ---------------------------------------------------------------------------

CARGO ?= cargo

.PHONY: test test-fast test-deps lint crds bench bench-scale bench-provider build

build:
	$(CARGO) build --release

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-fast: lint
	$(CARGO) test --workspace

# The image test (tests/image.rs) needs buildah: Debian's package, no daemon, no registry.
# It is the only system package the suite installs, and only when it is missing.
test-deps:
	@if command -v buildah >/dev/null; then \
		echo ">> test-deps: buildah is installed ($$(command -v buildah))"; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo ">> test-deps: the image test needs buildah, which is missing, and installing it needs root:" >&2; \
		echo ">>   sudo apt-get install --no-install-recommends buildah   (then run make test again)" >&2; \
		exit 1; \
	else \
		echo ">> test-deps: installing buildah from Debian's packages (apt-get, as root): the image test builds the container image with it"; \
		apt-get update -q && apt-get install -y -q --no-install-recommends buildah; \
	fi

# The binaries first: the demo's test runs the operator binary it finds in target/debug.
test: test-deps tools promtool gateway-api-crds lint
	$(CARGO) build --workspace --bins
	$(STATIC_BUILD)
	$(MAKE) --no-print-directory sbom
	$(CARGO) test --workspace -- --include-ignored

# Written through a temporary file, as manifests is, so that a failed or interrupted run never
# leaves a truncated CRD. The chart's copy and the plain manifests follow the CRD.
CRD_KINDS := httpsdelivery cdnaccount clustercdnaccount

crds:
	for kind in $(CRD_KINDS); do \
		$(CARGO) run -q -- crd $$kind > crds/$$kind.yaml.tmp \
			&& test -s crds/$$kind.yaml.tmp \
			&& mv crds/$$kind.yaml.tmp crds/$$kind.yaml \
			|| { rm -f crds/$$kind.yaml.tmp; exit 1; }; \
	done
	$(MAKE) --no-print-directory manifests

bench:
	$(CARGO) bench --bench shared_work

# Provider mode: N deliveries of one CDN account read through one shared account (at a
# budget of RPS requests/s) against an account per delivery, on the fake Edgecast API.
RPS ?= 200
bench-provider:
	$(CARGO) bench --bench provider_sharing -- $(or $(PROVIDER_N),1000) $(RPS)

# The operator on the real control plane against N deliveries, beside a raw-apply client.
N ?= 1000
bench-scale: tools
	$(CARGO) bench --bench scale -- $(N)

# ---------------------------------------------------------------------------
# The quick start: a local control plane, a loopback internet, the chart, the
# operator and the examples. Ctrl-C stops everything; DEMO_EXIT=1 exits after
# printing.
# ---------------------------------------------------------------------------

.PHONY: demo

demo:
	@echo ">> building etcd, kube-apiserver, kubectl and helm from source if needed (about 12 minutes the first time, on 2 cores)"
	@$(MAKE) --no-print-directory tools
	@echo ">> building the operator and the demo"
	$(CARGO) build --workspace --bins
	./target/debug/demo

# ---------------------------------------------------------------------------
# Deployment artifacts
#
#   make manifests  copy crds/ into the chart and render deploy/httpsdelivery-operator.yaml:
#                   deploy/namespace.yaml, then the chart with its default values (tests/chart.rs
#                   fails when either drifts). Uses tools/bin/helm, built by `make tools` when
#                   missing.
#   make install    build the release binary and install it into $(DESTDIR)$(PREFIX)/bin (PREFIX
#                   defaults to /usr/local), with the kubectl plugin's name kubectl-httpsdelivery
#                   as a symlink to it: `kubectl httpsdelivery check -f DIR`.
#   make install-bin   the same without the build, of INSTALL_BIN (default: the release binary)
# ---------------------------------------------------------------------------

CHART_DIR := charts/httpsdelivery-operator
MANIFESTS := deploy/httpsdelivery-operator.yaml
MANIFESTS_NAMESPACE := deploy/namespace.yaml

.PHONY: manifests install install-bin

manifests: | $(TOOLS_BIN)/helm
	cp $(foreach kind,$(CRD_KINDS),crds/$(kind).yaml) $(CHART_DIR)/crds/
	{ cat $(MANIFESTS_NAMESPACE) && $(TOOLS_BIN)/helm template httpsdelivery-operator $(CHART_DIR) \
		--namespace httpsdelivery-system --include-crds; } > $(MANIFESTS).tmp \
		|| { rm -f $(MANIFESTS).tmp; exit 1; }
	mv $(MANIFESTS).tmp $(MANIFESTS)
	@echo ">> rendered $(MANIFESTS) from $(MANIFESTS_NAMESPACE) and $(CHART_DIR)"

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
INSTALL_BIN ?= $(or $(CARGO_TARGET_DIR),target)/release/httpsdelivery-operator
# kubectl runs `kubectl-httpsdelivery ARGS` for `kubectl httpsdelivery ARGS`.
KUBECTL_PLUGIN := kubectl-httpsdelivery

install: build
	$(MAKE) --no-print-directory install-bin

# The symlink is relative, so that a tree staged under DESTDIR works once copied into place.
install-bin:
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(INSTALL_BIN) $(DESTDIR)$(BINDIR)/httpsdelivery-operator
	ln -sfn httpsdelivery-operator $(DESTDIR)$(BINDIR)/$(KUBECTL_PLUGIN)
	@echo ">> installed $(DESTDIR)$(BINDIR)/httpsdelivery-operator and the kubectl plugin $(KUBECTL_PLUGIN)"

# ---------------------------------------------------------------------------
# The container image, offline: deploy/Containerfile.prebuilt puts a static binary (glibc's
# static libc, +crt-static: no musl target needed) on scratch. tests/image.rs builds it with
# buildah (`apt-get install -y --no-install-recommends buildah`; vfs storage and chroot
# isolation, so no daemon, registry or runtime), checks its config and layer, runs the
# binary inside it and exports it to an OCI archive.
#
#   make image      build the static binary and the image's SBOM, then run tests/image.rs,
#                   which exports the image to target/static/oci/httpsdelivery-operator.oci.tar
#   make sbom       the SBOM alone: target/static/oci/httpsdelivery-operator.cdx.json, CycloneDX
#                   JSON of the binary's crates (no dev or build dependencies) from Cargo.lock,
#                   offline, by cargo-cyclonedx
#   make cargo-tools   build the pinned cargo-cyclonedx from crates.io into tools/cargo/bin/ when
#                   it is missing or another version (about 5 minutes on 2 cores, once)
#
# An explicit --target keeps RUSTFLAGS away from build scripts and proc-macros; a target dir
# of its own keeps the flags from invalidating the normal build. Debug profile without debug
# info: what the test needs, a fraction of the size.
# ---------------------------------------------------------------------------

STATIC_TARGET := x86_64-unknown-linux-gnu
STATIC_BUILD = CARGO_PROFILE_DEV_DEBUG=0 RUSTFLAGS="-C target-feature=+crt-static" \
	$(CARGO) build --locked --target $(STATIC_TARGET) --target-dir target/static \
	-p httpsdelivery-operator --bin httpsdelivery-operator

IMAGE_OUT := target/static/oci
SBOM := $(IMAGE_OUT)/httpsdelivery-operator.cdx.json
CARGO_TOOLS := $(TOOLS_DIR)/cargo
CYCLONEDX_VERSION := 0.5.9
CYCLONEDX := $(CARGO_TOOLS)/bin/cargo-cyclonedx

.PHONY: image sbom cargo-tools

image: sbom
	$(STATIC_BUILD)
	$(CARGO) test --test image -- --include-ignored

cargo-tools:
	@if $(CYCLONEDX) cyclonedx --version 2>/dev/null | grep -q ' $(CYCLONEDX_VERSION)$$'; then \
		echo ">> cargo-tools: cargo-cyclonedx $(CYCLONEDX_VERSION) is installed in $(CARGO_TOOLS)/bin"; \
	else \
		echo ">> cargo-tools: building cargo-cyclonedx $(CYCLONEDX_VERSION) from crates.io into $(CARGO_TOOLS)/bin (about 5 minutes on 2 cores)"; \
		$(CARGO) install --locked --root $(CARGO_TOOLS) --version $(CYCLONEDX_VERSION) cargo-cyclonedx; \
	fi

# cargo-cyclonedx writes NAME_bin.cdx.json beside the Cargo.toml of every workspace member (it
# has no -p): keep the operator's, drop testkit's.
sbom: cargo-tools
	mkdir -p $(IMAGE_OUT)
	rm -f httpsdelivery-operator_bin.cdx.json testkit/*_bin.cdx.json
	CARGO_NET_OFFLINE=true $(CYCLONEDX) cyclonedx -q --manifest-path Cargo.toml --format json \
		--spec-version 1.5 --describe binaries --target $(STATIC_TARGET) --no-build-deps \
		|| { rm -f httpsdelivery-operator_bin.cdx.json testkit/*_bin.cdx.json; exit 1; }
	rm -f testkit/*_bin.cdx.json
	mv httpsdelivery-operator_bin.cdx.json $(SBOM)
	@echo ">> wrote $(SBOM)"
