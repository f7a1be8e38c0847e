package config

import (
	"errors"
	"fmt"

	"github.com/flowhouse/flowhouse/alertapi"
	"github.com/flowhouse/flowhouse/inventoryapi"
	"github.com/flowhouse/flowhouse/privacyapi"
	"github.com/flowhouse/flowhouse/sqlapi"
	"github.com/flowhouse/flowhouse/trafficapi"
)

// APIConfig is the section api: the settings of each API package, under
// its own key. The HTTP server itself is the section http.
type APIConfig struct {
	SQL       sqlapi.Config       `mapstructure:"sql" yaml:"sql"`
	Export    privacyapi.Config   `mapstructure:"export" yaml:"export"`
	Traffic   trafficapi.Config   `mapstructure:"traffic" yaml:"traffic"`
	Inventory inventoryapi.Config `mapstructure:"inventory" yaml:"inventory"`
	Alerts    alertapi.Config     `mapstructure:"alerts" yaml:"alerts"`
}

// DefaultAPIConfig is each package's defaults.
func DefaultAPIConfig() APIConfig {
	return APIConfig{
		SQL:       sqlapi.DefaultConfig(),
		Export:    privacyapi.DefaultConfig(),
		Traffic:   trafficapi.DefaultConfig(),
		Inventory: inventoryapi.DefaultConfig(),
		Alerts:    alertapi.DefaultConfig(),
	}
}

// Validate prefixes each package's problems with its key.
func (c APIConfig) Validate() error {
	var errs []error
	for _, sub := range []struct {
		key string
		err error
	}{
		{"sql", c.SQL.Validate()},
		{"export", c.Export.Validate()},
		{"traffic", c.Traffic.Validate()},
		{"inventory", c.Inventory.Validate()},
		{"alerts", c.Alerts.Validate()},
	} {
		for _, err := range splitErrors(sub.err) {
			errs = append(errs, fmt.Errorf("%s.%w", sub.key, err))
		}
	}
	return errors.Join(errs...)
}
