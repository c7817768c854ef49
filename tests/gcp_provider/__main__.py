"""`python -m tests.gcp_provider ENGINE_ADDRESS`: what the engine runs as pulumi-resource-gcp."""

from tests.gcp_provider.server import main

main()
