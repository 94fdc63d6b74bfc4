"""Execute phase: the chunk store, the DAG executor, one chunk's work, and what is up to date."""
