module quietmx

go 1.26.8

require (
	github.com/caarlos0/env/v11 v11.4.2
	github.com/rogpeppe/go-internal v1.16.0
	golang.org/x/crypto v0.58.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/tools v0.26.0 // indirect
)
