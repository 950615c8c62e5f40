"""Test support for syncd and its plugin authors."""
