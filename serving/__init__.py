"""``edgeport serve``: a validated variant behind a local HTTP endpoint (Hugging Face Inference
API shape, Open Inference Protocol v2, health, metadata, Prometheus metrics)."""
