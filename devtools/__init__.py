"""The developers' harness: start real servers for the demo, the benchmarks and the tests."""
