"""A test double of the `pulumi-resource-gcp` plugin, launched by the real Pulumi engine.

The real provider cannot be built here (its go.mod replaces the Terraform provider with a local
patched checkout), so the tests put this double on PATH under the provider's name. The engine
starts it like any resource plugin, reads the port it prints, and speaks the provider gRPC
protocol to it (stubs from the `pulumi` package). Every resource it creates goes through the
real google-cloud-compute / google-cloud-container clients to the local API stand-ins named by
the provider config (`gcp:computeCustomEndpoint`, `gcp:containerCustomEndpoint`), and every
failure is reported in the shape the real provider uses, so gpuctl reads what it would read.
"""
