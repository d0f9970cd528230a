package main

import "io"

func cmdCheck(args []string, stdout, stderr io.Writer) int   { return 2 }
func cmdExplain(args []string, stdout, stderr io.Writer) int { return 2 }
func cmdCompile(args []string, stdout, stderr io.Writer) int { return 2 }
