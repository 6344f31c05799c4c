"""Test harness pieces shared across test packages (private RabbitMQ nodes, ...)."""
