// Package dump reads and writes the original AltPostLocal's JSON dump:
// {"sender", "recipients", "recipient", "mail"}. A message that is not valid
// UTF-8 (ISO-2022-JP is 7-bit, but Shift_JIS and raw 8-bit are not) cannot be
// a JSON string without loss, so its exact bytes go in "mail_base64" instead.
// Decoding either form gives back the message byte for byte.
package dump

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf8"

	"quietmx/internal/maildir"
)

// Dump is one saved message with its envelope.
type Dump struct {
	Sender     string
	Recipients []string
	Recipient  string
	Mail       []byte
}

type wire struct {
	Sender     *string         `json:"sender"`
	Recipients json.RawMessage `json:"recipients"`
	Recipient  *string         `json:"recipient,omitempty"`
	Mail       *string         `json:"mail,omitempty"`
	MailBase64 *string         `json:"mail_base64,omitempty"`
	// Envelope addresses that are not valid UTF-8 (8-bit local parts do
	// occur) cannot be JSON strings without loss either: their exact bytes
	// go here, and the plain fields hold a lossy copy for people.
	EnvelopeBase64 *envelopeB64 `json:"envelope_base64,omitempty"`
}

type envelopeB64 struct {
	Sender     string   `json:"sender"`
	Recipients []string `json:"recipients"`
	Recipient  string   `json:"recipient"`
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func unb64(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	return string(b), err
}

// Encode returns the JSON form of d.
func Encode(d Dump) ([]byte, error) {
	rcpts := d.Recipients
	if rcpts == nil {
		rcpts = []string{}
	}
	rj, err := json.Marshal(rcpts)
	if err != nil {
		return nil, err
	}
	w := wire{Sender: &d.Sender, Recipients: rj, Recipient: &d.Recipient}
	valid := utf8.ValidString(d.Sender) && utf8.ValidString(d.Recipient)
	for _, r := range rcpts {
		valid = valid && utf8.ValidString(r)
	}
	if !valid {
		e := &envelopeB64{Sender: b64(d.Sender), Recipient: b64(d.Recipient), Recipients: []string{}}
		for _, r := range rcpts {
			e.Recipients = append(e.Recipients, b64(r))
		}
		w.EnvelopeBase64 = e
	}
	if utf8.Valid(d.Mail) {
		s := string(d.Mail)
		w.Mail = &s
	} else {
		s := base64.StdEncoding.EncodeToString(d.Mail)
		w.MailBase64 = &s
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decode reads a dump written by Encode or by the original. A null sender
// is the null sender; "recipients" may be a list or a single string.
func Decode(data []byte) (Dump, error) {
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return Dump{}, fmt.Errorf("dump: %w", err)
	}
	var d Dump
	if w.Sender != nil {
		d.Sender = *w.Sender
	}
	if w.Recipient != nil {
		d.Recipient = *w.Recipient
	}
	if len(w.Recipients) > 0 && string(w.Recipients) != "null" {
		if err := json.Unmarshal(w.Recipients, &d.Recipients); err != nil {
			var one string
			if err2 := json.Unmarshal(w.Recipients, &one); err2 != nil {
				return Dump{}, fmt.Errorf("dump: recipients: want a list of addresses")
			}
			d.Recipients = []string{one}
		}
	}
	if e := w.EnvelopeBase64; e != nil {
		var err error
		if d.Sender, err = unb64(e.Sender); err != nil {
			return Dump{}, fmt.Errorf("dump: envelope_base64.sender: %w", err)
		}
		if d.Recipient, err = unb64(e.Recipient); err != nil {
			return Dump{}, fmt.Errorf("dump: envelope_base64.recipient: %w", err)
		}
		d.Recipients = nil
		for _, r := range e.Recipients {
			v, err := unb64(r)
			if err != nil {
				return Dump{}, fmt.Errorf("dump: envelope_base64.recipients: %w", err)
			}
			d.Recipients = append(d.Recipients, v)
		}
	}
	switch {
	case w.MailBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*w.MailBase64)
		if err != nil {
			return Dump{}, fmt.Errorf("dump: mail_base64: %w", err)
		}
		d.Mail = b
	case w.Mail != nil:
		d.Mail = []byte(*w.Mail)
	default:
		return Dump{}, errors.New("dump: no mail or mail_base64 field")
	}
	if len(d.Recipients) == 0 && d.Recipient != "" {
		d.Recipients = []string{d.Recipient}
	}
	if len(d.Recipients) == 0 {
		return Dump{}, errors.New("dump: no recipients")
	}
	return d, nil
}

// Write stores d as <sec>.<nsec>.<pid>.json-style file in dir (durably, see
// maildir.Store) and returns its path. dir is created if missing.
func Write(dir string, d Dump) (string, error) {
	data, err := Encode(d)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("dump directory %q: not an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("dump directory: %w", err)
	}
	return maildir.Store(dir, ".json", data)
}

// WriteRescue is Write for the rescue directory, which must already exist.
func WriteRescue(dir string, d Dump) (string, error) {
	data, err := Encode(d)
	if err != nil {
		return "", err
	}
	return maildir.Store(dir, ".json", data)
}
