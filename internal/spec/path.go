package spec

import (
	"fmt"
	"os"
)

// DefaultPath is where the image keeps the spec.
const DefaultPath = "/etc/quietmx/quietmx.yaml"

// PathEnv is the variable naming the spec file when --spec does not.
const PathEnv = "QUIETMX_SPEC"

// Source is the spec file a quietmx command reads, as ResolvePath found it.
type Source struct {
	Path string // "" = no file: the spec comes from the environment alone
	From string // "--spec", PathEnv or "default"
}

// Note is the line to log when no file is read, "" otherwise.
func (s Source) Note() string {
	if s.Path != "" {
		return ""
	}
	return fmt.Sprintf("no spec file at %s: configuring from the QUIETMX_* variables alone", DefaultPath)
}

// ResolvePath is the one rule every quietmx command uses to find the spec:
// flagValue (--spec), else $QUIETMX_SPEC, else DefaultPath. A file named
// by --spec or QUIETMX_SPEC must exist: a typo there must fail loudly, not
// configure the host from the environment alone. Only the default may be
// absent. getenv nil means os.Getenv.
func ResolvePath(flagValue string, getenv func(string) string) (Source, error) {
	return resolvePath(flagValue, getenv, DefaultPath)
}

func resolvePath(flagValue string, getenv func(string) string, def string) (Source, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	src := Source{Path: flagValue, From: "--spec"}
	if src.Path == "" {
		src = Source{Path: getenv(PathEnv), From: PathEnv}
	}
	if src.Path == "" {
		if _, err := os.Stat(def); os.IsNotExist(err) {
			return Source{From: "default"}, nil
		}
		// Present, or unreadable: LoadFile reports the latter.
		return Source{Path: def, From: "default"}, nil
	}
	if _, err := os.Stat(src.Path); err != nil {
		return Source{}, fmt.Errorf("%s names the spec file %s, which cannot be read: %w", src.From, src.Path, err)
	}
	return src, nil
}
