"""Pure logic, no I/O: windows/features, anomaly detectors, bandits, drift, latency stats."""
