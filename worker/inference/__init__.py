"""The worker's model server: Triton over gRPC, behind a circuit breaker (``bga_mner.inference`` holds
the backend protocol and its errors)."""
