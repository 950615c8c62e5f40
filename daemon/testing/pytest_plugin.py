"""pytest plugin registered by syncd (entry point ``pytest11``): fixtures for plugin authors."""
