"""The thin click layer: parse options, call one orchestrator function, render the result."""
