package config

import (
	"net"
	"strconv"
)

// HostPort checks that value is a host:port with a numeric port.
func HostPort(key, value string) error {
	host, port, err := net.SplitHostPort(value)
	if err != nil || host == "" {
		return Errorf(key, value, "must be host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return Errorf(key, value, "port must be 1-65535")
	}
	return nil
}

// HostPorts checks a non-empty list of host:port values.
func HostPorts(key string, values []string) error {
	if len(values) == 0 {
		return Errorf(key, "", "must list at least one host:port")
	}
	for _, v := range values {
		if err := HostPort(key, v); err != nil {
			return err
		}
	}
	return nil
}

// Required checks that value is set.
func Required(key, value string) error {
	if value == "" {
		return Errorf(key, "", "is required")
	}
	return nil
}
