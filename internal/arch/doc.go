// Package arch holds the tests of the house rules that no compiler
// checks: which packages may import which (data moves one way, collector
// -> enrich -> store), and how long a production function may grow.
package arch
