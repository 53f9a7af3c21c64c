"""The metrics endpoint (program): serves Prometheus's ``/metrics`` for every process."""
