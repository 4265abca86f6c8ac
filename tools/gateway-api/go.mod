// The Gateway API CRDs the route tests install (HTTPRoute and what it needs), pinned apart from
// ../go.mod so that the control plane's k8s.io pins are not disturbed. Nothing here is built:
// `make gateway-api-crds` downloads the module and copies its standard-channel CRDs.
module httpsdelivery.dev/tools/gateway-api

go 1.24

require sigs.k8s.io/gateway-api v1.6.3
