// Package e2e is the end-to-end suite: the real image (built by `make
// image`), real SMTP in from the host through the published port, real
// IMAPS out. Its tests carry the e2e build tag; `make test` runs them.
package e2e
