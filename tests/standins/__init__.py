"""Local stand-ins that speak Google Cloud REST APIs, for tests that drive the real client libraries."""
