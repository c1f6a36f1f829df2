package main

// Modules the project has chosen (DESIGN.md) that are pinned in go.mod before
// the packages using them land; remove each import once a package uses it.
import (
	_ "github.com/redis/go-redis/v9"
)
