package fieldsync

import "crypto/tls"

// WithTLS makes the client connect with TLS configured by cfg, whose RootCAs
// should hold the county's CA. cfg is cloned; nil means no TLS. Without TLS
// the client connects in plaintext to loopback addresses only (development
// and tests), and Enroll and Sync to any other address return
// ErrTLSRequired.
func WithTLS(cfg *tls.Config) Option {
	return func(c *Client) {
		if cfg != nil {
			cfg = cfg.Clone()
		}
		c.tls = cfg
	}
}
