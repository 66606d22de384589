"""The PostgreSQL benchmark (``make bench``): not collected by pytest (no ``test_`` files)."""
