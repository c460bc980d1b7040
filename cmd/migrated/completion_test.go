package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCompletion runs the built binary's completion command for each shell the docs name and
// checks that it prints that shell's script, so that a root command that disables cobra's
// default completion command (or breaks it) fails here.
func TestCompletion(t *testing.T) {
	for _, tc := range []struct {
		shell, want string
	}{
		{"bash", "# bash completion V2 for migrated"},
		{"zsh", "#compdef migrated"},
		{"fish", "# fish completion for migrated"},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			out, err := exec.Command(binary, "completion", tc.shell).Output()
			if err != nil {
				t.Fatalf("migrated completion %s: %v", tc.shell, err)
			}
			if got := string(out); !strings.HasPrefix(got, tc.want) {
				t.Errorf("migrated completion %s starts %q, want %q", tc.shell, firstLine(got), tc.want)
			}
		})
	}
	t.Run("bash script", func(t *testing.T) {
		out, err := exec.Command(binary, "completion", "bash").Output()
		if err != nil {
			t.Fatal(err)
		}
		// The function bash calls, and its registration for the command name.
		for _, want := range []string{"__start_migrated()", "complete -o default -F __start_migrated migrated"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("bash completion script lacks %q", want)
			}
		}
	})
}

// TestCompleteConfigFlag checks that --config completes to YAML files: cobra's hidden
// __complete command answers with the extensions and the file-extension directive (8).
func TestCompleteConfigFlag(t *testing.T) {
	out, err := exec.Command(binary, "__complete", "status", "--config", "").Output()
	if err != nil {
		t.Fatalf("migrated __complete: %v", err)
	}
	if got, want := string(out), "yaml\nyml\n:8\n"; !strings.HasPrefix(got, want) {
		t.Errorf("completion of --config = %q, want it to start %q", got, want)
	}
}
