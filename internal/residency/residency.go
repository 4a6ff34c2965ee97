// Package residency lets a long-running process give back the pages of its own executable
// that it touched only while starting.
//
// A Go binary runs the initialisers of every package it links before main, and client-go's
// alone register every built-in API type: the agent, which afterwards runs a small loop, keeps
// about 12 MiB of code and read-only data mapped for nothing. These pages are clean copies of
// the file: dropping the mappings frees them from the process's resident set, and the kernel
// maps back, from the page cache, whatever is run again.
package residency
