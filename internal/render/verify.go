package render

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Verify feeds a rendered tree to the real configuration checkers:
// `postconf -c DIR -n` (main.cf), `postconf -c DIR -M` (master.cf) and
// `doveconf -c FILE -n`. Any non-zero exit or any output on stderr (both
// tools print warnings there and still exit 0) is an error quoting it. A
// missing tool is an error too. Verify has no side effects: unlike
// `postfix check`, none of these touches the queue.
func Verify(dir string) error {
	var errs []error
	pf := filepath.Join(dir, "postfix")
	errs = append(errs,
		Quiet("postconf", "-c", pf, "-n"),
		Quiet("postconf", "-c", pf, "-M"),
		Quiet("doveconf", "-c", filepath.Join(dir, DovecotConf), "-n"),
	)
	return errors.Join(errs...)
}

// Quiet runs a checker and fails unless it exits 0 with nothing on stderr.
func Quiet(name string, args ...string) error {
	bin, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("%s not found (install postfix and dovecot-imapd: internal/render/install-tools.sh): %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = new(bytes.Buffer)
	err = cmd.Run()
	line := name + " " + strings.Join(args, " ")
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", line, err, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		return fmt.Errorf("%s warned:\n%s", line, stderr.Bytes())
	}
	return nil
}
