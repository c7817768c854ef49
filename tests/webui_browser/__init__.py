"""Helpers of tests/test_webui_browser.py, run with the Web UI test env's interpreters."""
