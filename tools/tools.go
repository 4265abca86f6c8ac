//go:build tools

// Package tools records the commands that `make tools` builds, so that
// `go mod tidy` keeps their modules (and their go.sum lines) in go.mod.
// Nothing imports this package; the build tag keeps it out of every build.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"            // etcd
	_ "helm.sh/helm/v3/cmd/helm"             // helm
	_ "k8s.io/kubernetes/cmd/kube-apiserver" // kube-apiserver
	_ "k8s.io/kubernetes/cmd/kubectl"        // kubectl
)
