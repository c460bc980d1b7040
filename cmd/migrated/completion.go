package main

import "github.com/spf13/cobra"

// completeConfig makes the shells offer YAML files for --config. Cobra adds the `completion`
// command itself (bash, zsh, fish, powershell); this only teaches it what --config takes, since
// otherwise zsh and fish offer every file.
func completeConfig(root *cobra.Command) {
	// The flag is defined on root just before; an error would be a typo in its name.
	if err := root.MarkPersistentFlagFilename("config", "yaml", "yml"); err != nil {
		panic(err)
	}
}
