"""syncd's bundled provider plugins.

Each sub-package is registered under the ``syncd.plugins`` entry-point group in syncd's own
distribution metadata, exactly as a third-party plugin registers in its own.
"""
