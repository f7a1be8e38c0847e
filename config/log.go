package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// LogConfig says how flowhouse logs.
type LogConfig struct {
	// Level is the lowest level written: debug, info, warn or error.
	Level string `mapstructure:"level" yaml:"level"`
	// Format is text (logfmt-like key=value) or json.
	Format string `mapstructure:"format" yaml:"format"`
}

// DefaultLogConfig logs info and above as text.
func DefaultLogConfig() LogConfig {
	return LogConfig{Level: "info", Format: "text"}
}

// Validate names the wrong key and says what is wrong with it.
func (c LogConfig) Validate() error {
	var errs []error
	if _, err := c.level(); err != nil {
		errs = append(errs, err)
	}
	if c.Format != "text" && c.Format != "json" {
		errs = append(errs, fmt.Errorf("format: %q is not text or json", c.Format))
	}
	return errors.Join(errs...)
}

func (c LogConfig) level() (slog.Level, error) {
	switch c.Level {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("level: %q is not debug, info, warn or error", c.Level)
}

// NewLogger returns a logger writing to w as configured. An invalid level
// logs at info, an invalid format as text (Load rejects both).
func (c LogConfig) NewLogger(w io.Writer) *slog.Logger {
	level, err := c.level()
	if err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
