.PHONY: bench bench-quick

# Every benchmark in one run: benchmarks/results/summary.json and summary.md.
bench:
	.venv/bin/python benchmarks/run_all.py

bench-quick:
	.venv/bin/python benchmarks/run_all.py --quick
