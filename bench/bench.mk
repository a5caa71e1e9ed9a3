# `make bench`: the load benchmark (webhook and floor server side by side over HTTP/1.1) and the
# criterion micro-benchmarks. Not part of `make test`. Included from the top-level Makefile.
.PHONY: bench bench-load bench-micro

## bench: load benchmark (bench/run.sh, writes bench/results/) and criterion micro-benchmarks
bench: bench-load bench-micro

## bench-load: webhook vs floor over HTTP/1.1 (h2load, examples/pace.rs); regenerates bench/results/latency.png
bench-load:
	bench/run.sh

## bench-micro: decode + decide + patch + encode for small, typical and large reviews
bench-micro:
	$(CARGO) bench --locked --bench review
