package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"asbm/backend/cli"
	"asbm/backend/server"
)

// runServe is `backend serve`: the built site and the model files over HTTP (backend/server) until
// interrupted.
func runServe(args []string, stdout io.Writer) error {
	fs := cli.NewFlags("serve")
	site := fs.String("site", "dist", "folder of the built site (./build.sh build makes dist/)")
	wdir := fs.String("weights", "weights", "folder of model files served under /weights/")
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	for _, dir := range []string{*site, *wdir} {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return cli.Usagef("%s is not a folder (build the site first: ./build.sh build)", dir)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return server.Run(ctx, *addr, server.Config{Site: *site, Weights: *wdir})
}
