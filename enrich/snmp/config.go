// Package snmp polls one SNMP agent with gosnmp: sysName, the interface
// table, the ARP table and the interfaces' octet counters. It knows nothing
// of tenants, caches or databases; the enrich package schedules it.
package snmp

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gosnmp/gosnmp"
)

// Config of polling one agent.
type Config struct {
	// Enabled turns polling on.
	Enabled bool `mapstructure:"enabled" yaml:"enabled"`
	// Version: "2c" or "3".
	Version string `mapstructure:"version" yaml:"version"`
	// Agent is host:port when the agent is not at the flow source address;
	// empty: the exporter's address and Port.
	Agent string `mapstructure:"agent" yaml:"agent"`
	// Port of the agent at the exporter's address.
	Port uint16 `mapstructure:"port" yaml:"port"`
	// Community of v2c. The three credentials are secrets (package
	// secret): plain, "enc:" values, or read from their _file keys;
	// config.Load hands them over as plain text.
	Community     string `mapstructure:"community" yaml:"community" secret:"true"`
	CommunityFile string `mapstructure:"community_file" yaml:"community_file"`
	// User, security level and protocols of v3. Level: authpriv |
	// authnopriv. AuthProtocol: SHA, SHA224, SHA256, SHA384, SHA512 (MD5
	// accepted for old devices). PrivProtocol: AES, AES192, AES256
	// (Blumenthal key extension, net-snmp's), AES192C, AES256C (Reeder,
	// Cisco's).
	User               string `mapstructure:"user" yaml:"user"`
	Level              string `mapstructure:"level" yaml:"level"`
	AuthProtocol       string `mapstructure:"auth_protocol" yaml:"auth_protocol"`
	AuthPassphrase     string `mapstructure:"auth_passphrase" yaml:"auth_passphrase" secret:"true"`
	AuthPassphraseFile string `mapstructure:"auth_passphrase_file" yaml:"auth_passphrase_file"`
	PrivProtocol       string `mapstructure:"priv_protocol" yaml:"priv_protocol"`
	PrivPassphrase     string `mapstructure:"priv_passphrase" yaml:"priv_passphrase" secret:"true"`
	PrivPassphraseFile string `mapstructure:"priv_passphrase_file" yaml:"priv_passphrase_file"`
	// ContextName of v3, when the agent needs one.
	ContextName string `mapstructure:"context_name" yaml:"context_name"`
	// Timeout of one request and Retries after it.
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout"`
	Retries int           `mapstructure:"retries" yaml:"retries"`
	// MaxRepetitions of GETBULK.
	MaxRepetitions uint32 `mapstructure:"max_repetitions" yaml:"max_repetitions"`
}

// DefaultConfig is v2c on port 161, off.
func DefaultConfig() Config {
	return Config{
		Version:        "2c",
		Port:           161,
		Level:          "authpriv",
		AuthProtocol:   "SHA",
		PrivProtocol:   "AES",
		Timeout:        2 * time.Second,
		Retries:        1,
		MaxRepetitions: 25,
	}
}

var authProtocols = map[string]gosnmp.SnmpV3AuthProtocol{
	"MD5": gosnmp.MD5, "SHA": gosnmp.SHA, "SHA1": gosnmp.SHA, "SHA224": gosnmp.SHA224,
	"SHA256": gosnmp.SHA256, "SHA384": gosnmp.SHA384, "SHA512": gosnmp.SHA512,
}

var privProtocols = map[string]gosnmp.SnmpV3PrivProtocol{
	"AES": gosnmp.AES, "AES128": gosnmp.AES, "AES192": gosnmp.AES192, "AES256": gosnmp.AES256,
	"AES192C": gosnmp.AES192C, "AES256C": gosnmp.AES256C,
}

func normProto(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", ""))
}

// WithDefaults fills the zero values of keys that have a default: a list
// entry in the configuration file starts from zero values, not from
// DefaultConfig. (Retries is taken as given: 0 means no retry.)
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.Version == "" {
		c.Version = d.Version
	}
	if c.Port == 0 {
		c.Port = d.Port
	}
	if c.Level == "" {
		c.Level = d.Level
	}
	if c.AuthProtocol == "" {
		c.AuthProtocol = d.AuthProtocol
	}
	if c.PrivProtocol == "" {
		c.PrivProtocol = d.PrivProtocol
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxRepetitions == 0 {
		c.MaxRepetitions = d.MaxRepetitions
	}
	return c
}

// Validate names the wrong keys, after WithDefaults. Secrets are never
// quoted.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.Agent != "" {
		if _, _, err := net.SplitHostPort(c.Agent); err != nil {
			errs = append(errs, fmt.Errorf("agent: %q is not host:port", c.Agent))
		}
	}
	if c.Timeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("timeout: %s is shorter than 10ms", c.Timeout))
	}
	if c.Retries < 0 || c.Retries > 10 {
		errs = append(errs, fmt.Errorf("retries: %d is outside 0..10", c.Retries))
	}
	if c.MaxRepetitions < 1 || c.MaxRepetitions > 200 {
		errs = append(errs, fmt.Errorf("max_repetitions: %d is outside 1..200", c.MaxRepetitions))
	}
	switch c.Version {
	case "2c", "2":
		if c.Enabled && c.Community == "" && c.CommunityFile == "" {
			errs = append(errs, errors.New("community: required for version 2c (or community_file)"))
		}
	case "3":
		if c.Enabled && c.User == "" {
			errs = append(errs, errors.New("user: required for version 3"))
		}
		lvl := strings.ToLower(c.Level)
		if lvl != "authpriv" && lvl != "authnopriv" {
			errs = append(errs, fmt.Errorf("level: %q is not authpriv or authnopriv", c.Level))
		}
		if _, ok := authProtocols[normProto(c.AuthProtocol)]; !ok {
			errs = append(errs, fmt.Errorf("auth_protocol: %q is not one of SHA, SHA224, SHA256, SHA384, SHA512, MD5", c.AuthProtocol))
		}
		if c.Enabled && c.AuthPassphrase == "" && c.AuthPassphraseFile == "" {
			errs = append(errs, errors.New("auth_passphrase: required for version 3 (or auth_passphrase_file)"))
		}
		if lvl != "authnopriv" {
			if _, ok := privProtocols[normProto(c.PrivProtocol)]; !ok {
				errs = append(errs, fmt.Errorf("priv_protocol: %q is not one of AES, AES192, AES256, AES192C, AES256C", c.PrivProtocol))
			}
			if c.Enabled && c.PrivPassphrase == "" && c.PrivPassphraseFile == "" {
				errs = append(errs, errors.New("priv_passphrase: required for level authpriv (or priv_passphrase_file)"))
			}
		}
	default:
		errs = append(errs, fmt.Errorf("version: %q is not 2c or 3", c.Version))
	}
	return errors.Join(errs...)
}

// Target is the agent's host:port for an exporter at addr.
func (c Config) Target(exporter string) string {
	c = c.WithDefaults()
	if c.Agent != "" {
		return c.Agent
	}
	return net.JoinHostPort(exporter, strconv.Itoa(int(c.Port)))
}
