"""The local stack: a real Kafka-protocol broker, Redis and Triton on 127.0.0.1 for demos and tests."""
