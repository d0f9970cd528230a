package supervisor

import "testing"

func TestStripSyslog(t *testing.T) {
	tests := map[string]string{
		"<22>Nov 23 07:48:40 altpostlocal[42]: level=INFO msg=delivery": "altpostlocal[42]: level=INFO msg=delivery",
		"<19>Nov  3 07:48:40 mail altpostlocal[42]: x=y\n":              "altpostlocal[42]: x=y",
		"<22>2026-11-23T07:48:40+00:00 altpostlocal[7]: a":              "altpostlocal[7]: a",
		"no header at all":                       "no header at all",
		"<22>Nov 23 07:48:40 tag[1]: two\nlines": "tag[1]: two lines",
	}
	for in, want := range tests {
		if got := string(stripSyslog([]byte(in))); got != want {
			t.Errorf("stripSyslog(%q) = %q, want %q", in, got, want)
		}
	}
}
