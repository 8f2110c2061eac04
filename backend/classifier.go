package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"asbm/backend/cli"
	"asbm/backend/fid"
)

// runClassifier trains the FID feature network of a data set (backend/fid): a small CNN classifier
// for mnist and fashion, the fixed random conv net for emoji.
func runClassifier(args []string, stdout io.Writer) error {
	fs := cli.NewFlags("classifier")
	dataset := fs.String("data", "", "data set: "+strings.Join(fid.FeatureDatasets(), ", "))
	out := fs.String("out", "", "file to write (default the shipped path, e.g. weights/classifier-mnist.msgpack)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if !slices.Contains(fid.FeatureDatasets(), *dataset) {
		return cli.Usagef("--data must be one of %s, got %q", strings.Join(fid.FeatureDatasets(), ", "), *dataset)
	}
	if *out == "" {
		p, err := fid.ShippedFile(*dataset)
		if err != nil {
			return err
		}
		*out = p
	}
	if err := fid.TrainAndSave(*dataset, *out, os.Stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", *out)
	return nil
}
