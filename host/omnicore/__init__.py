"""omnicore: a host runtime for WebAssembly plugins."""

__version__ = "0.1.0"
