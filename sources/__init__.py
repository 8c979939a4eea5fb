"""Sources: the closed-loop simulator, JSONL files and Kafka."""
