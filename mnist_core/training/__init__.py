"""Training: the worker process (the only TensorFlow side), its supervisor and the CLI."""
