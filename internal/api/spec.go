package api

import (
	_ "embed"
	"net/http"
	"strconv"
)

// Spec is the OpenAPI 3.0 document of the API, including the hub's own /api/v1/enrol and
// /api/v1/write (tagged "hub").
//
//go:embed openapi.yaml
var Spec []byte

func serveSpec(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Content-Length", strconv.Itoa(len(Spec)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(Spec)
	}
}
