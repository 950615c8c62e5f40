"""Sub-commands of ``syncd``: each public module here has ``register(subparsers)``."""
