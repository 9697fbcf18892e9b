package main

import "errors"

func runTokenServer(args []string) error {
	return errors.New("the token server is not implemented yet")
}
