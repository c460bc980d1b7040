package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/migrated/migrated/internal/config"
)

// maxBody is how much of a failed webhook's answer its error shows.
const maxBody = 512

// client does not follow redirects: a 301 or 302 would turn the POST into a GET that drops the
// facts and could still answer 200.
var client = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// postWebhook POSTs the facts to h.Webhook. Its errors name the URL only as RedactedWebhook.
func postWebhook(ctx context.Context, h config.Hooks, timeout time.Duration, body []byte) error {
	name := "hook webhook " + h.RedactedWebhook()
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, h.Webhook, bytes.NewReader(body))
	if err != nil {
		// The error quotes the URL.
		return fmt.Errorf("%s: not a valid URL; check cutover.hooks.webhook", name)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "migrated")
	resp, err := client.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("%s: stopped before it answered: %w", name, ctx.Err())
		case errors.Is(reqCtx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("%s: no answer within %s (cutover.hooks.timeout)", name, timeout)
		}
		// *url.Error repeats the URL with its query.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		return nil
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	msg := fmt.Sprintf("%s: HTTP %s", name, resp.Status)
	if resp.StatusCode/100 == 3 {
		msg += "; redirects are not followed, set cutover.hooks.webhook to the final URL"
	}
	// A server may echo the request URL in its error page.
	if s := strings.TrimSpace(strings.ToValidUTF8(string(snippet), "?")); s != "" {
		msg += ": " + scrub(s, h.Webhook)
	}
	return errors.New(msg)
}

// scrub replaces in s every secret the webhook URL may carry: its userinfo and its query values,
// raw and decoded. Strings shorter than 4 bytes are left alone, as replacing them would mangle
// the message more than it hides.
func scrub(s, webhook string) string {
	secrets := []string{webhook}
	if u, err := url.Parse(webhook); err == nil {
		secrets = append(secrets, u.RawQuery, u.Fragment)
		if u.User != nil {
			pw, _ := u.User.Password()
			secrets = append(secrets, u.User.String(), u.User.Username(), pw)
		}
		for _, kv := range strings.Split(u.RawQuery, "&") {
			_, v, _ := strings.Cut(kv, "=")
			secrets = append(secrets, v)
			if dv, err := url.QueryUnescape(v); err == nil {
				secrets = append(secrets, dv)
			}
		}
	}
	// Longest first, so that a secret containing another is replaced whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "REDACTED")
		}
	}
	return s
}
