"""The ``masf-bench`` command line."""
