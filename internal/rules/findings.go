package rules

import "quietmx/internal/yamlconf"

// A rule file's problems are the shared configuration diagnostics (package
// yamlconf), so check, explain and the spec print them all one way:
// FILE:LINE:COL: [warning: ]PATH: message.
type (
	Severity = yamlconf.Severity
	Pos      = yamlconf.Pos
	Finding  = yamlconf.Diagnostic
	Findings = yamlconf.Diagnostics
)

// Severities: an Error makes the rule file invalid (check exits 1, and
// delivery uses the last valid rules or defers); a Warning does not.
const (
	Warning = yamlconf.Warning
	Error   = yamlconf.Error
)
