package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
	"go.yaml.in/yaml/v3"
)

// The OpenAPI document is assembled from fragments: the base (security,
// the error shape, the shared parameters and responses) and one per API
// package, beside the handlers it describes, so that each package keeps
// its part true. Tests validate every response against the whole.

//go:embed openapi/base.yaml
var baseSpec []byte

// Spec is an OpenAPI 3 document being assembled.
type Spec struct {
	mu  sync.Mutex
	doc map[string]any
}

// componentKinds are the sections of components a fragment may add to.
var componentKinds = []string{"schemas", "parameters", "responses", "headers"}

// NewSpec is the base document.
func NewSpec() *Spec {
	s := &Spec{}
	if err := yaml.Unmarshal(baseSpec, &s.doc); err != nil {
		panic("api: base OpenAPI document: " + err.Error())
	}
	return s
}

// Add merges a YAML fragment with `paths` and `components` of the kinds
// above. A path or component already defined is an error: two packages
// must not describe the same thing.
func (s *Spec) Add(name string, fragment []byte) error {
	var frag map[string]any
	if err := yaml.Unmarshal(fragment, &frag); err != nil {
		return fmt.Errorf("openapi fragment %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range frag {
		if k != "paths" && k != "components" {
			return fmt.Errorf("openapi fragment %s: top-level key %q (only paths and components)", name, k)
		}
	}
	if err := mergeInto(s.doc, "paths", asMap(frag["paths"]), name); err != nil {
		return err
	}
	comps := asMap(frag["components"])
	for k := range comps {
		if !slices.Contains(componentKinds, k) {
			return fmt.Errorf("openapi fragment %s: components.%s (only %v)", name, k, componentKinds)
		}
	}
	docComps := asMap(s.doc["components"])
	for _, kind := range componentKinds {
		if err := mergeInto(docComps, kind, asMap(comps[kind]), name); err != nil {
			return err
		}
	}
	return nil
}

func mergeInto(parent map[string]any, key string, add map[string]any, name string) error {
	dst := asMap(parent[key])
	if dst == nil {
		dst = map[string]any{}
		parent[key] = dst
	}
	for k, v := range add {
		if _, dup := dst[k]; dup {
			return fmt.Errorf("openapi fragment %s: %s %q is already defined", name, key, k)
		}
		dst[k] = v
	}
	return nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// commonResponses are the answers the frame itself may give to any
// operation (authentication, roles, rate limits, parameters, a database
// that cannot be read); JSON adds those an operation does not describe.
var commonResponses = map[string]string{
	"400": "BadRequest",
	"401": "Unauthorized",
	"403": "Forbidden",
	"429": "TooManyRequests",
	"503": "Unavailable",
}

var operationKeys = []string{"get", "put", "post", "delete", "patch", "head", "options"}

// JSON is the document as JSON, with the common responses added to
// every operation (404 too where the path has parameters).
func (s *Spec) JSON() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for path, item := range asMap(s.doc["paths"]) {
		for _, method := range operationKeys {
			op := asMap(asMap(item)[method])
			if op == nil {
				continue
			}
			resps := asMap(op["responses"])
			if resps == nil {
				resps = map[string]any{}
				op["responses"] = resps
			}
			add := maps.Clone(commonResponses)
			if strings.Contains(path, "{") {
				add["404"] = "NotFound"
			}
			for code, name := range add {
				if _, ok := resps[code]; !ok {
					resps[code] = map[string]any{"$ref": "#/components/responses/" + name}
				}
			}
		}
	}
	return json.MarshalIndent(s.doc, "", "  ")
}

// AddSpec adds an API package's fragment to the document the server
// serves at /api/v1/openapi.json. It panics on a bad or conflicting
// fragment: that is a programming error, found by any test.
func (s *Server) AddSpec(name string, fragment []byte) {
	if err := s.spec.Add(name, fragment); err != nil {
		panic(err)
	}
}

// Spec is the server's OpenAPI document.
func (s *Server) Spec() *Spec { return s.spec }

func (s *Server) openAPI(c *gin.Context) {
	b, err := s.spec.JSON()
	if err != nil {
		WriteError(c, http.StatusInternalServerError, CodeInternal, "internal server error")
		return
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", b)
}
