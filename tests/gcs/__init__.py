"""A real Cloud Storage emulator (fake-gcs-server, built from the Go module proxy) for tests."""
